"""The registry and the codec: what is accepted, and the error code for what is not."""

from __future__ import annotations

import msgpack
import pytest

from protocol.codec import DEFAULT_MAX_FRAME, ProtocolError, decode, error, make
from protocol.messages import REGISTRY, ErrorCode, Kind


def test_round_trip_keeps_envelope() -> None:
    env = decode(make("chat", {"text": "hi", "extra": 1}, id=7))
    assert (env.type, env.id, env.reply_to, env.data["text"]) == ("chat", 7, None, "hi")
    assert env.ts > 0
    assert env.data["extra"] == 1  # unknown fields are kept and ignored, not rejected


@pytest.mark.parametrize(("frame", "code"), [
    (b"\xc1\xc1garbage", ErrorCode.MALFORMED_FRAME),
    (msgpack.packb([1, 2, 3]), ErrorCode.MALFORMED_FRAME),
    (msgpack.packb({"id": 1, "data": {}}), ErrorCode.MALFORMED_FRAME),
    (msgpack.packb({"type": "no_such_type", "id": 1, "data": {}}), ErrorCode.UNKNOWN_TYPE),
    (msgpack.packb({"type": "status", "data": {}}), ErrorCode.INVALID_FIELD),
    (msgpack.packb({"type": "chat", "id": 2, "data": {"text": 5}}), ErrorCode.INVALID_FIELD),
    (msgpack.packb({"type": "chat", "id": 2, "data": {}}), ErrorCode.INVALID_FIELD),
    (msgpack.packb({"type": "chat", "id": "x", "data": {"text": "a"}}), ErrorCode.INVALID_FIELD),
    (msgpack.packb({"type": "status", "id": 3, "data": [1]}), ErrorCode.INVALID_FIELD),
    (msgpack.packb({"type": "restart", "id": 3, "data": {"worker": True}}),
     ErrorCode.INVALID_FIELD),
])
def test_bad_frames_raise_protocol_error_with_code(frame: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert info.value.code == code


def test_error_names_the_field() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(make("chat", {"text": 5}, id=9))
    assert "text" in info.value.message and info.value.reply_to == 9


def test_size_limit() -> None:
    big = make("chat", {"text": "x" * DEFAULT_MAX_FRAME}, id=1)
    with pytest.raises(ProtocolError) as info:
        decode(big)
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    assert decode(big, max_size=2 * DEFAULT_MAX_FRAME).data["text"].startswith("x")


def test_error_message_shape() -> None:
    env = decode(error(ErrorCode.QUEUE_FULL, "full", reply_to=4))
    assert env.type == "error" and env.reply_to == 4
    assert env.data == {"code": ErrorCode.QUEUE_FULL, "message": "full"}


def test_registry_is_consistent() -> None:
    for name, ms in REGISTRY.items():
        assert ms.name == name
        if ms.kind is Kind.REQUEST:
            assert ms.handler, f"{name} has no handler"
            assert ms.final, f"{name} has no final reply"
            for final in ms.final:
                assert REGISTRY[final].kind is Kind.REPLY, f"{name}: {final} is not a reply"
    codes = [int(c) for c in ErrorCode]
    assert len(codes) == len(set(codes))
