"""The supervisor's logic: every worker's state machine and every request it holds.

No sockets, no processes, no clock of its own: events come in as calls (a message, an exit, a
timer) and everything it does goes out through two seams, `Host` (spawn, signals, clock,
timers) and `Outbox` (send to one peer, publish an event). The core wires them to ZeroMQ and
the OS; the stateful test wires them to fakes and explores every order of events.

It knows workers only by their specs: what a worker is for is the roles it provides, so no
worker name is written here.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from protocol.codec import Envelope, encode, error, make
from protocol.messages import (
    CHAT,
    EXIT_CONFIG_ERROR,
    PROFILES,
    REGISTRY,
    SUPERVISOR,
    WORKER,
    ErrorCode,
    Kind,
)
from supervisor.child import Child, Held, StopIntent, Stopping
from supervisor.config import ConfigError, check_profile, role_owners
from supervisor.host import Host, Process
from supervisor.specs import specs_from_config
from supervisor.states import State, check_transition

log = logging.getLogger("supervisor")

Reply = tuple[str, dict[str, Any]]


class Outbox(Protocol):
    def send(self, ident: bytes, frame: bytes) -> bool:
        """To one peer; False when it is gone or its queue is full."""

    def publish(self, type_: str, data: dict[str, Any]) -> None: ...


class Refusal(Exception):
    """A control request that cannot be carried out; its client gets this error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Lifecycle:
    def __init__(self, config: dict[str, Any], host: Host, out: Outbox, *,
                 boot: dict[str, Any] | None = None,
                 options: dict[str, dict[str, Any]] | None = None,
                 log_path: Callable[[str], Path] = lambda name: Path(f"{name}.log"),
                 describe_self: Callable[[], dict[str, Any]] = dict) -> None:
        self.cfg = config
        self.sup_cfg = config["supervisor"]
        self.host = host
        self.out = out
        self.boot = boot or {}
        self.describe_self = describe_self
        self.role_owner = role_owners(config["workers"])
        self.children: dict[str, Child] = {}
        for name, spec in specs_from_config(config).items():
            child_options: dict[str, Any] = {}
            for role in spec.provides:  # start options are given per role (launch.py)
                child_options.update((options or {}).get(role, {}))
            self.children[name] = Child(spec, log_path(name), options=child_options)
        self.shutting_down = False
        self.in_flight: dict[int, tuple[Child, Held]] = {}
        self._by_ident: dict[bytes, Child] = {}
        self._ids = itertools.count(1)
        self._switch: dict[str, Any] | None = None
        self._controls: dict[str, Callable[[bytes, Envelope], Reply | None]] = {
            "ping": self._ctl_ping, "status": self._ctl_status, "shutdown": self._ctl_shutdown,
            "switch_profile": self._ctl_switch_profile, "logs": self._ctl_logs,
            "restart": self._ctl_restart, "stop": self._ctl_stop, "kill": self._ctl_kill,
            "switch_model": self._ctl_switch_model,
        }
        handled_here = {n for n, ms in REGISTRY.items()
                        if ms.kind is Kind.REQUEST and ms.handler == SUPERVISOR}
        if handled_here != set(self._controls):
            raise RuntimeError(f"supervisor control handlers {sorted(self._controls)} do not "
                               f"match the registry's {sorted(handled_here)}")

    # -- what the core calls ---------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.shutting_down and not any(c.alive for c in self.children.values())

    @property
    def check_interval(self) -> float:
        """How often ready deadlines are checked: half the shortest heartbeat (a hang has a
        timer of its own per heartbeat)."""
        return min((c.spec.heartbeat_interval_s for c in self.children.values()),
                   default=1.0) / 2

    def start_enabled(self) -> None:
        for child in self.children.values():
            if child.spec.enabled:
                self._start(child)

    def on_message(self, ident: bytes, env: Envelope) -> None:
        """A valid frame from a peer: a client's request, or a worker's reply or signal."""
        ms = env.spec
        assert ms is not None
        child = self._by_ident.get(ident)
        if ms.kind is Kind.REQUEST:
            if ms.handler == SUPERVISOR:
                self._control(ident, env)
            elif ms.handler == WORKER:
                self.out.send(ident, error(ErrorCode.WRONG_DIRECTION,
                                           f"'{env.type}' is sent by the supervisor only", env.id))
            elif ms.handler in self.role_owner:
                self._route(self.children[self.role_owner[ms.handler]], ident, env)
            else:
                self.out.send(ident, error(
                    ErrorCode.UNKNOWN_WORKER, f"no enabled worker provides '{ms.handler}', which "
                    f"handles '{env.type}'; add it to a worker's 'provides' in the config",
                    env.id))
        elif child is not None and ms.kind is Kind.REPLY:
            self._on_worker_reply(child, env)
        elif child is not None and env.type == "heartbeat":
            child.adopt_pid(env.data.get("pid"))
            self._on_heartbeat(child)
        elif child is not None and env.type == "ready":
            self._on_ready(child, env)
        elif child is not None and env.type == "progress":
            self._on_progress(child, env)
        elif ident.startswith(b"w:"):
            log.debug("dropped %s from a former worker process %r", env.type, ident)
        else:
            self.out.send(ident, error(ErrorCode.WRONG_DIRECTION,
                                       f"'{env.type}' is a {ms.kind.value} and cannot be sent by "
                                       f"a client to the supervisor", env.id))

    def on_exit(self, name: str, generation: int, code: int) -> None:
        """A process ended (reported by the host the moment it did)."""
        child = self.children[name]
        if child.spare is not None and generation == child.spare_generation:
            log.warning("%s: its warm spare (pid %s) exited: %s; the next start boots afresh",
                        name, child.spare.pid, describe_exit(code))
            child.spare.release()
            child.spare = None
            return
        if generation != child.generation or child.proc is None:
            return  # a former process, or a spare that was let go
        stopping = child.stopping
        child.last_output = child.proc.last_output()
        child.proc.release()
        child.proc = None
        self._by_ident.pop(child.ident, None)
        how = describe_exit(code)
        if stopping is not None:
            self._on_requested_exit(child, stopping, how)
        elif code == EXIT_CONFIG_ERROR:
            child.last_exit = "cannot start: " + (child.last_output or "configuration error")
            self._move(child, State.FATAL, child.last_exit)
            self._gone_for_good(child, child.last_exit)
        else:
            normal = not child.kill_reason and code in child.spec.exit_codes
            what = (f"{child.kill_reason}: {how}" if child.kill_reason
                    else f"{'exited' if normal else 'crashed'}: {how}")
            if child.spec.restarts_after(normal):
                self._crashed(child, what)
                return
            child.last_exit = f"{what}; restart policy '{child.spec.restart.value}' keeps it down"
            self._move(child, State.EXITED, child.last_exit)
            self._gone_for_good(child, child.last_exit)

    def check_ready_deadlines(self) -> None:
        """Kill what is still not ready at its deadline (a hang has a timer per heartbeat)."""
        now = self.host.now()
        for child in self.children.values():
            if child.state is State.STARTING and not child.kill_reason \
                    and now > child.ready_deadline:
                spec = child.spec
                self._kill_as(child, f"not ready within ready_timeout_s ({spec.ready_timeout_s:g} "
                                     f"s{' after its last progress' if child.progress else ''})")

    def _on_heartbeat(self, child: Child) -> None:
        """Each heartbeat sets the moment its worker counts as hung: heartbeat_misses
        intervals of silence from now, to the timer's precision (not a periodic check's)."""
        child.on_heartbeat(self.host.now())
        if child.activation_pending:  # a promoted spare that was not connected yet
            child.activation_pending = not self._activate(child)
        generation, beats = child.generation, child.heartbeats

        def still_silent() -> None:
            if (child.generation == generation and child.heartbeats == beats
                    and child.state in (State.STARTING, State.RUNNING)
                    and not child.kill_reason):
                silent = self.host.now() - child.last_heartbeat
                self._kill_as(child, f"hung: no heartbeat for {silent:.2f} s")
        self.host.call_later(child.spec.hung_after_s, still_silent)

    def _kill_as(self, child: Child, why: str) -> None:
        log.warning("%s: %s; killing pid %s", child.name, why, child.pid)
        child.kill_reason = why
        assert child.proc is not None
        child.proc.kill()

    def boot_idle_spares(self) -> None:
        """A spare boots while its worker runs and has nothing to do: its interpreter and
        imports (0.2 s of CPU) compete neither with a load nor with a reply."""
        for child in self.children.values():
            if child.state is State.RUNNING and not child.in_flight and not child.queue:
                self._boot_spare(child)

    def expire_queued(self) -> None:
        limit = self.sup_cfg["queue_timeout_s"]
        now = self.host.now()
        for child in self.children.values():
            while child.queue and now - child.queue[0].since > limit:
                self._reject(child.queue.popleft(), ErrorCode.TIMEOUT,
                             f"worker '{child.name}' was not ready within {limit:.0f} s "
                             f"(supervisor.queue_timeout_s)")

    def begin_shutdown(self) -> None:
        if self.shutting_down:
            return
        log.info("shutting down")
        self.shutting_down = True
        for child in self.children.values():
            self._reject_queue(child, ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
            self._drop_spare(child)
            if child.alive:
                self._stop(child, StopIntent.SHUTDOWN)
            elif child.state is State.BACKOFF:
                self._move(child, State.EXITED, "shutdown")

    def sample(self) -> dict[str, Any]:
        """Per-worker figures for worker_stats (the stats timer's only job)."""
        for c in self.children.values():
            c.sample()
        now = self.host.now()
        return {n: c.stats(now) for n, c in self.children.items()}

    def status(self) -> dict[str, Any]:
        now = self.host.now()
        profiles = self._provider(PROFILES)
        profile = ""
        if profiles is not None:
            profile = str(profiles.ready_info.get("profile") or profiles.options.get("profile")
                          or "")
        return {"workers": {n: c.stats(now) for n, c in self.children.items()},
                "profile": profile, "supervisor": self.describe_self()}

    # -- the state machine -----------------------------------------------------------------
    def _move(self, child: Child, new: State, reason: str = "") -> None:
        """The one place a state changes; an illegal change raises IllegalTransition."""
        old = child.state
        check_transition(child.name, old, new)
        child.state = new
        if new is not State.STOPPING:
            child.stopping = None
        log.info("%s: %s -> %s%s", child.name, old.value, new.value,
                 f" ({reason})" if reason else "")
        self.out.publish("worker_state", {"worker": child.name, "state": new.value,
                                          "previous": old.value, "reason": reason,
                                          "pid": child.pid, "roles": list(child.spec.provides)})

    def _start(self, child: Child) -> None:
        if self.shutting_down:
            return
        if child.spare is not None:
            self._promote_spare(child)
            return
        generation = child.next_generation()
        try:
            proc = self._spawn(child, generation, spare=False)
        except OSError as exc:
            self._crashed(child, f"could not start: {exc}")
            return
        child.generation = generation
        child.started(proc, self.host.now())
        self._by_ident[child.ident] = child
        self._move(child, State.STARTING, f"pid {proc.pid}")

    def _spawn(self, child: Child, generation: int, spare: bool) -> Process:
        spec = child.spec
        boot = {**self.boot, "name": child.name, "ident": child.ident_of(generation).decode(),
                "options": child.options, "heartbeat_interval_s": spec.heartbeat_interval_s,
                "spare": spare}
        return self.host.spawn(child.name, spec.module, spec.args, boot, generation)

    # -- warm spares: a process booted ahead takes over at the next start ------------------
    def _boot_spare(self, child: Child) -> None:
        """While the worker runs: interpreter, imports and bus done ahead of the next start
        (a switch, a restart, a crash), which then only loads."""
        if not child.spec.warm_spare or child.spare is not None or self.shutting_down:
            return
        generation = child.next_generation()
        try:
            child.spare = self._spawn(child, generation, spare=True)
        except OSError as exc:
            log.warning("%s: could not boot a warm spare: %s", child.name, exc)
            return
        child.spare_generation = generation

    def _promote_spare(self, child: Child) -> None:
        """The spare becomes the worker: it gets this start's options and loads at once."""
        assert child.spare is not None
        proc, child.spare = child.spare, None
        child.generation = child.spare_generation
        child.started(proc, self.host.now())
        self._by_ident[child.ident] = child
        child.activation_pending = not self._activate(child)
        self._move(child, State.STARTING, f"pid {proc.pid}, a warm spare")

    def _activate(self, child: Child) -> bool:
        return self.out.send(child.ident, make("activate", {"options": child.options},
                                               id=next(self._ids)))

    def _drop_spare(self, child: Child) -> None:
        if child.spare is not None:
            child.spare.kill()  # it holds nothing; its exit, reported later, is ignored
            child.spare = None

    def _on_ready(self, child: Child, env: Envelope) -> None:
        if child.state is not State.STARTING:
            return  # e.g. told to stop while it was loading
        child.ready_at = self.host.now()
        child.ready_info = dict(env.data.get("info") or {})
        self._move(child, State.RUNNING,
                   f"ready {child.ready_at - child.started_at:.3f} s after start")
        if self._switch and self._switch["worker"] == child.name:
            info = child.ready_info
            notes = "; ".join(info.get("notes") or [])
            self.out.publish("profile_status", {
                "state": "ready", "profile": str(info.get("profile", self._switch["profile"])),
                "requested": self._switch["profile"],
                "reason": self._switch["reason"] + (f" ({notes})" if notes else ""),
                "load_s": info.get("load_s"), "warmup_s": info.get("warmup_s")})
            self._switch = None
        while child.queue and child.state is State.RUNNING:
            self._forward(child, child.queue.popleft())

    def _on_progress(self, child: Child, env: Envelope) -> None:
        if child.state is State.STARTING:
            child.ready_deadline = self.host.now() + child.spec.ready_timeout_s
        child.progress = {"stage": env.data["stage"], "fraction": env.data.get("fraction")}
        self.out.publish("progress", env.data)

    def _on_requested_exit(self, child: Child, stopping: Stopping, how: str) -> None:
        child.last_exit = f"stopped ({stopping.intent.value}): {how}"
        self._move(child, State.EXITED, child.last_exit)
        reason = stopping.reason or f"{stopping.intent.value} requested"
        if stopping.intent is StopIntent.RESTART and not self.shutting_down:
            child.restarts += 1
            self._settle(child, reason, rerun=True)
            self._start(child)
        else:
            self._gone_for_good(child, reason)

    def _crashed(self, child: Child, reason: str) -> None:
        """An exit nobody asked for, that its policy restarts: back off, or give up (FATAL).
        Only this counts against the restart budget."""
        spec = child.spec
        crashes = child.record_crash(self.host.now())
        child.last_exit = reason
        gives_up = crashes > spec.max_restarts or not spec.restarts_after(normal_exit=False)
        if gives_up or self.shutting_down:
            if crashes > spec.max_restarts and not self.shutting_down:
                reason = f"{reason}; {crashes} crashes within {spec.restart_window_s:g} s"
            self._move(child, State.FATAL, reason)
            self._gone_for_good(child, reason)
            return
        self._move(child, State.BACKOFF, reason)
        self._settle(child, reason, rerun=True)
        base = min(spec.backoff_max_s, spec.backoff_initial_s * 2 ** (crashes - 1))
        delay = base * random.uniform(1 - spec.backoff_jitter, 1 + spec.backoff_jitter)
        gen = child.generation
        child.restarts += 1

        def backoff_over() -> None:
            if child.state is State.BACKOFF and child.generation == gen:
                self._start(child)
        self.host.call_later(delay, backoff_over)

    def _stop(self, child: Child, intent: StopIntent, drain_s: float = 0.0,
              reason: str = "") -> None:
        """Ask, wait, terminate, wait, kill: each step a timer, never a blocking wait."""
        if not child.alive:
            return
        if child.stopping is not None:  # already stopping: only what follows changes
            child.stopping.intent = intent
            child.stopping.reason = reason or child.stopping.reason
            return
        was_ready = child.state is State.RUNNING
        child.stopping = Stopping(intent, reason)
        self._move(child, State.STOPPING, reason or intent.value)
        gen = child.generation
        ask_s = 0.0  # still starting (loading a model): nothing to drain, none to answer
        if was_ready:  # its "ok" reply is dropped: the exit itself is what we wait for
            ask_s = child.spec.stop_timeout_s + drain_s
            self.out.send(child.ident, make("worker_stop", {"drain_s": float(drain_s)},
                                            id=next(self._ids)))

        def escalate() -> None:
            stopping, proc = child.stopping, child.proc
            if child.generation != gen or stopping is None or proc is None:
                return
            if not stopping.terminated:
                log.warning("%s did not stop within %.1f s: terminating", child.name, ask_s)
                stopping.terminated = True
                proc.terminate()
                self.host.call_later(child.spec.terminate_timeout_s, escalate)
            else:
                log.warning("%s ignored terminate: killing", child.name)
                proc.kill()
        self.host.call_later(ask_s, escalate)

    # -- requests held for workers -----------------------------------------------------------
    def _route(self, child: Child, ident: bytes, env: Envelope) -> None:
        assert env.id is not None
        ms = env.spec
        if ms is not None and ms.refers_to and not self._translate_ref(child, ident, env,
                                                                        ms.refers_to):
            return
        held = Held(ident, env.id, env, self.host.now())
        if child.state is State.RUNNING and not child.queue:
            self._forward(child, held)
        elif self.shutting_down:
            self._reject(held, ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
        elif child.state in (State.EXITED, State.FATAL):
            self._reject(held, ErrorCode.WORKER_UNAVAILABLE, _down_message(child))
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
                self.out.send(ident, make("ok", {"detail": f"request {client_id} cancelled"},
                                          reply_to=env.id))
                return False
        for fwd, held in child.in_flight.items():
            if held.client == ident and held.client_id == client_id:
                env.data = {**env.data, field: fwd}
                return True
        self.out.send(ident, error(ErrorCode.INVALID_REQUEST,
                                   f"no request {client_id} of yours is waiting or running on "
                                   f"'{child.name}'", env.id))
        return False

    def _hold(self, child: Child, held: Held, front: bool = False) -> None:
        if len(child.queue) >= self.sup_cfg["queue_limit"]:
            self._reject(held, ErrorCode.QUEUE_FULL,
                         f"worker '{child.name}' is {child.state.value} and already holds "
                         f"{len(child.queue)} requests (supervisor.queue_limit); try later")
        elif front:
            child.queue.appendleft(held)
        else:
            child.queue.append(held)

    def _forward(self, child: Child, held: Held) -> None:
        fwd = next(self._ids)
        env = held.env
        if self.out.send(child.ident, encode(Envelope(env.type, env.data, id=fwd, ts=env.ts))):
            held.attempts += 1
            child.in_flight[fwd] = held
            self.in_flight[fwd] = (child, held)
        else:
            self._hold(child, held, front=True)

    def _reject(self, held: Held, code: ErrorCode, message: str) -> None:
        self.out.send(held.client, error(code, message, held.client_id))

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
        if env.type == "error" or (ms is not None and env.type in ms.final):
            del self.in_flight[fwd]
            child.in_flight.pop(fwd, None)
        else:
            held.started = True
        self.out.send(held.client, encode(Envelope(env.type, env.data,
                                                   reply_to=held.client_id, ts=env.ts)))

    def _settle(self, child: Child, reason: str, rerun: bool) -> None:
        """The process that ran these requests is gone. If the worker runs again, re-run what
        may be re-run; otherwise every request it held gets its final answer now.

        A request that had not started (waiting in the worker's own queue, or evaluating its
        prompt) runs again as often as needed within its queue timeout; one whose reply had
        begun gets one re-run, so a reply that crashes its worker cannot loop."""
        for fwd, held in sorted(child.in_flight.items(), reverse=True):
            self.in_flight.pop(fwd, None)
            ms = held.env.spec
            may_rerun = ms is not None and ms.rerun_on_crash and not (
                held.started and held.retried_started)
            if rerun and may_rerun:
                held.retried_started |= held.started
                held.started = False
                self.out.send(held.client, make("request_retry", {
                    "reason": reason, "attempt": held.attempts + 1}, reply_to=held.client_id))
                self._hold(child, held, front=True)
            else:
                self._reject(held, ErrorCode.WORKER_CRASHED,
                             f"worker '{child.name}' stopped while running this request "
                             f"({reason})")
        child.in_flight.clear()
        if not rerun:
            self._reject_queue(child)

    def _gone_for_good(self, child: Child, reason: str) -> None:
        """Down until someone starts it: every request it held is answered, no spare kept."""
        self._settle(child, reason, rerun=False)
        self._drop_spare(child)

    # -- control requests (handler "supervisor" in the registry) -----------------------------
    def _control(self, ident: bytes, env: Envelope) -> None:
        """Exactly one answer per request, whatever its handler does."""
        try:
            reply = self._controls[env.type](ident, env)
        except Refusal as exc:
            self.out.send(ident, error(exc.code, exc.message, env.id))
            return
        except Exception as exc:
            log.exception("control request %s failed", env.type)
            self.out.send(ident, error(ErrorCode.INTERNAL,
                                       f"supervisor failed on '{env.type}': "
                                       f"{type(exc).__name__}: {exc}", env.id))
            return
        if reply is not None:
            self.out.send(ident, make(reply[0], reply[1], reply_to=env.id))

    def _ctl_ping(self, ident: bytes, env: Envelope) -> Reply | None:
        target = env.data.get("target")
        if not target:
            return "pong", {"from": SUPERVISOR}
        self._route(self._named(target), ident, env)
        return None  # the worker answers

    def _ctl_status(self, ident: bytes, env: Envelope) -> Reply:
        return "status_reply", self.status()

    def _ctl_shutdown(self, ident: bytes, env: Envelope) -> Reply:
        self.begin_shutdown()
        return _ok("shutting down")

    def _ctl_logs(self, ident: bytes, env: Envelope) -> Reply:
        child = self._named(env.data["worker"])
        lines = max(1, min(int(env.data.get("lines", 50)), 10_000))
        return "logs_reply", {"worker": child.name, "path": str(child.log_path),
                              "lines": _tail(child.log_path, lines)}

    def _ctl_restart(self, ident: bytes, env: Envelope) -> Reply:
        child = self._controllable(env)
        if child.alive:
            self._stop(child, StopIntent.RESTART, reason="restart requested")
        else:
            child.crash_times.clear()  # revives a FATAL worker with a fresh budget
            self._start(child)
        return _ok(f"restarting {child.name}")

    def _ctl_stop(self, ident: bytes, env: Envelope) -> Reply:
        child = self._controllable(env)
        if child.alive:
            self._stop(child, StopIntent.STOP, reason="stop requested")
        elif child.state is State.BACKOFF:
            self._move(child, State.EXITED, "stop requested during backoff")
            self._gone_for_good(child, "stop requested during backoff")
        return _ok(f"stopping {child.name}")

    def _ctl_kill(self, ident: bytes, env: Envelope) -> Reply:
        child = self._controllable(env)
        if child.proc is None:
            raise Refusal(ErrorCode.WORKER_UNAVAILABLE, _down_message(child))
        child.proc.kill()
        return _ok(f"killed {child.name} (pid {child.pid}); it counts as a crash")

    def _switchable(self, role: str) -> Child:
        """The worker a switch restarts: it exists, runs or will, and the stack stays up."""
        child = self._provider(role)
        if child is None:
            raise Refusal(ErrorCode.UNKNOWN_WORKER, f"no enabled worker provides '{role}'")
        if not child.alive and child.state is not State.BACKOFF:
            raise Refusal(ErrorCode.WORKER_UNAVAILABLE, _down_message(child))
        if self.shutting_down:
            raise Refusal(ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
        return child

    def _begin_switch(self, child: Child, profile: str, reason: str, drain_s: float,
                      why: str) -> None:
        """One switch at a time: announced, then the worker drains and restarts with its new
        options (held requests go to the new process)."""
        self._switch = {"worker": child.name, "profile": profile, "reason": reason}
        self.out.publish("profile_status", {"state": "switching", "profile": profile,
                                            "reason": reason})
        if child.alive:
            self._stop(child, StopIntent.RESTART, drain_s=drain_s, reason=why)

    def _ctl_switch_profile(self, ident: bytes, env: Envelope) -> Reply:
        child = self._switchable(PROFILES)
        profile = env.data["profile"]
        try:
            check_profile(profile, self.cfg)
        except ConfigError as exc:
            raise Refusal(ErrorCode.INVALID_REQUEST, str(exc)) from None
        child.options["profile"] = profile  # what every later start of it runs with
        running_as = child.ready_info.get("profile")
        if (child.state is State.RUNNING and self._switch is None
                and profile in child.ready_info.get("equivalent_profiles", ())):
            detail = (f"profile '{profile}' is already in effect (running as '{running_as}'): "
                      f"nothing to reload")
            self.out.publish("profile_status", {"state": "ready", "profile": str(running_as),
                                                "requested": profile, "reason": detail})
            return _ok(detail)
        emergency = bool(env.data.get("emergency"))
        self._begin_switch(
            child, profile, env.data.get("reason") or "requested",
            drain_s=0.0 if emergency else self.sup_cfg["drain_timeout_s"],
            why=f"{'emergency ' if emergency else ''}switch to profile '{profile}'")
        return _ok(f"switching {child.name} to profile '{profile}'"
                   + (" (emergency: the reply in flight is re-run)" if emergency else ""))

    def _ctl_switch_model(self, ident: bytes, env: Envelope) -> Reply:
        """Another GGUF for this session: checked before anything stops, then the profile
        switch's path (drain, restart of the chat worker only, requests held meanwhile)."""
        child = self._switchable(CHAT)
        path = Path(env.data["path"]).expanduser()
        from workers.gpu.gguf_info import gguf_problem  # pure Python: reads the header only

        problem = gguf_problem(path)
        if problem:
            raise Refusal(ErrorCode.INVALID_REQUEST, f"cannot load the model: {problem}; "
                          f"nothing was stopped (pick a .gguf model file, see models/README.md)")
        child.options["model"] = str(path.resolve())
        profile = str(child.options.get("profile") or self.cfg["ai"]["gpu_profile"])
        self._begin_switch(child, profile, env.data.get("reason") or f"load model {path.name}",
                           drain_s=self.sup_cfg["drain_timeout_s"],
                           why=f"switch to model {path.name}")
        return _ok(f"loading {path.name} in {child.name} (profile '{profile}')")

    def _named(self, name: str) -> Child:
        child = self.children.get(name)
        if child is None:
            raise Refusal(ErrorCode.UNKNOWN_WORKER,
                          f"no worker named '{name}'; workers: {', '.join(self.children)}")
        return child

    def _controllable(self, env: Envelope) -> Child:
        child = self._named(env.data["worker"])
        if self.shutting_down:
            raise Refusal(ErrorCode.SHUTTING_DOWN, "the stack is shutting down")
        return child

    def _provider(self, role: str) -> Child | None:
        name = self.role_owner.get(role)
        return self.children[name] if name else None


def _ok(detail: str) -> Reply:
    return "ok", {"detail": detail}


def describe_exit(code: int) -> str:
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

