"""Where GPU readings come from: the narrow interface between NVML and everything else.

`NvmlSource` is the real one (nvidia-ml-py, initialised once). Without a driver or GPU it stays
usable: `available` is False and `reason` says why, so callers degrade instead of failing.
`ReplaySource` plays a recorded history CSV, one row per reading, for tests and demos.
`SimCard` (simcard.py) is a closed-loop simulated card that reacts to the stack.
A reading is a dict: vram_used, vram_total, own_vram (bytes; None when unknown), vram_percent,
gpu_percent, temperature_c, power_w (each None when the device cannot say).
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import Any, Protocol

from workers.gpu.planner import GpuMemory

MB = 1 << 20


class GpuSource(Protocol):
    available: bool
    reason: str
    name: str

    def read(self, own_pid: int | None = None) -> dict[str, Any]: ...

    def memory(self) -> GpuMemory | None: ...

    def claim(self, vram_bytes: int, gpu_layers_fraction: float) -> None: ...

    def busy(self, generating: bool) -> None: ...

    def close(self) -> None: ...


# NVML errors after which the handle is worthless until NVML starts again (driver reset).
_LOST = ("GpuIsLost", "Unknown", "Uninitialized", "ResetRequired")


def _cuda_device() -> str:
    """The device llama.cpp will use: the first of CUDA_VISIBLE_DEVICES (an index in PCI order,
    since launch.py sets CUDA_DEVICE_ORDER=PCI_BUS_ID as NVML counts, or a GPU-UUID)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[0].strip() if visible else "0"


class NvmlSource:
    """The real card through nvidia-ml-py. Each metric is read on its own: one NVML call that a
    device does not support (a MIG parent, a laptop without power readings) makes that field
    None, not the whole reading. After a lost GPU or a driver reset NVML is started again at the
    next reading."""

    def __init__(self, index: int | None = None) -> None:
        self.handle: Any = None
        self.reason = ""
        self.name = ""
        self.uuid = ""
        self.errors: dict[str, str] = {}  # metric -> the last error, logged once by callers
        self._index = index
        self._start()

    def _start(self) -> None:
        try:
            import pynvml

            self.nvml = pynvml
            pynvml.nvmlInit()
            device = _cuda_device() if self._index is None else str(self._index)
            if device.startswith(("GPU-", "MIG-")):
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(device)
            else:
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(int(device))
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            with contextlib.suppress(Exception):
                uuid = pynvml.nvmlDeviceGetUUID(self.handle)
                self.uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            self.reason = ""
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, no device...
            self.handle = None
            self.reason = (f"NVML unavailable ({type(exc).__name__}: {exc}): no NVIDIA driver "
                           f"or GPU here, so GPU readings and auto-switching are off. With an "
                           f"NVIDIA GPU, install its driver (nvidia-smi must work)")

    @property
    def available(self) -> bool:
        return self.handle is not None

    def _metric(self, name: str, fn: Any, *args: Any) -> Any:
        """One NVML call; None when it fails, and a lost GPU drops the handle for a restart."""
        try:
            value = fn(self.handle, *args)
        except Exception as exc:  # NVMLError_*, NVMLLibraryMismatchError (not an NVMLError)
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            if any(lost in type(exc).__name__ for lost in _LOST):
                self.handle = None
                self.reason = f"GPU lost ({type(exc).__name__}); NVML restarts at the next reading"
            return None
        self.errors.pop(name, None)
        return value

    def memory(self) -> GpuMemory | None:
        if not self.available:
            return None
        mem = self._metric("memory", self.nvml.nvmlDeviceGetMemoryInfo)
        return None if mem is None else GpuMemory(total=int(mem.total), free=int(mem.free),
                                                   name=self.name)

    def own_vram(self, pid: int | None) -> int | None:
        """VRAM used by one process (takes the driver lock, so call it rarely). None where the
        platform cannot say: under Windows WDDM NVML reports NOT_AVAILABLE, which pynvml gives
        as None, and that must not count as 0."""
        if pid is None or not self.available:
            return None
        n = self.nvml
        procs = None
        for call in ("nvmlDeviceGetComputeRunningProcesses",
                     "nvmlDeviceGetComputeRunningProcesses_v2"):
            if hasattr(n, call):  # the unversioned call is v3: old drivers lack it
                procs = self._metric("processes", getattr(n, call))
                if procs is not None:
                    break
        if procs is None:
            return None
        ours = [p.usedGpuMemory for p in procs if p.pid == pid]
        if any(m is None for m in ours):
            return None
        return sum(int(m) for m in ours)

    def read(self, own_pid: int | None = None) -> dict[str, Any]:
        if not self.available:
            self._start()
            if not self.available:
                return {"available": False, "reason": self.reason}
        n = self.nvml
        mem = self._metric("memory", n.nvmlDeviceGetMemoryInfo)
        if mem is None:
            return {"available": False, "reason": self.reason or
                    f"VRAM unreadable: {self.errors.get('memory')}"}
        util = self._metric("utilization", n.nvmlDeviceGetUtilizationRates)
        power = self._metric("power", n.nvmlDeviceGetPowerUsage)
        temp = self._metric("temperature", n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU)
        return {"available": True, "name": self.name, "vram_used": int(mem.used),
                "vram_total": int(mem.total),
                "vram_percent": round(100.0 * mem.used / max(mem.total, 1), 2),
                "gpu_percent": None if util is None else int(util.gpu),
                "temperature_c": None if temp is None else int(temp),
                "power_w": None if power is None else power / 1000.0,
                "own_vram": self.own_vram(own_pid)}

    def close(self) -> None:
        """Let go of the driver (NVML restarts at the next reading)."""
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()
        self.handle = None
        self.reason = "NVML shut down while not polling"

    # The real card reacts by itself; only the simulated one needs telling.
    def claim(self, vram_bytes: int, gpu_layers_fraction: float) -> None:
        pass

    def busy(self, generating: bool) -> None:
        pass


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
                    "gpu_percent": float(row["gpu_percent"]) if row["gpu_percent"] else None,
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

    def memory(self) -> GpuMemory | None:
        row = self.rows[min(self.position, len(self.rows) - 1)]
        return GpuMemory(row["vram_total"], row["vram_total"] - row["vram_used"], self.name)

    def claim(self, vram_bytes: int, gpu_layers_fraction: float) -> None:
        pass

    def busy(self, generating: bool) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, own_pid: int | None = None) -> dict[str, Any]:
        row = self.rows[min(self.position, len(self.rows) - 1)]
        self.position += 1
        return dict(row)
