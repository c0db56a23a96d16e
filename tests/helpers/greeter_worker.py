"""A worker the supervisor has never heard of: it waves at every avatar client that connects.

It is added to a stack by its spec alone (module, restart policy); it talks to the avatar
through the role that drives it, as any worker would, and needs nothing from the core.
"""

from protocol.codec import Envelope
from workers.runtime import WorkerRuntime


def main() -> None:
    rt = WorkerRuntime.from_stdin()

    def greet(env: Envelope) -> None:
        rt.request("set_expression", {"name": "joy", "value": 1.0},
                   lambda reply: print(f"greeted {env.data['client']}: {reply.type}",
                                       flush=True))
    rt.on_event("client_connected", greet)
    rt.ready({"greets": "every avatar client"})
    rt.run()


main()
