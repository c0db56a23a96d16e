"""The soak itself: load on every channel, faults on a timer, for as long as asked.

Stopping is in order: first the faults (a stopped process is killed, never left behind),
then the clients, each after the request it is waiting for has ended, so every request the
soak sent has an outcome when this returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.faults import Fault, FaultLoop, ResetStorm
from bench.chaos.ledger import Ledger
from bench.chaos.load import BusLoad, ChatClient, Client, WireClient
from bench.chaos.plan import Plan
from supervisor.harness import Stack

WORKERS = ["inference", "gpu_monitor", "unity_bridge"]


@dataclass
class SoakResult:
    window: tuple[float, float]
    faults: list[Fault]
    resets: dict[str, int]
    wire: dict[str, int]
    failures: list[str] = field(default_factory=list)  # a load thread that died: a bench bug


def run(stack: Stack, port: int, plan: Plan, ledger: Ledger, seconds: float,
        log: Any = print) -> SoakResult:
    clients: list[Client] = [
        ChatClient(f"chat{i}", ledger, plan.seed * 100 + i, stack.new_client(),
                   plan.chat_max_tokens, plan.chat_timeout_s) for i in range(plan.chat_clients)]
    clients.append(BusLoad("bus", ledger, plan.seed * 100 + 50, stack.new_client(), WORKERS,
                           plan.request_timeout_s))
    wire = WireClient("avatar", ledger, plan.seed * 100 + 60, port, plan.request_timeout_s)
    clients.append(wire)
    faults = FaultLoop(stack.new_client(), ledger, WORKERS, plan.kill_every_s,
                       plan.sigstop_share, plan.switch_share, plan.seed, plan.request_timeout_s)
    resets = ResetStorm(port, plan.resets_per_s, plan.seed + 7)
    t0 = time.time()
    for t in (*clients, faults, resets):
        t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(10.0, max(0.0, end - time.monotonic())))
        log(f"  soak: {len(faults.faults)} faults, {len(ledger.records)} requests, "
            f"{max(0.0, end - time.monotonic()):.0f} s left")
    t_stop = time.monotonic()
    faults.stop()
    resets.stop()
    log(f"  soak: faults stopped in {time.monotonic() - t_stop:.1f} s; waiting for the "
        f"requests in flight ...")
    for c in clients:
        c.stop()
    for c in clients:
        c.join(plan.chat_timeout_s + 10)
    log(f"  soak: stopped in {time.monotonic() - t_stop:.1f} s")
    failures = [f"{t.name}: {t.failure!r}" for t in (*clients, faults, resets)
                if t.failure is not None]
    failures += [f"{t.name}: still running" for t in (*clients, faults) if t.is_alive()]
    return SoakResult((t0, time.time()), list(faults.faults),
                      {"resets": resets.resets, "greeted": resets.greeted,
                       "commands": resets.commands, "failures": resets.failures},
                      {"reconnects": wire.reconnects, "connect_failures": wire.connect_failures},
                      failures)
