"""The bridge across restarts: its own (state replay), and the inference worker's (it serves on)."""

from __future__ import annotations

import psutil

from protocol.codec import Envelope
from supervisor.harness import Stack, reloading_profile
from tests.helpers.bridge import (
    BRIDGE_ONLY,
    BusPublisher,
    bridge_sections,
    connect,
    connect_retry,
    free_port,
)
from unity_bridge.client import BridgeClient


def test_avatar_reconnects_after_a_bridge_crash_and_gets_the_state_back(make_stack) -> None:
    port = free_port()  # a fixed port, as a real avatar client has configured
    stack = make_stack(**bridge_sections(port=port)).start()
    avatar = connect_retry("127.0.0.1", port, name="avatar")
    stack.client.request("load_model", {"path": "/avatars/alice.vrm"})
    stack.client.request("set_expression", {"name": "relaxed", "value": 0.7})
    stack.client.request("set_auto_blink", {"enabled": False})
    assert avatar.wait_for("set_auto_blink").data == {"enabled": False}
    old = stack.worker("unity_bridge")["pid"]
    psutil.Process(old).kill()
    avatar.drain_until_closed(timeout=30)
    avatar.close()
    avatar = connect_retry("127.0.0.1", port, name="avatar")  # the client's reconnect loop
    state = avatar.welcome.data["state"]
    assert state["model"] == "/avatars/alice.vrm"
    assert state["expressions"] == {"fun": 0.7} and state["auto_blink"] is False
    w = stack.worker("unity_bridge")
    assert w["pid"] != old and w["restarts"] == 1
    assert avatar.request("ping").type == "pong"
    avatar.close()


def test_a_client_greeted_while_the_bridge_starts_gets_the_reply_stream(make_stack) -> None:
    """The bus thread serves the wire as soon as it is attached, before the main thread ends
    its setup: a client greeted then must be streamed replies like any other."""
    port = free_port()
    paused = {"module": "tests.helpers.paused_bridge_worker"}
    stack = make_stack(workers={**BRIDGE_ONLY["workers"], "unity_bridge": paused},
                       unity_bridge={"port": port}).start(ready=False)
    avatar = connect_retry("127.0.0.1", port, name="early")  # greeted during the pause
    stack.wait_state("unity_bridge", "RUNNING", 30)
    pub = BusPublisher(stack)
    try:
        pub.prime(avatar)
        pub.publish("chat_started", {"request_id": 1})
        pub.publish("chat_delta", {"request_id": 1, "text": "Hi", "index": 0})
        assert avatar.wait_for("speech", timeout=10).data["text"] == "Hi"
        assert stack.worker("unity_bridge")["restarts"] == 0
    finally:
        pub.close()
        avatar.close()


def until_idle_again(avatar: BridgeClient, reason_part: str) -> list[Envelope]:
    """Every message up to the avatar's return to idle; its states must be loading, idle."""
    seen: list[Envelope] = []
    while True:
        env = avatar.recv(120)
        seen.append(env)
        if env.type == "avatar_state" and env.data["state"] == "idle":
            break
    states = [e.data for e in seen if e.type == "avatar_state"]
    # Loading all along (no flicker to idle while inference restarts), then idle.
    assert [s["state"] for s in states] == ["loading", "idle"], states
    assert reason_part in states[0]["reason"]
    return seen


def test_the_language_model_is_the_worker_that_provides_chat(make_stack) -> None:
    """The avatar follows the worker that provides 'chat', whatever its name, and no other
    worker, even one called inference (stand-ins that load for 2 s, no model)."""
    stand_in = "tests.helpers.loading_worker"
    stack = make_stack(unity_bridge={"port": 0}, workers={
        "gpu_monitor": {"enabled": False},
        "inference": {"module": stand_in, "provides": []},
        "llm": {"module": stand_in, "provides": ["chat"]}}).start()
    avatar = connect(stack, "avatar")
    try:
        stack.client.request("stop", {"worker": "inference"}, timeout=30)
        stack.client.request("kill", {"worker": "llm"})
        seen = until_idle_again(avatar, "the language model is starting")
        idle = [e.data for e in seen if e.type == "avatar_state"][-1]
        assert "reason" not in idle  # back because llm runs again, not "inference is stopped"
        assert stack.worker("inference")["state"] == "EXITED"
        assert stack.wait_state("llm", "RUNNING", 30)["restarts"] == 1
    finally:
        avatar.close()


def test_bridge_serves_on_while_inference_is_killed_and_switched(make_stack) -> None:
    stack: Stack = make_stack(unity_bridge={"port": 0}).start()
    bridge_pid = stack.worker("unity_bridge")["pid"]
    avatar = connect(stack, "avatar")
    session = avatar.welcome.data["session"]
    try:
        stack.client.request("kill", {"worker": "inference"})
        # While inference is down, commands still reach the avatar.
        assert stack.client.request("set_expression", {"name": "joy", "value": 1}).data[
            "detail"] == "sent to 1 client(s)"
        seen = until_idle_again(avatar, "starting")
        assert {"name": "joy", "value": 1.0} in [e.data for e in seen
                                                 if e.type == "set_expression"]
        target = reloading_profile(stack.worker("inference")["ready_info"])
        stack.client.request("switch_profile", {"profile": target})
        until_idle_again(avatar, f"switching to profile {target}")
        stack.wait_state("inference", "RUNNING", 60)
        # The same connection all along; the bridge process never restarted.
        assert avatar.request("ping").type == "pong" and not avatar.closed.is_set()
        assert avatar.welcome.data["session"] == session
        w = stack.worker("unity_bridge")
        assert (w["pid"], w["restarts"], w["state"]) == (bridge_pid, 0, "RUNNING")
        assert stack.worker("inference")["restarts"] == 2

        # And a real chat drives the avatar end to end: thinking, speaking, bubble, idle.
        done = stack.client.request("chat", {"text": "Say hello.", "max_tokens": 12},
                                    timeout=120)
        assert avatar.wait_for("avatar_state", timeout=30).data["state"] == "thinking"
        assert avatar.wait_for("avatar_state", timeout=30).data["state"] == "speaking"
        bubble = avatar.wait_for("speech", lambda e: e.data["done"], 30)
        assert bubble.data["text"] == done.data["text"]
        assert avatar.wait_for("avatar_state", timeout=30).data["state"] == "idle"
    finally:
        avatar.close()
