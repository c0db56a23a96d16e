"""Worker specs with real processes: restart policies, the ready deadline and progress, a worker
the core has never heard of, a renamed inference worker, and an answer to every request."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from protocol.messages import CHAT, PROFILES, REGISTRY, SUPERVISOR, ErrorCode, Kind
from supervisor.harness import ROOT, Stack, wait_for
from tests.helpers.bridge import bridge_port
from unity_bridge.client import BridgeClient

NO_DEFAULT_WORKERS: dict[str, Any] = {"inference": None, "gpu_monitor": None,
                                      "unity_bridge": None}


def only(**workers: dict[str, Any]) -> dict[str, Any]:
    """A `workers` section with none of the default workers: fast stacks for these tests."""
    return {**NO_DEFAULT_WORKERS, **workers}


def exit_worker(code: int, **spec: Any) -> dict[str, Any]:
    return {"module": "tests.helpers.exit_worker", "args": [str(code)], **spec}


# -- restart policies ---------------------------------------------------------------------
def test_transient_worker_ends_on_a_normal_exit_and_restarts_after_an_abnormal_one(
        make_stack) -> None:
    stack = make_stack(workers=only(
        done=exit_worker(0, restart="transient"),
        listed=exit_worker(3, restart="transient", exit_codes=[0, 3]),
        failing=exit_worker(1, restart="transient", max_restarts=100)))
    stack.start(ready=False)
    for name, code in (("done", 0), ("listed", 3)):
        w = stack.wait_state(name, "EXITED", 30)
        assert w["restarts"] == 0 and w["pid"] is None, w
        assert w["last_exit"] == (f"exited: exit code {code}; restart policy 'transient' "
                                  f"keeps it down")
    w = stack.wait_state("failing", "STARTING", 30, lambda w: w["restarts"] >= 3)
    assert w["last_exit"] == "crashed: exit code 1"
    # Meanwhile (three backoffs later) the two that ended normally stayed down.
    for name in ("done", "listed"):
        assert (stack.worker(name)["state"], stack.worker(name)["restarts"]) == ("EXITED", 0)


def test_temporary_worker_is_never_restarted_and_permanent_always_is(make_stack) -> None:
    stack = make_stack(workers=only(
        once=exit_worker(1, restart="temporary"),
        always=exit_worker(0, max_restarts=100)))  # permanent: the default, as before
    stack.start(ready=False)
    w = stack.wait_state("once", "EXITED", 30)
    assert w["restarts"] == 0
    assert w["last_exit"] == "crashed: exit code 1; restart policy 'temporary' keeps it down"
    w = stack.wait_state("always", "RUNNING", 30, lambda w: w["restarts"] >= 2)
    assert w["last_exit"] == "exited: exit code 0"
    # `restart` still starts a temporary worker by hand.
    stack.client.request("restart", {"worker": "once"})
    stack.wait_state("once", "EXITED", 30, lambda w: "keeps it down" in w["last_exit"]
                     and w["restarts"] == 0)
    log = stack.client.request("logs", {"worker": "once", "lines": 20}).data["lines"]
    assert sum("exiting with 1 on purpose" in line for line in log) == 2, log


def test_status_shows_each_workers_policy(make_stack) -> None:
    stack = make_stack(supervisor={"ready_timeout_s": 33},
                       workers=only(job=exit_worker(0, restart="transient", max_restarts=7,
                                                    heartbeat_interval_s=0.5)))
    stack.start(ready=False)
    w = stack.wait_state("job", "EXITED", 30)
    assert w["restart"] == "transient" and w["roles"] == []
    spec = w["spec"]
    assert (spec["module"], spec["restart"], spec["exit_codes"]) == (
        "tests.helpers.exit_worker", "transient", [0])
    assert (spec["max_restarts"], spec["heartbeat_interval_s"], spec["ready_timeout_s"]) == (
        7, 0.5, 33)  # its own overrides, and the supervisor's value where it has none
    text = stack.cli("status").stdout
    assert "transient" in text and "job" in text, text


# -- ready deadline -----------------------------------------------------------------------
def test_alive_but_never_ready_is_killed_at_its_deadline_as_a_crash(make_stack) -> None:
    stack = make_stack(workers=only(stuck={"module": "tests.helpers.loading_worker",
                                           "args": ["never"], "ready_timeout_s": 1.5,
                                           "max_restarts": 1}))
    stack.start(ready=False)
    c = stack.client
    c.subscribe(["worker_state"])
    waiting = c.send("ping", {"target": "stuck"})  # held: the worker is alive, not ready
    crash = c.wait_event("worker_state", lambda e: e.data["worker"] == "stuck"
                         and e.data["state"] == "BACKOFF", timeout=30)
    assert crash.data["reason"].startswith("not ready within ready_timeout_s (1.5 s)")
    assert "SIGKILL" in crash.data["reason"] or "exit code" in crash.data["reason"]
    # Killed at the deadline again: FATAL, and the held request is answered, not left to
    # wait for queue_timeout_s.
    reply = c.recv_for(waiting, timeout=30)
    assert reply.type == "error" and reply.data["code"] == ErrorCode.WORKER_UNAVAILABLE
    w = stack.worker("stuck")
    assert w["state"] == "FATAL" and w["restarts"] == 1 and w["heartbeats"] > 0
    assert w["last_exit"].startswith("not ready within ready_timeout_s (1.5 s)")


def test_progress_pushes_the_deadline_and_is_published(make_stack) -> None:
    # 3 s of loading with a 1 s deadline: it survives only because it reports progress.
    stack = make_stack(workers=only(loader={"module": "tests.helpers.loading_worker",
                                            "args": ["3", "0.2"], "ready_timeout_s": 1}))
    stack.start(ready=False)
    c = stack.new_client()
    c.subscribe(["progress"])
    ev = c.wait_event("progress", lambda e: e.data["worker"] == "loader", timeout=30)
    assert ev.data["stage"] == "loading" and 0 <= ev.data["fraction"] <= 1
    w = stack.wait_state("loader", "RUNNING", 30)
    assert w["restarts"] == 0 and w["last_exit"] == "" and w["progress"]["stage"] == "loading"
    c.close()


def test_progress_that_stops_does_not_keep_a_worker_alive(make_stack) -> None:
    stack = make_stack(workers=only(stalls={"module": "tests.helpers.loading_worker",
                                            "args": ["60", "0.2", "1.0"],
                                            "ready_timeout_s": 1.5, "max_restarts": 100}))
    stack.start(ready=False)
    w = stack.wait_state("stalls", "STARTING", 30, lambda w: w["restarts"] >= 1)
    assert w["last_exit"].startswith("not ready within ready_timeout_s (1.5 s after its last "
                                     "progress)"), w


# -- a new kind of worker -----------------------------------------------------------------
def test_a_new_worker_is_added_by_its_module_and_spec_alone(make_stack) -> None:
    """The greeter is in no file of the supervisor: its spec is all the stack needs."""
    for path in (ROOT / "supervisor").glob("*.py"):
        assert "greeter" not in path.read_text(), path
    stack = make_stack(workers={"inference": None, "gpu_monitor": None,
                                "greeter": {"module": "tests.helpers.greeter_worker",
                                            "restart": "transient"}})
    stack.start()
    assert stack.worker("greeter")["restart"] == "transient"
    with BridgeClient("127.0.0.1", bridge_port(stack), name="avatar") as avatar:
        avatar.connect()
        wave = avatar.wait_for("set_expression", timeout=30)
    assert wave.data == {"name": "joy", "value": 1.0}

    def greeted() -> bool:  # the bridge's "ok" reaches the greeter a moment after the wave
        log = stack.client.request("logs", {"worker": "greeter", "lines": 10}).data["lines"]
        return any(line.startswith("greeted avatar: ok") for line in log)
    wait_for(greeted, 30, "the greeter to log the bridge's answer")


# -- the core names no worker ---------------------------------------------------------------
def test_a_renamed_inference_worker_still_chats_switches_and_drives_the_avatar(
        make_stack, tmp_path) -> None:
    stack = make_stack(
        workers={"inference": None,
                 "brain": {"module": "workers.inference", "provides": [CHAT, PROFILES]}},
        gpu_monitoring={"interval_s": 0.5, "min_switch_interval_s": 5.0,
                        "history_file": str(tmp_path / "history.csv")},
        ai={"gpu_profile": "auto", "max_tokens": 8})
    stack.start("--gpu-trace", str(ROOT / "data" / "traces" / "game_started.csv"))
    c = stack.new_client()
    c.subscribe(["auto_switch", "profile_status"])
    status = stack.status()
    assert "inference" not in status["workers"]
    assert status["workers"]["brain"]["roles"] == [CHAT, PROFILES]
    assert status["profile"]  # found through the role, not the name
    # Auto-switching: the GPU monitor finds the profiles worker by its role.
    asked = c.wait_event("auto_switch", timeout=90)
    done = c.wait_event("profile_status", lambda e: e.data["state"] == "ready"
                        and e.data.get("requested") == asked.data["profile"], timeout=90)
    assert done.data["profile"]
    # Chat goes to the worker that provides 'chat'.
    reply = stack.client.request("chat", {"text": "Say hi.", "max_tokens": 4}, timeout=120)
    assert reply.type == "chat_done" and reply.data["tokens"] >= 1
    # The avatar shows the language model's states by its role: loading while it restarts.
    with BridgeClient("127.0.0.1", bridge_port(stack), name="avatar") as avatar:
        avatar.connect()
        stack.client.request("restart", {"worker": "brain"})
        loading = avatar.wait_for("avatar_state", lambda e: e.data["state"] == "loading",
                                  timeout=30)
        assert loading.data["state"] == "loading"
        avatar.wait_for("avatar_state", lambda e: e.data["state"] == "idle", timeout=120)
    c.close()


# -- every request gets an answer -----------------------------------------------------------
SUPERVISOR_REQUESTS = sorted(n for n, ms in REGISTRY.items()
                             if ms.kind is Kind.REQUEST and ms.handler == SUPERVISOR)
VALID = {"worker": "probe", "target": "probe", "profile": "cpu_fallback", "lines": 5,
         "emergency": False, "reason": "test", "path": "models/none.gguf"}
WRONG = {str: 12345, int: "five", bool: "yes"}


def request_examples(type_: str) -> list[dict[str, Any] | list]:
    """Valid data, each field of the wrong type, an unknown worker, and a data that is not a
    map: every kind of input a client can get wrong."""
    fields = REGISTRY[type_].fields
    valid = {k: VALID[k] for k in fields}
    examples: list[dict[str, Any] | list] = [[]]
    for name, f in fields.items():
        kind = f.type if isinstance(f.type, type) else f.type[0]
        examples.append({**valid, name: WRONG.get(kind, "wrong")})
    if "worker" in fields:
        examples.append({**valid, "worker": "nobody"})
    if "profile" in fields:
        examples.append({**valid, "profile": "no-such-profile"})
    return [*examples, valid]  # valid last: a valid shutdown ends the stack


def test_every_supervisor_request_type_gets_an_answer(make_stack) -> None:
    stack: Stack = make_stack(workers=only(probe={"module": "tests.helpers.loading_worker",
                                                  "args": ["0"]}))
    stack.start()
    c = stack.client
    order = [t for t in SUPERVISOR_REQUESTS if t != "shutdown"] + ["shutdown"]
    assert set(order) == {"ping", "status", "restart", "stop", "kill", "switch_profile",
                          "logs", "shutdown", "switch_model"}, \
        "a new control request: add it to VALID"
    answered: list[tuple[str, str]] = []
    for type_ in order:
        for data in request_examples(type_):
            if isinstance(data, dict):
                msg_id = c.send(type_, data)
            else:  # the client API never sends a non-map: write the frame by hand
                msg_id = 100_000 + len(answered)
                c.send_raw(msgpack.packb({"type": type_, "id": msg_id, "data": data}))
            reply = c.recv_for(msg_id, timeout=30)
            while reply.type not in (*REGISTRY[type_].final, "error"):  # progress replies
                reply = c.recv_for(msg_id, timeout=30)
            if data == [] or any(v in WRONG.values() for v in data.values()):
                assert reply.type == "error" and reply.data["code"] == ErrorCode.INVALID_FIELD
            answered.append((type_, reply.type))
    assert len(answered) == sum(len(request_examples(t)) for t in order)
    assert ("switch_profile", "error") in answered  # no worker here provides 'profiles'
    assert ("switch_model", "error") in answered  # nor 'chat'
    assert ("shutdown", "ok") in answered
    assert stack.proc is not None and stack.proc.wait(30) == 0


@pytest.mark.parametrize("bad, needle", [
    ({"restart": "sometimes"}, "'workers.x.restart' must be one of"),
    ({"exit_codes": [0, "1"]}, "'workers.x.exit_codes' must be a list of integers"),
    ({"ready_timeout_s": 0}, "'workers.x.ready_timeout_s' = 0 is out of range"),
    ({"provides": ["telepathy"]}, "names an unknown role \"telepathy\""),
    ({"provides": [CHAT]}, "role 'chat' is provided by both 'workers.inference' and "
                           "'workers.x'"),
])
def test_bad_worker_specs_name_the_problem(bad: dict[str, Any], needle: str) -> None:
    from supervisor.config import ConfigError, validate

    with pytest.raises(ConfigError, match=".*") as info:
        validate({"version": 1, "workers": {"x": {"module": "m", **bad}}}, [])
    assert needle in str(info.value)
