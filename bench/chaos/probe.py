"""The good client of the fuzz: ping round trips at a steady pace, filed by phase, and the
bridge's RSS sampled beside them.

Times are the reader thread's receipt of the pong minus the send (`request_timed`), so a
figure does not include how long the reply waited for this thread to look at it.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psutil

from unity_bridge.client import BridgeClient, BridgeClosed, BridgeError


class GoodClient(threading.Thread):
    def __init__(self, port: int, every_s: float, timeout_s: float = 5.0) -> None:
        super().__init__(daemon=True, name="chaos-good-client")
        self.port, self.every_s, self.timeout_s = port, every_s, timeout_s
        self.phase = "idle"
        self.samples: dict[str, list[float]] = {}  # round trips, seconds
        self.sent: dict[str, list[float]] = {}  # and when each was sent (time.time())
        self.timeouts: dict[str, int] = {}
        self.reconnects = 0
        self.stop_flag = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        conn: BridgeClient | None = None
        try:
            while not self.stop_flag.is_set():
                if conn is None or conn.closed.is_set():
                    conn = self._connect(conn)
                    continue
                self._ping(conn)
                self.stop_flag.wait(self.every_s)
        except BaseException as exc:
            self.failure = exc
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, old: BridgeClient | None) -> BridgeClient | None:
        if old is not None:
            old.close()
            self.reconnects += 1
        conn = BridgeClient("127.0.0.1", self.port, name="good-client")
        try:
            conn.connect(timeout=self.timeout_s)
            return conn
        except (OSError, BridgeError):
            conn.close()
            self.stop_flag.wait(0.1)
            return None

    def _ping(self, conn: BridgeClient) -> None:
        phase = self.phase
        t0 = time.time()
        try:
            t, _ = conn.request_timed("ping", {}, self.timeout_s)
            self.samples.setdefault(phase, []).append(t - t0)
            self.sent.setdefault(phase, []).append(t0)
        except TimeoutError:
            self.timeouts[phase] = self.timeouts.get(phase, 0) + 1
        except (BridgeClosed, BridgeError, OSError):
            conn.close()  # reconnected on the next round
        with contextlib.suppress(TimeoutError, BridgeClosed):
            for _ in range(100_000):  # what others broadcast meanwhile
                conn.recv(0)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(self.timeout_s + 3)


class RssSampler(threading.Thread):
    """The largest RSS of one process while it runs, and the last reading."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True, name="chaos-rss")
        self.pid, self.every_s = pid, every_s
        self.peak = self.last = rss(pid) or 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(self.every_s):
            value = rss(self.pid)
            if value is None:
                return
            self.last = value
            self.peak = max(self.peak, value)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(2)


def rss(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None
