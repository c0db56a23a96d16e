"""Run a whole stack in a subprocess and talk to it: for tests, benchmarks and tools.

It drives `launch.py` exactly as a user would, with its own data dir and config file. Each
stack's profiles are the repository's plus `cpu_reload` (unless the config names a profiles
file): on a CPU-only build every GPU profile runs as `cpu_fallback`, so a switch between them is
answered "already in effect", and a test or benchmark that needs a real reload switches to
`reloading_profile(...)` instead.

On Windows the stack gets a process group of its own, so `interrupt` (Ctrl-Break) reaches it and
not the test run, exactly as a user's Ctrl-Break reaches a stack started from a console.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from protocol.bus import BusClient, BusInfo
from supervisor.config import DEFAULT_PROFILES, REPO_ROOT, validate
from supervisor.spawning import spawn_plan

ROOT = REPO_ROOT
CONSOLE_LINES = 10_000
WINDOWS = sys.platform == "win32"
RELOAD_PROFILE = "cpu_reload"


def reloading_profile(ready_info: dict[str, Any]) -> str:
    """A profile that the running worker cannot treat as already in effect: switching to it
    reloads the model on any build."""
    same = ready_info.get("equivalent_profiles") or ()
    return next(p for p in (RELOAD_PROFILE, "cpu_fallback") if p not in same)


def _profiles_with_reload(folder: Path) -> Path:
    profiles = json.loads(DEFAULT_PROFILES.read_text(encoding="utf-8"))
    profiles[RELOAD_PROFILE] = {"description": "CPU only, a smaller context: a switch to it "
                                               "reloads on any build",
                                "n_gpu_layers": 0, "n_ctx": 1024, "n_batch": 256}
    path = folder / "profiles.json"
    path.write_text(json.dumps(profiles, indent=2), encoding="utf-8")
    return path


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Stack:
    """A stack started from `root` (a checkout; this one by default), with `env` added to the
    environment of the stack and of `cli` (e.g. AI_COMPANION_WORKER_PYTHON)."""

    def __init__(self, data_dir: Path, config: dict[str, Any], *,
                 env: dict[str, str] | None = None, root: Path = ROOT) -> None:
        self.data_dir = data_dir
        self.root = root
        self.env = {**os.environ, **(env or {})}
        self.config_path = data_dir / "config.json"
        config = copy.deepcopy(config)
        ai = config.setdefault("ai", {})
        if not ai.get("profiles_file"):
            ai["profiles_file"] = str(_profiles_with_reload(data_dir))
        self.config_path.write_text(json.dumps(config))
        self.proc: subprocess.Popen | None = None
        self._client: BusClient | None = None
        self._console: deque[str] = deque(maxlen=CONSOLE_LINES)
        self._drain: threading.Thread | None = None

    def start(self, *args: str, ready: bool = True, console: bool = True) -> Stack:
        """Start it; `console=False` (Windows) starts it as Unity or a shortcut would, with no
        console at all (DETACHED_PROCESS): stop it with `cli("shutdown")` then."""
        flags = 0
        if WINDOWS:
            flags = subprocess.CREATE_NEW_PROCESS_GROUP | (0 if console
                                                           else subprocess.DETACHED_PROCESS)
        # The interpreter itself, not a Windows venv's launcher: proc.pid is the supervisor's.
        plan = spawn_plan(environ={})
        self.proc = subprocess.Popen(
            [*plan.python, str(self.root / "launch.py"), "--headless", "--config",
             str(self.config_path), *args], cwd=self.root, env={**self.env, **plan.env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, creationflags=flags)
        # Read the console all along: a full pipe would block the supervisor in a log write.
        self._drain = threading.Thread(target=self._read_console, args=(self.proc,),
                                       daemon=True, name="stack-console")
        self._drain.start()
        wait_for(lambda: BusInfo.load(self.data_dir / "run") or self.proc.poll() is not None,
                 30, "the supervisor's run file")
        assert self.proc.poll() is None, self.output()
        if ready:
            enabled = [n for n, w in self.config()["workers"].items() if w.get("enabled", True)]
            for name in enabled:
                self.wait_state(name, "RUNNING", 60)
        return self

    def config(self) -> dict[str, Any]:
        return validate(json.loads(self.config_path.read_text()), [])

    @property
    def client(self) -> BusClient:
        if self._client is None:
            info = BusInfo.load(self.data_dir / "run")
            assert info is not None, "stack not running"
            self._client = BusClient(info)
        return self._client

    def new_client(self) -> BusClient:
        info = BusInfo.load(self.data_dir / "run")
        assert info is not None
        return BusClient(info)

    def status(self) -> dict[str, Any]:
        return self.client.request("status", timeout=10).data

    def worker(self, name: str) -> dict[str, Any]:
        return self.status()["workers"][name]

    def wait_state(self, name: str, state: str, timeout: float = 30,
                   pred: Callable[[dict[str, Any]], bool] = lambda w: True) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            w = self.worker(name)
            return w if w["state"] == state and pred(w) else None
        return wait_for(check, timeout, f"{name} to be {state}", every=0.05)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "supervisor", "--config",
                               str(self.config_path), *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout)

    def interrupt(self) -> None:
        """What a user's Ctrl-C does (POSIX: SIGINT; Windows: Ctrl-Break to the stack's own
        process group, since Ctrl-C cannot be sent to one group alone there)."""
        assert self.proc is not None
        self.proc.send_signal(signal.CTRL_BREAK_EVENT if WINDOWS else signal.SIGINT)

    def _read_console(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self._console.append(raw.decode("utf-8", "replace"))

    def output(self) -> str:
        """The supervisor's console (its last CONSOLE_LINES lines) once it has exited."""
        if self.proc is None or self.proc.poll() is None:
            return ""
        if self._drain is not None:
            self._drain.join(timeout=5)
        return "".join(self._console)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc and self.proc.poll() is None:
            if WINDOWS:
                self.interrupt()  # SIGTERM is TerminateProcess there: no clean stop
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc.pid)
                self.proc.wait(5)
        if self._drain is not None:
            self._drain.join(timeout=5)


def kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()



def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
