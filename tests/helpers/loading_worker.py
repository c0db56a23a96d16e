"""A worker that heartbeats long before it is ready, like one loading a model.

Arguments: LOAD_S (seconds to ready; "never" to stay loading), PROGRESS_EVERY_S (0: report no
progress), STALL_AFTER_S (stop reporting progress after this long; default never).
"""

import sys
import time

from workers.runtime import WorkerRuntime

args = sys.argv[1:]
load_s = float("inf") if args[:1] == ["never"] else float(args[0]) if args else 2.0
every = float(args[1]) if len(args) > 1 else 0.0
stall_after = float(args[2]) if len(args) > 2 else float("inf")
rt = WorkerRuntime.from_stdin()
start = time.monotonic()
while (elapsed := time.monotonic() - start) < load_s:
    if every and elapsed < stall_after:
        rt.progress("loading", min(elapsed / load_s, 1.0))
        time.sleep(every)
    else:
        time.sleep(0.05)
rt.ready({"load_s": load_s})
rt.run()
