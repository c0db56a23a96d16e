"""The supervisor process: one non-blocking loop that carries the bus for the lifecycle logic.

All state lives in this loop's thread, so no lock is needed and nothing one worker does can hold
back another's traffic: exits arrive as messages from waiter threads, timers are a heap, and the
logic itself (supervisor/lifecycle.py) never blocks. No Qt, no llama here.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq
from zmq.auth.thread import ThreadAuthenticator

from protocol.bus import (
    PLAIN_USER,
    BusInfo,
    event_topic,
    new_bus_info,
    run_file,
    secure_client,
    secure_server,
)
from protocol.codec import DEFAULT_MAX_FRAME, ProtocolError, decode, error, make
from supervisor.host import OsHost
from supervisor.lifecycle import Lifecycle

log = logging.getLogger("supervisor")

EXITS_ENDPOINT = "inproc://child-exits"
MAX_POLL_MS = 200  # upper bound on a wait, so signals are seen promptly on every platform


class Supervisor:
    def __init__(self, config: dict[str, Any], data_dir: Path,
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        self.cfg = config
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self.started = time.monotonic()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._shutdown = False  # asked by a signal; acted on in the loop
        self._ps = psutil.Process()
        self._ps.cpu_percent(None)
        self._own_sample: dict[str, Any] = {"rss": self._ps.memory_info().rss,
                                            "cpu_percent": None}
        self._bind()
        self.host = OsHost(data_dir / "logs", config["logging"]["max_bytes"],
                           config["logging"]["backup_count"], time.monotonic, self._at,
                           self._exit_reporter)
        boot = {"bus": asdict(self.info), "config": config, "data_dir": str(data_dir),
                "supervisor_pid": os.getpid()}
        self.lifecycle = Lifecycle(config, self.host, self, boot=boot, options=options,
                                   log_path=self.host.log_path, describe_self=self._describe)

    # -- sockets -------------------------------------------------------------------------
    def _bind(self) -> None:
        self.ctx = zmq.Context()
        info = new_bus_info()
        self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("supervisor.auth"))
        self.auth.start()
        self.auth.configure_plain(domain="*", passwords={PLAIN_USER.decode(): info.secret})
        self.router = self.ctx.socket(zmq.ROUTER)
        secure_server(self.router)
        self.router.router_mandatory = 1
        self.router.router_handover = 1
        self.router.bind(info.router)
        xsub = self.ctx.socket(zmq.XSUB)
        xpub = self.ctx.socket(zmq.XPUB)
        # Before bind: a listener copies the socket's options when it is bound, and the
        # connections it accepts get those (set after, a burst of tokens was cut at 1000).
        xpub.sndhwm = xsub.rcvhwm = 100_000
        for s, attr in ((xsub, "xsub"), (xpub, "xpub")):
            secure_server(s)
            s.bind(getattr(info, attr))
        self.info = BusInfo(self.router.last_endpoint.decode(), xsub.last_endpoint.decode(),
                            xpub.last_endpoint.decode(), info.secret, os.getpid(), info.ipc_dir,
                            info.supervisor_started)
        # The event relay is libzmq's own proxy in a thread: it never touches Python per event.
        self._proxy_ctl = self.ctx.socket(zmq.PAIR)
        self._proxy_ctl.bind("inproc://proxy-control")
        self._proxy = threading.Thread(target=self._run_proxy, args=(self.ctx, xsub, xpub),
                                       daemon=True, name="event-proxy")
        self._proxy.start()
        self.pub = self.ctx.socket(zmq.PUB)
        secure_client(self.pub, info.secret)
        self.pub.connect(self.info.xsub)
        self.exits = self.ctx.socket(zmq.PULL)
        self.exits.bind(EXITS_ENDPOINT)
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.exits, zmq.POLLIN)

    @staticmethod
    def _run_proxy(ctx: zmq.Context, xsub: zmq.Socket, xpub: zmq.Socket) -> None:
        ctl = ctx.socket(zmq.PAIR)
        ctl.connect("inproc://proxy-control")
        try:
            zmq.proxy_steerable(xsub, xpub, None, ctl)  # returns on TERMINATE
        finally:
            for s in (xsub, xpub, ctl):
                s.close(0)

    # -- public --------------------------------------------------------------------------
    def run(self) -> None:
        """Start the enabled workers and serve until shutdown; always cleans up."""
        self.info.save(self.run_dir)
        lc = self.lifecycle
        log.info("supervisor %d up; bus %s; workers %s", os.getpid(), self.info.router,
                 ", ".join(n for n, c in lc.children.items() if c.spec.enabled))
        try:
            lc.start_enabled()
            self._every(lc.check_interval, lc.check_ready_deadlines)
            self._every(self.cfg["supervisor"]["stats_interval_s"], self._publish_stats)
            self._every(1.0, lc.expire_queued)
            self._every(1.0, lc.boot_idle_spares)
            while not lc.done:
                self._tick()
        finally:
            self._cleanup()

    def request_shutdown(self) -> None:
        """Safe from a signal handler: the loop notices within MAX_POLL_MS."""
        self._shutdown = True

    # -- the Outbox the lifecycle writes to ----------------------------------------------
    def send(self, ident: bytes, frame: bytes) -> bool:
        try:
            self.router.send_multipart([ident, frame], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # peer gone (EHOSTUNREACH) or its queue full (EAGAIN)
            log.debug("could not send to %r: %s", ident, exc)
            return False

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart([event_topic(type_), make(type_, data)], zmq.NOBLOCK)

    # -- loop ----------------------------------------------------------------------------
    def _tick(self) -> None:
        if self._shutdown:
            self._shutdown = False
            self.lifecycle.begin_shutdown()
        delay = MAX_POLL_MS
        if self._timers:
            delay = max(0, min(delay, int((self._timers[0][0] - time.monotonic()) * 1000) + 1))
        for sock, _ in self.poller.poll(delay):
            if sock is self.router:
                self._drain_router()
            else:
                self._drain_exits()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("timer failed")

    def _at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))

    def _every(self, interval: float, fn: Callable[[], None]) -> None:
        def again() -> None:
            try:
                fn()
            finally:
                self._at(interval, again)
        self._at(interval, again)

    def _drain_router(self) -> None:
        for _ in range(1000):  # bounded, so exits and timers are never starved
            try:
                ident, *_, frame = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                env = decode(frame, DEFAULT_MAX_FRAME)
            except ProtocolError as exc:
                if ident.startswith(b"w:"):  # never answer a worker's bad frame: no ping-pong
                    log.warning("dropped a bad frame from %r: %s", ident, exc.message)
                else:
                    self.send(ident, error(exc.code, exc.message, exc.reply_to))
                continue
            try:
                self.lifecycle.on_message(ident, env)
            except Exception:
                log.exception("failed to handle %s from %r", env.type, ident)

    def _drain_exits(self) -> None:
        while True:
            try:
                name, gen, code = msgpack.unpackb(self.exits.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            try:
                self.lifecycle.on_exit(name, gen, code)
            except Exception:
                log.exception("failed to handle the exit of %s", name)

    def _exit_reporter(self, name: str, gen: int, code: int) -> None:
        """Runs in a child's waiter thread: hand the exit to the loop through inproc."""
        sock = self.ctx.socket(zmq.PUSH)
        try:
            sock.connect(EXITS_ENDPOINT)
            sock.send(msgpack.packb([name, gen, code]))
        except zmq.ContextTerminated:
            pass
        finally:
            sock.close(linger=1000)

    # -- stats ---------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        return {"pid": os.getpid(), **self._own_sample,
                "uptime_s": round(time.monotonic() - self.started, 3), "bus": self.info.router}

    def _publish_stats(self) -> None:
        with self._ps.oneshot():
            self._own_sample = {"rss": self._ps.memory_info().rss,
                                "cpu_percent": self._ps.cpu_percent(None)}
        self.publish("worker_stats", {"workers": self.lifecycle.sample()})

    def _cleanup(self) -> None:
        for child in self.lifecycle.children.values():
            for proc in (child.proc, child.spare):
                if proc is not None:
                    proc.kill()
        self.host.close_logs()
        with contextlib.suppress(OSError):
            run_file(self.run_dir).unlink()
        self._proxy_ctl.send(b"TERMINATE")
        self._proxy.join(timeout=2)
        self.auth.stop()
        self.ctx.destroy(linger=0)
        if self.info.ipc_dir:
            shutil.rmtree(self.info.ipc_dir, ignore_errors=True)
        log.info("supervisor stopped")
