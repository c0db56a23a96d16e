"""What the soak does to the stack: kill -9, SIGSTOP, profile switches, TCP resets.

Faults that hit the chat worker (its kill, its SIGSTOP, a switch) are at least
`kill_every_s` apart; kills of the other workers fall in between, so the soak reaches many
kills without making every chat impossible. Each worker is left alone for `kill_every_s`
after a fault, so its recovery can be timed. Every fault is written down before it is done:
the bridge's exits are then told apart from its crashes by pid.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from bench.chaos.ledger import Ledger
from bench.chaos.load import await_final
from bench.chaos.wire import hello_frame, reset
from protocol.bus import BusClient
from protocol.framing import FrameDecoder, message
from protocol.messages import CHAT, EMOTIONS
from supervisor.harness import reloading_profile

KILL, STOP, SWITCH, EMERGENCY = "kill -9", "sigstop", "switch", "emergency switch"


@dataclass
class Fault:
    t: float  # time.time() just before it was done
    kind: str
    worker: str
    pid: int | None
    state: str  # the worker's state when it was chosen
    chat_worker: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultLoop(threading.Thread):
    def __init__(self, bus: BusClient, ledger: Ledger, workers: list[str], kill_every_s: float,
                 sigstop_share: float, switch_share: float, seed: int,
                 request_timeout_s: float) -> None:
        super().__init__(daemon=True, name="chaos-faults")
        self.bus, self.ledger, self.workers = bus, ledger, workers
        self.every = kill_every_s
        self.sigstop_share, self.switch_share = sigstop_share, switch_share
        self.rng = random.Random(seed)
        self.timeout_s = request_timeout_s
        self.faults: list[Fault] = []
        self.stopped_pids: set[int] = set()
        self.stop_flag = threading.Event()
        self.failure: BaseException | None = None
        self._last: dict[str, float] = {}  # worker -> time of its last fault
        self._last_chat = 0.0
        self.supervisor_pid = 0

    def run(self) -> None:
        try:
            while not self.stop_flag.wait(self.rng.uniform(self.every / 4, self.every / 2)):
                self.one()
        except BaseException as exc:
            self.failure = exc
        finally:
            self.bus.close()

    def stop(self) -> None:
        """Stop faulting. A process still stopped is left to the supervisor's hang check for
        a few seconds (so its SIGSTOP is measured), then killed: none is left behind."""
        self.stop_flag.set()
        self.join(self.timeout_s + 5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in self.stopped_pids):
            time.sleep(0.05)
        for pid in self.stopped_pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()

    def one(self) -> None:
        status = self.bus.request("status", timeout=self.timeout_s).data
        self.supervisor_pid = int(status["supervisor"]["pid"])
        workers = status["workers"]
        chat_name = next((n for n, w in workers.items() if CHAT in w.get("roles", ())), None)
        now = time.time()
        chat_free = now - self._last_chat >= self.every
        free = [n for n in self.workers
                if now - self._last.get(n, 0.0) >= self.every and (n != chat_name or chat_free)]
        r = self.rng.random()
        if chat_name in free and r < self.switch_share:
            self.switch(chat_name, workers[chat_name], emergency=self.rng.random() < 0.5)
            return
        live = [n for n in free if workers[n]["pid"] and workers[n]["state"] in
                ("STARTING", "RUNNING")]
        if not live:
            return
        name = self.rng.choice(live)
        w = workers[name]
        stop = r > 1 - self.sigstop_share and w["state"] == "RUNNING"
        self.signal(name, int(w["pid"]), w["state"], STOP if stop else KILL,
                    name == chat_name)

    def _mark(self, fault: Fault) -> None:
        """Write the fault down, and leave its worker alone for a while: one `kill_every_s`,
        three after a SIGSTOP (the hang check, then a start, are timed from it)."""
        self.faults.append(fault)
        quiet_until = fault.t + (2 * self.every if fault.kind == STOP else 0.0)
        self._last[fault.worker] = quiet_until
        if fault.chat_worker:
            self._last_chat = quiet_until

    def signal(self, name: str, pid: int, state: str, kind: str, chat: bool) -> None:
        """Only a process that is still the supervisor's child: psutil checks the pid was not
        reused since, so nothing else on the machine is ever hit."""
        try:
            proc = psutil.Process(pid)
            if proc.ppid() != self.supervisor_pid:
                return
        except psutil.Error:
            return  # gone since the status: the next round picks again
        fault = Fault(time.time(), kind, name, pid, state, chat)
        self._mark(fault)
        try:
            if kind == STOP:
                self.stopped_pids.add(pid)
                proc.suspend()
            else:
                proc.kill()
        except psutil.Error as exc:
            fault.detail = f"missed: {type(exc).__name__}"

    def switch(self, name: str, w: dict[str, Any], emergency: bool) -> None:
        profile = reloading_profile(w.get("ready_info") or {})
        data = {"profile": profile, "emergency": emergency, "reason": "chaos soak"}
        self._mark(Fault(time.time(), EMERGENCY if emergency else SWITCH, name, w["pid"],
                         w["state"], True, profile))
        rec = self.ledger.open("bus", "switch_profile", "faults", self.timeout_s, data)
        await_final(self.bus, rec, self.bus.send("switch_profile", data))


class ResetStorm(threading.Thread):
    """Unity clients that vanish with an RST while the bridge is busy writing to them.

    Each burst greets a few clients, lets broadcasts pile up unread, then a commander (a
    client connected before them) floods avatar commands, each broadcast to every other
    client, and the burst resets all at once in the middle of the flood. So the bridge meets
    the resets while it broadcasts, as it does with a chat's speech and mouth frames."""

    def __init__(self, port: int, per_s: float, seed: int, burst: int = 6) -> None:
        super().__init__(daemon=True, name="chaos-resets")
        self.port, self.per_s, self.burst = port, per_s, burst
        self.rng = random.Random(seed)
        self.stop_flag = threading.Event()
        self.resets = 0
        self.greeted = 0
        self.commands = 0
        self.failures = 0
        self.failure: BaseException | None = None
        self._commander: socket.socket | None = None
        self._ids = 0

    def run(self) -> None:
        try:
            n = 0
            while not self.stop_flag.wait(self.rng.expovariate(self.per_s / self.burst)):
                if not self._command(0):  # connected first: served first in a poll batch
                    continue
                socks = []
                for _ in range(self.burst):
                    n += 1
                    sock = self._greet(n)
                    if sock is not None:
                        socks.append(sock)
                self.stop_flag.wait(self.rng.uniform(0.0, 0.2))  # broadcasts pile up unread
                self._command(100)
                for sock in socks:
                    reset(sock)
                    self.resets += 1
                self._command(100)
                self._read_answers()
        except BaseException as exc:
            self.failure = exc
        finally:
            if self._commander is not None:
                reset(self._commander)

    def _greet(self, n: int) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.failures += 1
            return None
        try:
            sock.sendall(hello_frame(f"reset-{n}"))
            if _welcomed(sock):
                self.greeted += 1
        except OSError:
            self.failures += 1
        return sock

    def _command(self, count: int) -> bool:
        """Send `count` commands at once on the commander's connection (opened if need be);
        False when the bridge cannot be reached (it is restarting)."""
        try:
            if self._commander is None:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                self._commander = sock
                sock.sendall(hello_frame("reset-commander"))
                _welcomed(sock)
            frames = []
            for _ in range(count):
                self._ids += 1
                frames.append(message("set_expression", {"name": self.rng.choice(EMOTIONS),
                                                         "value": self.rng.random()},
                                      id=self._ids))
            self._commander.sendall(b"".join(frames))
            self.commands += count
            return True
        except OSError:
            self._drop_commander()
            return False

    def _read_answers(self) -> None:
        """What the commander was sent (its oks, broadcasts), so it is not a slow consumer."""
        sock = self._commander
        if sock is None:
            return
        try:
            sock.setblocking(False)
            for _ in range(1000):
                if not sock.recv(1 << 16):
                    self._drop_commander()
                    return
        except BlockingIOError:
            sock.settimeout(2)
        except OSError:
            self._drop_commander()

    def _drop_commander(self) -> None:
        if self._commander is not None:
            self._commander.close()
        self._commander = None

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(10)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _welcomed(sock: socket.socket) -> bool:
    decoder = FrameDecoder(1 << 24)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            return False
        if any(True for _ in decoder.feed(data)):
            return True
    return False
