"""The bridge worker with a bug that a client can reach: a reply to command id 4242 raises.

For the bridge's side of the bus thread's error policy: a bug met serving one connection drops
that connection, and the bridge serves the others on (it must not end the process).
"""

from typing import Any

from unity_bridge import server, worker

BUGGY_ID = 4242
_on_reply = server.BridgeServer._on_reply


def on_reply(self: server.BridgeServer, conn: server.Connection, env: Any) -> None:
    if env.reply_to == BUGGY_ID:
        raise RuntimeError("faulty_bridge_worker: a bug on purpose")
    _on_reply(self, conn, env)


if __name__ == "__main__":  # run as the worker (tests import BUGGY_ID only)
    server.BridgeServer._on_reply = on_reply  # type: ignore[method-assign]
    worker.main()
