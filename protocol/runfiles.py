"""Where a stack's run files live, and the lock that says whether the stack runs.

A stack is named by its run folder (`<data dir>/run`). On Linux and macOS the files are there,
with mode 0600. On Windows file modes mean nothing, so they go to the user's own local app-data
folder (`%LOCALAPPDATA%\\ai-companion\\run\\<key>`), which only that user (and administrators)
can read: the run file carries the bus secret.

Whether a stack runs is decided by an OS lock, not by a pid: the launching process takes an
exclusive lock on `stack.lock` for the life of the stack (flock on POSIX, msvcrt.locking on
Windows), and the OS lets go of it when that process ends, however it ends (kill -9, a logoff, a
power cut). A pid is reused by the OS, quickly on Windows, so a live process with the pid a
run file names proves nothing; a lock that can be taken proves that no stack runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "ai-companion"
LOCK_FILE = "stack.lock"


def local_app_data(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's local app-data folder on Windows (%LOCALAPPDATA%, else its usual place)."""
    base = environ.get("LOCALAPPDATA")
    return Path(base) if base else Path.home() / "AppData" / "Local"


def run_files_dir(run_dir: Path, platform: str = sys.platform,
                  environ: Mapping[str, str] = os.environ) -> Path:
    """The folder that holds the run file, the secret and the lock of the stack `run_dir` names.

    `platform` and `environ` are the seam that lets a Linux test see the Windows answer.
    """
    if platform != "win32":
        return run_dir
    # One folder per data dir, so two checkouts (or two test stacks) never share a lock.
    # Windows paths are case-insensitive (C:\\Companion and c:\\companion are one stack), and
    # resolve() spells 8.3 short names (RUNNER~1) out, so every way of naming it agrees.
    name = str(run_dir.resolve()).replace("/", "\\").lower()
    key = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return local_app_data(environ) / APP_NAME / "run" / key


class StackLock:
    """An exclusive OS lock on the stack's lock file, held until `release` or process end."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, run_dir: Path, wait_s: float = 2.0) -> StackLock | None:
        """The lock, or None when another process holds it (a stack runs).

        It tries for `wait_s`: a client that probes the lock holds it for a moment, and Windows
        releases a dead process's locks "depending on available system resources".
        """
        folder = run_files_dir(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            if _try_lock(fd):
                return cls(fd, path)
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.02)

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StackLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def stack_running(run_dir: Path) -> bool:
    """Whether some process holds the stack's lock (no lock file: no stack ever ran here)."""
    try:
        fd = os.open(run_files_dir(run_dir) / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        if not _try_lock(fd):
            return True
        _unlock(fd)
        return False
    finally:
        os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # byte 0; a lock past the end is allowed
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        # flock, not lockf: flock belongs to the open file, so even a second open in the same
        # process conflicts, and the OS drops it when the last descriptor closes.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
