"""A worker whose bus thread meets an exception nobody handles when an `emotion` event comes.

Argument: where it happens: `watched` (the handler of a watched socket), `task` (a function
given to call_on_bus) or `timer` (a bus_every timer). It prints the time.time() of its death
first, so a test can measure how long the supervisor takes to notice. A `chat_started` event
meets a handled error instead (an inline handler that raises), which it must live through.
"""

import socket
import sys
import time

from protocol.codec import Envelope
from workers.runtime import WorkerRuntime


def die() -> None:
    print(f"bus_death_worker: dying at {time.time():.6f}", flush=True)
    raise RuntimeError("bus_death_worker: fatal on purpose")


def main() -> None:
    where = sys.argv[1]
    rt = WorkerRuntime.from_stdin()
    reader, writer = socket.socketpair()
    fired: list[bool] = []

    def doom(_env: Envelope) -> None:  # inline: on the bus thread, where watch() belongs
        if fired:
            return
        fired.append(True)
        if where == "watched":
            rt.watch(reader, lambda _events: die())
            writer.send(b"!")
        elif where == "task":
            rt.call_on_bus(die)
        else:
            rt.bus_every(0.001, die)

    def fail(_env: Envelope) -> None:
        raise ValueError("bus_death_worker: a handled error, on purpose")

    rt.on_event("emotion", doom, inline=True)
    rt.on_event("chat_started", fail, inline=True)
    rt.ready({"dies_in": where})
    rt.run()


main()
