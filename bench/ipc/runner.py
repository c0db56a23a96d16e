"""The order of the run: what is started, measured on which stack, and torn down."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from bench.ipc import health, measurements, streaming
from bench.ipc.baselines import ancestor_json_rt, codec_compare
from bench.ipc.floors import ColdFloor, open_floors
from bench.ipc.measurements import Rig
from bench.ipc.probes import Collector, Probe
from bench.ipc.sampling import Plan, Rows, Sampler, on_one_core
from bench.ipc.stats import summary
from supervisor.harness import Stack

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "data" / "traces" / "companion_alone.csv"
# Periodic events every 0.5 s so they give enough samples; GPU readings from a replayed trace
# (no GPU needed) with auto-switching off, so the only switches are the bench's own.
STACK_CONFIG: dict[str, Any] = {
    "version": 1, "unity_bridge": {"port": 0}, "supervisor": {"stats_interval_s": 0.5},
    "gpu_monitoring": {"interval_s": 0.5, "trace_file": str(TRACE)},
    "ai": {"auto_switching_enabled": False}}
# The footprint and the slow-load switch: defaults, plus a load that takes 3 s longer.
SLOW_LOAD_S = 3.0
DEFAULT_CONFIG: dict[str, Any] = {"version": 1, "unity_bridge": {"port": 0},
                                  "ai": {"extra_load_s": SLOW_LOAD_S}}


def bridge_port(stack: Stack) -> int:
    return int(stack.worker("unity_bridge")["ready_info"]["port"])


def run(plan: Plan, tmp: Path) -> dict[str, Any]:
    """Everything, in order; returns the results (without targets: see report)."""
    t_start = time.monotonic()
    rows = Rows()
    results = _main_stack(plan, tmp, rows)
    results.update(_slow_stack(plan, tmp))
    print("codec and ancestor baseline ...", flush=True)
    results["codec"] = codec_compare(2000 if plan.quick else 10000)
    results["ancestor_json_tcp_rt"] = ancestor_json_rt(plan.n)
    results["types"] = rows.rows
    results["elapsed_s"] = time.monotonic() - t_start
    return results


def _main_stack(plan: Plan, tmp: Path, rows: Rows) -> dict[str, Any]:
    """Every message type on its path, beside its floor; a switch; crash recovery."""
    print("starting the stack ...", flush=True)
    (tmp / "stack").mkdir(exist_ok=True)
    stack = Stack(tmp / "stack", STACK_CONFIG).start()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        print("starting the floor relays ...", flush=True)
        floors = open_floors(tmp)
        for ring in floors.values():
            cleanup.callback(ring.close)
        cold = ColdFloor(tmp)
        cold.start()
        cleanup.callback(cold.stop)
        col = Collector(stack)
        col.start()
        cleanup.callback(col.stop)
        col.ready.wait(10)
        time.sleep(0.3)
        bus = stack.new_client()
        cleanup.callback(bus.close)
        rig = Rig(stack, bridge_port(stack), bus, Probe(bridge_port(stack)), col)
        cleanup.callback(lambda: rig.probe.close())  # the probe in use at the end
        s = Sampler(plan, floors, rows)
        _requests(rig, s)
        pids = [os.getpid(), *rig.pids(),
                *[p.pid for r in floors.values() for p in r.procs if p.pid is not None]]
        with on_one_core(pids):
            print("the same on one core (stack, floor relays and bench pinned) ...", flush=True)
            _requests(rig, dataclasses.replace(s, one_core=True))
        under_load = streaming.chat(rig, s)
        results: dict[str, Any] = {
            "chat_delta_throughput": streaming.throughput(rig, floors["ow_ipc_ipc_tcp"],
                                                          plan.quick),
            "switch": health.switch(stack, rig.probe, "normal load", max(100, plan.n // 4))}
        rows.set("switch_profile", path="client -> supervisor -> client (ok; the switch goes "
                 "on after)", real=summary([results["switch"]["switch_profile_ok_ms"] / 1e3]),
                 warmup=0, note="1 sample")
        measurements.retry(stack, rows, plan.quick)
        measurements.auto_switching(rig, rows)
        measurements.lifecycle(rig, rows)
        measurements.observed(rows, col.lat, cold.samples, under_load)
        results["recovery"] = health.recovery(stack)
    return results


def _requests(rig: Rig, s: Sampler) -> None:
    """The rows sampled beside their floor, run twice: as it runs, then on one core."""
    measurements.control(rig, s)
    measurements.avatar(rig, s)
    measurements.wire(rig, s)


def _slow_stack(plan: Plan, tmp: Path) -> dict[str, Any]:
    """A second stack, default config with slow model loads: a switch and the idle footprint."""
    print(f"a second stack: default config, each model load {SLOW_LOAD_S:g} s slower ...",
          flush=True)
    (tmp / "slow").mkdir(exist_ok=True)
    slow = Stack(tmp / "slow", DEFAULT_CONFIG).start()
    try:
        with Probe(bridge_port(slow)) as probe:
            sw = health.switch(slow, probe, f"a load {SLOW_LOAD_S:g} s slower, busy on one "
                               "core", max(100, plan.n // 4))
        return {"switch_slow_load": sw, "footprint": health.footprint(slow, plan.footprint_s)}
    finally:
        slow.stop()
