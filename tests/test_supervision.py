"""Supervision with real processes: kills, hangs, crash loops, orphans, stops."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from protocol.bus import BusError, BusInfo
from protocol.bus import run_file as bus_run_file
from protocol.messages import ErrorCode
from supervisor.harness import ROOT, Stack, pid_gone, wait_for

WORKERS = ("inference", "gpu_monitor", "unity_bridge")
# A hard kill by psutil: SIGKILL on POSIX, TerminateProcess(1) on Windows. How it reads:
KILLED = "exit code 1" if sys.platform == "win32" else "killed by SIGKILL"


def hard_kill(pid: int) -> None:
    psutil.Process(pid).kill()


def pids(stack: Stack) -> dict[str, int]:
    return {n: w["pid"] for n, w in stack.status()["workers"].items()}


def subscribed(stack: Stack, types: list[str]) -> None:
    """Subscribe, and return once events flow (a subscription reaches the publisher a moment
    after it is made: the first worker_stats event proves it has)."""
    stack.client.subscribe([*types, "worker_stats"])
    stack.client.wait_event("worker_stats", timeout=10)


@pytest.mark.parametrize("victim", WORKERS)
def test_kill_9_restarts_only_that_worker(make_stack, victim: str) -> None:
    stack = make_stack().start()
    before = pids(stack)
    subscribed(stack, ["worker_state"])
    hard_kill(before[victim])
    crashed = stack.client.wait_event(
        "worker_state", lambda e: e.data["worker"] == victim and e.data["state"] == "BACKOFF")
    assert KILLED in crashed.data["reason"]
    after = stack.wait_state(victim, "RUNNING", 60, lambda w: w["pid"] != before[victim])
    assert after["restarts"] == 1 and f"crashed: {KILLED}" in after["last_exit"]
    for other in WORKERS:
        if other != victim:
            w = stack.worker(other)
            assert (w["pid"], w["restarts"], w["state"]) == (before[other], 0, "RUNNING")


def test_sigstop_is_detected_as_hung_and_replaced(make_stack) -> None:
    stack = make_stack().start()
    victim = stack.worker("gpu_monitor")["pid"]
    stopped_at = time.monotonic()
    psutil.Process(victim).suspend()  # SIGSTOP; on Windows every thread suspended
    try:
        w = stack.wait_state("gpu_monitor", "RUNNING", 30, lambda w: w["pid"] != victim)
    finally:
        if not pid_gone(victim):
            hard_kill(victim)
    detected = time.monotonic() - stopped_at
    assert w["last_exit"].startswith("hung: no heartbeat for ") and KILLED in w["last_exit"]
    # 3 heartbeats of 0.2 s; the bound is loose on purpose (a busy 2-core CI box).
    assert detected < 10, detected
    assert pid_gone(victim)
    assert stack.worker("unity_bridge")["restarts"] == 0


def test_worker_stats_tell_when_a_heartbeat_gap_happened(make_stack) -> None:
    """A pause shorter than the hang limit shows in the interval it happened in, then clears."""
    stack = make_stack(supervisor={"heartbeat_interval_s": 0.1, "heartbeat_misses": 20,
                                   "stats_interval_s": 0.2}).start()
    stack.client.subscribe(["worker_stats"])
    stack.client.wait_event("worker_stats")
    victim = stack.worker("gpu_monitor")["pid"]
    psutil.Process(victim).suspend()
    time.sleep(0.6)
    psutil.Process(victim).resume()
    gaps = []
    until = time.monotonic() + 2
    while time.monotonic() < until:  # ten stats intervals after the pause
        ev = stack.client.wait_event("worker_stats", timeout=10)
        gaps.append(ev.data["workers"]["gpu_monitor"]["heartbeat_gap_recent_s"])
    assert max(gaps) >= 0.55, gaps  # the pause, in the interval it closed in
    assert 0 < gaps[-1] < 0.3, gaps  # later intervals have only normal gaps
    w = stack.worker("gpu_monitor")
    assert (w["pid"], w["restarts"], w["state"]) == (victim, 0, "RUNNING")
    assert w["heartbeat_gap_max_s"] >= 0.55


def test_crash_at_start_backs_off_then_fatal_others_unaffected(make_stack) -> None:
    stack = make_stack(
        supervisor={"max_restarts": 3, "restart_window_s": 30},
        workers={"crasher": {"module": "tests.helpers.crash_worker"}})
    stack.start(ready=False)
    for name in WORKERS:
        stack.wait_state(name, "RUNNING", 60)
    before = pids(stack)
    w = stack.wait_state("crasher", "FATAL", 30)
    assert w["last_exit"] == "crashed: exit code 1"
    assert w["restarts"] == 3 and w["pid"] is None
    assert {n: p for n, p in pids(stack).items() if n in WORKERS} == {
        n: before[n] for n in WORKERS}
    # A FATAL worker refuses requests plainly...
    with pytest.raises(BusError) as info:
        stack.client.request("ping", {"target": "crasher"})
    assert info.value.code == ErrorCode.WORKER_UNAVAILABLE
    assert "restart crasher" in str(info.value)
    # ...and `restart` revives it (it starts again, and fails again).
    stack.client.request("restart", {"worker": "crasher"})
    stack.wait_state("crasher", "BACKOFF", 10)
    log = stack.client.request("logs", {"worker": "crasher", "lines": 5}).data["lines"]
    assert any("failing at start on purpose" in line for line in log)


def test_config_error_exit_is_fatal_at_once(make_stack) -> None:
    stack = make_stack(workers={"broken": {"module": "tests.helpers.config_error_worker"}})
    stack.start(ready=False)
    w = stack.wait_state("broken", "FATAL", 30)
    assert w["restarts"] == 0
    assert "setting 'x' is wrong" in w["last_exit"]


def test_kill_9_supervisor_leaves_no_orphans(make_stack) -> None:
    """Windows' only guard against orphans is the stdin pipe (no PDEATHSIG there)."""
    stack = make_stack().start()
    spare = stack.wait_state("inference", "RUNNING", 60,
                             lambda w: w["spare_pid"] is not None)["spare_pid"]
    children = [*pids(stack).values(), spare]
    hard_kill(stack.proc.pid)
    stack.proc.wait(10)
    wait_for(lambda: all(pid_gone(p) for p in children), 5, "every worker and spare to exit")


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir for the stacks this test starts: what they leave there is theirs alone (other
    stacks run in parallel), and it is short, so ipc paths in it stay under the length limit."""
    d = Path(tempfile.mkdtemp(prefix="aict-"))
    monkeypatch.setenv("TMPDIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def killed_stack(make_stack) -> tuple[Stack, BusInfo]:
    """A stack whose supervisor died by kill -9 (its workers gone too), and the bus it had."""
    stack = make_stack().start()
    info = stack.client.info
    children = list(pids(stack).values())
    stack.client.close()
    stack._client = None
    hard_kill(stack.proc.pid)
    stack.proc.wait(10)
    wait_for(lambda: all(pid_gone(p) for p in children), 5, "every worker to exit")
    return stack, info


def test_kill_9_supervisor_leaves_no_socket_folder(make_stack, private_tmp: Path) -> None:
    stack, info = killed_stack(make_stack)
    left = [p.name for p in private_tmp.glob("aic-*")]
    if sys.platform == "win32":  # tcp on 127.0.0.1: no folder
        assert info.ipc_dir is None and info.router.startswith("tcp://127.0.0.1:"), info
        assert left == []
    elif sys.platform.startswith("linux"):  # abstract sockets: never anything on disk
        assert info.ipc_dir is None and info.router.startswith("ipc://@aic-"), info
        assert left == []
    else:  # a folder, which the next launch removes once it proves its supervisor dead
        assert info.ipc_dir is not None and left == [Path(info.ipc_dir).name]
        stack.start()
        assert not list(private_tmp.glob(Path(info.ipc_dir).name))


def test_cli_calls_the_run_file_of_a_killed_stack_stale(make_stack, private_tmp: Path) -> None:
    stack, info = killed_stack(make_stack)
    run_file = bus_run_file(stack.data_dir / "run")
    assert run_file.exists()
    result = stack.cli("status")
    assert result.returncode == 1
    assert (f"stale run file: the stack that wrote {run_file} (supervisor pid "
            f"{info.supervisor_pid}) is no longer running; start one with: python launch.py"
            ) in result.stderr, result.stderr


def test_next_launch_after_kill_9_removes_the_stale_run_file(make_stack,
                                                              private_tmp: Path) -> None:
    stack, info = killed_stack(make_stack)
    run_file = bus_run_file(stack.data_dir / "run")
    # A launch that stops at a bad option still clears what the dead one left...
    refused = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--headless", "--config",
                              str(stack.config_path), "--profile", "no-such-profile"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown profile" in refused.stderr, refused.stderr
    assert not run_file.exists()
    assert (f"removed the stale run file {run_file} (supervisor pid {info.supervisor_pid} "
            f"is no longer running)") in refused.stderr
    # ...and one that goes on starts as usual.
    stack.start()
    assert stack.status()["supervisor"]["pid"] == stack.proc.pid != info.supervisor_pid
    assert BusInfo.load(stack.data_dir / "run").supervisor_pid == stack.proc.pid


def test_sigterm_stops_everything_cleanly(make_stack) -> None:
    stack = make_stack().start()
    children = list(pids(stack).values())
    stack.client.close()
    stack._client = None
    if sys.platform == "win32":
        stack.interrupt()  # Ctrl-Break to the stack's own process group
    else:
        stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(30) == 0
    assert all(pid_gone(p) for p in children)
    out = stack.output()
    assert "Traceback" not in out and "killed by" not in out, out
    assert out.count("-> EXITED (stopped (shutdown): exit code 0)") == 3, out
    assert not bus_run_file(stack.data_dir / "run").exists()
    result = stack.cli("status")
    assert result.returncode != 0 and "no companion stack is running" in result.stderr


def test_stop_escalates_to_terminate_without_blocking_others(make_stack) -> None:
    stack = make_stack(supervisor={"stop_timeout_s": 1.5},
                       workers={"stubborn": {"module": "tests.helpers.stubborn_worker"}}).start()
    stack.client.request("stop", {"worker": "stubborn"})
    # While the stubborn worker is being stopped, other traffic flows normally.
    assert stack.worker("stubborn")["state"] == "STOPPING"
    for _ in range(20):
        assert stack.client.request("ping", {"target": "unity_bridge"}, timeout=2).data == {
            "from": "unity_bridge"}
    assert stack.worker("stubborn")["state"] == "STOPPING"
    w = stack.wait_state("stubborn", "EXITED", 20)
    # Popen.terminate is SIGTERM on POSIX and TerminateProcess(handle, 1) on Windows.
    terminated = "killed by SIGTERM" if sys.platform != "win32" else "exit code 1"
    assert w["last_exit"] == f"stopped (stop): {terminated}"
    assert w["restarts"] == 0  # a requested stop is not a crash
    with pytest.raises(BusError) as info:
        stack.client.request("ping", {"target": "stubborn"})
    assert info.value.code == ErrorCode.WORKER_UNAVAILABLE


def test_requests_wait_for_a_restarting_worker(make_stack) -> None:
    stack = make_stack().start()
    old = stack.worker("unity_bridge")["pid"]
    c = stack.client
    c.request("restart", {"worker": "unity_bridge"})
    ids = [c.send("ping", {"target": "unity_bridge"}) for _ in range(5)]
    replies = [c.recv_reply(30) for _ in ids]
    assert sorted(r.reply_to for r in replies) == ids
    assert all(r.type == "pong" and r.data["from"] == "unity_bridge" for r in replies)
    w = stack.worker("unity_bridge")
    assert w["pid"] != old and w["restarts"] == 1
    assert w["last_exit"] == "stopped (restart): exit code 0"


def test_queue_overflow_gets_an_explicit_error(make_stack) -> None:
    stack = make_stack(supervisor={"queue_limit": 3, "max_restarts": 1000,
                                   "backoff_initial_s": 0.5, "backoff_max_s": 0.5},
                       workers={"crasher": {"module": "tests.helpers.crash_worker"}})
    stack.start(ready=False)
    stack.wait_state("crasher", "BACKOFF", 30)
    c = stack.client
    ids = [c.send("ping", {"target": "crasher"}) for _ in range(5)]
    errors = [c.recv_reply(10) for _ in range(2)]
    assert {e.reply_to for e in errors} == set(ids[3:])
    assert all(e.type == "error" and e.data["code"] == ErrorCode.QUEUE_FULL for e in errors)
    assert stack.worker("crasher")["queued"] == 3
    # Stopping the worker answers what it held: nothing is dropped silently.
    c.request("stop", {"worker": "crasher"})
    held = [c.recv_reply(10) for _ in range(3)]
    assert {e.reply_to for e in held} == set(ids[:3])
    assert all(e.data["code"] == ErrorCode.WORKER_UNAVAILABLE for e in held)


def test_private_bus_endpoints(make_stack) -> None:
    stack = make_stack().start()
    info = stack.client.info
    run_file = bus_run_file(stack.data_dir / "run")
    if sys.platform != "win32":
        assert stat.S_IMODE(run_file.stat().st_mode) == 0o600
    if sys.platform.startswith("linux"):  # abstract: no file; the secret below keeps others out
        assert info.ipc_dir is None and info.router.startswith("ipc://@aic-")
    elif info.ipc_dir:
        assert stat.S_IMODE(os.stat(info.ipc_dir).st_mode) == 0o700
    else:
        assert info.router.startswith("tcp://127.0.0.1:")
    # A client without the launch secret is not let in.
    from protocol.bus import BusClient, BusInfo

    intruder = BusClient(BusInfo(info.router, info.xsub, info.xpub, "wrong-secret", 0))
    with pytest.raises(TimeoutError):
        intruder.request("status", timeout=1.0)
    intruder.close()
    assert stack.client.request("ping").data == {"from": "supervisor"}


def test_alive_is_not_ready_and_requests_wait_for_ready(make_stack) -> None:
    # 2 s of "loading" is ten heartbeat intervals: alive all along, so never taken for hung.
    stack = make_stack(workers={"loader": {"module": "tests.helpers.loading_worker"}})
    stack.start(ready=False)
    stack.wait_state("loader", "STARTING", 10, lambda w: w["pid"] is not None)
    c = stack.client
    msg_id = c.send("ping", {"target": "loader"})
    assert stack.worker("loader")["queued"] == 1
    reply = c.recv_reply(30)
    assert (reply.type, reply.reply_to, reply.data["from"]) == ("pong", msg_id, "loader")
    w = stack.worker("loader")
    assert w["state"] == "RUNNING" and w["restarts"] == 0 and w["last_exit"] == ""


def test_worker_stats_are_published(make_stack) -> None:
    stack = make_stack().start()
    stack.client.subscribe(["worker_stats"])
    ev = stack.client.wait_event(
        "worker_stats", lambda e: all(w["cpu_percent"] is not None
                                      for w in e.data["workers"].values()), timeout=10)
    for name in WORKERS:
        w = ev.data["workers"][name]
        assert w["pid"] > 0 and w["rss"] > 1_000_000 and w["state"] == "RUNNING"
        assert w["uptime_s"] > 0 and w["restarts"] == 0 and "last_exit" in w


def test_stats_count_heartbeats_and_their_largest_gap(make_stack) -> None:
    stack = make_stack(supervisor={"heartbeat_interval_s": 0.1})
    stack.start()
    w = stack.wait_state("gpu_monitor", "RUNNING", 30, lambda w: w["heartbeats"] >= 4)
    # Loose bounds on purpose (a busy 2-core CI box): at least one interval, far below 'hung'.
    assert 0.05 <= w["heartbeat_gap_max_s"] < 5, w
