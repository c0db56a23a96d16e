"""Replay a GPU trace through the decision rules, without a stack: which switches, and when.

    .venv/bin/python -m workers.gpu_monitor.simulate data/traces/*.csv
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.config import DEFAULT_MODEL, default_config, load_profiles
from workers.gpu.gguf_info import read_model_info
from workers.gpu.planner import profile_need
from workers.gpu.sources import ReplaySource
from workers.gpu_monitor.decision import Decider, Sample


@dataclass
class Switch:
    row: int  # 0-based row of the trace
    profile: str
    state: str
    emergency: bool
    reason: str


def simulate(trace: Path, config: dict[str, Any] | None = None, model: Path = DEFAULT_MODEL,
             start_profile: str | None = None) -> list[Switch]:
    cfg = config or default_config()
    profiles = load_profiles()
    info = read_model_info(model)
    gm = cfg["gpu_monitoring"]
    decider = Decider(gm, lambda name, total: profile_need(name, profiles, info, total),
                      start_profile)
    source = ReplaySource(trace)
    switches = []
    for row in range(len(source.rows)):
        r = source.read()
        d = decider.update(Sample(row * gm["interval_s"], r["vram_used"], r["vram_total"],
                                  r["gpu_percent"], r["own_vram"]))
        if d is not None:
            switches.append(Switch(row, d.profile, d.state.value, d.emergency, d.reason))
    return switches


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="+", type=Path)
    args = ap.parse_args()
    for trace in args.traces:
        print(f"{trace}:")
        for s in simulate(trace):
            print(f"  row {s.row:>3}: -> {s.profile:<13} {s.state:<10}"
                  f"{' EMERGENCY' if s.emergency else ''}  {s.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
