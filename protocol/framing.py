"""TCP framing of the Unity wire: a 4-byte big-endian length, then one msgpack envelope.

The envelope itself is protocol.codec's (one codec everywhere); this module only cuts a byte
stream into frames. The bridge and the Python client both use it, so there is one framing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from protocol.codec import DEFAULT_MAX_FRAME, ProtocolError, make
from protocol.messages import ErrorCode

HEADER = struct.Struct(">I")


def frame(payload: bytes) -> bytes:
    """Length-prefix one encoded envelope."""
    return HEADER.pack(len(payload)) + payload


def message(type_: str, data: dict[str, Any] | None = None, *, id: int | None = None,
            reply_to: int | None = None) -> bytes:
    """Encode an envelope with the shared codec and frame it."""
    return frame(make(type_, data, id=id, reply_to=reply_to))


class FrameDecoder:
    """Incremental: feed received bytes, get whole payloads back.

    An oversized length prefix raises ProtocolError(FRAME_TOO_LARGE) before any of the body is
    buffered, so a hostile length never makes us allocate; the stream cannot be resynchronised
    after that, and the caller closes the connection.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (a truncated frame at EOF leaves some)."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buf += data
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.max_size:
                raise ProtocolError(ErrorCode.FRAME_TOO_LARGE,
                                    f"frame length {size} exceeds the limit of "
                                    f"{self.max_size} bytes")
            end = HEADER.size + size
            if len(self._buf) < end:
                return
            payload = bytes(self._buf[HEADER.size:end])
            del self._buf[:end]
            yield payload
