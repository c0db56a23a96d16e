"""How the stack holds up beyond one message: latency and heartbeats during a profile switch,
the supervisor's idle footprint, and crash recovery."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil

from bench.ipc.probes import Probe
from bench.ipc.stats import summary
from bench.recovery import WORKERS, measure_worker
from supervisor.harness import Stack, reloading_profile

HEARTBEAT_WATCHED = ("unity_bridge", "gpu_monitor")  # the workers that keep running


def _timed_expression(probe: Probe) -> float:
    """set_expression from the TCP client, to the receipt of its ok."""
    t0 = time.time()
    t, _ = probe.request_timed("set_expression", {"name": "joy", "value": 0.4})
    return t - t0


def switch(stack: Stack, probe: Probe, label: str, n_idle: int) -> dict[str, Any]:
    """A profile switch while a TCP client sends set_expression and the CLI asks status.

    Done when the inference worker runs again under a new pid."""
    print(f"profile switch ({label}) ...", flush=True)
    bus = stack.new_client()
    bus.subscribe(["worker_stats"])  # each tells the largest heartbeat gap of its interval
    old_pid = stack.worker("inference")["pid"]
    probe.drain()
    idle = [_timed_expression(probe) for _ in range(n_idle)]
    status_idle = []
    for _ in range(50):
        t0 = time.time()
        bus.request("status")
        status_idle.append(time.time() - t0)
    during: list[float] = []
    status_during: list[float] = []
    t0 = t_start = time.time()
    target = reloading_profile(stack.worker("inference")["ready_info"])
    bus.request("switch_profile", {"profile": target, "reason": "ipc bench"})
    switch_ok = time.time() - t0
    stop = threading.Event()

    def expr_loop() -> None:
        while not stop.is_set():
            during.append(_timed_expression(probe))
    th = threading.Thread(target=expr_loop)
    th.start()
    t_sw = time.monotonic()
    try:
        while True:
            t1 = time.time()
            w = bus.request("status").data["workers"]["inference"]
            status_during.append(time.time() - t1)
            if w["state"] == "RUNNING" and w["pid"] != old_pid:
                break
            if time.monotonic() - t_sw > 120:
                raise TimeoutError("the profile switch did not finish in 120 s")
            time.sleep(0.005)
    finally:
        stop.set()
        th.join()
    switch_s = time.monotonic() - t_sw
    t_end = time.time()
    cfg = stack.config()["supervisor"]
    interval = cfg["heartbeat_interval_s"]
    # The gaps that closed from the switch's start to a heartbeat after its end.
    gaps = {w: 0.0 for w in HEARTBEAT_WATCHED}
    until = t_end + interval + cfg["stats_interval_s"] + 0.5
    while time.time() < until + 1:
        with contextlib.suppress(TimeoutError):
            ev = bus.recv_event(0.2)
            if t_start <= ev.ts <= until + cfg["stats_interval_s"]:
                for w in gaps:
                    gaps[w] = max(gaps[w], ev.data["workers"][w]["heartbeat_gap_recent_s"])
    load_s = stack.worker("inference")["ready_info"]["load_s"]
    bus.close()
    res = {"label": label, "switch_s": switch_s, "heartbeat_interval_s": interval,
           "load_s": load_s, "heartbeat_gap_max_s": gaps,
           "heartbeat_late_ms": {w: (gaps[w] - interval) * 1e3 for w in gaps},
           "set_expression_tcp_idle": summary(idle),
           "set_expression_tcp_during": summary(during),
           "status_idle": summary(status_idle), "status_during": summary(status_during),
           "switch_profile_ok_ms": switch_ok * 1e3}
    print(f"  switch {switch_s:.2f} s (load {load_s:.2f} s); set_expression p99 idle "
          f"{res['set_expression_tcp_idle']['p99_ms']:.2f} ms, during "
          f"{res['set_expression_tcp_during'].get('p99_ms', 0):.2f} ms; heartbeat gap max "
          f"{gaps}", flush=True)
    return res


def footprint(stack: Stack, secs: float) -> dict[str, Any]:
    """The supervisor of an idle stack (no client connected): CPU and RSS over `secs`."""
    print(f"idle footprint over {secs} s ...", flush=True)
    time.sleep(1)
    sup = psutil.Process(stack.status()["supervisor"]["pid"])
    t0 = time.monotonic()
    c0 = sup.cpu_times()
    time.sleep(secs)
    c1 = sup.cpu_times()
    wall = time.monotonic() - t0
    cpu = ((c1.user - c0.user) + (c1.system - c0.system)) / wall * 100  # 0, not -1e-16
    rss_mb = sup.memory_info().rss / 2**20
    print(f"  supervisor {rss_mb:.1f} MB, {cpu:.2f} % CPU", flush=True)
    return {"seconds": secs, "supervisor_cpu_percent": cpu, "supervisor_rss_mb": rss_mb}


def recovery(stack: Stack) -> dict[str, dict[str, float]]:
    """kill -9 of each worker: until the supervisor notices, and until it runs again."""
    print("crash recovery (bench.recovery.measure_worker) ...", flush=True)
    stack.client.subscribe(["worker_state"])
    time.sleep(0.3)
    rows = {}
    for name in WORKERS:
        rows[name] = measure_worker(stack, name)
        time.sleep(0.5)
    return rows
