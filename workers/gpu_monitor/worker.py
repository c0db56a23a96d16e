"""GPU monitor worker: reads NVML every interval and publishes `gpu_stats`.

Without an NVIDIA driver it stays up, says once why the GPU is unavailable, and idles: the rest
of the stack must not notice the difference.
"""

from __future__ import annotations

import logging

from workers.gpu_monitor.sources import NvmlSource
from workers.runtime import WorkerRuntime

log = logging.getLogger("gpu_monitor")


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    source = NvmlSource()
    if not source.available:
        log.warning("%s", source.reason)
        rt.ready({"gpu": False, "reason": source.reason})
        rt.publish("gpu_stats", {"available": False, "reason": source.reason})
    else:
        rt.ready({"gpu": True, "name": source.name})
        rt.every(rt.config["gpu_monitoring"]["interval_s"],
                 lambda: rt.publish("gpu_stats", source.read()))
    rt.run()
