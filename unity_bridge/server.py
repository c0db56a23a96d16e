"""The bridge's TCP server: non-blocking sockets polled on the worker's bus thread.

One thread does everything: it reads the bus, the Unity clients and the timers from one poll,
so a bus command reaches the clients, and a client's event reaches the bus, without waking any
other thread (each hand-off between threads cost about 0.3 ms). Nothing here blocks: reads take
what the kernel has, writes what it accepts, and the rest waits for the socket to be writable.

A connection never trusts its peer: frames are size-checked before buffering, every frame is
decoded by the shared codec, errors are counted per connection, silence is timed out, and a
peer that does not read is dropped before its backlog can grow without bound. While a peer reads
slowly, the per-token frames (speech pieces, mouth) are merged instead of queued, so a slow
avatar gets fewer, larger updates, never a wrong text. Whatever one connection does, the others
and the bridge go on.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import zmq

from protocol.codec import Envelope, ProtocolError, decode
from protocol.framing import FrameDecoder, message
from protocol.messages import PROTOCOL_VERSION, REGISTRY, ErrorCode, Kind, Wire
from unity_bridge.avatar import Avatar, CommandError, Outgoing
from unity_bridge.visemes import MAX_VISEMES

log = logging.getLogger("unity_bridge")

SERVER_NAME = "unity_bridge"
ACCEPTS = sorted(n for n, s in REGISTRY.items() if s.wire in (Wire.FROM_CLIENT, Wire.BOTH))
EMITS = sorted(n for n, s in REGISTRY.items() if s.wire in (Wire.TO_CLIENT, Wire.BOTH))
Publish = Callable[[str, dict[str, Any]], None]
READ_CHUNK = 1 << 16
# Plain ints: zmq's are enum flags, whose `&` runs Python code on every event.
POLLIN, POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)


class Loop(Protocol):
    """What the server needs of the thread it runs on (the worker runtime's bus thread)."""

    def watch(self, sock: Any, on_ready: Callable[[int], None], events: int = ...) -> None: ...
    def unwatch(self, sock: Any) -> None: ...
    def call_on_bus(self, fn: Callable[[], None]) -> None: ...
    def bus_every(self, interval: float, fn: Callable[[], None]) -> None: ...


@dataclass(frozen=True)
class Limits:
    max_frame: int = 1 << 20
    handshake_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    client_timeout_s: float = 15.0
    max_errors: int = 10
    max_clients: int = 16
    token: str | None = None

    @property
    def max_backlog(self) -> int:
        """Unsent bytes a connection may hold before it counts as not reading."""
        return max(4 * self.max_frame, 4 << 20)


class Closed(Exception):
    """End this connection; `reason` goes to the log and the client_disconnected event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Connection:
    def __init__(self, server: BridgeServer, sock: socket.socket, peer: Any,
                 session: int) -> None:
        self.server = server
        self.sock = sock
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.session = session
        self.name = f"session-{session}"
        self.greeted = False
        self.greeted_at = 0.0  # Unix time of the handshake: "connected since" for other clients
        self.errors = 0
        self.opened = self.last_rx = time.monotonic()
        self.decoder = FrameDecoder(server.limits.max_frame)
        self.sent: dict[int, str] = {}  # ids of commands we sent -> their type (bounded)
        self.out = bytearray()  # what the kernel did not take yet
        self.speech: dict[str, Any] | None = None  # merged pieces waiting behind `out`
        self.mouth: dict[str, Any] | None = None
        self.viseme: dict[str, Any] | None = None
        self.open = True

    # -- writing -------------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        if not self.open:
            return
        if self.speech is not None or self.mouth is not None or self.viseme is not None:
            self._unmerge()
        if self.out:
            self.out += frame
            if len(self.out) > self.server.limits.max_backlog:
                raise Closed("does not read (slow consumer)")
            return
        self._write(frame)

    def send_piece(self, type_: str, data: dict[str, Any], frame: bytes) -> None:
        """A per-token frame: sent at once, or merged with the last one while backed up."""
        if not self.out:
            self.send(frame)
        elif type_ == "mouth":
            self.mouth = data  # the newest opening is the only one worth showing
        elif type_ == "viseme":  # a lagging mouth catches up: only the newest shapes are kept
            if self.viseme is not None and self.viseme["request_id"] == data["request_id"]:
                data = {**data, "visemes": (self.viseme["visemes"]
                                            + data["visemes"])[-MAX_VISEMES:]}
            elif self.viseme is not None:
                self._unmerge()
            self.viseme = data
        elif self.speech is not None and self.speech["request_id"] == data["request_id"]:
            self.speech = {**data, "delta": self.speech["delta"] + data["delta"]}
        else:
            self._unmerge()
            self.speech = data

    def send_error(self, code: ErrorCode, text: str, reply_to: int | None = None) -> None:
        self.send(message("error", {"code": int(code), "message": text}, reply_to=reply_to))

    def _unmerge(self) -> None:
        """Queue merged pieces as frames: whatever comes next must come after them."""
        for type_ in ("speech", "viseme", "mouth"):
            data = getattr(self, type_)
            if data is not None:
                setattr(self, type_, None)
                self.out += message(type_, data)

    def _write(self, data: bytes | bytearray) -> None:
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            raise Closed(f"send failed: {exc}") from None
        if n < len(data):
            self.out += memoryview(data)[n:]
            self.server.loop.watch(self.sock, self.server.ready_handler(self),
                                   POLLIN | POLLOUT)

    def on_writable(self) -> None:
        while self.out or self.speech or self.mouth or self.viseme:
            if not self.out:
                self._unmerge()
            pending = self.out
            self.out = bytearray()
            self._write(pending)
            if self.out:
                return  # still backed up; the socket stays watched for writing
        self.server.loop.watch(self.sock, self.server.ready_handler(self), POLLIN)

    def remember(self, msg_id: int, type_: str) -> None:
        self.sent[msg_id] = type_
        if len(self.sent) > 256:
            del self.sent[next(iter(self.sent))]

    # -- reading -------------------------------------------------------------------------
    def read(self) -> list[bytes | ProtocolError] | None:
        """The whole frames received; None at EOF. A bad length comes last, as the error,
        after the frames that came before it."""
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            return None
        if not data:
            if self.decoder.pending:
                self.send_error(ErrorCode.MALFORMED_FRAME,
                                f"the connection ended inside a frame "
                                f"({self.decoder.pending} bytes pending)")
            return None
        self.last_rx = time.monotonic()
        return list(self._frames(data))

    def _frames(self, data: bytes) -> Iterator[bytes | ProtocolError]:
        try:
            yield from self.decoder.feed(data)
        except ProtocolError as exc:
            yield exc  # after the frames that came before it


class BridgeServer:
    def __init__(self, limits: Limits, avatar: Avatar, publish: Publish, loop: Loop,
                 on_clients: Callable[[int], None] = lambda n: None) -> None:
        self.limits = limits
        self.avatar = avatar
        self.publish = publish
        self.loop = loop
        self.on_clients = on_clients  # told the number of greeted clients when it changes
        self.conns: dict[socket.socket, Connection] = {}
        self._sessions = itertools.count(1)
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._save_queued = False

    # -- lifecycle -----------------------------------------------------------------------
    def listen(self, host: str, port: int) -> int:
        """Bind (any thread); returns the bound port (useful when `port` is 0). Serving starts
        with `attach` on the loop's thread."""
        sock = (exclusive_listener(host, port) if hasattr(socket, "SO_EXCLUSIVEADDRUSE")
                else socket.create_server((host, port), backlog=64))
        sock.setblocking(False)
        self._listener = sock
        return sock.getsockname()[1]

    def attach(self) -> None:
        assert self._listener is not None
        self.loop.watch(self._listener, lambda _ev: self._accept())
        self.loop.bus_every(self.limits.ping_interval_s, self._ping_all)
        tick = max(0.02, min(0.25, self.limits.handshake_timeout_s / 5,
                             self.limits.client_timeout_s / 5))
        self.loop.bus_every(tick, self._check_timeouts)

    def close(self, reason: str = "the bridge is stopping") -> None:
        if self._listener is not None:
            self.loop.unwatch(self._listener)
            self._listener.close()
            self._listener = None
        for conn in list(self.conns.values()):
            self._drop(conn, reason, ErrorCode.SHUTTING_DOWN)

    @property
    def clients(self) -> list[Connection]:
        return [c for c in self.conns.values() if c.greeted]

    # -- sending -------------------------------------------------------------------------
    def broadcast(self, type_: str, data: dict[str, Any],
                  exclude: Connection | None = None) -> int:
        """Send to every greeted client; requests (commands) get an id. Returns how many."""
        targets = [c for c in self.conns.values() if c.greeted and c is not exclude]
        if not targets:
            return 0
        msg_id = next(self._ids) if REGISTRY[type_].kind is Kind.REQUEST else None
        frame = message(type_, data, id=msg_id)
        piece = type_ in ("mouth", "viseme") or (type_ == "speech" and not data["done"])
        for conn in targets:
            if msg_id is not None:
                conn.remember(msg_id, type_)
            try:
                if piece:
                    conn.send_piece(type_, data, frame)
                else:
                    conn.send(frame)
            except Closed as exc:
                self._drop(conn, exc.reason)
        return len(targets)

    def _emit(self, out: list[Outgoing]) -> None:
        for type_, data in out:
            self.broadcast(type_, data)
            if REGISTRY[type_].bus:
                self.publish(type_, data)

    # -- from the bus --------------------------------------------------------------------
    def command(self, type_: str, data: dict[str, Any],
                origin: Connection | None = None) -> int:
        """Apply an avatar command, save it, and forward it; returns to how many. Raises
        CommandError. Saved before anyone hears of it (an append, a few us): a command that a
        client saw or got "ok" for survives a kill of the bridge."""
        clean = self.avatar.command(type_, data)
        self.avatar.save()
        return self.broadcast(type_, clean, exclude=origin)

    def bus_event(self, type_: str, data: dict[str, Any]) -> None:
        try:
            self._emit(self.avatar.on_event(type_, data))
        except (CommandError, KeyError, TypeError) as exc:
            log.warning("ignored %s %r: %s", type_, data, exc)
        self._save_soon()  # an emotion changes the expressions

    def _save_soon(self) -> None:
        """Persist what the stack's events changed right after this batch: a burst (an
        emotion sets five expressions) costs one write."""
        if self.avatar.dirty and not self._save_queued:
            self._save_queued = True
            self.loop.call_on_bus(self._save)

    def _save(self) -> None:
        self._save_queued = False
        self.avatar.save()

    # -- connections ---------------------------------------------------------------------
    def ready_handler(self, conn: Connection) -> Callable[[int], None]:
        """A connection's poll handler. An error nobody expected (a bug this peer reached)
        drops this connection only: what escapes a handler would end the bridge (see
        workers/runtime.py), and one peer must not take down the others."""
        def on_ready(events: int) -> None:
            try:
                if events & POLLOUT:
                    conn.on_writable()
                if events & POLLIN and conn.open:
                    self._on_readable(conn)
            except Closed as exc:
                self._drop(conn, exc.reason)
            except Exception as exc:
                log.exception("%s (%s): serving it failed", conn.name, conn.peer)
                self._drop(conn, f"internal error: {type(exc).__name__}", ErrorCode.INTERNAL,
                           f"the bridge failed serving this connection ({type(exc).__name__}); "
                           f"see its log; closing")
        return on_ready

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, peer, next(self._sessions))
            self.conns[sock] = conn
            self.loop.watch(sock, self.ready_handler(conn))
            if len(self.conns) > self.limits.max_clients:
                self._drop(conn, "too many clients", ErrorCode.TOO_MANY_CLIENTS,
                           f"the bridge already serves {self.limits.max_clients} clients "
                           f"(unity_bridge.max_clients)")

    def _drop(self, conn: Connection, reason: str, code: ErrorCode | None = None,
              text: str | None = None) -> None:
        """Close a connection (after an error frame, if given) and tell the bus."""
        if not conn.open:
            return
        if code is not None:
            try:
                conn.send_error(code, text or reason)
                if conn.out:
                    conn.sock.send(conn.out)  # one last try; it is small or it is lost
            except (Closed, OSError):
                pass
        conn.open = False
        self.conns.pop(conn.sock, None)
        self.loop.unwatch(conn.sock)
        conn.sock.close()
        if conn.greeted:
            self.on_clients(len(self.clients))
            log.info("%s (%s) disconnected: %s", conn.name, conn.peer, reason)
            self.publish("client_disconnected", {"client": conn.name,
                                                 "session": conn.session, "reason": reason})

    def _on_readable(self, conn: Connection) -> None:
        frames = conn.read()
        if frames is None:
            self._drop(conn, "closed by the client")
            return
        for payload in frames:
            if isinstance(payload, ProtocolError):
                conn.send_error(payload.code, payload.message + "; closing")
                raise Closed(payload.message)
            if not conn.greeted:
                self._handshake(conn, payload)
                continue
            try:
                self._on_frame(conn, payload)
            except ProtocolError as exc:
                conn.errors += 1
                conn.send_error(exc.code, exc.message, exc.reply_to)
                if conn.errors >= self.limits.max_errors:
                    conn.send_error(ErrorCode.TOO_MANY_ERRORS,
                                    f"{conn.errors} bad messages (unity_bridge.max_errors); "
                                    f"closing")
                    raise Closed("too many errors") from None

    def _handshake(self, conn: Connection, payload: bytes) -> None:
        try:
            env = decode(payload, self.limits.max_frame)
        except ProtocolError as exc:
            conn.send_error(exc.code, exc.message + "; closing", exc.reply_to)
            raise Closed(f"bad hello: {exc.message}") from None
        if env.type != "hello":
            conn.send_error(ErrorCode.HANDSHAKE_REQUIRED,
                            f"the first message must be hello, got '{env.type}'", env.id)
            raise Closed("no hello")
        data = env.data
        if data["protocol"] != PROTOCOL_VERSION:
            conn.send_error(ErrorCode.PROTOCOL_VERSION,
                            f"the bridge speaks protocol {PROTOCOL_VERSION}, the client "
                            f"{data['protocol']}; update the client", env.id)
            raise Closed("protocol version mismatch")
        token = self.limits.token
        if token is not None:
            given = data.get("token") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                conn.send_error(ErrorCode.UNAUTHORIZED, "missing or wrong token", env.id)
                raise Closed("unauthorized")
        conn.name = (data["client"].strip() or conn.name)[:64]
        conn.greeted, conn.greeted_at = True, time.time()
        conn.send(message("welcome", {
            "protocol": PROTOCOL_VERSION, "server": SERVER_NAME, "session": conn.session,
            "capabilities": {"accepts": ACCEPTS, "emits": EMITS},
            "state": self.avatar.state.snapshot(),
            "ping_interval_s": self.limits.ping_interval_s,
            "timeout_s": self.limits.client_timeout_s,
            "clients": [{"client": c.name, "session": c.session, "since": c.greeted_at}
                        for c in self.clients if c is not conn]}, reply_to=env.id))
        self.on_clients(len(self.clients))
        log.info("%s connected from %s (session %d)", conn.name, conn.peer, conn.session)
        self.publish("client_connected", {"client": conn.name, "session": conn.session,
                                          "peer": conn.peer})

    def _on_frame(self, conn: Connection, payload: bytes) -> None:
        env = decode(payload, self.limits.max_frame)
        ms = env.spec
        assert ms is not None
        if ms.wire not in (Wire.FROM_CLIENT, Wire.BOTH):
            raise ProtocolError(ErrorCode.WRONG_DIRECTION,
                                f"'{env.type}' is not sent by clients on the Unity wire; "
                                f"see welcome.capabilities.accepts", env.id)
        if env.type == "hello":
            raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, "already greeted", env.id)
        if ms.kind is Kind.REQUEST:
            self._on_request(conn, env)
        elif ms.kind is Kind.REPLY:
            self._on_reply(conn, env)
        else:
            self.publish(env.type, {**env.data, "client": conn.name})

    def _on_request(self, conn: Connection, env: Envelope) -> None:
        if env.type == "ping":
            conn.send(message("pong", {"from": SERVER_NAME}, reply_to=env.id))
            return
        try:
            count = self.command(env.type, env.data, origin=conn)
        except CommandError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{env.type}: {exc}", env.id) from None
        conn.send(message("ok", {"detail": f"sent to {count} other client(s)"},
                          reply_to=env.id))

    def _on_reply(self, conn: Connection, env: Envelope) -> None:
        command = conn.sent.pop(env.reply_to, None) if env.reply_to is not None else None
        if env.type == "error" and command is not None:
            text = str(env.data.get("message", ""))
            log.warning("%s failed %s: %s", conn.name, command, text)
            self.publish("avatar_error", {"message": text, "command": command,
                                          "client": conn.name})

    # -- timers --------------------------------------------------------------------------
    def _ping_all(self) -> None:
        self.broadcast("ping", {})

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        lim = self.limits
        for conn in list(self.conns.values()):
            if not conn.greeted and now - conn.opened > lim.handshake_timeout_s:
                self._drop(conn, "handshake timeout", ErrorCode.TIMEOUT,
                           f"no hello within {lim.handshake_timeout_s:g} s "
                           f"(unity_bridge.handshake_timeout_s)")
            elif conn.greeted and now - conn.last_rx > lim.client_timeout_s:
                self._drop(conn, "timed out", ErrorCode.TIMEOUT,
                           f"silent for {lim.client_timeout_s:g} s "
                           f"(unity_bridge.client_timeout_s)")


def exclusive_listener(host: str, port: int,
                       option: int = getattr(socket, "SO_EXCLUSIVEADDRUSE", 0)) -> socket.socket:
    """A listening socket no other process can bind over (Windows: without
    SO_EXCLUSIVEADDRUSE, another program may bind the same port and take our clients)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)  # before bind, or it has no effect
        sock.bind(addr)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock
