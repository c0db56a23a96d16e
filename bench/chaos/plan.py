"""How big and how long a run is, and the stack it runs on.

One budget (seconds) drives everything: the fuzz is sized in frames and bounded in time, and
the soak fills what is left. `short` is what the test suite runs: fewer kills, a smaller fuzz.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "data" / "traces" / "companion_alone.csv"
VICTIM = "chaos_thread_victim"  # the bench's own worker whose thread dies on cue


@dataclass(frozen=True)
class Plan:
    budget_s: float  # the whole run, stack start to the supervisor kill
    seed: int = 1
    # -- soak --
    kill_every_s: float = 3.0  # faults that hit the chat worker are at least this far apart
    chat_clients: int = 3  # a queue forms: chats wait, forwarded but not begun, at a kill
    chat_max_tokens: int = 12
    chat_timeout_s: float = 180.0  # no reply for this long, none final: lost (the CLI's wait)
    request_timeout_s: float = 30.0  # other bus and wire requests
    resets_per_s: float = 5.0  # Unity clients that vanish with an RST
    sigstop_share: float = 0.08
    switch_share: float = 0.15  # half of them emergency
    # -- fuzz --
    fuzz_frames: int = 100_000
    fuzz_connections: int = 8
    fuzz_max_s: float = 300.0
    fuzz_names: int = 5_000  # distinct expression names in the flood
    names_check: int = 1_000  # and in the counted flood after it
    idle_s: float = 10.0  # good client alone, before the fuzz
    after_s: float = 10.0  # and after it
    probe_every_s: float = 0.01
    # -- the rest --
    thread_deaths: int = 5
    extra_supervisor_kills: int = 2  # more kill -9s of a small stack: do folders pile up?
    reserve_s: float = 40.0  # for the requests in flight, the checks, the supervisor kills

    @classmethod
    def short(cls, budget_s: float = 60.0, seed: int = 1) -> Plan:
        return cls(budget_s, seed, fuzz_frames=4_000, fuzz_max_s=12.0, fuzz_names=300,
                   names_check=200, idle_s=2.0, after_s=2.0,
                   thread_deaths=2, extra_supervisor_kills=0, reserve_s=15.0)

    @classmethod
    def full(cls, budget_s: float, seed: int = 1) -> Plan:
        return cls(budget_s, seed)

    def with_(self, **changes: Any) -> Plan:
        return dataclasses.replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stack_config(plan: Plan, port: int) -> dict[str, Any]:
    """The soak's stack: a fixed Unity port (clients come back to it after a bridge restart,
    as the avatar does), fast heartbeats so a SIGSTOP is seen in under a second, a restart
    budget it cannot exhaust (it measures recovery, not the crash limit), queues that answer
    (TIMEOUT) before a client would call a request lost, GPU readings from a replayed trace."""
    return {
        "version": 1,
        "supervisor": {"heartbeat_interval_s": 0.25, "heartbeat_misses": 3,
                       "backoff_initial_s": 0.05, "backoff_max_s": 0.5,
                       "max_restarts": 10_000, "restart_window_s": 30,
                       "queue_timeout_s": 60.0, "stats_interval_s": 0.5,
                       "stop_timeout_s": 3.0, "terminate_timeout_s": 2.0,
                       "drain_timeout_s": 10.0},
        "unity_bridge": {"port": port, "handshake_timeout_s": 2.0, "ping_interval_s": 1.0,
                         "client_timeout_s": 6.0, "max_clients": 32},
        "ai": {"max_tokens": plan.chat_max_tokens, "auto_switching_enabled": False},
        "gpu_monitoring": {"interval_s": 0.5, "trace_file": str(TRACE)},
        "logging": {"level": "INFO"},
        "workers": {VICTIM: {"module": "bench.chaos.thread_victim", "enabled": False,
                             "restart": "temporary"}},
    }


def small_stack_config() -> dict[str, Any]:
    """For the extra supervisor kills: no model, so it starts in about a second."""
    return {"version": 1, "unity_bridge": {"port": 0},
            "workers": {"inference": {"enabled": False}}}
