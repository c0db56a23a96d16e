"""A flood of distinct expression names on one connection, counted: how many the bridge
accepts and keeps (what every later welcome carries). The random fuzz floods names too, but
its other frames may reset the expressions; this one is deterministic. The expressions are
reset afterwards, so the soak starts from a small state."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from protocol.codec import encode
from unity_bridge.client import BridgeClient

NAME_LEN = 64


def run(port: int, names: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Past unity_bridge.max_expressions each new name is refused (INVALID_FIELD), and past
    max_errors refusals the bridge closes the connection: both are counted, not failures."""
    ok, codes, sent, closed = 0, Counter(), 0, False
    ids: set[int] = set()
    t0 = time.monotonic()
    with BridgeClient("127.0.0.1", port, name="names-flood") as c:
        c.connect(timeout=10)
        try:
            for i in range(names):
                ids.add(c.send("set_expression", {"name": f"flood-{i:06d}-".ljust(NAME_LEN, "n"),
                                                  "value": 0.5}))
                sent += 1
        except OSError:  # the bridge closed us: too many refused names
            closed = True
        deadline = time.monotonic() + timeout_s
        while ids and time.monotonic() < deadline:
            try:
                env = c.recv(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if env.reply_to in ids:
                ids.discard(env.reply_to)
                if env.type == "ok":
                    ok += 1
                else:
                    codes[str(env.data.get("code"))] += 1
    took = time.monotonic() - t0
    with BridgeClient("127.0.0.1", port, name="names-probe") as c:
        welcome = c.connect(timeout=30)
        kept = sum(k.startswith("flood-") for k in welcome.data["state"]["expressions"])
        size = len(encode(welcome))
        c.request("reset_expressions", {}, timeout=30)
    return {"sent": sent, "tried": names, "ok": ok, "errors": dict(codes),
            "unanswered": len(ids), "closed_by_bridge": closed, "kept": kept,
            "welcome_bytes": size, "took_s": round(took, 3)}
