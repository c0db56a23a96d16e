"""A thread dies in a worker: how long until the supervisor says so (its worker_state event).

Timed from the victim's own record of the moment it raised to the timestamp of the event
that ends its life; both are time.time() on this machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.chaos.observer import ENDS, Event, Observer
from bench.chaos.plan import VICTIM
from bench.chaos.thread_victim import DEATHS_FILE
from protocol.bus import BusClient


def _is(state: str | tuple[str, ...]) -> Any:
    states = (state,) if isinstance(state, str) else state
    return lambda e: (e.type == "worker_state" and e.data["worker"] == VICTIM
                      and e.data["state"] in states)


def deaths(data_dir: Path) -> dict[int, float]:
    try:
        lines = (data_dir / "run" / DEATHS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return {int(d["pid"]): float(d["t"]) for d in map(json.loads, lines)}


def run(bus: BusClient, observer: Observer, data_dir: Path, rounds: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    for _ in range(rounds):
        started_after = time.time()
        bus.request("restart", {"worker": VICTIM}, timeout=10)
        start: Event | None = observer.wait_for(_is("STARTING"), 30, started_after)
        end = observer.wait_for(_is(ENDS), 30, start.ts) if start else None
        if start is None or end is None:
            samples.append({"error": "no start or no end seen within 30 s"})
            continue
        pid = int(start.data["pid"])
        died = deaths(data_dir).get(pid)
        samples.append({"pid": pid, "reason": end.data.get("reason", ""),
                        "noticed_ms": None if died is None else (end.ts - died) * 1000})
    noticed = [s["noticed_ms"] for s in samples if s.get("noticed_ms") is not None]
    return {"rounds": rounds, "samples": samples,
            "max_ms": max(noticed) if noticed else None,
            "all_seen_as_crash": all("exit code 70" in s.get("reason", "") for s in samples)}
