"""The supervisor: one non-blocking loop that routes the bus and runs every worker's state machine.

All state lives in this loop's thread, so no lock is needed and nothing one worker does can hold
back another's traffic: stopping is a sequence of timed steps (ask, terminate, kill), exits
arrive as messages from waiter threads, and requests for a worker that is not ready wait in that
worker's bounded queue. No Qt, no llama here.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import random
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
    RUN_FILE,
    BusInfo,
    event_topic,
    new_bus_info,
    secure_client,
    secure_server,
)
from supervisor.child import Child, Held, State, StopIntent
from protocol.codec import DEFAULT_MAX_FRAME, Envelope, ProtocolError, decode, encode, error, make
from supervisor.config import ConfigError, check_profile, role_owners
from protocol.messages import EXIT_CONFIG_ERROR, PROFILES, SUPERVISOR, WORKER, ErrorCode, Kind

log = logging.getLogger("supervisor")

EXITS_ENDPOINT = "inproc://child-exits"
MAX_POLL_MS = 200  # upper bound on a wait, so signals are seen promptly on every platform


class Supervisor:
    def __init__(self, config: dict[str, Any], data_dir: Path,
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        self.cfg = config
        self.sup_cfg = config["supervisor"]
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.max_frame = DEFAULT_MAX_FRAME
        self.started = time.monotonic()
        self._ids = itertools.count(1)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._shutdown = False  # asked (signal or request); acted on in the loop
        self._shutting_down = False  # workers are being stopped
        self._done = False
        self.children: dict[str, Child] = {}
        self.role_owner = role_owners(config["workers"])
        for name, wcfg in config["workers"].items():
            child_options: dict[str, Any] = {}
            for role in wcfg["provides"]:
                child_options.update((options or {}).get(role, {}))
            self.children[name] = Child(
                name, wcfg["module"], list(wcfg["args"]), self.log_dir / f"{name}.log",
                config["logging"]["max_bytes"], config["logging"]["backup_count"],
                roles=list(wcfg["provides"]), options=child_options)
        self._enabled = [n for n, w in config["workers"].items() if w["enabled"]]
        self._by_ident: dict[bytes, Child] = {}
        self.in_flight: dict[int, tuple[Child, Held]] = {}
        self._switch: dict[str, Any] | None = None
        self._ps = psutil.Process()
        self._ps.cpu_percent(None)
        self._own_sample: dict[str, Any] = {"rss": self._ps.memory_info().rss,
                                            "cpu_percent": None}
        self._bind()

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
                            xpub.last_endpoint.decode(), info.secret, os.getpid(), info.ipc_dir)
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
        log.info("supervisor %d up; bus %s; workers %s", os.getpid(), self.info.router,
                 ", ".join(self._enabled))
        try:
            for name in self._enabled:
                self._start(self.children[name])
            self._every(self.sup_cfg["heartbeat_interval_s"] / 2, self._check_heartbeats)
            self._every(self.sup_cfg["stats_interval_s"], self._publish_stats)
            self._every(1.0, self._expire_queued)
            while not self._done:
                self._tick()
        finally:
            self._cleanup()

    def request_shutdown(self) -> None:
        """Safe from a signal handler: the loop notices within MAX_POLL_MS."""
        self._shutdown = True

    # -- loop ----------------------------------------------------------------------------
    def _tick(self) -> None:
        if self._shutdown:
            self._shutdown = False
            self._begin_shutdown()
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
        if self._shutting_down and all(not c.alive for c in self.children.values()):
            self._done = True

    def _at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))

    def _every(self, interval: float, fn: Callable[[], None]) -> None:
        def again() -> None:
            fn()
            self._at(interval, again)
        self._at(interval, again)

    def _drain_router(self) -> None:
        for _ in range(1000):  # bounded, so exits and timers are never starved
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._on_frame(frames[0], frames[-1])
            except Exception:
                log.exception("failed to handle a frame from %r", frames[0])

    def _drain_exits(self) -> None:
        while True:
            try:
                name, gen, code = msgpack.unpackb(self.exits.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            child = self.children[name]
            if gen == child.generation and child.alive:
                self._on_exit(child, code)

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

    # -- frames --------------------------------------------------------------------------
    def _send(self, ident: bytes, frame: bytes) -> bool:
        try:
            self.router.send_multipart([ident, frame], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # peer gone (EHOSTUNREACH) or its queue full (EAGAIN)
            log.debug("could not send to %r: %s", ident, exc)
            return False

    def _on_frame(self, ident: bytes, frame: bytes) -> None:
        try:
            env = decode(frame, self.max_frame)
        except ProtocolError as exc:
            if ident.startswith(b"w:"):  # never answer a worker's bad frame: no error ping-pong
                log.warning("dropped a bad frame from %r: %s", ident, exc.message)
            else:
                self._send(ident, error(exc.code, exc.message, exc.reply_to))
            return
        ms = env.spec
        assert ms is not None
        child = self._by_ident.get(ident)
        if ms.kind is Kind.REQUEST:
            if ms.handler == SUPERVISOR:
                self._control(ident, env)
            elif ms.handler == WORKER:
                self._send(ident, error(ErrorCode.WRONG_DIRECTION,
                                        f"'{env.type}' is sent by the supervisor only", env.id))
            elif ms.handler in self.role_owner:
                self._route(self.children[self.role_owner[ms.handler]], ident, env)
            else:
                self._send(ident, error(ErrorCode.UNKNOWN_WORKER,
                                        f"no enabled worker provides '{ms.handler}', which "
                                        f"handles '{env.type}'; add it to a worker's 'provides' "
                                        f"in the config", env.id))
        elif ms.kind is Kind.REPLY and child is not None:
            self._on_worker_reply(child, env)
        elif env.type == "heartbeat" and child is not None:
            child.on_heartbeat(time.monotonic())
        elif env.type == "ready" and child is not None:
            self._on_ready(child, env)
        elif ident.startswith(b"w:") and ms.kind is not Kind.REQUEST:
            log.debug("dropped %s from a former worker process %r", env.type, ident)
        else:
            self._send(ident, error(ErrorCode.WRONG_DIRECTION,
                                    f"'{env.type}' is a {ms.kind.value} and cannot be sent by a "
                                    f"client to the supervisor", env.id))

    # -- requests for workers ------------------------------------------------------------
    def _route(self, child: Child, ident: bytes, env: Envelope) -> None:
        assert env.id is not None
        ms = env.spec
        if ms is not None and ms.refers_to and not self._translate_ref(child, ident, env,
                                                                        ms.refers_to):
            return
        held = Held(ident, env.id, env, time.monotonic())
        if child.state is State.RUNNING and not child.queue:
            self._forward(child, held)
        elif child.state in (State.EXITED, State.FATAL) and child.stop_intent is None:
            self._reject(held, ErrorCode.WORKER_UNAVAILABLE, _down_message(child))
        elif self._shutting_down:
            self._reject(held, ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
        else:
            self._hold(child, held)

    def _translate_ref(self, child: Child, ident: bytes, env: Envelope, field: str) -> bool:
        """Point `field` at the id the worker knows; answer here if the worker need not see it.

        A referenced request still waiting in our queue is answered (CANCELLED) and removed
        right here; one in flight gets its worker-side id. Returns True to route on.
        """
        client_id = env.data[field]
        for held in list(child.queue):
            if held.client == ident and held.client_id == client_id:
                child.queue.remove(held)
                self._reject(held, ErrorCode.CANCELLED, "cancelled before it started")
                self._send(ident, make("ok", {"detail": f"request {client_id} cancelled"},
                                       reply_to=env.id))
                return False
        for fwd, held in child.in_flight.items():
            if held.client == ident and held.client_id == client_id:
                env.data = {**env.data, field: fwd}
                return True
        self._send(ident, error(ErrorCode.INVALID_REQUEST,
                                f"no request {client_id} of yours is waiting or running on "
                                f"'{child.name}'", env.id))
        return False

    def _hold(self, child: Child, held: Held, front: bool = False) -> None:
        if len(child.queue) >= self.sup_cfg["queue_limit"]:
            self._reject(held, ErrorCode.QUEUE_FULL,
                         f"worker '{child.name}' is {child.state.value} and already holds "
                         f"{len(child.queue)} requests (supervisor.queue_limit); try later")
            return
        if front:
            child.queue.appendleft(held)
        else:
            child.queue.append(held)

    def _forward(self, child: Child, held: Held) -> None:
        fwd = next(self._ids)
        held.attempts += 1
        env = held.env
        if self._send(child.ident, encode(Envelope(env.type, env.data, id=fwd, ts=env.ts))):
            child.in_flight[fwd] = held
            self.in_flight[fwd] = (child, held)
        else:
            held.attempts -= 1
            self._hold(child, held, front=True)

    def _reject(self, held: Held, code: ErrorCode, message: str) -> None:
        if held.client is not None:
            self._send(held.client, error(code, message, held.client_id))

    def _reject_queue(self, child: Child, code: ErrorCode = ErrorCode.WORKER_UNAVAILABLE,
                      message: str | None = None) -> None:
        while child.queue:
            self._reject(child.queue.popleft(), code, message or _down_message(child))

    def _on_worker_reply(self, child: Child, env: Envelope) -> None:
        fwd = env.reply_to
        entry = self.in_flight.get(fwd) if fwd is not None else None
        if entry is None:
            return  # the asker was already answered (its worker crashed, or it timed out)
        _, held = entry
        ms = held.env.spec
        final = env.type == "error" or (ms is not None and env.type in ms.final)
        if final:
            del self.in_flight[fwd]
            child.in_flight.pop(fwd, None)
        if held.client is not None:
            self._send(held.client, encode(Envelope(env.type, env.data, reply_to=held.client_id,
                                                    ts=env.ts)))

    def _flush_queue(self, child: Child) -> None:
        while child.queue and child.state is State.RUNNING:
            self._forward(child, child.queue.popleft())

    def _expire_queued(self) -> None:
        limit = self.sup_cfg["queue_timeout_s"]
        now = time.monotonic()
        for child in self.children.values():
            while child.queue and now - child.queue[0].since > limit:
                self._reject(child.queue.popleft(), ErrorCode.TIMEOUT,
                             f"worker '{child.name}' was not ready within {limit:.0f} s "
                             f"(supervisor.queue_timeout_s)")

    def _settle_in_flight(self, child: Child, reason: str) -> None:
        """The process that ran these requests is gone: run them again or say why not."""
        for fwd, held in sorted(child.in_flight.items(), reverse=True):
            self.in_flight.pop(fwd, None)
            ms = held.env.spec
            if ms and ms.rerun_on_crash and held.attempts < 2 and child.state is not State.FATAL:
                if held.client is not None:
                    self._send(held.client, make("request_retry",
                                                 {"reason": reason, "attempt": held.attempts + 1},
                                                 reply_to=held.client_id))
                self._hold(child, held, front=True)
            else:
                self._reject(held, ErrorCode.WORKER_CRASHED,
                             f"worker '{child.name}' stopped while running this request "
                             f"({reason})")
        child.in_flight.clear()

    # -- state machine -------------------------------------------------------------------
    def _set_state(self, child: Child, state: State, reason: str = "") -> None:
        previous = child.state
        child.state = state
        log.info("%s: %s -> %s%s", child.name, previous.value, state.value,
                 f" ({reason})" if reason else "")
        self._publish("worker_state", {"worker": child.name, "state": state.value,
                                       "previous": previous.value, "reason": reason,
                                       "pid": child.pid, "roles": child.roles})

    def _boot_info(self) -> dict[str, Any]:
        return {"bus": asdict(self.info), "config": self.cfg,
                "data_dir": str(self.data_dir), "supervisor_pid": os.getpid()}

    def _start(self, child: Child) -> None:
        if self._shutting_down:
            return
        child.stop_intent = None
        self._by_ident.pop(child.ident, None)
        try:
            child.spawn(self._boot_info(), self._exit_reporter)
        except OSError as exc:
            child.last_exit = f"could not start: {exc}"
            self._on_crash(child, child.last_exit)
            return
        self._by_ident[child.ident] = child
        self._set_state(child, State.STARTING, f"pid {child.pid}")

    def _on_ready(self, child: Child, env: Envelope) -> None:
        if child.state is not State.STARTING:
            return
        child.ready_at = time.monotonic()
        child.ready_info = dict(env.data.get("info") or {})
        self._set_state(child, State.RUNNING,
                        f"ready {child.ready_at - child.started_at:.3f} s after start")
        if self._switch and self._switch["worker"] == child.name:
            info = child.ready_info
            notes = "; ".join(info.get("notes") or [])
            self._publish("profile_status", {
                "state": "ready", "profile": str(info.get("profile", self._switch["profile"])),
                "requested": self._switch["profile"],
                "reason": self._switch["reason"] + (f" ({notes})" if notes else ""),
                "load_s": info.get("load_s"), "warmup_s": info.get("warmup_s")})
            self._switch = None
        self._flush_queue(child)

    def _on_exit(self, child: Child, code: int) -> None:
        intent = child.stop_intent
        child.reap()
        self._by_ident.pop(child.ident, None)
        how = _describe_exit(code)
        if intent is None and code == EXIT_CONFIG_ERROR:
            child.last_exit = "cannot start: " + (child.last_output or "configuration error")
            self._set_state(child, State.FATAL, child.last_exit)
            self._settle_in_flight(child, child.last_exit)
            self._reject_queue(child)
            return
        if intent is None:
            child.last_exit = f"crashed: {how}" if child.last_exit != "hung" else f"hung: {how}"
            self._on_crash(child, child.last_exit)
            return
        child.last_exit = f"stopped ({intent.value}): {how}"
        self._settle_in_flight(child, child.stop_reason or f"{intent.value} requested")
        if intent is StopIntent.RESTART:
            child.restarts += 1
            self._set_state(child, State.EXITED, child.last_exit)
            self._start(child)
        else:
            self._set_state(child, State.EXITED, child.last_exit)
            child.stop_intent = None
            if intent is StopIntent.STOP:
                self._reject_queue(child)

    def _on_crash(self, child: Child, reason: str) -> None:
        now = time.monotonic()
        crashes = child.record_crash(now, self.sup_cfg["restart_window_s"])
        if crashes > self.sup_cfg["max_restarts"] or self._shutting_down:
            self._set_state(child, State.FATAL,
                            f"{reason}; {crashes} crashes within "
                            f"{self.sup_cfg['restart_window_s']} s" if not self._shutting_down
                            else reason)
            self._settle_in_flight(child, reason)
            self._reject_queue(child)
            return
        self._set_state(child, State.BACKOFF, reason)
        self._settle_in_flight(child, reason)
        base = min(self.sup_cfg["backoff_max_s"],
                   self.sup_cfg["backoff_initial_s"] * 2 ** (crashes - 1))
        jitter = self.sup_cfg["backoff_jitter"]
        delay = base * random.uniform(1 - jitter, 1 + jitter)
        gen = child.generation
        child.restarts += 1

        def restart() -> None:
            if child.state is State.BACKOFF and child.generation == gen:
                self._start(child)
        self._at(delay, restart)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        limit = self.sup_cfg["heartbeat_interval_s"] * self.sup_cfg["heartbeat_misses"]
        for child in self.children.values():
            if not child.alive or child.stop_intent is not None:
                continue
            if child.last_heartbeat:
                silent = now - child.last_heartbeat
                hung = silent > limit
            else:
                silent = now - child.started_at
                hung = silent > self.sup_cfg["start_timeout_s"]
            if hung:
                log.warning("%s: no heartbeat for %.2f s: hung, killing pid %s", child.name,
                            silent, child.pid)
                child.last_exit = "hung"
                child.kill()

    # -- stopping ------------------------------------------------------------------------
    def _stop(self, child: Child, intent: StopIntent, drain_s: float | None = None,
              reason: str = "") -> None:
        """Ask, wait, terminate, wait, kill: each step a timer, never a blocking wait."""
        if not child.alive:
            return
        child.stop_reason = reason
        if child.stop_intent is not None:
            child.stop_intent = intent  # already stopping: just update what happens after
            return
        child.stop_intent = intent
        was_ready = child.state is State.RUNNING
        self._set_state(child, State.STOPPING, intent.value)
        gen = child.generation
        if was_ready:  # its "ok" reply is dropped: the exit itself is what we wait for
            ask_s = self.sup_cfg["stop_timeout_s"] + (drain_s or 0.0)
            self._send(child.ident, make("worker_stop", {"drain_s": float(drain_s or 0.0)},
                                         id=next(self._ids)))
        else:
            ask_s = 0.0  # still starting (loading a model): nothing to drain, none to answer

        def escalate() -> None:
            if child.generation != gen or not child.alive:
                return
            if child.stop_phase == 0:
                log.warning("%s did not stop within %.1f s: terminating", child.name, ask_s)
                child.stop_phase = 1
                child.terminate()
                self._at(self.sup_cfg["terminate_timeout_s"], escalate)
            else:
                log.warning("%s ignored terminate: killing", child.name)
                child.kill()
        self._at(ask_s, escalate)

    def _begin_shutdown(self) -> None:
        if self._shutting_down:
            return
        log.info("shutting down")
        self._shutting_down = True
        for child in self.children.values():
            self._reject_queue(child, ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
            if child.alive:
                self._stop(child, StopIntent.SHUTDOWN)
            elif child.state is State.BACKOFF:
                self._set_state(child, State.EXITED, "shutdown")

    def _cleanup(self) -> None:
        for child in self.children.values():
            child.kill()
            child.close_log()
        with contextlib.suppress(OSError):
            (self.run_dir / RUN_FILE).unlink()
        self._proxy_ctl.send(b"TERMINATE")
        self._proxy.join(timeout=2)
        self.auth.stop()
        self.ctx.destroy(linger=0)
        if self.info.ipc_dir:
            shutil.rmtree(self.info.ipc_dir, ignore_errors=True)
        log.info("supervisor stopped")

    # -- control requests ----------------------------------------------------------------
    def _control(self, ident: bytes, env: Envelope) -> None:
        data, rid = env.data, env.id

        def ok(detail: str) -> None:
            self._send(ident, make("ok", {"detail": detail}, reply_to=rid))

        def fail(code: ErrorCode, message: str) -> None:
            self._send(ident, error(code, message, rid))

        if env.type == "ping":
            target = data.get("target")
            if not target:
                self._send(ident, make("pong", {"from": SUPERVISOR}, reply_to=rid))
            elif target in self.children:
                self._route(self.children[target], ident, env)
            else:
                fail(ErrorCode.UNKNOWN_WORKER, _unknown_worker(target, self.children))
            return
        if env.type == "status":
            self._send(ident, make("status_reply", self._status(), reply_to=rid))
            return
        if env.type == "shutdown":
            ok("shutting down")
            self._shutdown = True
            return
        if env.type == "switch_profile":
            self._switch_profile(data, ok, fail)
            return
        name = data["worker"]
        child = self.children.get(name)
        if child is None:
            fail(ErrorCode.UNKNOWN_WORKER, _unknown_worker(name, self.children))
            return
        if env.type == "logs":
            lines = max(1, min(int(data.get("lines", 50)), 10_000))
            self._send(ident, make("logs_reply", {"worker": name, "path": str(child.log_path),
                                                  "lines": _tail(child.log_path, lines)},
                                   reply_to=rid))
        elif self._shutting_down:
            fail(ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
        elif env.type == "restart":
            if child.alive:
                self._stop(child, StopIntent.RESTART)
            else:
                child.crash_times.clear()
                self._start(child)
            ok(f"restarting {name}")
        elif env.type == "stop":
            if child.alive:
                self._stop(child, StopIntent.STOP)
            elif child.state is State.BACKOFF:
                self._set_state(child, State.EXITED, "stop requested during backoff")
                self._reject_queue(child)
            ok(f"stopping {name}")
        elif env.type == "kill":
            if not child.alive:
                fail(ErrorCode.WORKER_UNAVAILABLE, _down_message(child))
                return
            child.last_exit = ""
            child.kill()
            ok(f"killed {name} (pid {child.pid}); it counts as a crash")

    def _provider(self, role: str) -> Child | None:
        name = self.role_owner.get(role)
        return self.children[name] if name else None

    def _switch_profile(self, data: dict[str, Any], ok, fail) -> None:
        child = self._provider(PROFILES)
        if child is None:
            fail(ErrorCode.UNKNOWN_WORKER, f"no enabled worker provides '{PROFILES}'")
            return
        if not child.alive and child.state is not State.BACKOFF:
            fail(ErrorCode.WORKER_UNAVAILABLE, f"worker '{child.name}' is not running; start "
                 f"it with: python -m supervisor restart {child.name}")
            return
        profile = data["profile"]
        try:
            check_profile(profile, self.cfg)
        except ConfigError as exc:
            fail(ErrorCode.INVALID_REQUEST, str(exc))
            return
        reason = data.get("reason") or "requested"
        emergency = bool(data.get("emergency"))
        child.options["profile"] = profile
        self._switch = {"worker": child.name, "profile": profile, "reason": reason}
        self._publish("profile_status", {"state": "switching", "profile": profile,
                                         "reason": reason})
        if child.alive:
            drain = 0.0 if emergency else self.sup_cfg["drain_timeout_s"]
            self._stop(child, StopIntent.RESTART, drain_s=drain,
                       reason=f"{'emergency ' if emergency else ''}switch to profile '{profile}'")
        ok(f"switching {child.name} to profile '{profile}'"
           + (" (emergency: the reply in flight is re-run)" if emergency else ""))

    def _status(self) -> dict[str, Any]:
        inf = self._provider(PROFILES)
        profile = ""
        if inf is not None:
            profile = str(inf.ready_info.get("profile") or inf.options.get("profile") or "")
        sup = {"pid": os.getpid(), **self._own_sample,
               "uptime_s": round(time.monotonic() - self.started, 3), "bus": self.info.router}
        return {"workers": {n: c.stats() for n, c in self.children.items()},
                "profile": profile, "supervisor": sup}

    def _publish_stats(self) -> None:
        with self._ps.oneshot():
            self._own_sample = {"rss": self._ps.memory_info().rss,
                                "cpu_percent": self._ps.cpu_percent(None)}
        for c in self.children.values():
            c.sample()
        self._publish("worker_stats", {"workers": {n: c.stats()
                                                   for n, c in self.children.items()}})

    def _publish(self, type_: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart([event_topic(type_), make(type_, data)], zmq.NOBLOCK)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            import signal
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _down_message(child: Child) -> str:
    return (f"worker '{child.name}' is {child.state.value}"
            + (f" ({child.last_exit})" if child.last_exit else "")
            + f"; start it with: python -m supervisor restart {child.name}")


def _unknown_worker(name: str, children: dict[str, Child]) -> str:
    return f"no worker named '{name}'; workers: {', '.join(children)}"


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            block = min(size, 256 * lines + 4096)
            fh.seek(size - block)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]

