"""workers.priority on real threads: only the calling thread and the threads it starts later are
lowered (Linux); elsewhere the documented process-wide behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from workers import priority


def in_thread(fn: Any) -> Any:
    """Run fn in a fresh thread (so the test process's own threads stay as they were)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    if "error" in out:
        raise out["error"]
    return out["value"]


def thread_nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def in_child_process(code: str, platform: str | None = None) -> list[str]:
    """Run code after lowering in a fresh interpreter (the lowering is process-wide outside
    Linux, and must not stick to the test process); `platform` pretends to be another OS."""
    pretend = f"import sys; sys.platform = {platform!r}; " if platform else ""
    script = (f"{pretend}import os; from workers import priority; "
              "nice = os.nice(0) + 3 if hasattr(os, 'nice') else None; "  # no os.nice on Windows
              f"scope = priority.lower_this_thread_for_compute(**({{'nice': nice}} if nice "
              f"is not None else {{}})); {code}")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60).stdout.split()


def test_lowers_the_calling_thread_and_what_it_starts_later() -> None:
    if sys.platform == "win32":
        # Threads do not inherit priority on Windows: the process goes below normal.
        out = in_child_process("import ctypes; k = ctypes.windll.kernel32; "
                               "print(scope, k.GetPriorityClass(k.GetCurrentProcess()))")
        assert out == ["process", str(priority.BELOW_NORMAL_PRIORITY_CLASS)]
        return
    if not sys.platform.startswith("linux"):
        before = os.nice(0)
        assert in_child_process("print(scope, os.nice(0))") == ["process", str(before + 3)]
        return
    main_tid = threading.get_native_id()
    main_before = thread_nice(main_tid)
    bystander = threading.Event()
    bystander_tid: list[int] = []

    def idle() -> None:  # started before the lowering, by another thread: must keep its nice
        bystander_tid.append(threading.get_native_id())
        bystander.wait(10)
    other = threading.Thread(target=idle)
    other.start()

    def lowered() -> dict[str, Any]:
        me = threading.get_native_id()
        before = thread_nice(me)
        scope = priority.lower_this_thread_for_compute(nice=before + 7)
        child: list[int] = []
        t = threading.Thread(target=lambda: child.append(thread_nice(threading.get_native_id())))
        t.start()
        t.join(10)
        return {"before": before, "scope": scope, "after": thread_nice(me), "child": child[0]}

    try:
        r = in_thread(lowered)
        assert r["scope"] == "thread"
        assert r["after"] == r["before"] + 7
        assert r["child"] == r["after"]  # what ggml's threads get when llama starts them
        assert thread_nice(main_tid) == main_before
        assert thread_nice(bystander_tid[0]) == main_before
    finally:
        bystander.set()
        other.join(10)


@pytest.mark.skipif(sys.platform == "win32", reason="os.nice does not exist on Windows")
def test_macos_and_other_posix_lower_the_whole_process() -> None:
    """The fallback for a POSIX where nice is per process, run here by pretending to be macOS
    (on Linux os.nice acts on the calling thread, which is the child's main thread here)."""
    before = os.nice(0)
    assert in_child_process("print(scope, os.nice(0))", "darwin") == ["process", str(before + 3)]


def test_never_raises_priority() -> None:
    if sys.platform == "win32":
        # An idle class the user chose stays idle.
        out = subprocess.run([sys.executable, "-c", (
            "import ctypes; from workers import priority; k = ctypes.windll.kernel32; "
            "p = k.GetCurrentProcess(); k.SetPriorityClass(p, 0x40); "
            "print(priority.lower_this_thread_for_compute(), k.GetPriorityClass(p))")],
            capture_output=True, text=True, check=True, timeout=60).stdout.split()
        assert out == ["process", "64"]
        return
    if not sys.platform.startswith("linux"):
        before = os.nice(0)
        out = subprocess.run([sys.executable, "-c", (
            "import os; from workers import priority; start = os.nice(0); os.nice(5); "
            "print(priority.lower_this_thread_for_compute(nice=start + 2), os.nice(0))")],
            capture_output=True, text=True, check=True, timeout=60).stdout.split()
        assert out == ["process", str(before + 5)]
        return

    def run() -> tuple[Any, int, int]:
        me = threading.get_native_id()
        start = thread_nice(me)
        os.setpriority(os.PRIO_PROCESS, me, start + 5)
        scope = priority.lower_this_thread_for_compute(nice=start + 2)  # lower than it is
        return scope, start + 5, thread_nice(me)

    scope, was, now = in_thread(run)
    assert scope == "thread"
    assert now == was


def test_refusal_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*_: Any) -> None:
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "setpriority", refuse, raising=False)  # POSIX only: absent on
    monkeypatch.setattr(os, "nice", refuse, raising=False)  # Windows, where the next one counts
    monkeypatch.setattr(priority, "_windows_below_normal", refuse)
    with caplog.at_level("INFO", logger="priority"):
        assert in_thread(priority.lower_this_thread_for_compute) is None
    assert "could not lower compute priority" in caplog.text


def test_keep_responsive_is_a_windows_only_lift() -> None:
    if sys.platform == "win32":
        # The process was lowered to below normal; this thread gets base 6 + 2 = normal (8).
        import ctypes

        k32 = ctypes.windll.kernel32  # type: ignore[attr-defined]

        def run() -> tuple[bool, int]:
            changed = priority.keep_this_thread_responsive()
            return changed, k32.GetThreadPriority(k32.GetCurrentThread())
        changed, level = in_thread(run)
        assert changed and level == priority.THREAD_PRIORITY_HIGHEST
    else:
        # Nothing to give back: on Linux the bus thread was never lowered, and on macOS
        # raising nice again would need privileges. It must leave the thread as it is.
        def run() -> tuple[bool, int, int]:
            me = threading.get_native_id() if sys.platform.startswith("linux") else 0
            before = os.getpriority(os.PRIO_PROCESS, me)
            changed = priority.keep_this_thread_responsive()
            return changed, before, os.getpriority(os.PRIO_PROCESS, me)
        changed, before, after = in_thread(run)
        assert changed is False
        assert after == before
