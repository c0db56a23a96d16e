"""The order of a run: one stack through the thread deaths, the fuzz, the soak and the
checks, then the supervisor's kill -9 (and a few more on small stacks)."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

from bench.chaos import analysis, fuzz_phase, memory_check, soak, supervisor_kill, thread_death
from bench.chaos.contention import Contention
from bench.chaos.faults import Fault
from bench.chaos.ledger import Ledger
from bench.chaos.observer import Observer, lives
from bench.chaos.plan import VICTIM, Plan, small_stack_config, stack_config
from supervisor.harness import Stack, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(plan: Plan, tmp: Path, command: str, log: Any = print) -> dict[str, Any]:
    t_start, wall_start = time.monotonic(), time.time()
    contention = Contention()
    contention.start()
    port = free_port()
    cfg = stack_config(plan, port)
    (tmp / "stack").mkdir()
    log("starting the stack ...")
    stack = Stack(tmp / "stack", cfg).start()
    res: dict[str, Any] = {"run": {
        "command": command, "short": plan.budget_s <= 120, "seed": plan.seed,
        "host": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "heartbeat_s": cfg["supervisor"]["heartbeat_interval_s"],
        "heartbeat_misses": cfg["supervisor"]["heartbeat_misses"], "plan": plan.as_json()}}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        observer = Observer(stack.new_client())
        observer.start()
        cleanup.callback(observer.stop)
        observer.ready.wait(10)
        bus = stack.new_client()
        cleanup.callback(bus.close)
        running = bus.request("status", timeout=10).data["workers"]  # lives begun before
        log(f"thread deaths ({plan.thread_deaths}) ...")
        res["thread_death"] = thread_death.run(bus, observer, stack.data_dir, plan.thread_deaths)
        log(f"fuzz: {plan.fuzz_frames} frames, good client {plan.idle_s:g} s before and "
            f"{plan.after_s:g} s after ...")
        res["fuzz"] = fuzz_phase.run(bus, port, plan)
        soak_s = max(10.0, plan.budget_s - (time.monotonic() - t_start) - plan.reserve_s)
        res["run"]["soak_s"] = soak_s
        log(f"soak: {soak_s:.0f} s ...")
        ledger = Ledger()
        result = soak.run(stack, port, plan, ledger, soak_s, log)
        res["settled"] = _settle(stack)
        observer.stop()
        res["soak"] = {"window": result.window, "resets": result.resets, "wire": result.wire,
                       "failures": result.failures}
        res["requests"] = analysis.requests(ledger)
        res["faults"] = analysis.faults(result.faults)
        res["fault_log"] = [f.to_json() for f in result.faults]
        seen = lives(observer.events, running)
        deaths = [Fault(0.0, "thread death", VICTIM, s["pid"], "RUNNING", False)
                  for s in res["thread_death"]["samples"] if "pid" in s]
        res["exits"] = analysis.exits(seen, result.faults + deaths, {
            "thread deaths": (wall_start, res["fuzz"]["window"][0]),
            "fuzz": tuple(res["fuzz"]["window"]), "soak": result.window})
        res["sigstops"] = analysis.sigstops(seen, result.faults, res["run"]["heartbeat_s"])
        res["bridge_log"] = analysis.log_exceptions(stack.data_dir / "logs", "unity_bridge")
        chats = [r for r in ledger.snapshot() if r.type == "chat"]
        res["memory"] = memory_check.check(stack.data_dir / "memory.sqlite", chats)
        log("kill -9 of the supervisor ...")
        res["supervisor_kills"] = [supervisor_kill.run(stack)]
    for i in range(plan.extra_supervisor_kills):
        (tmp / f"small{i}").mkdir()
        small = Stack(tmp / f"small{i}", small_stack_config()).start()
        try:
            res["supervisor_kills"].append(supervisor_kill.run(small))
        finally:
            small.stop()
    contention.stop()
    res["contention"] = contention.summary({"fuzz": tuple(res["fuzz"]["fuzzer_window"]),
                                            "soak": tuple(res["soak"]["window"])})
    res["run"]["elapsed_s"] = time.monotonic() - t_start
    return res


def _settle(stack: Stack, timeout: float = 60) -> dict[str, Any]:
    """After the soak: every worker back to RUNNING (bounded), as a user would find it."""
    t0 = time.monotonic()
    try:
        wait_for(lambda: all(stack.worker(n)["state"] == "RUNNING" for n in soak.WORKERS),
                 timeout, "every worker RUNNING after the soak", every=0.2)
        return {"ok": True, "s": time.monotonic() - t0}
    except AssertionError as exc:
        return {"ok": False, "error": str(exc),
                "states": {n: stack.worker(n)["state"] for n in soak.WORKERS}}
