"""A worker that is alive (heartbeating) long before it is ready, like one loading a model."""

import time

from workers.runtime import WorkerRuntime

rt = WorkerRuntime.from_stdin()
time.sleep(float(rt.options.get("load_s", 2.0)))
rt.ready({"load_s": rt.options.get("load_s", 2.0)})
rt.run()
