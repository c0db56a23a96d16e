"""Where GPU readings come from: the narrow interface between NVML and everything else.

`NvmlSource` is the real one (nvidia-ml-py, initialised once). Without a driver or GPU it stays
usable: `available` is False and `reason` says why, so callers degrade instead of failing.
"""

from __future__ import annotations

from typing import Any

from workers.inference.planner import GpuMemory


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

    def read(self) -> dict[str, Any]:
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
                "power_w": power_w}
