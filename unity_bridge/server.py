"""The bridge's TCP server: asyncio on a thread of its own, fed by the bus through hand-offs.

Everything here runs on the loop thread: connections, the avatar model and broadcasting. The
worker's other threads reach it only through `BridgeLoop.call` (wait for a result) and
`BridgeLoop.post` (fire and forget), so no lock is needed. A connection never trusts its
peer: frames are size-checked before buffering, every frame is decoded by the shared codec,
errors are counted per connection, silence is timed out, and a peer that does not read is
dropped before its backlog can grow without bound. Whatever one connection does, the others
and the bridge go on.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from supervisor.codec import Envelope, ProtocolError, decode
from supervisor.messages import PROTOCOL_VERSION, REGISTRY, ErrorCode, Kind, Wire
from unity_bridge.avatar import Avatar, CommandError, Outgoing
from unity_bridge.framing import FrameDecoder, message

log = logging.getLogger("unity_bridge")

T = TypeVar("T")
SERVER_NAME = "unity_bridge"
ACCEPTS = sorted(n for n, s in REGISTRY.items() if s.wire in (Wire.FROM_CLIENT, Wire.BOTH))
EMITS = sorted(n for n, s in REGISTRY.items() if s.wire in (Wire.TO_CLIENT, Wire.BOTH))
Publish = Callable[[str, dict[str, Any]], None]


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
    def __init__(self, server: BridgeServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, session: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.session = session
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.name = f"session-{session}"
        self.greeted = False
        self.errors = 0
        self.last_rx = time.monotonic()
        self.decoder = FrameDecoder(server.limits.max_frame)
        self.frames: collections.deque[bytes] = collections.deque()
        self.sent: collections.OrderedDict[int, str] = collections.OrderedDict()  # id -> type
        self.dropped = ""  # why we aborted it, if we did
        self.broken: ProtocolError | None = None  # an unreadable length after queued frames

    def send(self, frame: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(frame)
        if self.writer.transport.get_write_buffer_size() > self.server.limits.max_backlog:
            log.warning("%s (%s) does not read; dropping it", self.name, self.peer)
            self.dropped = "does not read (slow consumer)"
            self.writer.transport.abort()

    def send_error(self, code: ErrorCode, text: str, reply_to: int | None = None) -> None:
        self.send(message("error", {"code": int(code), "message": text}, reply_to=reply_to))

    def remember(self, msg_id: int, type_: str) -> None:
        self.sent[msg_id] = type_
        while len(self.sent) > 256:
            self.sent.popitem(last=False)

    async def next_frame(self, deadline: float) -> bytes | None:
        """The next whole frame; None at EOF; Closed on timeout or an oversized length.

        Frames that arrived before a bad length are served first, in order.
        """
        while not self.frames:
            if self.broken is not None:
                self.send_error(self.broken.code, self.broken.message + "; closing")
                raise Closed(self.broken.message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                raise TimeoutError from None
            except ConnectionError:
                return None
            if not data:
                if self.decoder.pending:
                    self.send_error(ErrorCode.MALFORMED_FRAME,
                                    f"the connection ended inside a frame "
                                    f"({self.decoder.pending} bytes pending)")
                return None
            try:
                self.frames.extend(self.decoder.feed(data))  # keeps what came before an error
            except ProtocolError as exc:
                self.broken = exc
        return self.frames.popleft()


class BridgeServer:
    def __init__(self, limits: Limits, avatar: Avatar, publish: Publish,
                 on_clients: Callable[[int], None] = lambda n: None) -> None:
        self.limits = limits
        self.avatar = avatar
        self.publish = publish
        self.on_clients = on_clients  # told the number of greeted clients when it changes
        self.conns: set[Connection] = set()
        self._sessions = itertools.count(1)
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._pinger: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful when `port` is 0)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        self._pinger = asyncio.create_task(self._ping_loop())
        return self._server.sockets[0].getsockname()[1]

    async def close(self, reason: str = "the bridge is stopping") -> None:
        if self._server is not None:
            self._server.close()
        if self._pinger is not None:
            self._pinger.cancel()
        for conn in list(self.conns):
            conn.send_error(ErrorCode.SHUTTING_DOWN, reason)
            conn.writer.close()

    @property
    def clients(self) -> list[Connection]:
        return [c for c in self.conns if c.greeted]

    # -- sending -------------------------------------------------------------------------
    def broadcast(self, type_: str, data: dict[str, Any],
                  exclude: Connection | None = None) -> int:
        """Send to every greeted client; requests (commands) get an id. Returns how many."""
        msg_id = next(self._ids) if REGISTRY[type_].kind is Kind.REQUEST else None
        frame = message(type_, data, id=msg_id)
        targets = [c for c in self.clients if c is not exclude]
        for conn in targets:
            if msg_id is not None:
                conn.remember(msg_id, type_)
            conn.send(frame)
        return len(targets)

    def _emit(self, out: list[Outgoing]) -> None:
        for type_, data in out:
            self.broadcast(type_, data)
            if REGISTRY[type_].bus:
                self.publish(type_, data)

    # -- from the bus (called on the loop thread) ----------------------------------------
    def command(self, type_: str, data: dict[str, Any],
                origin: Connection | None = None) -> tuple[dict[str, Any], int]:
        """Apply an avatar command and forward it; raises CommandError."""
        clean = self.avatar.command(type_, data)
        return clean, self.broadcast(type_, clean, exclude=origin)

    def bus_event(self, type_: str, data: dict[str, Any]) -> None:
        try:
            self._emit(self.avatar.on_event(type_, data))
        except (CommandError, KeyError, TypeError) as exc:
            log.warning("ignored %s %r: %s", type_, data, exc)

    # -- connections ---------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer, next(self._sessions))
        reason = "closed by the client"
        self.conns.add(conn)
        try:
            if len(self.conns) > self.limits.max_clients:
                conn.send_error(ErrorCode.TOO_MANY_CLIENTS, f"the bridge already serves "
                                f"{self.limits.max_clients} clients (unity_bridge.max_clients)")
                raise Closed("too many clients")
            if await self._handshake(conn):
                await self._read_loop(conn)
        except Closed as exc:
            reason = exc.reason
        except Exception as exc:  # never let one connection take the server down
            log.exception("connection %s failed", conn.name)
            reason = f"internal error: {type(exc).__name__}"
        finally:
            self.conns.discard(conn)
            reason = conn.dropped or reason
            await _close(writer)
            if conn.greeted:
                self.on_clients(len(self.clients))
                log.info("%s (%s) disconnected: %s", conn.name, conn.peer, reason)
                self.publish("client_disconnected", {"client": conn.name,
                                                     "session": conn.session, "reason": reason})

    async def _handshake(self, conn: Connection) -> bool:
        try:
            payload = await conn.next_frame(time.monotonic() + self.limits.handshake_timeout_s)
        except TimeoutError:
            conn.send_error(ErrorCode.TIMEOUT, f"no hello within "
                            f"{self.limits.handshake_timeout_s:g} s (unity_bridge."
                            f"handshake_timeout_s)")
            raise Closed("handshake timeout") from None
        if payload is None:
            return False
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
        conn.greeted = True
        conn.send(message("welcome", {
            "protocol": PROTOCOL_VERSION, "server": SERVER_NAME, "session": conn.session,
            "capabilities": {"accepts": ACCEPTS, "emits": EMITS},
            "state": self.avatar.state.snapshot(),
            "ping_interval_s": self.limits.ping_interval_s,
            "timeout_s": self.limits.client_timeout_s}, reply_to=env.id))
        self.on_clients(len(self.clients))
        log.info("%s connected from %s (session %d)", conn.name, conn.peer, conn.session)
        self.publish("client_connected", {"client": conn.name, "session": conn.session,
                                          "peer": conn.peer})
        return True

    async def _read_loop(self, conn: Connection) -> None:
        while True:
            try:
                payload = await conn.next_frame(conn.last_rx + self.limits.client_timeout_s)
            except TimeoutError:
                conn.send_error(ErrorCode.TIMEOUT, f"silent for {self.limits.client_timeout_s:g}"
                                f" s (unity_bridge.client_timeout_s)")
                raise Closed("timed out") from None
            if payload is None:
                return
            conn.last_rx = time.monotonic()
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
            _, count = self.command(env.type, env.data, origin=conn)
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

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.ping_interval_s)
            msg_id = next(self._ids)
            frame = message("ping", {}, id=msg_id)
            for conn in self.clients:
                conn.send(frame)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (asyncio.TimeoutError, OSError):
        writer.transport.abort()


class BridgeLoop:
    """An asyncio loop on its own thread, with thread-safe ways in."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True, name="bridge-loop")
        self._posted: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque())
        self._drain_scheduled = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run `fn` on the loop thread and wait for its result (or its exception)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)
        self.loop.call_soon_threadsafe(job)
        return fut.result(timeout)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` on the loop soon, in order. A burst (tokens) wakes the loop once, not once
        per item: each wake-up writes to the loop's self-pipe."""
        self._posted.append((fn, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do
                self.loop.call_soon_threadsafe(self._drain_posted)

    def _drain_posted(self) -> None:
        self._drain_scheduled = False  # first: anything posted from now on schedules again
        while self._posted:
            fn, args = self._posted.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("posted job failed")
