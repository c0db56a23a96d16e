"""Fakes for the supervisor's two seams (supervisor/host.py's Host, lifecycle's Outbox): the
lifecycle logic runs on them without processes, sockets or sleeps."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from protocol.codec import Envelope, decode


class FakeProc:
    def __init__(self, name: str, generation: int, pid: int) -> None:
        self.name, self.generation, self.pid = name, generation, pid
        self.alive = True
        self.signals: list[str] = []
        self.inbox: list[Envelope] = []  # what the supervisor sent it
        self.ready_sent = False
        self.spare = False  # booted as a warm spare
        self.was_worker = False  # has been the worker's process (not only a spare)

    def terminate(self) -> None:
        self.signals.append("TERM")

    def kill(self) -> None:
        self.signals.append("KILL")

    def release(self) -> None:
        assert not self.alive, "released a process that has not exited"

    def last_output(self) -> str:
        return "fake worker's last words"

    def sample(self) -> tuple[float | None, int | None]:
        return 0.0, 1 << 20

    def adopt(self, pid: int) -> None:
        """A fake process has no launcher: the pid it reports is the one it has."""

    @property
    def ident(self) -> bytes:
        return f"w:{self.name}:{self.generation}".encode()


class FakeHost:
    def __init__(self) -> None:
        self.clock = 1000.0
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.pids = itertools.count(100)
        self.procs: list[FakeProc] = []
        self.fail_spawns = 0

    def now(self) -> float:
        return self.clock

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (self.clock + delay, next(self.seq), fn))

    def spawn(self, name: str, module: str, args: tuple[str, ...], boot: dict[str, Any],
              generation: int) -> FakeProc:
        assert boot["name"] == name and boot["ident"] == f"w:{name}:{generation}"
        if self.fail_spawns:
            self.fail_spawns -= 1
            raise OSError("fake: cannot spawn")
        proc = FakeProc(name, generation, next(self.pids))
        proc.spare = boot["spare"]
        self.procs.append(proc)
        return proc

    def advance(self, dt: float) -> None:
        end = self.clock + dt
        while self.timers and self.timers[0][0] <= end:
            due, _, fn = heapq.heappop(self.timers)
            self.clock = max(self.clock, due)
            fn()
        self.clock = end


class FakeOutbox:
    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.sent: list[tuple[bytes, Envelope]] = []
        self.published: list[tuple[str, dict[str, Any]]] = []

    def send(self, ident: bytes, frame: bytes) -> bool:
        env = decode(frame, validate=True)
        for proc in self.host.procs:
            if proc.ident == ident:
                if not proc.alive:
                    return False  # ROUTER_MANDATORY: the peer is gone
                proc.inbox.append(env)
        self.sent.append((ident, env))
        return True

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        self.published.append((type_, data))

    def replies_to(self, ident: bytes, msg_id: int) -> list[Envelope]:
        return [env for to, env in self.sent if to == ident and env.reply_to == msg_id]
