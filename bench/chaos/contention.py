"""How much of the machine other work took during the run: CPU used by processes that are
neither this bench nor anything it started (the stack, the fuzzer).

On a small shared machine this explains slow figures: the chat worker's compute threads run at
nice 10 by design, so a busy neighbour slows replies down, and a latency that doubles may be
the neighbour's doing."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import psutil


class Contention(threading.Thread):
    def __init__(self, every_s: float = 2.0) -> None:
        super().__init__(daemon=True, name="chaos-contention")
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []  # (time.time(), cores used by others)
        self.stop_flag = threading.Event()
        self._seen: dict[tuple[int, float], float] = {}  # (pid, create time) -> cpu seconds

    def run(self) -> None:
        self._foreign_cpu()
        last = time.monotonic()
        while not self.stop_flag.wait(self.every_s):
            used = self._foreign_cpu()
            now = time.monotonic()
            self.samples.append((time.time(), used / max(1e-3, now - last)))
            last = now

    def _foreign_cpu(self) -> float:
        """CPU seconds other processes used since the last call (new ones: since they began,
        which is within the interval or close to it)."""
        ours = {os.getpid()}
        with contextlib.suppress(psutil.Error):
            ours |= {p.pid for p in psutil.Process().children(recursive=True)}
        used, seen = 0.0, {}
        for p in psutil.process_iter(["pid", "create_time", "cpu_times"]):
            info = p.info
            if info["pid"] in ours or info["cpu_times"] is None:
                continue
            key = (info["pid"], info["create_time"])
            total = info["cpu_times"].user + info["cpu_times"].system
            seen[key] = total
            used += total - self._seen.get(key, total if not self._seen else 0.0)
        self._seen = seen
        return max(0.0, used)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(5)

    def summary(self, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
        """Cores used by other work: mean and max over each named window."""
        out: dict[str, Any] = {"cores": os.cpu_count()}
        for name, (a, b) in windows.items():
            xs = [c for t, c in self.samples if a <= t <= b]
            out[name] = {"mean": round(sum(xs) / len(xs), 2) if xs else None,
                         "max": round(max(xs), 2) if xs else None, "n": len(xs)}
        return out
