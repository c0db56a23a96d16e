"""When to switch profiles: pure, so every recorded trace can be replayed in a test.

The ancestor judged total VRAM use, which counts the companion's own model as pressure: after
switching down VRAM looked free, so it switched up, filled VRAM again, and looped. Here the
question is whether each profile *fits* next to what other programs use: others' VRAM (the
card's use minus our own footprint, which the monitor keeps fresh) + what the profile needs +
a margin must stay within the card. That does not change when we switch, so a switch cannot
cause the next one. States:

- OVERLOADED: the STRESSED state's profile (balanced) no longer fits -> the emergency profile;
- OPTIMAL: the OPTIMAL profile (performance) fits and others' GPU % is below optimal_gpu;
- STRESSED: others' GPU % above stressed_gpu; MODERATE otherwise.

The GPU % is others' (the monitor leaves out the time our own replies run). A new state must
hold for a while (dwell) and fit with `hysteresis` % of the card to spare before we step up, and
switches keep a minimum distance, except the emergency of an overload.
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
    def __init__(self, cfg: dict[str, Any], need: NeedFn, current_profile: str | None = None,
                 margin_bytes: int = 512 << 20) -> None:
        self.t = cfg["thresholds"]
        self.margin = margin_bytes
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

    def fits(self, profile: str, s: Sample, extra: int = 0) -> bool:
        """Does `profile` fit next to what others use now, with the margin (and `extra`)?"""
        total = max(s.vram_total, 1)
        return s.others + self.need(profile, total) + self.margin + extra <= total

    def _fits_below(self, profile: str, total: int) -> float:
        """Others' VRAM % up to which `profile` still fits, with the margin."""
        return round(100.0 * (total - self.need(profile, total) - self.margin) / total, 2)

    def classify(self, s: Sample, shift: float = 0.0) -> GpuState:
        """State of one sample; `shift` pretends the load is that many points higher (of the
        card's VRAM, and of GPU %)."""
        t = self.t
        total = max(s.vram_total, 1)
        stressed, optimal = self.profiles["STRESSED"], self.profiles["OPTIMAL"]
        self.last_pressure = {
            "others_percent": round(100.0 * s.others / total, 2),
            "own_percent": round(100.0 * s.own_vram / total, 2),
            "vram_if_stressed_profile": round(
                100.0 * (s.others + self.need(stressed, total)) / total, 2),
            "vram_if_optimal_profile": round(
                100.0 * (s.others + self.need(optimal, total)) / total, 2),
            # The decision rule as lines on others' VRAM %: above the first, OVERLOADED;
            # below the second (and GPU % below optimal_gpu), OPTIMAL.
            "stressed_profile_fits_below": self._fits_below(stressed, total),
            "optimal_profile_fits_below": self._fits_below(optimal, total)}
        extra = int(shift / 100.0 * total)
        gpu = (s.gpu_percent or 0.0) + shift
        if not self.fits(stressed, s, extra):
            return GpuState.OVERLOADED
        if self.fits(optimal, s, extra) and gpu < t["optimal_gpu"]:
            return GpuState.OPTIMAL
        if gpu > t["stressed_gpu"]:
            return GpuState.STRESSED
        return GpuState.MODERATE

    def restart_dwell(self) -> None:
        """Samples taken while a switch was under way say nothing about the new load."""
        self._pending, self._pending_count = None, 0

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
