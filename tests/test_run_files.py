"""Run files and socket folders left by a dead supervisor: told apart from a live one's, even
when the OS has given the dead supervisor's pid to another process."""

from __future__ import annotations

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
    write_ipc_marker,
)
from supervisor.harness import ROOT

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
    # The control: the same pid with its own start time is the live writer.
    BusInfo("ipc://@x-router", "ipc://@x-xsub", "ipc://@x-xpub", "secret", me.pid,
            supervisor_started=me.create_time()).save(run_dir)
    assert BusInfo.load(run_dir) is not None


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
