"""Where GPU readings come from: the narrow interface between NVML and everything else.

`NvmlSource` is the real one (nvidia-ml-py, initialised once). Without a driver or GPU it stays
usable: `available` is False and `reason` says why, so callers degrade instead of failing.
`ReplaySource` plays a recorded history CSV, one row per reading, for tests and demos.
A reading is a dict: vram_used, vram_total, own_vram (bytes), vram_percent, gpu_percent,
temperature_c, power_w.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Protocol

from workers.gpu.planner import GpuMemory

MB = 1 << 20


class GpuSource(Protocol):
    available: bool
    reason: str
    name: str

    def read(self, own_pid: int | None = None) -> dict[str, Any]: ...


class NvmlSource:
    def __init__(self, index: int = 0) -> None:
        self.handle: Any = None
        self.reason = ""
        self.name = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.nvml = pynvml
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, no device...
            self.reason = (f"NVML unavailable ({type(exc).__name__}: {exc}): no NVIDIA driver "
                           f"or GPU here, so GPU readings and auto-switching are off. With an "
                           f"NVIDIA GPU, install its driver (nvidia-smi must work)")

    @property
    def available(self) -> bool:
        return self.handle is not None

    def memory(self) -> GpuMemory | None:
        if not self.available:
            return None
        mem = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return GpuMemory(total=int(mem.total), free=int(mem.free), name=self.name)

    def own_vram(self, pid: int | None) -> int | None:
        """VRAM used by one process; takes the driver lock, so call it rarely."""
        if pid is None or not self.available:
            return None
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except self.nvml.NVMLError:
            return None
        return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid == pid)

    def read(self, own_pid: int | None = None) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        mem = n.nvmlDeviceGetMemoryInfo(h)
        util = n.nvmlDeviceGetUtilizationRates(h)
        try:
            power_w = n.nvmlDeviceGetPowerUsage(h) / 1000.0
        except n.NVMLError:
            power_w = None
        return {"available": True, "name": self.name, "vram_used": int(mem.used),
                "vram_total": int(mem.total),
                "vram_percent": round(100.0 * mem.used / mem.total, 2),
                "gpu_percent": int(util.gpu),
                "temperature_c": int(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                "power_w": power_w, "own_vram": self.own_vram(own_pid)}


class ReplaySource:
    """Plays a history CSV row by row, then holds the last row."""

    available = True
    reason = ""

    def __init__(self, path: Path) -> None:
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                self.rows = [self._parse(r, i) for i, r in enumerate(csv.DictReader(fh), 2)]
        except OSError as exc:
            raise ValueError(f"cannot read GPU trace {path}: {exc}") from None
        if not self.rows:
            raise ValueError(f"GPU trace {path} has no rows")
        self.name = f"replay of {path.name}"
        self.position = 0

    @staticmethod
    def _parse(row: dict[str, str], line: int) -> dict[str, Any]:
        try:
            used, total = int(row["vram_used_mb"]) * MB, int(row["vram_total_mb"]) * MB
            return {"available": True, "vram_used": used, "vram_total": total,
                    "vram_percent": round(100.0 * used / total, 2),
                    "gpu_percent": float(row["gpu_percent"]),
                    "temperature_c": float(row.get("temperature_c") or 0),
                    "power_w": float(row["power_w"]) if row.get("power_w") else None,
                    "own_vram": int(row.get("own_vram_mb") or 0) * MB}
        except (KeyError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"GPU trace line {line}: {exc!r}; expected columns "
                             f"vram_used_mb, vram_total_mb, gpu_percent[, temperature_c, "
                             f"power_w, own_vram_mb]") from None

    @property
    def finished(self) -> bool:
        return self.position >= len(self.rows)

    def read(self, own_pid: int | None = None) -> dict[str, Any]:
        row = self.rows[min(self.position, len(self.rows) - 1)]
        self.position += 1
        return dict(row)
