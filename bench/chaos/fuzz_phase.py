"""The fuzz on a live stack: a good client's round trips before, during and after, the
bridge's RSS, and whether the bridge lived through it.

Nothing else disturbs the stack meanwhile (no kills, no chats), so every change of the
bridge's pid in this phase is a crash, and the latency and RSS figures are the fuzz's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.chaos import names_check
from bench.chaos.plan import REPO, Plan
from bench.chaos.probe import GoodClient, RssSampler, rss
from bench.ipc.stats import summary
from protocol.bus import BusClient
from protocol.codec import encode
from unity_bridge.client import BridgeClient

MB = 1e6


def welcome_figures(port: int) -> dict[str, Any]:
    """What a client that connects now receives: how many expression names, how many bytes."""
    with BridgeClient("127.0.0.1", port, name="welcome-probe") as c:
        try:
            env = c.connect(timeout=10)
        except Exception as exc:  # e.g. a welcome over the client's frame limit
            return {"error": f"{type(exc).__name__}: {exc}"}
    return {"expressions": len(env.data["state"]["expressions"]), "bytes": len(encode(env))}


def bridge(bus: BusClient) -> dict[str, Any]:
    return bus.request("status", timeout=10).data["workers"]["unity_bridge"]


def run(bus: BusClient, port: int, plan: Plan) -> dict[str, Any]:
    t_begin = time.time()
    before = bridge(bus)
    pid = int(before["pid"])
    good = GoodClient(port, plan.probe_every_s)
    good.start()
    time.sleep(plan.idle_s)
    welcome_before = welcome_figures(port)
    rss_start = rss(pid)
    sampler = RssSampler(pid)
    sampler.start()
    good.phase = "during"
    cmd = [sys.executable, "-m", "bench.chaos.fuzz", "--port", str(port),
           "--frames", str(plan.fuzz_frames), "--names", str(plan.fuzz_names),
           "--connections", str(plan.fuzz_connections), "--seed", str(plan.seed),
           "--max-s", str(plan.fuzz_max_s), "--max-frame", str(1 << 20)]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=plan.fuzz_max_s + 60)
        fuzz = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {
            "error": proc.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        fuzz = {"error": "the fuzzer did not finish in time"}
    t1 = time.time()
    good.phase = "after"
    time.sleep(plan.after_s)
    sampler.stop()
    rss_after = rss(pid)
    good.stop()
    after = bridge(bus)
    welcome_after = welcome_figures(port)
    crashes = max(after["restarts"] - before["restarts"], int(after["pid"] != pid))
    names = names_check.run(port, plan.names_check)
    during = sorted(zip(good.samples.get("during", []), good.sent.get("during", []),
                        strict=True), reverse=True)
    return {
        "command": " ".join(["python", "-m", "bench.chaos.fuzz", *cmd[3:]]),
        "window": [t_begin, time.time()], "fuzzer_window": [t0, t1], "fuzz": fuzz,
        "good_client": {phase: summary(good.samples.get(phase, []))
                        for phase in ("idle", "during", "after")},
        "good_client_slowest": [{"ms": round(rtt * 1e3, 2), "at_s": round(t - t0, 2)}
                                for rtt, t in during[:10]],
        "names_check": names,
        "names_check_bridge_restarts": bridge(bus)["restarts"] - after["restarts"],
        "good_client_timeouts": good.timeouts, "good_client_reconnects": good.reconnects,
        "bridge_pid_before": pid, "bridge_pid_after": after["pid"],
        "bridge_crashes": crashes, "bridge_last_exit": after["last_exit"],
        "rss_start_mb": None if rss_start is None else rss_start / MB,
        "rss_peak_mb": sampler.peak / MB,
        "rss_after_mb": None if rss_after is None else rss_after / MB,
        "welcome_before": welcome_before, "welcome_after": welcome_after,
        "probe_failure": repr(good.failure) if good.failure else None,
    }
