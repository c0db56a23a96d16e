"""The registry and the codec: what is accepted, and the error code for what is not."""

from __future__ import annotations

import dataclasses
from collections import Counter
from enum import IntEnum

import msgpack
import pytest

from protocol import messages
from protocol.codec import DEFAULT_MAX_FRAME, ProtocolError, decode, error, make
from protocol.messages import (
    CHAT,
    CLIENT,
    ERROR_DOCS,
    REGISTRY,
    ROLES,
    SUPERVISOR,
    UNITY,
    WORKER,
    ErrorCode,
    Field,
    Kind,
    MessageSpec,
)


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


SENDERS = {SUPERVISOR, CLIENT, WORKER, UNITY, "any", *ROLES}
HANDLERS = {SUPERVISOR, WORKER, *ROLES}


def spec_problems(specs: list[MessageSpec]) -> list[str]:
    """Why a list of specs would not make a sound registry; empty when it does."""
    counts = Counter(s.name for s in specs)
    problems = [f"{n}: declared {c} times" for n, c in counts.items() if c > 1]
    by_name = {s.name: s for s in specs}
    for s in specs:
        if s.sender not in SENDERS:
            problems.append(f"{s.name}: sender {s.sender!r} is not a sender or a role")
        if s.kind is Kind.REQUEST:
            problems += _request_problems(s, by_name)
        elif s.handler or s.final or s.rerun_on_crash or s.refers_to:
            problems.append(f"{s.name}: a {s.kind.value} with request-only settings")
    return problems


def _request_problems(s: MessageSpec, by_name: dict[str, MessageSpec]) -> list[str]:
    problems = []
    if s.handler not in HANDLERS:
        problems.append(f"{s.name}: handler {s.handler!r} is not supervisor, worker or a role")
    if not s.final:
        problems.append(f"{s.name}: no final reply")
    for final in s.final:
        if final not in by_name:
            problems.append(f"{s.name}: final {final!r} is not a message type")
        elif by_name[final].kind is not Kind.REPLY:
            problems.append(f"{s.name}: final {final!r} is not a reply")
    if s.refers_to is not None and s.fields.get(s.refers_to, Field(str)).type is not int:
        problems.append(f"{s.name}: refers_to {s.refers_to!r} is not an int field")
    return problems


def aliases(codes: type[IntEnum]) -> list[str]:
    """Names that repeat another's value: iterating an Enum skips them, __members__ does not."""
    return [name for name, member in codes.__members__.items() if member.name != name]


def test_the_registry_is_sound() -> None:
    assert spec_problems(messages._SPECS) == []
    # Every declared spec is in the registry, under its name (a duplicate would be dropped).
    assert list(REGISTRY.items()) == [(s.name, s) for s in messages._SPECS]


def test_error_codes_are_unique_and_documented() -> None:
    assert aliases(ErrorCode) == []
    assert set(ERROR_DOCS) == set(ErrorCode.__members__.values())


def _variant(of: str, name: str, **changes: object) -> MessageSpec:
    """A copy of the spec `of` under a new name, with some settings changed."""
    return dataclasses.replace(REGISTRY[of], name=name, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("extra", "problem"), [
    (REGISTRY["chat"], "chat: declared 2 times"),
    (_variant("chat", "chat2", handler="inference"), "handler 'inference' is not"),
    (_variant("chat", "chat2", final=()), "chat2: no final reply"),
    (_variant("chat", "chat2", final=("chat_finished",)), "'chat_finished' is not a message"),
    (_variant("chat", "chat2", final=("chat_ended",)), "'chat_ended' is not a reply"),
    (_variant("chat_cancel", "cancel2", refers_to="text"), "'text' is not an int field"),
    (_variant("chat_started", "started2", handler=CHAT), "request-only settings"),
    (_variant("chat_token", "token2", sender="inference"), "sender 'inference' is not"),
])
def test_the_registry_checks_catch_a_broken_spec(extra: MessageSpec, problem: str) -> None:
    problems = spec_problems([*messages._SPECS, extra])
    assert any(problem in p for p in problems), problems


def test_the_alias_check_catches_an_alias() -> None:
    codes = IntEnum("Codes", {"TIMEOUT": 204, "TIMED_OUT": 204, "CANCELLED": 302})
    assert [int(c) for c in codes] == [204, 302]  # what the old check saw: no duplicate
    assert aliases(codes) == ["TIMED_OUT"]
