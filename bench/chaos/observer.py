"""A bus subscriber that writes down every worker_state and profile_status event.

The lives of each worker are read from it afterwards: which pid ran when, how each one
ended, and whether the soak had killed it (so a crash of our own making is not counted as
the bridge's).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from protocol.bus import BusClient

ENDS = ("BACKOFF", "FATAL", "EXITED")


@dataclass
class Event:
    ts: float  # the sender's time.time()
    type: str
    data: dict[str, Any]


@dataclass
class Life:
    worker: str
    pid: int
    started: float
    ready: float | None = None
    ended: float | None = None
    end_state: str = ""
    reason: str = ""


class Observer(threading.Thread):
    def __init__(self, client: BusClient) -> None:
        super().__init__(daemon=True, name="chaos-observer")
        self.client = client
        self.events: list[Event] = []
        self._stop_flag = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        self.client.subscribe(["worker_state", "profile_status", "worker_stats"])
        while not self._stop_flag.is_set():
            try:
                env = self.client.recv_event(0.1)
            except TimeoutError:
                continue
            if env.type == "worker_stats":
                self.ready.set()  # the subscriptions have reached the relay
                continue
            self.events.append(Event(env.ts, env.type, dict(env.data)))
        self.client.close()

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(3)

    def since(self, t: float) -> list[Event]:
        return [e for e in list(self.events) if e.ts >= t]

    def wait_for(self, pred: Any, timeout: float, after: float = 0.0) -> Event | None:
        """The first event (sent at or after `after`) matching `pred`, waiting up to
        `timeout`; None if none came."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            events = list(self.events)
            for e in events[seen:]:
                if e.ts >= after and pred(e):
                    return e
            seen = len(events)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)


def lives(events: list[Event], running: dict[str, dict[str, Any]]) -> dict[str, list[Life]]:
    """Each worker's processes in order: a life starts at STARTING (which carries the pid)
    and ends at the next BACKOFF, FATAL or EXITED. `running` (a status reply's workers, taken
    once the observer listened) gives the lives that began before it did."""
    out: dict[str, list[Life]] = {}
    current: dict[str, Life] = {}
    first = min((e.ts for e in events), default=0.0)
    for name, w in running.items():
        if w.get("pid"):
            life = Life(name, int(w["pid"]), first - float(w.get("uptime_s") or 0.0),
                        first if w.get("state") == "RUNNING" else None)
            out[name] = [life]
            current[name] = life
    for e in events:
        if e.type != "worker_state":
            continue
        name, state = e.data["worker"], e.data["state"]
        if state == "STARTING" and e.data.get("pid"):
            if name in current and current[name].pid == int(e.data["pid"]):
                continue  # already known from `running`
            life = Life(name, int(e.data["pid"]), e.ts)
            out.setdefault(name, []).append(life)
            current[name] = life
        elif state == "RUNNING" and name in current:
            current[name].ready = e.ts
        elif state in ENDS and name in current:
            life = current.pop(name)
            life.ended, life.end_state = e.ts, state
            life.reason = str(e.data.get("reason") or "")
    return out
