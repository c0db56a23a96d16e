"""The lifecycle logic on its seams, case by case: the control dispatch, the transition table,
no-op profile switches and spec resolution."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.codec import decode, make
from protocol.messages import CHAT, PROFILES, REGISTRY, SUPERVISOR, ErrorCode, Kind, MessageSpec
from supervisor.config import validate
from supervisor.lifecycle import Lifecycle
from supervisor.specs import Restart, WorkerSpec
from supervisor.states import IllegalTransition, State
from tests.helpers.fake_host import FakeHost, FakeOutbox

CLIENT = b"client"


def lifecycle(**supervisor: Any) -> tuple[Lifecycle, FakeHost, FakeOutbox]:
    cfg = validate({"version": 1, "supervisor": supervisor, "workers": {
        "inference": None, "gpu_monitor": None, "unity_bridge": None,
        "model": {"module": "fake.model", "provides": [CHAT, PROFILES]}}}, [])
    host = FakeHost()
    out = FakeOutbox(host)
    return Lifecycle(cfg, host, out), host, out


def ask(lc: Lifecycle, out: FakeOutbox, type_: str, data: dict[str, Any], msg_id: int):
    lc.on_message(CLIENT, decode(make(type_, data, id=msg_id)))
    (reply,) = out.replies_to(CLIENT, msg_id)
    return reply


def running(lc: Lifecycle, host: FakeHost, info: dict[str, Any]) -> None:
    lc.start_enabled()
    proc = host.procs[-1]
    lc.on_message(proc.ident, decode(make("ready", {"worker": "model", "pid": proc.pid,
                                                    "info": info})))
    assert lc.children["model"].state is State.RUNNING


def test_a_control_type_without_a_handler_stops_the_supervisor_at_start(monkeypatch) -> None:
    extra = MessageSpec("reticulate", Kind.REQUEST, "client", "test", handler=SUPERVISOR,
                        final=("ok",))
    monkeypatch.setitem(REGISTRY, "reticulate", extra)
    with pytest.raises(RuntimeError, match="do not match the registry"):
        lifecycle()


def test_a_failing_control_handler_still_answers_once() -> None:
    lc, _, out = lifecycle()

    def broken(ident: bytes, env: Any) -> None:
        raise ValueError("boom")
    lc._controls["status"] = broken
    reply = ask(lc, out, "status", {}, 7)
    assert reply.type == "error" and reply.data["code"] == ErrorCode.INTERNAL
    assert "ValueError: boom" in reply.data["message"]


def test_an_illegal_transition_is_refused_loudly() -> None:
    lc, _, out = lifecycle()
    child = lc.children["model"]
    with pytest.raises(IllegalTransition, match="EXITED -> RUNNING is not allowed"):
        lc._move(child, State.RUNNING)
    assert child.state is State.EXITED and not out.published


def test_a_switch_to_a_profile_already_in_effect_reloads_nothing() -> None:
    lc, host, out = lifecycle()
    running(lc, host, {"profile": "cpu_fallback",
                       "equivalent_profiles": ["auto", "cpu_fallback", "performance"]})
    reply = ask(lc, out, "switch_profile", {"profile": "performance"}, 1)
    assert reply.type == "ok" and "already in effect" in reply.data["detail"]
    child = lc.children["model"]
    assert child.state is State.RUNNING and child.options["profile"] == "performance"
    assert not [e for e in host.procs[-1].inbox if e.type == "worker_stop"]
    assert ("profile_status", {"state": "ready", "profile": "cpu_fallback",
                               "requested": "performance",
                               "reason": reply.data["detail"]}) in out.published
    # A profile that would load differently does reload.
    reply = ask(lc, out, "switch_profile", {"profile": "balanced"}, 2)
    assert reply.type == "ok" and child.state is State.STOPPING
    assert [e.type for e in host.procs[-1].inbox] == ["worker_stop"]


def test_a_spec_takes_its_own_settings_and_the_supervisors_for_the_rest() -> None:
    cfg = validate({"version": 1, "supervisor": {"max_restarts": 9, "stop_timeout_s": 4},
                    "workers": {"w": {"module": "m", "restart": "transient",
                                      "exit_codes": [0, 2], "stop_timeout_s": 1.5}}}, [])
    spec = WorkerSpec.from_config("w", cfg["workers"]["w"], cfg["supervisor"])
    assert (spec.restart, spec.exit_codes, spec.stop_timeout_s, spec.max_restarts) == (
        Restart.TRANSIENT, (0, 2), 1.5, 9)
    assert spec.restarts_after(normal_exit=False) and not spec.restarts_after(normal_exit=True)
    default = WorkerSpec.from_config("i", cfg["workers"]["inference"], cfg["supervisor"])
    assert default.restart is Restart.PERMANENT and default.ready_timeout_s == 120
    assert default.provides == (CHAT, PROFILES)
