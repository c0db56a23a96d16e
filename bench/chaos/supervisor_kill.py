"""kill -9 of the supervisor: every worker must go, its socket folder must not stay behind,
and the CLI must call the run file it left stale.

Our own leftover folder is removed after it is counted (the figure is what the supervisor
left, not what this bench leaves on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from protocol.bus import BusInfo, run_file
from supervisor.harness import Stack


def run(stack: Stack, wait_s: float = 5.0) -> dict[str, Any]:
    assert stack.proc is not None
    info = BusInfo.load(stack.data_dir / "run")
    assert info is not None, "the stack is not running"
    sup = psutil.Process(stack.proc.pid)
    procs = sup.children(recursive=True)
    t0 = time.monotonic()
    os.kill(stack.proc.pid, signal.SIGKILL)
    stack.proc.wait(10)
    left = procs
    while left and time.monotonic() - t0 < wait_s:
        time.sleep(0.005)
        left = [p for p in left if _alive(p)]
    gone_ms = (time.monotonic() - t0) * 1000
    for p in left:  # report them, then do not leave them running
        with contextlib.suppress(psutil.Error):
            p.kill()
    time.sleep(0.2)
    folder = Path(info.ipc_dir) if info.ipc_dir else None
    folder_left = folder is not None and folder.exists()
    if folder_left and folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    cli = stack.cli("status", timeout=30)
    said = (cli.stdout + cli.stderr).strip()
    return {"workers": len(procs), "left": [f"{p.pid} {_name(p)}" for p in left],
            "all_gone_ms": None if left else gone_ms,
            "socket_folder": str(folder) if folder else None, "socket_folder_left": folder_left,
            "run_file_left": run_file(stack.data_dir / "run").exists(),
            "cli_rc": cli.returncode, "cli_said": said[-400:],
            "cli_says_stale": cli.returncode != 0 and "stale" in said.lower()}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()[-2:])
    except psutil.Error:
        return "?"
