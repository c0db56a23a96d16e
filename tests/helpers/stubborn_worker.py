"""A worker that ignores the supervisor's stop request: for the terminate/kill escalation."""

import threading

from workers.runtime import WorkerRuntime

rt = WorkerRuntime.from_stdin()
rt.on_stop(lambda drain_s: threading.Event().wait())  # never returns: only terminate helps
rt.ready({})
rt.run()
