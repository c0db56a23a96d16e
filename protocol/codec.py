"""The one msgpack codec and envelope, shared by the bus and the Unity wire.

Envelope: ``type`` (str), ``id`` (int, requests), ``reply_to`` (int, replies and errors),
``ts`` (float, seconds since the epoch), ``data`` (map). Decoding never raises anything but
:class:`ProtocolError`, which carries the error code to answer with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from protocol.messages import ErrorCode, Kind, MessageSpec, spec, validate_data

DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str, reply_to: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reply_to = reply_to


@dataclass
class Envelope:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    reply_to: int | None = None
    ts: float = 0.0

    @property
    def spec(self) -> MessageSpec | None:
        return spec(self.type)


def encode(env: Envelope) -> bytes:
    m: dict[str, Any] = {"type": env.type, "ts": env.ts or time.time(), "data": env.data}
    if env.id is not None:
        m["id"] = env.id
    if env.reply_to is not None:
        m["reply_to"] = env.reply_to
    return msgpack.packb(m, use_bin_type=True)


def make(type_: str, data: dict[str, Any] | None = None, *, id: int | None = None,
         reply_to: int | None = None) -> bytes:
    return encode(Envelope(type_, data or {}, id=id, reply_to=reply_to))


def error(code: ErrorCode, message: str, reply_to: int | None = None) -> bytes:
    return make("error", {"code": int(code), "message": message}, reply_to=reply_to)


def decode(frame: bytes, max_size: int = DEFAULT_MAX_FRAME, *, validate: bool = True) -> Envelope:
    """Parse and check one frame against the registry."""
    if len(frame) > max_size:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE,
                            f"frame of {len(frame)} bytes exceeds the limit of {max_size} bytes")
    try:
        m = msgpack.unpackb(frame, raw=False)  # its length limits derive from len(frame)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"not a msgpack frame: {exc}") from None
    if not isinstance(m, dict):
        raise ProtocolError(ErrorCode.MALFORMED_FRAME,
                            f"a frame must be a msgpack map, got {type(m).__name__}")
    msg_id = m.get("id")
    if msg_id is not None and (not isinstance(msg_id, int) or isinstance(msg_id, bool)):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'id' must be an integer")
    reply_to = m.get("reply_to")
    if reply_to is not None and (not isinstance(reply_to, int) or isinstance(reply_to, bool)):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'reply_to' must be an integer", msg_id)
    type_ = m.get("type")
    if not isinstance(type_, str):
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "missing string field 'type'", msg_id)
    data = m.get("data", {})
    ts = m.get("ts", 0.0)
    env = Envelope(type_, data, msg_id, reply_to, ts if isinstance(ts, (int, float)) else 0.0)
    if validate:
        ms = spec(type_)
        if ms is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type '{type_}'", msg_id)
        if ms.kind is Kind.REQUEST and msg_id is None:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"request '{type_}' needs an integer 'id'")
        problem = validate_data(ms, data)
        if problem:
            raise ProtocolError(ErrorCode.INVALID_FIELD, problem, msg_id)
    return env
