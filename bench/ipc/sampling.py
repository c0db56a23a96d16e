"""How a row of the table is sampled and recorded.

Real and floor samples are taken in alternating blocks after a warm-up that is excluded, so
both see the same machine; events published on their own schedule are only observed. The
same requests run again pinned to one core fill a row's `one_core` columns.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from bench.ipc.baselines import example
from bench.ipc.floors import Ring
from bench.ipc.stats import summary

Real = Callable[[], float | None]  # one real sample in seconds, or None to skip it


@dataclass(frozen=True)
class Plan:
    """How much to sample: --quick or a full run."""

    quick: bool
    footprint_s: float  # idle footprint of the supervisor
    n: int  # samples per type, real and floor each
    blocks: int  # alternations of real and floor
    warmup: int = 20  # per type, excluded

    @classmethod
    def for_run(cls, quick: bool, footprint_s: float | None = None) -> Plan:
        return cls(quick, footprint_s if footprint_s is not None else (30 if quick else 60),
                   n=200 if quick else 1000, blocks=4 if quick else 10)


def interleave(real: Real, ring: Ring | None, payload: dict[str, Any], n: int, blocks: int,
               warmup: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Summaries of n real samples and (with a ring) n floor samples, in alternating blocks."""
    for _ in range(warmup):
        real()
        if ring:
            ring.sample(payload)
    rs: list[float] = []
    fs: list[float] = []
    t_real = t_floor = 0.0
    per = max(1, n // blocks)
    tries = 0
    while len(rs) < n and tries < 3 * n:  # real() may skip; give up on a path that keeps on
        tries += per
        t0 = time.perf_counter()
        for _ in range(per):
            x = real()
            if x is not None:
                rs.append(x)
        t_real += time.perf_counter() - t0
        if ring:
            t0 = time.perf_counter()
            for _ in range(per):
                fs.append(ring.sample(payload))
            t_floor += time.perf_counter() - t0
    return summary(rs, t_real), (summary(fs, t_floor) if ring else None)


def with_floor(real: dict[str, Any], floor: dict[str, Any],
               floor_name: str | None = None) -> dict[str, Any]:
    """The floor's figures beside the real ones, and how many times the floor the real p50 is."""
    named = {} if floor_name is None else {"floor_name": floor_name}
    return {"floor": floor, **named, "ratio_p50": real["p50_ms"] / floor["p50_ms"]}


class Rows:
    """The table being built: one row per registry type (or per path of one), by key."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def set(self, key: str, **kw: Any) -> None:
        self.rows.setdefault(key, {}).update(kw)

    def alias(self, key: str, of: str, path: str) -> None:
        """A type whose figures are another row's (a reply is its request's round trip)."""
        self.set(key, alias_of=of, real={"n": 0}, path=path)

    def missing(self, key: str, why: str) -> None:
        self.set(key, path="-", real={"n": 0}, note="not measured: " + why)

    def add_floor(self, key: str, samples: list[float], floor_name: str, **kw: Any) -> None:
        """A floor sampled apart from the row (cold, or under the same load), if both exist."""
        real = self.rows[key]["real"]
        if real.get("n") and samples:
            self.set(key, **with_floor(real, summary(samples), floor_name), **kw)

    def passive(self, key: str, lat: list[float], path: str, floor: list[float],
                note: str = "", floor_name: str = "cold ow_ipc_2") -> None:
        """Events we only observe (published on their own schedule): no interleaving."""
        self.set(key, path=path, real=summary(lat), warmup=0,
                 note=note or "observed as published; ts -> receipt")
        self.add_floor(key, floor, floor_name)


@dataclass(frozen=True)
class Sampler:
    """Samples rows beside their floor into `rows`; with `one_core`, into their 1-core columns."""

    plan: Plan
    floors: dict[str, Ring]
    rows: Rows
    one_core: bool = False

    def interleaved(self, key: str, real: Real, floor: str | None, payload_type: str,
                    path: str, n: int | None = None,
                    payload_data: dict[str, Any] | None = None) -> None:
        """Sample `real` beside ring `floor`, which carries `payload_data` (a real reply, where
        its size matters) or an example of `payload_type` of the registry."""
        ring = self.floors[floor] if floor else None
        payload = {"type": payload_type, "data": payload_data or example(payload_type).data}
        real_s, floor_s = interleave(real, ring, payload, n or self.plan.n, self.plan.blocks,
                                     self.plan.warmup)
        if self.one_core:
            assert floor_s is not None, key
            self.rows.set(key, one_core={"real": real_s, **with_floor(real_s, floor_s)})
            return
        row: dict[str, Any] = {"path": path, "real": real_s, "warmup": self.plan.warmup}
        if floor_s is not None:
            row.update(with_floor(real_s, floor_s, floor))
        self.rows.set(key, **row)


@contextlib.contextmanager
def on_one_core(pids: list[int]) -> Iterator[None]:
    """Pin every thread of `pids` to one CPU for the block.

    Unpinned, a wake-up that crosses CPUs costs ~30 us on this VM (an IPI is a VM exit)
    against ~3 us on the same CPU, and which one a process pair gets is the scheduler's
    luck, sticky for seconds: floor and real then differ by placement, not by code. On one
    core both run the same way, so the ratio is our software's overhead alone."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    everything = os.sched_getaffinity(0)

    def pin(cpus: set[int]) -> None:
        for pid in pids:
            with contextlib.suppress(psutil.Error, OSError):
                for th in psutil.Process(pid).threads():
                    os.sched_setaffinity(th.id, cpus)
    pin({min(everything)})
    try:
        yield
    finally:
        pin(everything)
