"""The panel as a client of the Unity wire, on the Qt thread (QTcpSocket, no waiting).

The bridge keeps the avatar's state; a client learns it from `welcome` and then from the
commands the bridge forwards (whoever sent them) and its events. The Avatar tab shows exactly
that, so a slider moved by another client moves here too, and nothing is the panel's guess.
Commands themselves go over the bus (answered there); the bridge forwards them to this
connection like to any client, which is how the panel sees the value the bridge kept (clamped).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QAbstractSocket, QTcpSocket

from protocol.codec import DEFAULT_MAX_FRAME, ProtocolError, decode
from protocol.framing import FrameDecoder, message
from protocol.messages import PROTOCOL_VERSION, REGISTRY, Kind

SLICE_S = 0.004
RETRY_MS = 2000
CLIENT_NAME = "control-panel"


class AvatarLink(QObject):
    welcomed = Signal(dict)  # the welcome's data (state, session, ...)
    received = Signal(str, dict)  # every later message from the bridge: type, data
    link = Signal(bool, str)  # connected?, why

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.sock = QTcpSocket(self)
        self.sock.connected.connect(self._greet)
        self.sock.readyRead.connect(self._read)
        self.sock.disconnected.connect(self._on_disconnected)
        self.sock.errorOccurred.connect(self._on_error)
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME)
        self.target: tuple[str, int, str | None] | None = None
        self.session: int | None = None
        self.greeted = False
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._dial)
        self._more = QTimer(self)  # reused zero-delay timer: the next slice of a burst
        self._more.setSingleShot(True)
        self._more.setInterval(0)
        self._more.timeout.connect(self._read)

    def open(self, host: str, port: int, token: str | None) -> None:
        """Connect (again) when the bridge's address changed or the link is down."""
        if self.target == (host, port, token) and self.sock.state() != \
                QAbstractSocket.SocketState.UnconnectedState:
            return
        self.target = (host, port, token)
        self._retry.stop()
        self._dial()

    def _dial(self) -> None:
        if self.target is not None:
            self.sock.blockSignals(True)  # dropping a half-open attempt is not a loss to report
            self.sock.abort()
            self.sock.blockSignals(False)
            self.decoder = FrameDecoder(DEFAULT_MAX_FRAME)
            self.greeted = False
            self.sock.connectToHost(self.target[0], self.target[1])

    def _greet(self) -> None:
        assert self.target is not None
        data = {"protocol": PROTOCOL_VERSION, "client": CLIENT_NAME}
        if self.target[2]:
            data["token"] = self.target[2]
        self.sock.write(message("hello", data, id=1))

    def _on_disconnected(self) -> None:
        self._lost("the bridge closed the connection")

    def _on_error(self, _error: object) -> None:
        self._lost(self.sock.errorString())

    def _lost(self, why: str) -> None:
        if self.greeted or not self._retry.isActive():
            self.link.emit(False, why)
        self.greeted = False
        self.session = None
        if self.target is not None and not self._retry.isActive():
            self._retry.start(RETRY_MS)

    def _read(self) -> None:
        """Frames in slices: a burst of speech pieces is read between repaints."""
        end = time.perf_counter() + SLICE_S
        data = bytes(self.sock.read(1 << 20))
        try:
            for payload in self.decoder.feed(data):
                self._handle(payload)
                if time.perf_counter() > end:
                    break
            else:
                if not self.sock.bytesAvailable():
                    return
        except ProtocolError as exc:
            self.sock.abort()
            self._lost(f"bad frame from the bridge: {exc.message}")
            return
        if not self._more.isActive():
            self._more.start()

    def _handle(self, payload: bytes) -> None:
        try:
            env = decode(payload, DEFAULT_MAX_FRAME, validate=False)
        except ProtocolError:
            return
        if env.type == "welcome":
            self.greeted = True
            self.session = env.data.get("session")
            self.link.emit(True, f"connected to the bridge (session {self.session})")
            self.welcomed.emit(dict(env.data))
            return
        if env.type == "error" and not self.greeted:
            self.link.emit(False, f"the bridge refused the panel: {env.data.get('message')}")
            return
        ms = REGISTRY.get(env.type)
        if ms is not None and ms.kind is Kind.REQUEST and env.id is not None:
            reply = ("pong", {"from": CLIENT_NAME}) if env.type == "ping" else (
                "ok", {"detail": "shown in the control panel"})
            self.sock.write(message(reply[0], reply[1], reply_to=env.id))
            if env.type == "ping":
                return
        self.received.emit(env.type, dict(env.data))

    def close(self) -> None:
        self.target = None
        self._retry.stop()
        self.sock.blockSignals(True)
        self.sock.abort()
