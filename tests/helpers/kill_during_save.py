"""A child process that saves avatar states and SIGKILLs itself at one chosen file operation.

    python -m tests.helpers.kill_during_save STATE_FILE STEPS_JSON MODE N [COMPACT_BYTES]

STEPS_JSON is a list of steps, each a list of [command, data] pairs; the child applies each
step and saves, writing the step's number to stdout before its save. MODE picks the kill:

- after: right after the N-th file operation of the saves (open, write, truncate, rename...);
- torn: at the N-th write, as the kernel leaves a write that a SIGKILL interrupts: only the
  bytes before the first page boundary it crosses are written (a write within one page is
  never cut, so the kill then comes before it).

The kill is real (SIGKILL to itself): no Python cleanup runs, and the file is what the kernel
holds at that instant. Exits 0 when the saves end before the N-th operation.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unity_bridge import avatar as avatar_module

PAGE = 4096
OPERATIONS = ("open", "write", "pwrite", "ftruncate", "replace", "rename", "close", "unlink",
              "fsync")
WRITES = ("write", "pwrite")
_real_write = os.write


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def file_offset(name: str, args: tuple[Any, ...]) -> int:
    """Where a write lands: pwrite says so; write is at the end (O_APPEND) or the position."""
    fd = args[0]
    if name == "pwrite":
        return int(args[2])
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
        return os.fstat(fd).st_size
    return os.lseek(fd, 0, os.SEEK_CUR)


def torn(name: str, real: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Write what a SIGKILL lets through of this write, then die."""
    data = bytes(args[1])
    cut = PAGE - file_offset(name, args) % PAGE
    if cut < len(data):
        real(args[0], data[:cut], *args[2:])
    die()


def arm(mode: str, target: int) -> None:
    counter = {"ops": 0, "writes": 0}

    def hook(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            if name in WRITES:
                if mode == "torn" and counter["writes"] == target:
                    torn(name, real, args)
                counter["writes"] += 1
            result = real(*args, **kw)
            if mode == "after" and counter["ops"] == target:
                die()
            counter["ops"] += 1
            return result
        return call

    for name in OPERATIONS:
        if hasattr(os, name):
            setattr(os, name, hook(name, getattr(os, name)))


def main(argv: list[str]) -> None:
    path, steps, mode, target = Path(argv[0]), json.loads(argv[1]), argv[2], int(argv[3])
    if len(argv) > 4:
        avatar_module.COMPACT_BYTES = int(argv[4])
    avatar = avatar_module.Avatar(state_file=path)  # loads before any kill is armed
    arm(mode, target)
    for number, step in enumerate(steps):
        _real_write(1, f"{number}\n".encode())
        for type_, data in step:
            avatar.command(type_, data)
        avatar.save()


if __name__ == "__main__":
    main(sys.argv[1:])
