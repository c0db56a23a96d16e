"""A worker's spec: what to run and how to supervise it, resolved once from the config.

The supervisor runs any worker from its spec alone and never knows what the worker does; what it
does for the stack is the list of roles it provides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from functools import cached_property
from typing import Any

# Per-worker settings that default to the `supervisor` section's value of the same name.
INHERITED = ("ready_timeout_s", "heartbeat_interval_s", "heartbeat_misses", "max_restarts",
             "restart_window_s", "backoff_initial_s", "backoff_max_s", "backoff_jitter",
             "stop_timeout_s", "terminate_timeout_s")


class Restart(str, Enum):
    """OTP's restart types."""

    PERMANENT = "permanent"  # restarted after any exit nobody asked for
    TRANSIENT = "transient"  # restarted only after an abnormal exit (not in exit_codes)
    TEMPORARY = "temporary"  # never restarted


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    module: str
    args: tuple[str, ...] = ()
    enabled: bool = True
    provides: tuple[str, ...] = ()
    restart: Restart = Restart.PERMANENT
    exit_codes: tuple[int, ...] = (0,)  # normal exits, for `transient`
    warm_spare: bool = False  # a process booted ahead takes over at the next start
    ready_timeout_s: float = 60.0
    heartbeat_interval_s: float = 1.0
    heartbeat_misses: int = 3
    max_restarts: int = 5
    restart_window_s: float = 30.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 15.0
    backoff_jitter: float = 0.2
    stop_timeout_s: float = 5.0
    terminate_timeout_s: float = 2.0

    @classmethod
    def from_config(cls, name: str, worker: dict[str, Any],
                    supervisor: dict[str, Any]) -> WorkerSpec:
        inherited = {k: supervisor[k] if worker.get(k) is None else worker[k] for k in INHERITED}
        return cls(name=name, module=worker["module"], args=tuple(worker["args"]),
                   enabled=worker["enabled"], provides=tuple(worker["provides"]),
                   restart=Restart(worker["restart"]), exit_codes=tuple(worker["exit_codes"]),
                   warm_spare=worker["warm_spare"],
                   **inherited)

    @property
    def hung_after_s(self) -> float:
        return self.heartbeat_interval_s * self.heartbeat_misses

    def restarts_after(self, normal_exit: bool) -> bool:
        """Whether an exit nobody asked for starts the worker again."""
        if self.restart is Restart.TEMPORARY:
            return False
        return self.restart is Restart.PERMANENT or not normal_exit

    @cached_property
    def summary(self) -> dict[str, Any]:
        """What `status` shows: the policy, not the command line (made once: status is asked
        often, and asdict is slow)."""
        out = asdict(self)
        for key in ("name", "args", "enabled"):
            del out[key]
        out["restart"] = self.restart.value
        out["provides"] = list(self.provides)
        out["exit_codes"] = list(self.exit_codes)
        return out


def specs_from_config(config: dict[str, Any]) -> dict[str, WorkerSpec]:
    return {name: WorkerSpec.from_config(name, w, config["supervisor"])
            for name, w in config["workers"].items()}
