"""Checks only Windows can run, on a real stack (the Windows CI job runs this after the suite).

    python -m tests.windows.check_stack [--out bench/results/windows_checks.json]

1. Real pids: every worker's status pid is the interpreter that runs it (no venv launcher
   between it and the supervisor), and its rss is that process's.
2. No console windows: a stack started with no console at all (DETACHED_PROCESS, as Unity or a
   shortcut starts it) shows no visible window from any worker or a process under it.
3. Ctrl-Break to a stack in its own process group: the supervisor exits 0 and every worker
   goes EXITED with exit code 0 (no crash counted, no restart scheduled).

It prints one line per check and writes them to --out; it exits 1 when any fails. On another
OS checks 1 and 3 run as their POSIX stand-ins (no launcher to skip there; SIGINT for
Ctrl-Break), which keeps the script itself tested; check 2 is Windows only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from supervisor.harness import Stack, wait_for
from tests.conftest import base_config

WORKERS = ("inference", "gpu_monitor", "unity_bridge")
Check = Callable[[Path], dict[str, Any]]


def visible_windows() -> dict[int, list[str]]:
    """pid -> titles of its visible top-level windows (EnumWindows)."""
    import ctypes
    from ctypes import wintypes

    user32 = ctypes.windll.user32
    found: dict[int, list[str]] = {}

    @ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)
    def on_window(hwnd: int, _: int) -> bool:
        if user32.IsWindowVisible(hwnd):
            pid = wintypes.DWORD()
            user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
            title = ctypes.create_unicode_buffer(256)
            user32.GetWindowTextW(hwnd, title, 256)
            found.setdefault(pid.value, []).append(title.value)
        return True
    user32.EnumWindows(on_window, 0)
    return found


def check_real_pids(tmp: Path) -> dict[str, Any]:
    stack = Stack(tmp, base_config()).start()
    try:
        sup = stack.proc.pid
        rows = {}
        for name in WORKERS:
            w = stack.worker(name)
            ps = psutil.Process(w["pid"])
            rows[name] = {"pid": w["pid"], "parent": ps.ppid(), "exe": ps.exe(),
                          "children": [c.pid for c in ps.children()],
                          "runs_module": "-m" in ps.cmdline()}
        w = wait_for(lambda: stack.worker("inference") if stack.worker("inference")["rss"]
                     else None, 10, "an rss sample")
        real_rss = psutil.Process(w["pid"]).memory_info().rss
        ok = all(r["parent"] == sup and r["runs_module"] and not r["children"]
                 for r in rows.values()) and abs(w["rss"] - real_rss) < 0.2 * real_rss
        return {"ok": ok, "supervisor": sup, "workers": rows, "inference_rss": w["rss"],
                "inference_rss_now": real_rss}
    finally:
        stack.stop()


def check_no_console_windows(tmp: Path) -> dict[str, Any]:
    stack = Stack(tmp, base_config()).start(console=False)
    try:
        time.sleep(2.0)  # a console window, if any, is up by now
        pids = {stack.worker(n)["pid"] for n in WORKERS}
        tree = set(pids)
        for pid in pids:
            tree |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        windows = {pid: titles for pid, titles in visible_windows().items() if pid in tree}
        return {"ok": not windows, "worker_tree": sorted(tree), "windows": windows}
    finally:
        result = stack.cli("shutdown")
        stack.proc.wait(30)
        stack.stop()
        assert result.returncode == 0, result.stderr


def check_ctrl_break(tmp: Path) -> dict[str, Any]:
    stack = Stack(tmp, base_config()).start()
    pids = [stack.worker(n)["pid"] for n in WORKERS]
    if stack._client is not None:
        stack._client.close()
        stack._client = None
    stack.interrupt()  # CTRL_BREAK_EVENT to the stack's own process group
    code = stack.proc.wait(30)
    out = stack.output()
    clean = out.count("-> EXITED (stopped (shutdown): exit code 0)")
    gone = all(not psutil.pid_exists(p) for p in pids)
    ok = code == 0 and clean == len(WORKERS) and gone and "BACKOFF" not in out \
        and "crashed" not in out and "Traceback" not in out
    return {"ok": ok, "exit_code": code, "workers_exited_cleanly": clean, "all_gone": gone,
            "console_tail": out.splitlines()[-15:]}


CHECKS: dict[str, Check] = {"real_pids": check_real_pids,
                            "no_console_windows": check_no_console_windows,
                            "ctrl_break_clean_exit": check_ctrl_break}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results/windows_checks.json"),
                   help="where the results go (JSON)")
    args = p.parse_args(argv)
    windows = sys.platform == "win32"
    results: dict[str, Any] = {"python": sys.version, "executable": sys.executable}
    with tempfile.TemporaryDirectory(prefix="aic win checks ü ") as tmp:
        for name, check in CHECKS.items():
            if name == "no_console_windows" and not windows:
                print(f"SKIP {name}: Windows only", flush=True)
                continue
            d = Path(tmp) / name
            d.mkdir()
            try:
                results[name] = check(d)
            except Exception as exc:  # one failed check must not hide the others
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(f"{'PASS' if results[name]['ok'] else 'FAIL'} {name}: "
                  f"{json.dumps(results[name], default=str)[:400]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0 if all(r["ok"] for k, r in results.items() if isinstance(r, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
