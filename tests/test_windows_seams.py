"""The Windows-only branches, each behind a small seam, asked for their Windows answer on any OS:
how a worker is spawned (interpreter, console flags), the signals a worker leaves to the
supervisor, what the supervisor does on a console close, and log rotation when Windows refuses
to rename a file that another process holds open."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from supervisor.console import (
    CTRL_BREAK_EVENT,
    CTRL_C_EVENT,
    CTRL_CLOSE_EVENT,
    CTRL_LOGOFF_EVENT,
    CTRL_SHUTDOWN_EVENT,
    ConsoleGuard,
)
from supervisor.logfiles import RotatingLog
from supervisor.spawning import (
    CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW,
    PYTHON_ENV,
    spawn_plan,
)
from workers.runtime import signals_to_ignore

VENV_PY = r"C:\Users\Zoë\companion\.venv\Scripts\python.exe"
BASE_PY = r"C:\Program Files\Python312\python.exe"


def test_windows_workers_run_the_base_interpreter_without_a_console() -> None:
    """In a venv, the base interpreter with __PYVENV_LAUNCHER__ (as multiprocessing does), so the
    pid Popen returns is the worker's; no console window, not on the user's console."""
    plan = spawn_plan("win32", VENV_PY, BASE_PY, {})
    assert plan.python == (BASE_PY,)
    assert plan.env == {"__PYVENV_LAUNCHER__": VENV_PY}
    assert plan.creationflags == CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW == 0x08000200
    assert not plan.new_session
    # Outside a venv there is no launcher to skip.
    plain = spawn_plan("win32", BASE_PY, BASE_PY, {})
    assert plain.python == (BASE_PY,) and plain.env == {}
    assert plain.creationflags == plan.creationflags


def test_posix_workers_get_a_session_of_their_own_and_no_windows_flags() -> None:
    plan = spawn_plan("linux", "/venv/bin/python", "/usr/bin/python3.12", {})
    assert plan.python == ("/venv/bin/python",)  # a symlink there, not a launcher
    assert plan.env == {} and plan.creationflags == 0 and plan.new_session


def test_an_interpreter_command_can_be_named() -> None:
    posix = spawn_plan("linux", "/p", None, {PYTHON_ENV: "/opt/py 'my launcher.py'"})
    assert posix.python == ("/opt/py", "my launcher.py") and posix.new_session
    win = spawn_plan("win32", VENV_PY, BASE_PY,
                     {PYTHON_ENV: r'"C:\Program Files\py.exe" C:\l.py'})
    assert win.python == ("C:\\Program Files\\py.exe", "C:\\l.py")
    assert win.env == {} and win.creationflags == CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW


def test_workers_leave_ctrl_c_and_ctrl_break_to_the_supervisor() -> None:
    assert signals_to_ignore("win32") == ("SIGINT", "SIGBREAK")
    assert signals_to_ignore("linux") == ("SIGINT",)


def test_a_console_close_stops_the_stack_before_windows_ends_the_process() -> None:
    asked: list[float] = []
    stopped = threading.Event()

    def request_stop() -> None:  # the supervisor stops in its loop, on another thread
        asked.append(time.monotonic())
        threading.Timer(0.2, stopped.set).start()

    guard = ConsoleGuard(request_stop, stopped, grace_s=5.0)
    # Ctrl-C and Ctrl-Break go on to Python's SIGINT/SIGBREAK handlers.
    assert guard.handle(CTRL_C_EVENT) is False and guard.handle(CTRL_BREAK_EVENT) is False
    assert asked == []
    t0 = time.monotonic()
    assert guard.handle(CTRL_CLOSE_EVENT) is True
    waited = time.monotonic() - t0
    assert len(asked) == 1 and stopped.is_set() and 0.15 < waited < 4.0
    # A stack that does not stop in time: the handler gives up inside Windows' 5 s.
    late = ConsoleGuard(lambda: None, threading.Event(), grace_s=0.3)
    for event in (CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT):
        t0 = time.monotonic()
        assert late.handle(event) is True and time.monotonic() - t0 < 2.0
    if os.name != "nt":
        assert guard.install() is False  # SetConsoleCtrlHandler is Windows' alone


def windows_refuses(held: set[str]):
    """os.replace as Windows runs it while another process has the file open without
    FILE_SHARE_DELETE (Get-Content -Wait, an editor): WinError 32."""
    def rename(src: str, dst: str) -> None:
        if src in held or dst in held:
            raise PermissionError(13, "The process cannot access the file because it is "
                                      "being used by another process", src)
        os.replace(src, dst)
    return rename


def log_lines(handler: logging.Handler, n: int, prefix: str = "line") -> None:
    log = logging.getLogger(f"test-rotation-{id(handler)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(n):
        log.info("%s %03d ü", prefix, i)
    log.removeHandler(handler)


def all_lines(path: Path) -> list[str]:
    files = [path.with_name(f"{path.name}.{i}") for i in (2, 1)] + [path]
    return [ln for f in files if f.exists() for ln in f.read_text("utf-8").splitlines()]


def test_log_rotation_falls_back_to_copy_and_truncate_when_the_file_is_held(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inference.log"
    handler = RotatingLog(path, 200, 2, rename=windows_refuses({str(path)}))
    log_lines(handler, 60)
    handler.close()
    assert handler.fallbacks >= 2 and handler.failures == 0
    kept = all_lines(path)
    # Nothing lost between the backups and the file, which did not grow without bound.
    assert kept[-1] == "line 059 ü" and path.stat().st_size <= 200
    assert kept == [f"line {i:03d} ü" for i in range(60 - len(kept), 60)] and len(kept) > 30
    assert "Traceback" not in capsys.readouterr().err


def test_log_rotation_that_cannot_happen_at_all_keeps_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "supervisor.log"
    backup = tmp_path / "supervisor.log.1"
    backup.mkdir()  # held, and a folder: neither a rename nor a copy can go there
    handler = RotatingLog(path, 200, 2, rename=windows_refuses({str(path), str(backup)}))
    log_lines(handler, 40)
    handler.close()
    assert handler.failures == 1  # once, then it waits before the next try
    assert path.read_text("utf-8").splitlines() == [f"line {i:03d} ü" for i in range(40)]
    err = capsys.readouterr().err
    assert err.count("log: cannot rotate") == 1 and "Traceback" not in err


def test_log_rotation_renames_as_usual_when_it_can(tmp_path: Path) -> None:
    path = tmp_path / "gpu_monitor.log"
    handler = RotatingLog(path, 200, 2)
    log_lines(handler, 60)
    handler.close()
    assert handler.fallbacks == handler.failures == 0
    assert path.with_name("gpu_monitor.log.2").exists()
    kept = all_lines(path)
    assert kept == [f"line {i:03d} ü" for i in range(60 - len(kept), 60)] and len(kept) > 30


def test_the_bridge_port_is_bound_with_the_option_given_before_bind() -> None:
    """On Windows the option is SO_EXCLUSIVEADDRUSE (no other process can bind over our port);
    here SO_KEEPALIVE stands in, to show it is set on the socket that listens."""
    import socket

    from unity_bridge.server import exclusive_listener

    sock = exclusive_listener("127.0.0.1", 0, option=socket.SO_KEEPALIVE)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        with socket.create_connection(sock.getsockname(), timeout=5):
            conn, _ = sock.accept()
            conn.close()
    finally:
        sock.close()
    assert hasattr(socket, "SO_EXCLUSIVEADDRUSE") == (os.name == "nt")
