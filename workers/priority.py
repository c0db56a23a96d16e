"""CPU priority for LLM compute, so the bus and the user's foreground apps come first.

While llama.cpp generates, its compute threads (one per core) keep every core busy. Without a
priority difference each bus hop (our bus thread, the supervisor, the bridge) waits for a time
slice behind them, and so does the game the user is playing. Lowering only the compute side lets
the scheduler preempt it at once for short, latency-critical work; when nothing else wants a
core the compute threads still get all of it, so tokens/s is unchanged.

Call `lower_this_thread_for_compute()` on the thread that makes all llama calls, before it first
calls llama (ggml creates its compute threads from that thread on first use), and
`keep_this_thread_responsive()` on latency-critical threads of the same process (the bus thread).

Platforms:

- Linux: nice is per thread (setpriority on a thread id) and a thread created later inherits its
  creator's, so only the calling thread and the compute threads it starts are lowered; the bus
  thread, the supervisor and the bridge keep nice 0.
- Windows: a new thread starts at its process's base priority, not its creator's, so the whole
  process goes to BELOW_NORMAL_PRIORITY_CLASS (base 6) and `keep_this_thread_responsive()` lifts
  the thread it runs on by THREAD_PRIORITY_HIGHEST (+2 = 8, which is what a normal process's
  normal thread gets).
- macOS and other POSIX: nice is per process there, so the whole process is lowered. The
  trade-off: the bus thread then is no better placed than the compute threads of its own
  process, but the supervisor, the bridge and foreground apps still come first.

Nothing here ever raises priority above what it was, and nothing raises an exception: if the
platform refuses, that is logged once and the worker carries on at its old priority.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Literal

log = logging.getLogger("priority")

COMPUTE_NICE = 10
"""Measured on a 2-core box while generating (bench/priority_check.py): nice 5, 10 and 19 cut
chat_token latency alike (p95 about 2.7 -> 0.8 ms) at the same tokens/s; against a busy
foreground, 19 gives it more CPU than 10 but loses to every normal background process too.
10 is the middle: the bus and the foreground first, the companion not starved."""

# Win32 constants (winbase.h)
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000
THREAD_PRIORITY_HIGHEST = 2

Scope = Literal["thread", "process"]


def lower_this_thread_for_compute(nice: int = COMPUTE_NICE) -> Scope | None:
    """Lower the calling thread's CPU priority; threads it creates afterwards inherit it.

    Returns what was lowered: "thread" (Linux: this thread and its future children only),
    "process" (Windows, macOS, other POSIX: the whole process), or None if the platform has no
    way to do it or refused. Never raises and never raises priority: if the current nice value
    is already `nice` or higher it is kept.
    """
    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            target = max(current, nice)
            os.setpriority(os.PRIO_PROCESS, tid, target)
            log.info("compute priority lowered: thread %d nice %d -> %d", tid, current, target)
            return "thread"
        if sys.platform == "win32":
            return _windows_below_normal()
        current = os.nice(0)
        os.nice(max(0, nice - current))
        log.info("compute priority lowered: process nice %d -> %d", current, os.nice(0))
        return "process"
    except (OSError, AttributeError, ValueError) as exc:
        log.info("could not lower compute priority (%s); running at normal priority", exc)
        return None


def keep_this_thread_responsive() -> bool:
    """Give the calling thread back normal effective priority after the process was lowered.

    Only Windows needs it: there `lower_this_thread_for_compute()` lowers the whole process, and
    this lifts the calling thread to below-normal base + 2, the priority of a normal thread in a
    normal process. On Linux the calling thread was never lowered (nice is per thread there); on
    macOS raising nice back needs privileges. Returns True if it changed anything. Never raises.
    """
    if sys.platform != "win32":
        return False
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        if not kernel32.SetThreadPriority(kernel32.GetCurrentThread(), THREAD_PRIORITY_HIGHEST):
            raise OSError(f"SetThreadPriority failed: error {kernel32.GetLastError()}")
        return True
    except (OSError, AttributeError) as exc:
        log.info("could not raise this thread's priority (%s)", exc)
        return False


def _windows_below_normal() -> Scope:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    process = kernel32.GetCurrentProcess()
    # Never raise: from normal (or above) only; an idle class the user chose stays.
    higher = (0x00000020, 0x00008000, 0x00000080, 0x00000100)  # normal, above, high, realtime
    if (kernel32.GetPriorityClass(process) in higher
            and not kernel32.SetPriorityClass(process, BELOW_NORMAL_PRIORITY_CLASS)):
        raise OSError(f"SetPriorityClass failed: error {kernel32.GetLastError()}")
    log.info("compute priority lowered: process priority class below normal")
    return "process"
