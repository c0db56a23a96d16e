"""What every worker process shares: bus connection, heartbeats, parent watch, dispatch.

A dedicated bus thread owns the sockets and sends heartbeats, so a worker busy in a long
computation still looks alive, and only a stopped or wedged process looks hung. Handlers run on
the worker's main thread unless registered `inline` (then they run on the bus thread and must
not block). Any thread may send: messages from other threads reach the bus thread through an
inproc socket of their own.

The bus thread is also a small event loop for workers whose work is I/O (the Unity bridge):
`watch` polls their own sockets beside the bus sockets, `bus_every` runs timers and
`call_on_bus` runs a function there. Such a worker then answers the bus and its sockets on one
thread, without a hand-off between threads on the way.

Errors on the bus thread: a handler of one bus message that raises is a handled error (logged,
a request answered INTERNAL), as on the main thread: that message is lost, nothing else. What
escapes a watched socket's handler, a bus timer or a `call_on_bus` function ends the bus thread,
and the excepthook the process (EXIT_THREAD_DIED): the runtime cannot know what state the
worker's sockets are in, and living on would be worse than a restart: a socket whose handler
fails stays ready and fails again on every poll, a failed timer or set-up task leaves the work
half done, while the heartbeats, sent by this very thread, tell the supervisor all is well.
Such code handles the errors it expects itself (the bridge drops the one connection).

The supervisor writes boot info as one JSON line on our stdin and keeps the pipe open; EOF means
the supervisor is gone (even killed with -9), and the worker exits at once. On Linux
PR_SET_PDEATHSIG is set as well. Both work without signals on Windows only for the pipe, which
is why the pipe is the primary mechanism.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import zmq

from protocol.bus import BusInfo, event_topic, secure_client
from protocol.codec import DEFAULT_MAX_FRAME, Envelope, ProtocolError, decode, error, make
from protocol.messages import EXIT_CONFIG_ERROR, REGISTRY, ErrorCode, Kind

log = logging.getLogger("worker")

OUTBOX = "inproc://worker-outbox"
# A thread of ours died: the process ends at once with this code (a crash for the supervisor)
# rather than live on half-dead, still heartbeating while it serves nothing.
EXIT_THREAD_DIED = 70
_FINAL_REPLIES = {f for ms in REGISTRY.values() for f in ms.final}
Handler = Callable[[Envelope], None]


def read_boot() -> dict[str, Any]:
    line = sys.stdin.buffer.readline()
    if not line:
        sys.stderr.write("this is a worker process: start the stack with `python launch.py`\n")
        raise SystemExit(2)
    return json.loads(line)


def _die_with_thread(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: log the dead thread's traceback, then end the whole process."""
    if args.exc_type is SystemExit:
        code = args.exc_value.code if isinstance(args.exc_value, SystemExit) else 1
        os._exit(code if isinstance(code, int) else 1)
    name = args.thread.name if args.thread is not None else "?"
    log.critical("thread '%s' died: %s: %s; ending the process", name,
                 args.exc_type.__name__, args.exc_value,
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
    logging.shutdown()
    os._exit(EXIT_THREAD_DIED)


def signals_to_ignore(platform: str = sys.platform) -> tuple[str, ...]:
    """Console signals a worker leaves to the supervisor, which stops the workers in order.

    Ctrl-C everywhere; on Windows also SIGBREAK, which the C runtime raises for Ctrl-Break and
    for a console close, logoff or shutdown. Workers normally have no console there at all
    (CREATE_NO_WINDOW, supervisor/spawning.py); this covers one started on a console anyway.
    """
    return ("SIGINT", "SIGBREAK") if platform == "win32" else ("SIGINT",)


def ignore_console_signals(platform: str = sys.platform) -> list[str]:
    """Ignore `signals_to_ignore`; returns the ones this Python has (SIGBREAK: Windows only)."""
    done = []
    for name in signals_to_ignore(platform):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
            done.append(name)
    return done


def _watch_parent(supervisor_pid: int) -> None:
    """Exit as soon as the supervisor is gone."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()  # the supervisor, or a launcher it started (then that dies too)
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: when `parent` ends
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent or (parent != supervisor_pid
                                      and not _pid_exists(supervisor_pid)):
            os._exit(3)  # it ended before the death signal was set

    def wait_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(3)
    threading.Thread(target=wait_eof, daemon=True, name="parent-watch").start()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal


class WorkerRuntime:
    def __init__(self, boot: dict[str, Any]) -> None:
        self.boot = boot
        self.name: str = boot["name"]
        self.config: dict[str, Any] = boot["config"]
        self.options: dict[str, Any] = boot.get("options") or {}
        self.data_dir = Path(boot["data_dir"])
        self.info = BusInfo(**boot["bus"])
        self.heartbeat_s: float = float(boot.get("heartbeat_interval_s")
                                        or self.config["supervisor"]["heartbeat_interval_s"])
        self.ctx = zmq.Context()
        self._requests: dict[str, tuple[Handler, bool]] = {}
        self._events: dict[str, tuple[Handler, bool]] = {}
        self._inbox: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._local = threading.local()
        self._bus_thread: threading.Thread | None = None
        self._timers: list[tuple[float, float, Callable[[], None]]] = []
        self._stop_hooks: list[Callable[[float], None]] = []
        self.stopping = threading.Event()
        self.prepared: Any = None  # what from_stdin's `prepare` made before the options came
        self._hb_seq = 0
        self._req_ids = itertools.count(1)
        self._pending: dict[int, Handler] = {}  # our own requests -> reply callback
        self._bus_ready = threading.Event()
        self._watched: dict[int, Callable[[int], None]] = {}  # fd -> on_ready(events)
        self._unwatched: set[int] = set()  # fds unwatched during the current poll batch
        self._bus_calls: collections.deque[Callable[[], None]] = collections.deque()
        self._bus_timers: list[list[Any]] = []  # [due, interval, fn], bus thread only
        self.on_request("ping", self._on_ping, inline=True)
        self.on_request("worker_stop", self._on_stop)

    @classmethod
    def from_stdin(cls, prepare: Callable[[WorkerRuntime], Any] | None = None
                   ) -> WorkerRuntime:
        """Read boot info, set up logging and the parent watch; the standard worker start.

        `prepare` does what a start can do before it knows its options (slow imports); its
        result is `rt.prepared`. A warm spare runs it, joins the bus, and waits here until the
        supervisor activates it with the options of the start it takes over: everything
        before the load is done by then.
        """
        boot = read_boot()
        level = boot["config"]["logging"]["level"]
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        threading.excepthook = _die_with_thread
        ignore_console_signals()  # Ctrl-C and Ctrl-Break are the supervisor's to handle
        _watch_parent(int(boot["supervisor_pid"]))
        rt = cls(boot)
        activated = threading.Event()

        def activate(env: Envelope) -> None:
            rt.options = dict(env.data["options"])
            rt.reply(env, "ok", {"detail": f"{rt.name} activated"})
            activated.set()
        rt.on_request("activate", activate, inline=True)
        rt.start()
        rt.prepared = prepare(rt) if prepare is not None else None
        if boot.get("spare"):
            log.info("warm spare ready; waiting to take over")
            activated.wait()
        return rt

    # -- registration --------------------------------------------------------------------
    def on_request(self, type_: str, fn: Handler, inline: bool = False) -> None:
        self._requests[type_] = (fn, inline)

    def on_event(self, type_: str, fn: Handler, inline: bool = False) -> None:
        self._events[type_] = (fn, inline)
        if self._bus_thread is not None:
            self._to_bus([b"s", event_topic(type_)])

    def off_event(self, type_: str) -> None:
        """Unsubscribe: publishers then stop sending it at all (XPUB forwards subscriptions)."""
        if self._events.pop(type_, None) is not None and self._bus_thread is not None:
            self._to_bus([b"u", event_topic(type_)])

    def on_stop(self, fn: Callable[[float], None]) -> None:
        """Called on the main thread with the drain time when the supervisor asks us to stop."""
        self._stop_hooks.append(fn)

    def every(self, interval: float, fn: Callable[[], None]) -> None:
        self._timers.append((time.monotonic() + interval, interval, fn))

    def fail_config(self, message: str) -> NoReturn:
        """Stop for good: a retry cannot fix this, so the supervisor marks us FATAL at once."""
        log.error("%s", message)
        logging.shutdown()
        os._exit(EXIT_CONFIG_ERROR)

    # -- the bus thread as an event loop -------------------------------------------------
    def call_on_bus(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the bus thread soon, in order (from the bus thread: after this batch).
        An exception it raises ends the process (see the module's docstring)."""
        self._bus_calls.append(fn)
        if threading.current_thread() is not self._bus_thread:
            self._to_bus([b"w"])

    def watch(self, sock: Any, on_ready: Callable[[int], None],
              events: int = zmq.POLLIN) -> None:
        """Poll a socket (anything with fileno()) on the bus thread; bus thread only. Calling
        it again changes the events; `unwatch` before closing the socket. `on_ready` handles
        its own errors: one that escapes ends the process."""
        fd = sock.fileno()
        self._watched[fd] = on_ready
        self._poller.register(fd, events)

    def unwatch(self, sock: Any) -> None:
        """Stop polling a socket; an event of it still in the current batch is dropped."""
        fd = sock.fileno()
        if self._watched.pop(fd, None) is not None:
            self._poller.unregister(fd)
            self._unwatched.add(fd)

    def bus_every(self, interval: float, fn: Callable[[], None]) -> None:
        """A periodic timer on the bus thread; `fn` must not block, nor raise (that ends the
        process)."""
        self.call_on_bus(lambda: self._bus_timers.append(
            [time.monotonic() + interval, interval, fn]))

    # -- sending (any thread) ------------------------------------------------------------
    def request(self, type_: str, data: dict[str, Any], on_reply: Handler) -> None:
        """Send a request (e.g. to the supervisor); `on_reply` gets each reply on the main
        thread."""
        msg_id = next(self._req_ids)
        self._pending[msg_id] = on_reply
        self._to_bus([b"d", make(type_, data, id=msg_id)])

    def reply(self, req: Envelope, type_: str, data: dict[str, Any] | None = None) -> None:
        self._to_bus([b"d", make(type_, data, reply_to=req.id)])

    def error(self, req: Envelope, code: ErrorCode, message: str) -> None:
        self._to_bus([b"d", error(code, message, req.id)])

    def progress(self, stage: str, fraction: float | None = None) -> None:
        """Still loading, and further than before: the supervisor pushes the ready deadline
        forward. Call it only on real progress, so a load that is stuck still times out."""
        data: dict[str, Any] = {"worker": self.name, "pid": os.getpid(), "stage": stage}
        if fraction is not None:
            data["fraction"] = float(fraction)
        self._to_bus([b"d", make("progress", data)])

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        self._to_bus([b"p", event_topic(type_), make(type_, data)])

    def ready(self, info: dict[str, Any] | None = None) -> None:
        self._to_bus([b"d", make("ready", {"worker": self.name, "pid": os.getpid(),
                                           "info": info or {}})])

    def _to_bus(self, frames: list[bytes]) -> None:
        if threading.current_thread() is self._bus_thread:
            self._route_out(frames)
            return
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.sndhwm = 0
            sock.connect(OUTBOX)
            self._local.push = sock
        sock.send_multipart(frames)

    # -- bus thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._bus_thread = threading.Thread(target=self._bus_loop, daemon=True, name="bus")
        self._bus_thread.start()
        self._bus_ready.wait()

    def _bus_loop(self) -> None:
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.routing_id = self.boot["ident"].encode()
        self.dealer.sndhwm = 100_000
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.sndhwm = 100_000
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.rcvhwm = 100_000  # a burst of token events must not be dropped
        for sock in (self.dealer, self.pub, self.sub):
            secure_client(sock, self.info.secret)
        self.dealer.connect(self.info.router)
        self.pub.connect(self.info.xsub)
        self.sub.connect(self.info.xpub)
        for type_ in self._events:
            self.sub.setsockopt(zmq.SUBSCRIBE, event_topic(type_))
        outbox = self.ctx.socket(zmq.PULL)
        outbox.bind(OUTBOX)
        self._poller = poller = zmq.Poller()
        for sock in (self.dealer, self.sub, outbox):
            poller.register(sock, zmq.POLLIN)
        self._bus_ready.set()
        next_hb = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_hb:
                self._hb_seq += 1
                self.dealer.send(make("heartbeat", {"worker": self.name, "pid": os.getpid(),
                                                    "seq": self._hb_seq}))
                next_hb = now + self.heartbeat_s
            due = next_hb
            for timer in self._bus_timers:
                if timer[0] <= now:
                    timer[0] = now + timer[1]
                    timer[2]()  # no guard: an exception ends the thread (module docstring)
                due = min(due, timer[0])
            while self._bus_calls:
                self._bus_calls.popleft()()
            timeout = max(0, int((due - time.monotonic()) * 1000)) + 1
            self._unwatched.clear()
            for sock, events in poller.poll(timeout):
                if isinstance(sock, int):  # watch() registers numbers, the bus its sockets
                    self._on_watched(sock, events)
                elif not self._drain_bus(sock, outbox):
                    return

    def _on_watched(self, fd: int, events: int) -> None:
        """Hand a watched socket's event to its owner, unless the batch made it stale.

        A handler earlier in the batch may have unwatched and closed this socket (a broadcast
        that failed to send drops its client), and an accept may since have got the same
        number for a new one: the event was about the old socket. Dropping it loses nothing,
        as polling is level-triggered: a socket still ready is reported again next time.
        """
        if fd in self._unwatched:
            return
        on_ready = self._watched.get(fd)
        if on_ready is not None:
            on_ready(events)  # no guard: an exception ends the thread (module docstring)

    def _drain_bus(self, sock: zmq.Socket, outbox: zmq.Socket) -> bool:
        """Take what a bus socket has (bounded, so the others are not starved); False once
        the main thread asked the bus thread to end (the sockets are closed then)."""
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if sock is outbox and frames[0] == b"x":
                for s in (self.dealer, self.pub, self.sub, outbox):
                    s.close(linger=1000)
                return False
            if sock is outbox:
                self._route_out(frames)
            elif sock is self.sub:
                self._incoming(frames[-1], self._events)
            else:
                self._incoming(frames[-1], self._requests)
        return True

    def _route_out(self, frames: list[bytes]) -> None:
        kind = frames[0]
        if kind == b"d":
            self.dealer.send(frames[1])
        elif kind == b"p":
            self.pub.send_multipart(frames[1:])
        elif kind == b"s":
            self.sub.setsockopt(zmq.SUBSCRIBE, frames[1])
        elif kind == b"u":
            self.sub.setsockopt(zmq.UNSUBSCRIBE, frames[1])
        # b"w" only wakes the loop, which then runs what call_on_bus queued

    def _incoming(self, frame: bytes, table: dict[str, tuple[Handler, bool]]) -> None:
        try:
            env = decode(frame, DEFAULT_MAX_FRAME)
        except ProtocolError as exc:
            # Only the supervisor talks to us; answering garbage could start an error ping-pong.
            log.warning("dropped a frame: %s", exc.message)
            return
        if env.reply_to is not None and table is self._requests:
            callback = self._pending.get(env.reply_to)
            if callback is not None:
                if env.type == "error" or (env.type in _FINAL_REPLIES):
                    self._pending.pop(env.reply_to, None)
                self._inbox.put(lambda: self._call(callback, env))
            return
        entry = table.get(env.type)
        if entry is None:
            if env.spec is not None and env.spec.kind is Kind.REQUEST:
                self.dealer.send(error(ErrorCode.UNKNOWN_TYPE,
                                       f"worker '{self.name}' does not handle '{env.type}'",
                                       env.id))
            return
        fn, inline = entry
        if inline:
            self._call(fn, env)
        else:
            self._inbox.put(lambda: self._call(fn, env))

    def _call(self, fn: Handler, env: Envelope) -> None:
        try:
            fn(env)
        except Exception as exc:
            log.exception("handler for %s failed", env.type)
            if env.id is not None:
                self.error(env, ErrorCode.INTERNAL, f"{self.name}: {type(exc).__name__}: {exc}")

    # -- main thread ---------------------------------------------------------------------
    def run(self) -> NoReturn:
        """Run handlers and timers on this thread until asked to stop, then end the process.

        It ends with os._exit: the parent-watch thread is blocked reading stdin, and a normal
        interpreter exit would abort on that thread's buffer lock.
        """
        while not self.stopping.is_set():
            timeout = None
            if self._timers:
                timeout = max(0.0, min(t[0] for t in self._timers) - time.monotonic())
            try:
                job = self._inbox.get(timeout=timeout)
            except queue.Empty:
                job = None
            if job is not None:
                job()
            now = time.monotonic()
            for i, (due, interval, fn) in enumerate(self._timers):
                if due <= now:
                    self._timers[i] = (now + interval, interval, fn)
                    try:
                        fn()
                    except Exception:
                        log.exception("periodic task failed")
        log.info("%s stopped", self.name)
        self._to_bus([b"x"])  # the bus thread flushes what is queued, then closes
        if self._bus_thread is not None:
            self._bus_thread.join(timeout=2)
        self.ctx.destroy(linger=0)
        logging.shutdown()
        os._exit(0)

    def _on_ping(self, env: Envelope) -> None:
        self.reply(env, "pong", {"from": self.name})

    def _on_stop(self, env: Envelope) -> None:
        drain = float(env.data.get("drain_s", 0.0))
        log.info("asked to stop (drain %.1f s)", drain)
        for hook in self._stop_hooks:
            hook(drain)
        self.reply(env, "ok", {"detail": f"{self.name} stopping"})
        self.stopping.set()
