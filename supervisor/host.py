"""The OS side of supervision behind one seam: spawn, signal, wait, clock and timers.

The state machine (supervisor/lifecycle.py) sees only `Host` and `Process`, as supervisord's
logic sees its `Options`: the real ones below start processes, and the stateful test drives the
same logic with fake ones to explore every order of events without a single sleep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

from supervisor.config import REPO_ROOT
from supervisor.logfiles import RotatingLog
from supervisor.spawning import SpawnPlan, spawn_plan

ExitCallback = Callable[[str, int, int], None]  # (worker, generation, exit code)


class Process(Protocol):
    pid: int

    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def release(self) -> None:
        """Its exit was reported: let go of its handles."""

    def last_output(self) -> str:
        """The last line it printed: why it stopped, when it could say so."""

    def sample(self) -> tuple[float | None, int | None]:
        """cpu % since the previous sample, and rss bytes; None where unknown."""

    def adopt(self, pid: int) -> None:
        """The worker says it runs as `pid`: from now on `pid`, sampling and kills are its."""


class Host(Protocol):
    def now(self) -> float: ...
    def call_later(self, delay: float, fn: Callable[[], None]) -> None: ...
    def spawn(self, name: str, module: str, args: tuple[str, ...], boot: dict[str, Any],
              generation: int) -> Process:
        """Start a worker; its exit is reported later with the same generation. OSError when
        the OS cannot start it."""


class OsProcess:
    """A worker process with two helper threads: one blocks in wait() and reports the exit the
    moment it happens (no polling), the other copies the output into the rotating log.

    The process Popen started may be a launcher that runs the worker as its child (a Windows
    venv's python.exe, a shim): `pid` starts as Popen's and becomes the pid the worker reports
    about itself (`adopt`), which status shows and psutil samples. Its exit is still the
    launcher's, which passes the worker's exit code on.
    """

    def __init__(self, proc: subprocess.Popen, log: logging.Logger,
                 on_exit: Callable[[int], None]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._last_output = ""
        self._ps = self._watch(proc.pid)
        pump = threading.Thread(target=self._pump, args=(log,), daemon=True,
                                name=f"log-{proc.pid}")
        pump.start()
        threading.Thread(target=self._wait, args=(pump, on_exit), daemon=True,
                         name=f"wait-{proc.pid}").start()

    @staticmethod
    def _watch(pid: int) -> psutil.Process | None:
        try:
            ps = psutil.Process(pid)
            ps.cpu_percent(None)  # primes it: the next sample measures from here
            return ps
        except psutil.Error:
            return None

    def adopt(self, pid: int) -> None:
        """Follow the worker's own pid, if it is the started process or one of its children
        (anything else is not this worker: ignored)."""
        if pid == self.pid or self._ps is None:
            return
        try:
            ps = psutil.Process(pid)
            if self.proc.pid not in {p.pid for p in ps.parents()}:
                return
        except psutil.Error:
            return
        self.pid, self._ps = pid, self._watch(pid)

    def _wait(self, pump: threading.Thread, on_exit: Callable[[int], None]) -> None:
        code = self.proc.wait()
        pump.join(timeout=0.2)  # its last words (why it exited) arrive with EOF, at once
        on_exit(code)

    def _pump(self, log: logging.Logger) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            log.info(line)
            if line.strip():
                self._last_output = line

    def last_output(self) -> str:
        return self._last_output

    def terminate(self) -> None:
        self._to_worker(psutil.Process.terminate)
        with contextlib.suppress(OSError):
            self.proc.terminate()

    def kill(self) -> None:
        self._to_worker(psutil.Process.kill)
        with contextlib.suppress(OSError):
            self.proc.kill()

    def _to_worker(self, action: Callable[[psutil.Process], None]) -> None:
        """Behind a launcher: the worker first (the launcher then exits with its code)."""
        if self.pid != self.proc.pid and self._ps is not None:
            with contextlib.suppress(psutil.Error):
                action(self._ps)

    def release(self) -> None:
        """Closing stdin ends the pipe on our side (the worker's parent watch reads it)."""
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self._ps = None

    def sample(self) -> tuple[float | None, int | None]:
        if self._ps is None:
            return None, None
        try:
            with self._ps.oneshot():
                return self._ps.cpu_percent(None), self._ps.memory_info().rss
        except psutil.Error:
            return None, None


class OsHost:
    """Real processes: spawn semantics (a fresh interpreter, as on Windows), one log per
    worker. The clock and timers belong to the supervisor's loop, which passes them in; how a
    process is started on this platform is `plan` (supervisor/spawning.py)."""

    def __init__(self, log_dir: Path, log_max_bytes: int, log_backups: int,
                 now: Callable[[], float], call_later: Callable[[float, Callable[[], None]], None],
                 on_exit: ExitCallback, plan: SpawnPlan | None = None) -> None:
        self.plan = plan or spawn_plan()
        self.log_dir = log_dir
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.now = now
        self.call_later = call_later
        self._on_exit = on_exit
        self._logs: dict[str, logging.Logger] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def spawn(self, name: str, module: str, args: tuple[str, ...], boot: dict[str, Any],
              generation: int) -> OsProcess:
        plan = self.plan
        env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        # Own process group/session, and on Windows no console: a Ctrl-C, Ctrl-Break or console
        # close reaches the supervisor only, which then stops the workers in order.
        proc = subprocess.Popen(
            [*plan.python, "-m", module, *args], cwd=REPO_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            creationflags=plan.creationflags, start_new_session=plan.new_session)
        assert proc.stdin is not None
        # The boot line, then the pipe stays open: when the supervisor dies, even by kill -9,
        # it closes and the worker exits (see workers/runtime.py).
        proc.stdin.write((json.dumps(boot) + "\n").encode())
        proc.stdin.flush()
        return OsProcess(proc, self._logger(name),
                         lambda code: self._on_exit(name, generation, code))

    def _logger(self, name: str) -> logging.Logger:
        """A logger writing raw lines into this worker's own rotating file."""
        if name not in self._logs:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = logging.getLogger(f"worker-output.{name}.{id(self)}")
            log.propagate = False
            log.setLevel(logging.INFO)
            handler = RotatingLog(self.log_path(name), self.log_max_bytes, self.log_backups)
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)
            self._logs[name] = log
        return self._logs[name]

    def close_logs(self) -> None:
        for log in self._logs.values():
            for h in list(log.handlers):
                h.close()
                log.removeHandler(h)
