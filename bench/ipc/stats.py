"""The figures every latency row carries: percentiles in ms and the closed-loop rate."""

from __future__ import annotations

from typing import Any


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile by nearest rank (no interpolation: every figure is a real sample)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def summary(xs: list[float], elapsed: float | None = None) -> dict[str, Any]:
    """Latencies in seconds -> ms figures; `per_s` is samples per second of `elapsed`."""
    if not xs:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(xs), "p50_ms": pct(xs, 50) * 1e3,
                           "p95_ms": pct(xs, 95) * 1e3, "p99_ms": pct(xs, 99) * 1e3,
                           "max_ms": max(xs) * 1e3}
    if elapsed:
        out["per_s"] = len(xs) / elapsed
    return out
