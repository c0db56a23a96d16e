"""The GPU history CSV, rotated by size like the logs (and readable back as a replay trace)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

COLUMNS = ["timestamp", "vram_used_mb", "vram_total_mb", "vram_percent", "gpu_percent",
           "temperature_c", "power_w", "own_vram_mb", "state", "profile"]
MB = 1 << 20


class History:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, reading: dict[str, Any], state: str, profile: str) -> None:
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            self._rotate()
        new = not self.path.exists()
        buf = io.StringIO()
        w = csv.writer(buf)
        if new:
            w.writerow(COLUMNS)
        def cell(key: str) -> Any:  # a metric the device cannot give is None: an empty cell
            return "" if reading.get(key) is None else reading[key]

        w.writerow([f"{time.time():.1f}", reading["vram_used"] // MB, reading["vram_total"] // MB,
                    reading["vram_percent"], cell("gpu_percent"), cell("temperature_c"),
                    cell("power_w"),
                    (reading.get("own_vram") or 0) // MB, state, profile])
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            fh.write(buf.getvalue())

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink()
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
