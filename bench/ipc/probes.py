"""The bench's two ears: a Unity-wire client and a bus subscriber, both noting the time each
message arrived (latency = receipt - the sender's stamp, or - the time it was sent)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from protocol.codec import Envelope, decode
from protocol.messages import PROTOCOL_VERSION, REGISTRY, Kind
from supervisor.harness import Stack
from unity_bridge.client import BridgeClient, BridgeClosed


class Probe(BridgeClient):
    """The project's own bridge client, greeted; `hello_s` times its handshake.

    Times are the reader thread's receipt (`recv_timed`), so a figure does not include how
    long a message waited in the queue for the bench to look at it."""

    def __init__(self, port: int, name: str = "ipc-bench", timeout: float = 10) -> None:
        super().__init__("127.0.0.1", port, name=name)
        self.open(timeout)
        t0 = time.time()  # after the TCP connect: the figure is the handshake
        try:
            t, self.welcome = self.request_timed("hello", {"protocol": PROTOCOL_VERSION,
                                                           "client": name}, timeout)
        except BaseException:
            self.close()
            raise
        self.hello_s = t - t0

    def wait(self, pred: Callable[[Envelope], bool],
             timeout: float = 10) -> tuple[float, Envelope]:
        """The first message matching `pred` and its receipt time; those before are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            t, env = self.recv_timed(max(0.0, deadline - time.monotonic()))
            if pred(env):
                return t, env

    def pending(self) -> Iterator[tuple[float, Envelope]]:
        """Everything received so far and not yet read, without waiting."""
        while True:
            try:
                yield self.recv_timed(0)
            except (TimeoutError, BridgeClosed):
                return

    def drain(self) -> None:
        """Forget what came before, so the next wait sees only what follows."""
        for _ in self.pending():
            pass


class Collector(threading.Thread):
    """A bus subscriber to every event the bus carries, timing each from its envelope `ts`."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.lat: dict[str, list[float]] = {}
        self.seen: list[tuple[float, Envelope]] = []  # (receipt time, envelope), in order
        self.paused = False  # during a synthetic flood: not latency samples
        self.ready = threading.Event()
        self._stop_flag = threading.Event()

    def run(self) -> None:
        c = self.stack.new_client()
        c.subscribe([n for n, s in REGISTRY.items() if s.kind is Kind.EVENT and s.bus])
        self.ready.set()
        while not self._stop_flag.is_set():
            if not c.sub.poll(100):
                continue
            _, frame = c.sub.recv_multipart()
            t = time.time()
            if self.paused:
                continue
            env = decode(frame, validate=False)
            self.lat.setdefault(env.type, []).append(t - env.ts)
            self.seen.append((t, env))
        c.close()

    def first_after(self, k: int, type_: str) -> float | None:
        """Receipt time of the first `type_` among the events from index k on, if any yet."""
        for t, env in self.seen[k:]:
            if env.type == type_:
                return t
        return None

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(2)
