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
    ok, codes = 0, Counter()
    t0 = time.monotonic()
    with BridgeClient("127.0.0.1", port, name="names-flood") as c:
        c.connect(timeout=10)
        ids = {c.send("set_expression", {"name": f"flood-{i:06d}-".ljust(NAME_LEN, "n"),
                                         "value": 0.5}) for i in range(names)}
        deadline = time.monotonic() + timeout_s
        while ids and time.monotonic() < deadline:
            try:
                env = c.recv(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
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
    return {"sent": names, "ok": ok, "errors": dict(codes), "unanswered": len(ids),
            "kept": kept, "welcome_bytes": size, "took_s": round(took, 3)}
