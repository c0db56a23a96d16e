"""The bridge worker, paused right after it asks its bus thread to start serving the Unity wire.

As if its main thread were descheduled there (a slow log write, a busy core): a client that
connects then is greeted by the bus thread while the main thread has not finished its setup.
"""

import time
from collections.abc import Callable

from unity_bridge import worker
from workers.runtime import WorkerRuntime

PAUSE_S = 3.0
_call_on_bus = WorkerRuntime.call_on_bus


def call_then_pause(self: WorkerRuntime, fn: Callable[[], None]) -> None:
    _call_on_bus(self, fn)
    if getattr(fn, "__name__", "") == "attach":
        time.sleep(PAUSE_S)


WorkerRuntime.call_on_bus = call_then_pause  # type: ignore[method-assign]
worker.main()
