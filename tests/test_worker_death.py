"""A worker whose bus thread dies ends at once, with the traceback in its log, so the supervisor
hears of it from the exit itself (milliseconds), not from missing heartbeats (seconds).

The bus thread sends the heartbeats: while it lives on half-dead (a watched socket whose
handler fails on every poll, a timer or task that failed) the worker looks healthy and serves
nothing. What escapes the worker's own code on the bus thread therefore ends the thread, and
the runtime's excepthook the process (exit code 70); a failing handler of one bus message is a
handled error (logged, answered INTERNAL), and the worker goes on.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from protocol.bus import BusClient
from protocol.messages import ErrorCode
from supervisor.harness import Stack, wait_for
from tests.helpers.bridge import BusPublisher, connect, live_bus
from tests.helpers.faulty_bridge_worker import BUGGY_ID

WORKER = "doomed"


def doomed_stack(make_stack: Any, where: str) -> Stack:
    """Only the doomed worker; `temporary`, so its death is final and easy to follow."""
    spec = {"module": "tests.helpers.bus_death_worker", "args": [where], "restart": "temporary"}
    workers = {"inference": None, "gpu_monitor": None, "unity_bridge": None, WORKER: spec}
    return make_stack(workers=workers).start()


def worker_log(stack: Stack) -> list[str]:
    return stack.client.request("logs", {"worker": WORKER, "lines": 200}).data["lines"]


def notice_of_death(stack: Stack, bus: BusClient, pub: BusPublisher,
                    timeout: float = 15) -> tuple[Any, float]:
    """Send the fatal event until the supervisor says the worker is down: that worker_state
    event and the time.time() it arrived."""
    deadline = time.monotonic() + timeout
    while True:
        pub.publish("emotion", {"name": "joy", "intensity": 1.0})
        try:
            env = bus.wait_event("worker_state", lambda e: e.data["worker"] == WORKER
                                 and e.data["state"] != "RUNNING", timeout=0.05)
            return env, time.time()
        except TimeoutError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{WORKER} still up {timeout} s after the fatal event: "
                                     f"{stack.worker(WORKER)}; log {worker_log(stack)[-5:]}"
                                     ) from None


def died_at(lines: list[str]) -> float:
    return float(next(ln for ln in lines if "dying at" in ln).rsplit(" ", 1)[1])


@pytest.mark.parametrize("where", ["watched", "task", "timer"])
def test_a_worker_whose_bus_thread_dies_ends_at_once(make_stack, where: str,
                                                     record_property: Any) -> None:
    stack = doomed_stack(make_stack, where)
    pid = stack.worker(WORKER)["pid"]
    bus = live_bus(stack, ["worker_state"])
    pub = BusPublisher(stack)
    try:
        event, noticed = notice_of_death(stack, bus, pub)
    finally:
        pub.close()
        bus.close()
    assert event.data["state"] == "EXITED" and event.data["pid"] is None, event.data
    assert "crashed: exit code 70" in event.data["reason"], event.data
    log = worker_log(stack)
    assert any("thread 'bus' died: RuntimeError: bus_death_worker: fatal on purpose" in line
               for line in log), log
    assert any(line.startswith("Traceback") for line in log), log
    assert sum("dying at" in line for line in log) == 1, log  # it died once, not again and again
    delay_ms = (noticed - died_at(log)) * 1000
    record_property("death_to_notice_ms", round(delay_ms, 2))
    print(f"\n{where}: bus thread of pid {pid} died; worker_state {event.data['state']} "
          f"{delay_ms:.1f} ms later")


def test_a_failing_handler_of_one_message_is_a_handled_error(make_stack) -> None:
    """Not a dead thread: the message is lost, the worker logs it and goes on, same process."""
    stack = doomed_stack(make_stack, "task")
    pid = stack.worker(WORKER)["pid"]
    pub = BusPublisher(stack)
    try:
        def handled() -> bool:
            pub.publish("chat_started", {"request_id": 1})
            return any("handler for chat_started failed" in line for line in worker_log(stack))
        wait_for(handled, 15, "the handled error in the worker's log", every=0.05)
    finally:
        pub.close()
    w = stack.worker(WORKER)
    assert (w["pid"], w["state"], w["restarts"]) == (pid, "RUNNING", 0), w
    assert any("a handled error, on purpose" in line for line in worker_log(stack))


def test_a_bug_met_serving_one_avatar_client_drops_that_client_only(make_stack) -> None:
    """The bridge's half of the policy: its watched sockets' handler catches what it did not
    expect, per connection, so the bus thread (and the process) live on."""
    faulty = {"module": "tests.helpers.faulty_bridge_worker"}
    stack = make_stack(workers={"inference": None, "gpu_monitor": None,
                                "unity_bridge": faulty}).start()
    before = stack.worker("unity_bridge")
    victim, other = connect(stack, "victim"), connect(stack, "other")
    try:
        victim.send("pong", {"from": "victim"}, reply_to=BUGGY_ID)
        errors = [e for e in victim.drain_until_closed(10) if e.type == "error"]
        assert [e.data["code"] for e in errors] == [ErrorCode.INTERNAL], errors
        assert other.request("ping").type == "pong"
        after = stack.worker("unity_bridge")
        assert (after["pid"], after["restarts"]) == (before["pid"], 0), after
        log = stack.client.request("logs", {"worker": "unity_bridge", "lines": 50}).data["lines"]
        assert any("victim (" in ln and "serving it failed" in ln for ln in log), log
        assert any("a bug on purpose" in ln for ln in log), log
    finally:
        victim.close()
        other.close()
