"""Run files and socket folders left by a dead supervisor: told apart from a live one's, even
when the OS has given the dead supervisor's pid to another process. Whether a stack runs is
the stack's OS lock (protocol/runfiles.py): a pid, even with its start time, is only a hint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from protocol.bus import (
    IPC_MARKER,
    BusInfo,
    clean_stale_ipc_dirs,
    new_bus_info,
    run_file,
    write_ipc_marker,
)
from protocol.runfiles import LOCK_FILE, StackLock, run_files_dir, stack_running
from supervisor.harness import ROOT, wait_for

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="abstract ipc sockets are Linux only")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="no socket folders on Windows")


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


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
    assert (f"stale run file: the stack that wrote {run_file} (supervisor pid {me.pid}) is no "
            f"longer running; "
            f"start one with: python launch.py") in result.stderr, result.stderr
    # The control: the same pid with its own start time, holding the stack lock, is the live
    # writer; without the lock it is not.
    BusInfo("ipc://@x-router", "ipc://@x-xsub", "ipc://@x-xpub", "secret", me.pid,
            supervisor_started=me.create_time()).save(run_dir)
    assert BusInfo.load(run_dir) is None
    with StackLock.acquire(run_dir):
        assert BusInfo.load(run_dir) is not None
    assert BusInfo.load(run_dir) is None


def test_a_run_file_naming_a_live_unrelated_process_does_not_block_a_start(make_stack) -> None:
    """After a logoff or a power cut the run file stays, and Windows soon gives its pid to
    another process. Even with that process's own start time in it (the pid check's best
    case), the file is stale: no process holds the stack's lock."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ps = psutil.Process(other.pid)
        stack = make_stack(workers={"inference": {"enabled": False},
                                    "gpu_monitor": {"enabled": False}})
        run_dir = stack.data_dir / "run"
        BusInfo("ipc://@x-router", "ipc://@x-xsub", "ipc://@x-xpub", "secret", other.pid,
                supervisor_started=ps.create_time()).save(run_dir)
        assert BusInfo.read(run_dir) is not None and BusInfo.load(run_dir) is None
        status = stack.cli("status")  # says stale at once, instead of waiting for an answer
        assert status.returncode == 1 and "stale run file" in status.stderr, status.stderr
        stack.start()
        assert BusInfo.load(run_dir).supervisor_pid == stack.proc.pid
        assert stack.status()["workers"]["unity_bridge"]["state"] == "RUNNING"
        assert other.poll() is None  # and the unrelated process was left alone
        stack.stop()
        assert (f"removed the stale run file {run_file(run_dir)} (supervisor pid {other.pid} "
                f"is no longer running)") in stack.output()
    finally:
        other.kill()
        other.wait(10)


def test_a_second_launch_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (tmp_path / "config.json").write_text('{"version": 1}')
    with StackLock.acquire(run_dir) as lock:
        assert lock is not None and StackLock.acquire(run_dir, wait_s=0.05) is None
        assert stack_running(run_dir)
        refused = subprocess.run([sys.executable, "launch.py", "--headless", "--config",
                                  str(tmp_path / "config.json")], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1, refused.stderr
        assert f"a companion stack is already running for {tmp_path}" in refused.stderr
    assert not stack_running(run_dir)


@posix_only
def test_the_os_lets_go_of_the_lock_of_a_process_killed_with_9(tmp_path: Path) -> None:
    """The lock ends with its process, however it ends: no cleanup is needed after a crash."""
    run_dir = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; from protocol.runfiles import "
            f"StackLock; lock = StackLock.acquire(Path({str(run_dir)!r})); print('held', "
            "flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert stack_running(run_dir) and StackLock.acquire(run_dir, wait_s=0.05) is None
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        wait_for(lambda: not stack_running(run_dir), 5, "the lock to be free")
        assert StackLock.acquire(run_dir) is not None
    finally:
        holder.kill()
        holder.wait(10)


def test_run_files_live_in_local_app_data_on_windows(tmp_path: Path) -> None:
    """The Windows answer, asked on any OS: the run file carries the bus secret, and 0600
    means nothing on Windows, so it goes to the user's own local app-data folder."""
    env = {"LOCALAPPDATA": str(tmp_path / "Local")}
    a = run_files_dir(Path("C:/Users/Zoë/companion/data/run"), "win32", env)
    assert a.parent == tmp_path / "Local" / "ai-companion" / "run"
    assert run_files_dir(Path("c:/users/ZOË/Companion/DATA/run"), "win32", env) == a
    assert run_files_dir(Path("C:/Users/Zoë/other/data/run"), "win32", env) != a
    home = run_files_dir(Path("C:/x/run"), "win32", {})
    assert home.parent == Path.home() / "AppData" / "Local" / "ai-companion" / "run"
    # Elsewhere they stay in the data dir's run/ folder, mode 0600.
    assert run_files_dir(tmp_path / "run", "linux", env) == tmp_path / "run"
    assert run_files_dir(tmp_path / "run", "darwin", env) == tmp_path / "run"
    assert LOCK_FILE == "stack.lock"


def make_ipc_dir(tmp: Path, name: str, pid: int | None, started: float | None) -> Path:
    folder = tmp / name
    folder.mkdir(mode=0o700)
    (folder / "router").touch()
    if pid is not None:
        write_ipc_marker(folder, pid, started)
    return folder


@posix_only
def test_next_launch_cleans_only_socket_folders_it_proves_stale(tmp_path: Path) -> None:
    me = psutil.Process()
    dead = make_ipc_dir(tmp_path, "aic-dead", dead_pid(), me.create_time())
    reused = make_ipc_dir(tmp_path, "aic-reused", me.pid, me.create_time() - 1000)
    live = make_ipc_dir(tmp_path, "aic-live", me.pid, me.create_time())
    unmarked = make_ipc_dir(tmp_path, "aic-unmarked", None, None)  # being made, or older
    other = make_ipc_dir(tmp_path, "other-dead", dead_pid(), me.create_time())
    (tmp_path / "aic-file").write_text("not a folder")
    removed = clean_stale_ipc_dirs(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert all(p.exists() for p in (live, unmarked, other, tmp_path / "aic-file"))


@linux_only
def test_linux_endpoints_are_abstract_and_unguessable() -> None:
    a, b = new_bus_info(), new_bus_info()
    assert a.ipc_dir is None
    for endpoint in (a.router, a.xsub, a.xpub):
        assert endpoint.startswith("ipc://@aic-")
    assert a.router != b.router and len(a.router) >= len("ipc://@aic-") + 32
    assert a.supervisor_started == psutil.Process().create_time()


@posix_only
def test_a_socket_folder_names_its_live_owner(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """Where endpoints are files (macOS; forced here), the folder carries its owner's marker,
    and a cleanup leaves a live supervisor's folder alone."""
    import protocol.bus as bus

    monkeypatch.setattr(bus, "_abstract_ipc", lambda: False)
    monkeypatch.setattr(bus.tempfile, "tempdir", str(tmp_path))
    info = new_bus_info()
    assert info.ipc_dir is not None and Path(info.ipc_dir).parent == tmp_path
    assert (Path(info.ipc_dir) / IPC_MARKER).is_file()
    assert clean_stale_ipc_dirs(tmp_path) == []
    assert Path(info.ipc_dir).is_dir()
