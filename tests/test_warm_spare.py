"""The inference worker's warm spare, with real processes: it takes over switches and crashes,
its own death is no crash, and it goes when the worker goes."""

from __future__ import annotations

import sys

import psutil

from supervisor.harness import Stack, pid_gone, reloading_profile, wait_for


def with_spare(stack: Stack) -> dict:
    """The inference worker once it runs and its spare is booted."""
    return stack.wait_state("inference", "RUNNING", 60, lambda w: w["spare_pid"] is not None)


def test_the_spare_takes_over_a_switch_and_a_crash(make_stack) -> None:
    stack = make_stack().start()
    w = with_spare(stack)
    spare = w["spare_pid"]
    assert spare != w["pid"] and psutil.Process(spare).ppid() == stack.proc.pid
    target = reloading_profile(w["ready_info"])
    stack.client.request("switch_profile", {"profile": target})
    w = stack.wait_state("inference", "RUNNING", 60, lambda w: w["pid"] == spare
                         and w["ready_info"].get("requested_profile") == target)
    assert w["restarts"] == 1  # the spare ran the new profile: activated with its options
    # A crash: the next spare takes over once the backoff allows.
    w = with_spare(stack)
    spare = w["spare_pid"]
    psutil.Process(w["pid"]).kill()
    w = stack.wait_state("inference", "RUNNING", 60, lambda w: w["pid"] == spare)
    killed = "exit code 1" if sys.platform == "win32" else "killed by SIGKILL"  # psutil kill
    assert w["last_exit"] == f"crashed: {killed}" and w["restarts"] == 2
    log = stack.client.request("logs", {"worker": "inference", "lines": 400}).data["lines"]
    assert any("warm spare ready; waiting to take over" in line for line in log)


def test_a_spare_that_dies_is_no_crash_and_a_stop_takes_the_spare_along(make_stack) -> None:
    stack = make_stack().start()
    w = with_spare(stack)
    psutil.Process(w["spare_pid"]).kill()
    wait_for(lambda: stack.worker("inference")["spare_pid"] is None, 10, "the spare's exit")
    after = stack.worker("inference")
    assert (after["pid"], after["state"], after["restarts"], after["last_exit"]) == (
        w["pid"], "RUNNING", 0, "")
    # Without a spare the next start boots afresh, and the new worker gets a spare again.
    stack.client.request("restart", {"worker": "inference"})
    w = with_spare(stack)
    assert w["restarts"] == 1 and w["pid"] != after["pid"]
    spare = w["spare_pid"]
    stack.client.request("stop", {"worker": "inference"})
    stack.wait_state("inference", "EXITED", 30)
    wait_for(lambda: pid_gone(spare), 10, "the spare to go with the stopped worker")
    assert stack.worker("inference")["spare_pid"] is None


def test_the_spare_is_a_config_choice(make_stack) -> None:
    stack = make_stack(workers={"inference": {"warm_spare": False}}).start()
    w = stack.worker("inference")
    assert w["spec"]["warm_spare"] is False and w["spare_pid"] is None
    stack.client.request("restart", {"worker": "inference"})
    w = stack.wait_state("inference", "RUNNING", 60, lambda w: w["restarts"] == 1)
    assert w["spare_pid"] is None
