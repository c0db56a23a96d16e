"""A bench worker whose one extra thread dies of an exception soon after it is ready.

It runs on the workers' own runtime (workers/runtime.py), so its death takes the same path as
a thread dying in inference or the bridge: the runtime's excepthook ends the process, and the
supervisor notices the exit. The moment of death is appended to
<data dir>/run/chaos_thread_deaths.jsonl, so the bench can time the notice from outside.
"""

from __future__ import annotations

import json
import os
import threading
import time

from workers.runtime import WorkerRuntime

DEATHS_FILE = "chaos_thread_deaths.jsonl"
DELAY_S = 0.3


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    path = rt.data_dir / "run" / DEATHS_FILE

    def die() -> None:
        time.sleep(DELAY_S)
        t = time.time()
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "t": t}) + "\n")
        raise RuntimeError("chaos bench: this thread dies on purpose")

    rt.ready({})
    threading.Thread(target=die, name="chaos-victim", daemon=True).start()
    rt.run()


if __name__ == "__main__":
    main()
