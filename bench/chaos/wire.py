"""Raw Unity-wire pieces for hostile clients: a hello, and an abrupt reset."""

from __future__ import annotations

import contextlib
import socket
import struct

from protocol.framing import message
from protocol.messages import PROTOCOL_VERSION


def hello_frame(name: str) -> bytes:
    return message("hello", {"protocol": PROTOCOL_VERSION, "client": name}, id=1)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, as a crashed or unplugged client does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
