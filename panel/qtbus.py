"""The panel's bus client, on the Qt thread, that never waits.

A DEALER (requests) and a SUB (events), like any bus client, but read through a
QSocketNotifier on each socket's ZMQ_FD. That descriptor is edge-triggered: it signals that
the socket's state *changed*, so each wake-up drains with NOBLOCK until EAGAIN and re-checks
ZMQ_EVENTS; a send can consume the edge too, so every send schedules a drain. A wake-up spends
at most SLICE_S and leaves the rest for the next turn of the event loop: a flood of events is
read in slices between repaints instead of freezing the window.

Each request gets a callback for its replies (progress replies too) and a deadline; a missing
answer becomes a TIMEOUT error like any other. The run file is re-read when the supervisor is
gone, so an attached panel follows a restarted stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal

from protocol.bus import BusInfo, event_topic, secure_client
from protocol.codec import DEFAULT_MAX_FRAME, Envelope, ProtocolError, decode, make
from protocol.messages import REGISTRY, ErrorCode, Kind, validate_data

SLICE_S = 0.004  # longest stretch of bus reading per event-loop turn
CHECK_MS = 500  # deadlines, liveness and a missed edge
Callback = Callable[[Envelope], None]


@dataclass
class Pending:
    type: str
    callback: Callback
    timeout_s: float
    deadline: float


class QtBus(QObject):
    """Events go to `on(type, fn)` handlers; `connection` says when the stack comes and goes."""

    connection = Signal(bool, str)  # up?, why

    def __init__(self, info_source: Callable[[], BusInfo | None], parent: QObject | None = None,
                 ) -> None:
        super().__init__(parent)
        self.info_source = info_source
        self.ctx = zmq.Context.instance()
        self.info: BusInfo | None = None
        self.dealer: zmq.Socket | None = None
        self.sub: zmq.Socket | None = None
        self._notifiers: list[QSocketNotifier] = []
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._pending: dict[int, Pending] = {}
        self._next_id = 1
        self.up = False
        self.received = 0
        self._soon = QTimer(self)  # one zero-delay timer, reused: no allocation per wake-up
        self._soon.setSingleShot(True)
        self._soon.setInterval(0)
        self._soon.timeout.connect(self._drain)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._check)
        self._timer.start(CHECK_MS)
        QTimer.singleShot(0, self._check)

    # -- registration ------------------------------------------------------------------------
    def on(self, type_: str, fn: Callable[[dict[str, Any]], None]) -> None:
        ms = REGISTRY.get(type_)
        if ms is None or ms.kind is not Kind.EVENT:
            raise ValueError(f"'{type_}' is not an event type of the registry")
        first = type_ not in self._handlers
        self._handlers.setdefault(type_, []).append(fn)
        if first and self.sub is not None:
            self.sub.setsockopt(zmq.SUBSCRIBE, event_topic(type_))

    # -- requests ------------------------------------------------------------------------------
    def request(self, type_: str, data: dict[str, Any] | None, callback: Callback,
                timeout_s: float = 15.0) -> int:
        """Send now; `callback` gets every reply, or one error (not connected, timeout)."""
        msg_id = self._next_id
        self._next_id += 1
        if self.dealer is None:
            self._fail_later(msg_id, type_, callback, ErrorCode.WORKER_UNAVAILABLE,
                             "not connected to the companion stack (is it running?)")
            return msg_id
        problem = validate_data(REGISTRY[type_], data or {})
        if problem:  # bad data for the type: a clear error, nothing sent
            self._fail_later(msg_id, type_, callback, ErrorCode.INVALID_FIELD, problem)
            return msg_id
        try:
            self.dealer.send(make(type_, data, id=msg_id), zmq.NOBLOCK)
        except zmq.Again:
            self._fail_later(msg_id, type_, callback, ErrorCode.WORKER_UNAVAILABLE,
                             "the supervisor is not reachable (its queue is full or it is gone)")
            return msg_id
        self._pending[msg_id] = Pending(type_, callback, timeout_s,
                                        time.monotonic() + timeout_s)
        self.schedule_drain()
        return msg_id

    def forget(self, msg_id: int) -> None:
        self._pending.pop(msg_id, None)

    def _fail_later(self, msg_id: int, type_: str, callback: Callback, code: ErrorCode,
                    message: str) -> None:
        env = Envelope("error", {"code": int(code), "message": f"{type_}: {message}"},
                       reply_to=msg_id)
        QTimer.singleShot(0, lambda: callback(env))

    # -- reading -----------------------------------------------------------------------------
    def schedule_drain(self) -> None:
        if not self._soon.isActive():
            self._soon.start()

    def _drain(self) -> None:
        end = time.perf_counter() + SLICE_S
        more = False
        for sock in (self.dealer, self.sub):
            while sock is not None and not more:
                if time.perf_counter() > end:
                    more = True
                    break
                try:
                    frame = sock.recv_multipart(zmq.NOBLOCK)[-1]
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    return  # closed under us by a disconnect
                self._dispatch(sock, frame)
                if sock.closed:
                    return  # a handler disconnected: these sockets are gone
        if more:
            self.schedule_drain()
        else:  # re-arm the edge-triggered FDs: read ZMQ_EVENTS after the last recv
            for sock in (self.dealer, self.sub):
                if sock is not None and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    self.schedule_drain()
                    return

    def _dispatch(self, sock: zmq.Socket, frame: bytes) -> None:
        try:
            env = decode(frame, DEFAULT_MAX_FRAME, validate=False)
        except ProtocolError:
            return
        self.received += 1
        if sock is self.sub:
            for fn in self._handlers.get(env.type, ()):
                fn(env.data)
            return
        pending = self._pending.get(env.reply_to or -1)
        if pending is None:
            return
        spec = REGISTRY[pending.type]
        if env.type == "error" or env.type in spec.final:
            del self._pending[env.reply_to]
        else:  # progress (a token): the deadline is per reply
            pending.deadline = time.monotonic() + pending.timeout_s
        pending.callback(env)

    # -- connection --------------------------------------------------------------------------
    def _check(self) -> None:
        now = time.monotonic()
        for msg_id, p in list(self._pending.items()):
            if now > p.deadline:
                del self._pending[msg_id]
                p.callback(Envelope("error", {
                    "code": int(ErrorCode.TIMEOUT),
                    "message": f"{p.type}: no answer within {p.timeout_s:g} s"},
                    reply_to=msg_id))
        if self.info is not None and not self.info.is_live():
            self._disconnect("the companion stack stopped")
        if self.info is None:
            info = self.info_source()
            if info is not None and info.is_live():
                self._connect(info)
        self.schedule_drain()  # a missed edge costs at most CHECK_MS

    def _connect(self, info: BusInfo) -> None:
        self.info = info
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.rcvhwm = 100_000  # a burst of token events must not be dropped
        for sock, endpoint in ((self.dealer, info.router), (self.sub, info.xpub)):
            secure_client(sock, info.secret)
            sock.connect(endpoint)
            notifier = QSocketNotifier(sock.getsockopt(zmq.FD), QSocketNotifier.Type.Read, self)
            notifier.activated.connect(self.schedule_drain)
            self._notifiers.append(notifier)
        for type_ in self._handlers:
            self.sub.setsockopt(zmq.SUBSCRIBE, event_topic(type_))
        self.up = True
        self.connection.emit(True, f"connected to the stack of supervisor {info.supervisor_pid}")

    def _disconnect(self, why: str) -> None:
        for n in self._notifiers:
            n.setEnabled(False)
            n.deleteLater()
        self._notifiers.clear()
        for sock in (self.dealer, self.sub):
            if sock is not None:
                sock.close(0)
        self.dealer = self.sub = None
        self.info = None
        self.up = False
        for msg_id, p in list(self._pending.items()):
            del self._pending[msg_id]
            p.callback(Envelope("error", {"code": int(ErrorCode.WORKER_UNAVAILABLE),
                                          "message": f"{p.type}: {why}"}, reply_to=msg_id))
        self.connection.emit(False, why)

    def close(self) -> None:
        self._timer.stop()
        if self.dealer is not None:
            self._disconnect("panel closed")


def run_file_source(run_dir: Path) -> Callable[[], BusInfo | None]:
    """An attached panel's bus: whatever supervisor the run file names, while it lives."""
    return lambda: BusInfo.load(run_dir)
