"""Run files left by a dead supervisor: told apart from a live one's, even when the OS has
given the dead supervisor's pid to another process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from protocol.bus import BusInfo
from supervisor.harness import ROOT


def cli_status(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor", "--config",
                           str(data_dir / "config.json"), "status"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_live_process_with_another_start_time_is_not_our_supervisor(tmp_path: Path) -> None:
    """The pid of a dead supervisor, now another process's: the run file is stale all the same."""
    me = psutil.Process()
    run_dir = tmp_path / "run"
    run_file = BusInfo("ipc://@x-router", "ipc://@x-xsub", "ipc://@x-xpub", "secret", me.pid,
                       supervisor_started=me.create_time() - 1000).save(run_dir)
    assert BusInfo.load(run_dir) is None
    result = cli_status(tmp_path)
    assert result.returncode == 1
    assert (f"the stack that wrote {run_file} (supervisor pid {me.pid}) is no longer running; "
            f"start one with: python launch.py") in result.stderr, result.stderr
    # The control: the same pid with its own start time is the live writer.
    BusInfo("ipc://@x-router", "ipc://@x-xsub", "ipc://@x-xpub", "secret", me.pid,
            supervisor_started=me.create_time()).save(run_dir)
    assert BusInfo.load(run_dir) is not None
