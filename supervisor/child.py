"""One supervised worker process: its state machine, its OS process, its log and its stats.

Each child gets two helper threads: one blocks in ``Popen.wait`` and reports the exit to the
supervisor loop the moment it happens (no polling), the other copies the child's output into its
rotating log file. The child's stdin carries its boot info and then stays open: when the
supervisor dies, even by kill -9, the pipe closes and the worker exits (see workers/runtime.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from protocol.codec import Envelope
from supervisor.config import REPO_ROOT


class State(str, Enum):
    STARTING = "STARTING"  # process started, not yet ready
    RUNNING = "RUNNING"  # said ready; requests are delivered
    STOPPING = "STOPPING"  # asked to stop; terminate and kill follow on timeouts
    EXITED = "EXITED"  # stopped on request; stays down until restart
    BACKOFF = "BACKOFF"  # crashed; waiting before the next start
    FATAL = "FATAL"  # crashed too often; stays down until restart


class StopIntent(str, Enum):
    STOP = "stop"  # -> EXITED
    RESTART = "restart"  # -> start again at once, no crash counted
    SHUTDOWN = "shutdown"  # whole stack going down


@dataclass
class Held:
    """A request waiting for its worker (queued) or being run by it (in flight)."""

    client: bytes | None  # routing id of the asker; None for the supervisor's own requests
    client_id: int
    env: Envelope
    since: float
    attempts: int = 0


@dataclass
class Child:
    name: str
    module: str
    args: list[str]
    log_path: Path
    log_max_bytes: int
    log_backups: int
    roles: list[str] = field(default_factory=list)  # what it provides (see protocol ROLES)
    options: dict[str, Any] = field(default_factory=dict)  # per-start boot options (profile)
    state: State = State.EXITED
    proc: subprocess.Popen | None = None
    generation: int = 0
    ident: bytes = b""
    started_at: float = 0.0
    ready_at: float = 0.0
    last_heartbeat: float = 0.0
    heartbeats: int = 0  # received from this process
    heartbeat_gap_max: float = 0.0  # largest gap between two of them, seconds
    heartbeat_gap_recent: float = 0.0  # largest in the last stats interval (see sample)
    _gap_window: float = 0.0
    ready_info: dict[str, Any] = field(default_factory=dict)
    last_output: str = ""  # last line the process printed: why a config error stopped it
    crash_times: deque = field(default_factory=deque)
    restarts: int = 0
    last_exit: str = ""
    stop_intent: StopIntent | None = None
    stop_reason: str = ""  # told to clients whose requests are re-run after this stop
    stop_phase: int = 0
    queue: deque = field(default_factory=deque)
    in_flight: dict[int, Held] = field(default_factory=dict)
    _ps: psutil.Process | None = None
    _cpu: float | None = None
    _rss: int | None = None
    _log: logging.Logger | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None

    # -- process -------------------------------------------------------------------------
    def spawn(self, boot: dict[str, Any], on_exit: Callable[[str, int, int], None]) -> None:
        """Start the worker process (spawn semantics: a fresh interpreter, also on Windows)."""
        self.generation += 1
        self.ident = f"w:{self.name}:{self.generation}".encode()
        boot = {**boot, "name": self.name, "ident": self.ident.decode(), "options": self.options}
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        # Own process group/session: a Ctrl-C or a signal to the launcher's group reaches the
        # supervisor only, which then stops the workers in order.
        windows = sys.platform == "win32"
        proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args], cwd=REPO_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            creationflags=subprocess.CREATE_NEW_PROCESS_GROUP if windows else 0,
            start_new_session=not windows)
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(boot) + "\n").encode())
        proc.stdin.flush()
        self.proc = proc
        self.started_at = time.monotonic()
        self.last_heartbeat = 0.0
        self.heartbeats = 0
        self.heartbeat_gap_max = self.heartbeat_gap_recent = self._gap_window = 0.0
        self.ready_at = 0.0
        self.ready_info = {}
        self.stop_phase = 0
        try:
            self._ps = psutil.Process(proc.pid)
            self._ps.cpu_percent(None)  # primes it: the next sample measures from here
            self._cpu, self._rss = None, self._ps.memory_info().rss
        except psutil.Error:
            self._ps = None
        self.last_output = ""
        pump = threading.Thread(target=self._pump_log, args=(proc,), daemon=True,
                                name=f"log-{self.name}")
        pump.start()
        threading.Thread(target=self._wait, args=(proc, self.generation, pump, on_exit),
                         daemon=True, name=f"wait-{self.name}").start()

    def _wait(self, proc: subprocess.Popen, gen: int, pump: threading.Thread,
              on_exit: Callable[[str, int, int], None]) -> None:
        code = proc.wait()
        pump.join(timeout=0.2)  # its last words (why it exited) arrive with EOF, at once
        on_exit(self.name, gen, code)

    def _pump_log(self, proc: subprocess.Popen) -> None:
        log = self.logger()
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            log.info(line)
            if line.strip():
                self.last_output = line

    def logger(self) -> logging.Logger:
        """A logger writing raw lines into this worker's own rotating file."""
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = logging.getLogger(f"worker-output.{self.name}.{id(self)}")
            log.propagate = False
            log.setLevel(logging.INFO)
            handler = logging.handlers.RotatingFileHandler(
                self.log_path, maxBytes=self.log_max_bytes, backupCount=self.log_backups,
                encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)
            self._log = log
        return self._log

    def close_log(self) -> None:
        if self._log:
            for h in list(self._log.handlers):
                h.close()
                self._log.removeHandler(h)

    def terminate(self) -> None:
        if self.proc:
            with contextlib.suppress(OSError):
                self.proc.terminate()

    def kill(self) -> None:
        if self.proc:
            with contextlib.suppress(OSError):
                self.proc.kill()

    def reap(self) -> None:
        """The process is gone: drop the handles (stdin close ends the pipe on our side)."""
        if self.proc and self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.proc = None
        self._ps = None

    # -- restart budget ------------------------------------------------------------------
    def record_crash(self, now: float, window_s: float) -> int:
        """Count a crash; returns crashes within the window (OTP's restart intensity)."""
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > window_s:
            self.crash_times.popleft()
        return len(self.crash_times)

    def on_heartbeat(self, now: float) -> None:
        if self.last_heartbeat:
            gap = now - self.last_heartbeat
            self.heartbeat_gap_max = max(self.heartbeat_gap_max, gap)
            self._gap_window = max(self._gap_window, gap)
        self.last_heartbeat = now
        self.heartbeats += 1

    # -- stats ---------------------------------------------------------------------------
    def sample(self) -> None:
        """Read cpu % and rss; only the stats timer calls this, because cpu_percent measures
        since its previous call and must see even intervals. Also closes the heartbeat-gap
        window, so worker_stats tells when a gap happened, not only that one did."""
        self.heartbeat_gap_recent, self._gap_window = self._gap_window, 0.0
        self._cpu = self._rss = None
        if self._ps is not None:
            try:
                with self._ps.oneshot():
                    self._cpu = self._ps.cpu_percent(None)
                    self._rss = self._ps.memory_info().rss
            except psutil.Error:
                pass

    def stats(self) -> dict[str, Any]:
        """State now, with cpu and rss from the last sample (cheap: status asks often)."""
        now = time.monotonic()
        alive = self.alive
        return {
            "pid": self.pid, "state": self.state.value, "roles": self.roles,
            "cpu_percent": self._cpu if alive else None, "rss": self._rss if alive else None,
            "uptime_s": round(now - self.started_at, 3) if self.alive else 0.0,
            "restarts": self.restarts, "last_exit": self.last_exit,
            "queued": len(self.queue), "in_flight": len(self.in_flight),
            "ready_info": self.ready_info,
            "heartbeats": self.heartbeats,
            "heartbeat_gap_max_s": round(self.heartbeat_gap_max, 4),
            "heartbeat_gap_recent_s": round(self.heartbeat_gap_recent, 4),
        }
