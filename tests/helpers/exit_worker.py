"""A worker that says ready, then exits with the code it is given: for restart policies.

Arguments: CODE [AFTER_S]. The code is the process's exit status (0, 3, ...).
"""

import os
import sys
import time

from workers.runtime import WorkerRuntime

code, after_s = int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
rt = WorkerRuntime.from_stdin()
rt.ready({})
time.sleep(after_s)
print(f"exit_worker: exiting with {code} on purpose", flush=True)
os._exit(code)
