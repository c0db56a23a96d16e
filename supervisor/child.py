"""What the supervisor knows about one worker: its spec, its state, its process, its requests.

Plain data: only supervisor/lifecycle.py changes it, and only `Lifecycle._move` changes the
state. A process exists exactly while the state is live (STARTING, RUNNING, STOPPING).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from protocol.codec import Envelope
from supervisor.host import Process
from supervisor.specs import WorkerSpec
from supervisor.states import LIVE, State


class StopIntent(str, Enum):
    STOP = "stop"  # -> EXITED, stays down
    RESTART = "restart"  # -> start again at once, no crash counted
    SHUTDOWN = "shutdown"  # the whole stack goes down


@dataclass
class Stopping:
    """Why a worker is STOPPING and how far the stop has gone (set exactly while STOPPING)."""

    intent: StopIntent
    reason: str = ""  # told to clients whose requests are re-run after this stop
    terminated: bool = False  # asked, then terminated; killed next


@dataclass
class Held:
    """A request waiting for its worker (queued) or being run by it (in flight)."""

    client: bytes  # routing id of the asker
    client_id: int
    env: Envelope
    since: float
    attempts: int = 0  # times forwarded to a worker process
    started: bool = False  # this run has sent the asker a progress reply (a token)
    retried_started: bool = False  # a started run was cut and re-run: its one retry is spent


@dataclass
class Child:
    spec: WorkerSpec
    log_path: Path
    options: dict[str, Any] = field(default_factory=dict)  # per-start boot options (profile)
    state: State = State.EXITED
    proc: Process | None = None
    generation: int = 0  # of `proc`; every process of this worker has its own number
    spawned: int = 0  # processes started so far: the next one's generation is one more
    spare: Process | None = None  # booted ahead, waiting; not the worker until promoted
    spare_generation: int = 0
    activation_pending: bool = False  # a promoted spare not reached yet: on its heartbeat
    stopping: Stopping | None = None
    kill_reason: str = ""  # we killed it (hung, never ready): what its exit means
    started_at: float = 0.0
    ready_at: float = 0.0
    ready_deadline: float = 0.0  # STARTING: killed as never ready after this
    last_heartbeat: float = 0.0
    heartbeats: int = 0  # received from this process
    heartbeat_gap_max: float = 0.0  # largest gap between two of them, seconds
    heartbeat_gap_recent: float = 0.0  # largest in the last stats interval (see sample)
    gap_window: float = 0.0
    ready_info: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] | None = None  # the last load progress it reported
    last_output: str = ""  # last line the process printed: why a config error stopped it
    crash_times: deque[float] = field(default_factory=deque)
    restarts: int = 0
    last_exit: str = ""
    queue: deque[Held] = field(default_factory=deque)
    in_flight: dict[int, Held] = field(default_factory=dict)
    cpu: float | None = None
    rss: int | None = None
    spare_rss: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ident(self) -> bytes:
        """The routing id of this generation's process on the bus."""
        return self.ident_of(self.generation)

    def ident_of(self, generation: int) -> bytes:
        return f"w:{self.name}:{generation}".encode()

    def next_generation(self) -> int:
        self.spawned += 1
        return self.spawned

    @property
    def alive(self) -> bool:
        return self.state in LIVE

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def started(self, proc: Process, now: float) -> None:
        """A new process of this worker: per-process figures start over."""
        self.proc = proc
        self.started_at = now
        self.ready_deadline = now + self.spec.ready_timeout_s
        self.ready_at = self.last_heartbeat = 0.0
        self.heartbeats = 0
        self.heartbeat_gap_max = self.heartbeat_gap_recent = self.gap_window = 0.0
        self.ready_info = {}
        self.progress = None
        self.kill_reason = ""
        self.last_output = ""
        self.cpu, self.rss = proc.sample()

    def adopt_pid(self, pid: object) -> None:
        """The pid the worker reports about itself (its heartbeats carry it): the one status
        shows and psutil samples, even when the started process is a launcher (a Windows venv)."""
        if self.proc is not None and isinstance(pid, int) and pid != self.proc.pid:
            self.proc.adopt(pid)

    def record_crash(self, now: float) -> int:
        """Count a crash; returns crashes within the window (OTP's restart intensity)."""
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > self.spec.restart_window_s:
            self.crash_times.popleft()
        return len(self.crash_times)

    def on_heartbeat(self, now: float) -> None:
        if self.last_heartbeat:
            gap = now - self.last_heartbeat
            self.heartbeat_gap_max = max(self.heartbeat_gap_max, gap)
            self.gap_window = max(self.gap_window, gap)
        self.last_heartbeat = now
        self.heartbeats += 1

    def sample(self) -> None:
        """cpu % and rss; only the stats timer calls this, because cpu_percent measures since
        its previous call and must see even intervals. Also closes the heartbeat-gap window, so
        worker_stats tells when a gap happened, not only that one did."""
        self.heartbeat_gap_recent, self.gap_window = self.gap_window, 0.0
        self.cpu, self.rss = self.proc.sample() if self.proc else (None, None)
        self.spare_rss = self.spare.sample()[1] if self.spare else None

    def stats(self, now: float) -> dict[str, Any]:
        """State now, with cpu and rss from the last sample (cheap: status asks often)."""
        alive = self.alive
        return {
            "pid": self.pid, "state": self.state.value, "roles": list(self.spec.provides),
            "restart": self.spec.restart.value, "spec": self.spec.summary,
            "cpu_percent": self.cpu if alive else None, "rss": self.rss if alive else None,
            "uptime_s": round(now - self.started_at, 3) if alive else 0.0,
            "restarts": self.restarts, "last_exit": self.last_exit,
            "queued": len(self.queue), "in_flight": len(self.in_flight),
            "ready_info": self.ready_info, "progress": self.progress,
            "spare_pid": self.spare.pid if self.spare else None, "spare_rss": self.spare_rss,
            "heartbeats": self.heartbeats,
            "heartbeat_gap_max_s": round(self.heartbeat_gap_max, 4),
            "heartbeat_gap_recent_s": round(self.heartbeat_gap_recent, 4),
        }
