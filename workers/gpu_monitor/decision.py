"""When to switch profiles: pure, so every recorded trace can be replayed in a test.

The ancestor judged total VRAM use, which counts the companion's own model as pressure: after
switching down VRAM looked free, so it switched up, filled VRAM again, and looped. Here pressure
is VRAM used by *other* processes plus what the profile under consideration would need, which
does not change when we switch. A new state must also hold for a while (dwell) and be clearly
better before we step up (hysteresis), and switches keep a minimum distance, except the
emergency of an overload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class GpuState(str, Enum):
    OPTIMAL = "OPTIMAL"
    MODERATE = "MODERATE"
    STRESSED = "STRESSED"
    OVERLOADED = "OVERLOADED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {GpuState.OPTIMAL: 0, GpuState.MODERATE: 1, GpuState.STRESSED: 2,
             GpuState.OVERLOADED: 3}


@dataclass
class Sample:
    t: float  # seconds, monotonic within one source
    vram_used: int  # bytes, whole card
    vram_total: int
    gpu_percent: float
    own_vram: int = 0  # bytes used by our inference process

    @property
    def others(self) -> int:
        return max(0, self.vram_used - self.own_vram)


@dataclass
class Decision:
    state: GpuState
    profile: str
    emergency: bool
    reason: str


# need(profile, vram_total) -> bytes that profile would take on this card
NeedFn = Callable[[str, int], int]


class Decider:
    def __init__(self, cfg: dict[str, Any], need: NeedFn, current_profile: str | None = None
                 ) -> None:
        self.t = cfg["thresholds"]
        self.profiles: dict[str, str] = cfg["state_profiles"]
        self.dwell_samples = cfg["dwell_samples"]
        self.dwell_s = cfg["dwell_s"]
        self.min_interval = cfg["min_switch_interval_s"]
        self.need = need
        self.profile = current_profile  # the profile we run (or last asked for)
        self.state: GpuState | None = None
        self._pending: GpuState | None = None
        self._pending_count = 0
        self._pending_since = 0.0
        self._last_switch: float | None = None
        self.last_pressure: dict[str, float] = {}

    def classify(self, s: Sample, shift: float = 0.0) -> GpuState:
        """State of one sample; `shift` pretends the load is that many points higher."""
        t = self.t
        total = max(s.vram_total, 1)
        mid = 100.0 * (s.others + self.need(self.profiles["STRESSED"], total)) / total
        top = 100.0 * (s.others + self.need(self.profiles["OPTIMAL"], total)) / total
        self.last_pressure = {"vram_if_stressed_profile": round(mid, 2),
                              "vram_if_optimal_profile": round(top, 2),
                              "others_percent": round(100.0 * s.others / total, 2)}
        gpu = s.gpu_percent + shift
        mid += shift
        top += shift
        if mid > t["overloaded_vram"]:
            return GpuState.OVERLOADED
        if mid > t["stressed_vram"] and gpu > t["stressed_gpu"]:
            return GpuState.STRESSED
        if top < t["optimal_vram"] and gpu < t["optimal_gpu"]:
            return GpuState.OPTIMAL
        return GpuState.MODERATE

    def update(self, s: Sample) -> Decision | None:
        """Feed one sample; returns a Decision when the profile should change now."""
        candidate = self.classify(s)
        if self.state is not None and candidate.severity < self.state.severity:
            # Stepping to a better state must also hold with the load `hysteresis` higher.
            relaxed = self.classify(s, self.t["hysteresis"])
            candidate = relaxed if relaxed.severity < self.state.severity else self.state
        self.classify(s)  # keep last_pressure about the real load
        if candidate == self.state:
            self._pending = None
        elif candidate != self._pending:
            self._pending, self._pending_count, self._pending_since = candidate, 1, s.t
        else:
            self._pending_count += 1
        if (self._pending is not None and self._pending_count >= self.dwell_samples
                and s.t - self._pending_since >= self.dwell_s):
            self.state, self._pending = self._pending, None
        if self.state is None:
            return None
        wanted = self.profiles[self.state.value]
        if wanted == self.profile:
            return None
        emergency = self.state is GpuState.OVERLOADED
        if (not emergency and self._last_switch is not None
                and s.t - self._last_switch < self.min_interval):
            return None
        self._last_switch = s.t
        p = self.last_pressure
        reason = (f"GPU {self.state.value}: others use {p['others_percent']:.0f}% VRAM; with "
                  f"{self.profiles['OPTIMAL']} {p['vram_if_optimal_profile']:.0f}%, with "
                  f"{self.profiles['STRESSED']} {p['vram_if_stressed_profile']:.0f}%; "
                  f"GPU {s.gpu_percent:.0f}%")
        previous, self.profile = self.profile, wanted
        return Decision(self.state, wanted, emergency,
                        f"{previous or '?'} -> {wanted}: {reason}")
