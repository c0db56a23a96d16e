"""GPU monitor worker: reads NVML every interval and publishes `gpu_stats`.

Without an NVIDIA driver it stays up, says once why the GPU is unavailable, and idles: the rest
of the stack must not notice the difference.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.runtime import WorkerRuntime

log = logging.getLogger("gpu_monitor")


class NvmlSource:
    """The real source: nvidia-ml-py, initialised once."""

    def __init__(self) -> None:
        self.handle: Any = None
        self.reason = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.nvml = pynvml
        except Exception as exc:  # NVMLError, missing library, no device
            self.reason = (f"NVML unavailable ({type(exc).__name__}: {exc}); no NVIDIA driver "
                           f"or GPU on this machine, so GPU readings and auto-switching are off")

    def read(self) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        mem = n.nvmlDeviceGetMemoryInfo(h)
        util = n.nvmlDeviceGetUtilizationRates(h)
        return {"available": True, "vram_used": mem.used, "vram_total": mem.total,
                "vram_percent": round(100.0 * mem.used / mem.total, 2),
                "gpu_percent": util.gpu,
                "temperature_c": n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)}


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    source = NvmlSource()
    if source.handle is None:
        log.warning("%s", source.reason)
        rt.ready({"gpu": False, "reason": source.reason})
        rt.publish("gpu_stats", {"available": False, "reason": source.reason})
    else:
        rt.ready({"gpu": True})
        rt.every(rt.config["gpu_monitoring"]["interval_s"],
                 lambda: rt.publish("gpu_stats", source.read()))
    rt.run()
