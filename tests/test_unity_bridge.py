"""The Unity bridge over real TCP in a real stack: handshake, commands, events, limits."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator

import pytest

from protocol.bus import BusClient, BusError
from protocol.framing import HEADER, frame, message
from protocol.messages import PROTOCOL_VERSION, REGISTRY, ErrorCode, Wire
from supervisor.harness import ROOT, Stack
from tests.conftest import base_config
from tests.helpers.bridge import (
    BusPublisher,
    bridge_port,
    bridge_sections,
    connect,
    live_bus,
    wait_disconnects,
)
from unity_bridge.client import BridgeClient, BridgeClosed, BridgeError

LIMITS = {"handshake_timeout_s": 1.0, "ping_interval_s": 0.2, "client_timeout_s": 1.5,
          "max_errors": 3, "max_clients": 6}


EVENTS = ["client_connected", "client_disconnected", "avatar_state", "clicked",
          "model_loaded", "avatar_error"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sections = bridge_sections(**LIMITS)
    s = Stack(tmp_path_factory.mktemp("bridge"), base_config(
        **sections, supervisor={"stats_interval_s": 0.1}))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def bus(stack: Stack) -> Iterator[BusClient]:
    b = live_bus(stack, EVENTS)
    yield b
    b.close()


@pytest.fixture
def clients(stack: Stack, bus: BusClient) -> Iterator[list[BridgeClient]]:
    """Clients a test opens; closed after it, and gone from the bridge before the next test."""
    opened: list[BridgeClient] = []
    yield opened
    # One the bridge closed itself was off its list before its socket closed.
    live = {c.welcome.data["session"] for c in opened if c.welcome and not c.closed.is_set()}
    for c in opened:
        c.close()
    wait_disconnects(bus, live)


def join(stack: Stack, clients: list[BridgeClient], name: str, **kw) -> BridgeClient:
    c = connect(stack, name, **kw)
    clients.append(c)
    return c


def test_handshake_welcome_has_capabilities_and_state(stack: Stack, bus, clients) -> None:
    c = join(stack, clients, "avatar")
    ev = bus.wait_event("client_connected", lambda e: e.data["client"] == "avatar")
    welcome = c.welcome
    assert welcome is not None
    d = welcome.data
    assert (welcome.type, welcome.reply_to, d["protocol"], d["server"]) == (
        "welcome", 1, PROTOCOL_VERSION, "unity_bridge")
    assert ev.data["session"] == d["session"] and ev.data["peer"].startswith("127.0.0.1:")
    accepts = {n for n, s in REGISTRY.items() if s.wire in (Wire.FROM_CLIENT, Wire.BOTH)}
    emits = {n for n, s in REGISTRY.items() if s.wire in (Wire.TO_CLIENT, Wire.BOTH)}
    assert set(d["capabilities"]["accepts"]) == accepts and "set_expression" in accepts
    assert set(d["capabilities"]["emits"]) == emits and "speech" in emits
    assert {"avatar_state", "expressions", "profile", "model", "transition_speed",
            "auto_blink", "auto_head_movement"} <= set(d["state"])
    assert d["ping_interval_s"] == LIMITS["ping_interval_s"]
    assert c.request("ping").data == {"from": "unity_bridge"}


def test_protocol_version_mismatch_is_refused_and_closed(stack: Stack, clients) -> None:
    c = BridgeClient("127.0.0.1", bridge_port(stack)).open()
    clients.append(c)
    with pytest.raises(BridgeError) as info:
        c.request("hello", {"protocol": PROTOCOL_VERSION + 1, "client": "future"})
    assert info.value.code == ErrorCode.PROTOCOL_VERSION
    assert f"protocol {PROTOCOL_VERSION}" in str(info.value)
    assert c.drain_until_closed() == []


@pytest.mark.parametrize("first", [
    message("ping", {}, id=1),
    message("set_expression", {"name": "joy", "value": 1.0}, id=1),
    message("hello", {"protocol": PROTOCOL_VERSION}, id=1),  # no client name
    frame(b"\x93\x01\x02\x03"),
], ids=["ping", "command", "hello-without-name", "array"])
def test_anything_but_a_valid_hello_first_is_refused(stack: Stack, clients, first: bytes) -> None:
    c = BridgeClient("127.0.0.1", bridge_port(stack)).open()
    clients.append(c)
    c.send_raw(first)
    left = c.drain_until_closed()
    assert [e.type for e in left] == ["error"]
    assert left[0].data["code"] in (ErrorCode.HANDSHAKE_REQUIRED, ErrorCode.INVALID_FIELD,
                                     ErrorCode.MALFORMED_FRAME)


def test_no_hello_times_out(stack: Stack, clients) -> None:
    c = BridgeClient("127.0.0.1", bridge_port(stack)).open()
    clients.append(c)
    left = c.drain_until_closed(timeout=30)
    assert [(e.type, e.data["code"]) for e in left] == [("error", ErrorCode.TIMEOUT)]
    assert "handshake_timeout_s" in left[0].data["message"]


def test_silent_client_is_dropped_but_a_live_one_stays(stack: Stack, bus, clients) -> None:
    live = join(stack, clients, "live")
    mute = join(stack, clients, "mute", auto_pong=False)
    assert mute.wait_for("ping", timeout=10).id is not None  # the bridge asks...
    left = mute.drain_until_closed(timeout=30)  # ...and drops it for not answering
    assert ("error", ErrorCode.TIMEOUT) in [(e.type, e.data.get("code")) for e in left]
    ev = bus.wait_event("client_disconnected", lambda e: e.data["client"] == "mute", 30)
    assert ev.data["reason"] == "timed out"
    # The live client answered every ping on its own thread, and is still served.
    assert live.request("ping").type == "pong"
    assert not live.closed.is_set()


ALL_COMMANDS = [
    ("load_model", {"path": " /avatars/alice.vrm "}, {"path": "/avatars/alice.vrm"}),
    ("set_expression", {"name": "Happy", "value": 1.7}, {"name": "joy", "value": 1.0}),
    ("set_expression", {"name": "custom_wink", "value": -3}, {"name": "custom_wink",
                                                              "value": 0.0}),
    ("set_transition_speed", {"speed": 50}, {"speed": 10.0}),
    ("set_auto_blink", {"enabled": False}, {"enabled": False}),
    ("set_auto_head_movement", {"enabled": True, "max_angle": 90},
     {"enabled": True, "min_interval": 2.0, "max_interval": 6.0, "max_angle": 45.0}),
    ("reset_expressions", {}, {}),
]


def test_bus_commands_reach_every_client_normalised(stack: Stack, clients) -> None:
    avatars = [join(stack, clients, f"avatar-{i}") for i in range(3)]
    seen_ids = set()
    for type_, data, expected in ALL_COMMANDS:
        reply = stack.client.request(type_, data)
        assert reply.data["detail"] == "sent to 3 client(s)"
        for a in avatars:
            got = a.wait_for(type_)
            assert got.data == expected and got.id is not None
            seen_ids.add(got.id)
    assert len(seen_ids) == len(ALL_COMMANDS)  # each command has an id of its own
    state = join(stack, clients, "late").welcome.data["state"]
    assert (state["model"], state["transition_speed"], state["auto_blink"]) == (
        "/avatars/alice.vrm", 10.0, False)
    assert state["expressions"] == {} and state["auto_head_movement"]["max_angle"] == 45.0


@pytest.mark.parametrize(("type_", "data", "code"), [
    ("set_expression", {"name": "joy", "value": math.nan}, ErrorCode.INVALID_FIELD),
    ("set_expression", {"name": "", "value": 1}, ErrorCode.INVALID_FIELD),
    ("set_expression", {"name": "joy"}, ErrorCode.INVALID_FIELD),
    ("set_auto_head_movement", {"enabled": True, "min_interval": 9, "max_interval": 1},
     ErrorCode.INVALID_FIELD),
    ("load_model", {"path": 5}, ErrorCode.INVALID_FIELD),
    ("hello", {"protocol": 1, "client": "x"}, ErrorCode.WRONG_DIRECTION),
])
def test_bad_bus_commands_get_numbered_errors(stack: Stack, type_, data, code) -> None:
    with pytest.raises(BusError) as info:
        stack.client.request(type_, data)
    assert info.value.code == code


def test_tcp_command_goes_to_the_other_clients(stack: Stack, clients) -> None:
    tool, avatar = join(stack, clients, "tool"), join(stack, clients, "avatar")
    ok = tool.request("set_expression", {"name": "sad", "value": 0.4})
    assert ok.data["detail"] == "sent to 1 other client(s)"
    assert avatar.wait_for("set_expression").data == {"name": "sorrow", "value": 0.4}
    # The sender does not get its own command back: the next thing it sees is its pong.
    assert tool.request("ping").type == "pong"
    with pytest.raises(BridgeError) as info:
        tool.request("set_transition_speed", {"speed": "fast"})
    assert info.value.code == ErrorCode.INVALID_FIELD
    assert tool.request("ping").type == "pong"  # an error does not end the connection


def test_client_events_and_failures_go_onto_the_bus(stack: Stack, bus, clients) -> None:
    avatar = join(stack, clients, "avatar")
    avatar.send("clicked", {"target": "head", "x": 0.5})
    ev = bus.wait_event("clicked")
    assert ev.data == {"target": "head", "x": 0.5, "client": "avatar"}
    avatar.send("model_loaded", {"path": "/a.vrm", "expressions": ["joy", "blink"]})
    ev = bus.wait_event("model_loaded")
    assert ev.data["client"] == "avatar" and ev.data["expressions"] == ["joy", "blink"]
    # An avatar that fails a command answers with an error: that becomes avatar_error.
    stack.client.request("load_model", {"path": "/missing.vrm"})
    cmd = avatar.wait_for("load_model")
    avatar.send("error", {"code": int(ErrorCode.INVALID_REQUEST), "message": "no such file"},
                reply_to=cmd.id)
    ev = bus.wait_event("avatar_error")
    assert ev.data == {"message": "no such file", "command": "load_model", "client": "avatar"}


def test_bad_messages_are_answered_then_counted_until_close(stack: Stack, clients) -> None:
    bystander = join(stack, clients, "bystander")
    c = join(stack, clients, "clumsy")
    c.send("status")  # a bus type, not part of the wire
    assert c.recv().data["code"] == ErrorCode.WRONG_DIRECTION
    c.send_raw(frame(b"\xc1"))
    assert c.recv().data["code"] == ErrorCode.MALFORMED_FRAME
    c.send_raw(message("no_such_type", {}, id=9))
    err = c.recv()
    assert (err.data["code"], err.reply_to) == (ErrorCode.UNKNOWN_TYPE, 9)
    left = c.drain_until_closed()  # that was max_errors = 3
    assert [e.data["code"] for e in left] == [ErrorCode.TOO_MANY_ERRORS]
    assert bystander.request("ping").type == "pong"


def test_oversized_length_is_refused_without_reading_it(stack: Stack, clients) -> None:
    c = join(stack, clients, "big")
    c.send_raw(HEADER.pack(0xFFFFFFFF))
    left = c.drain_until_closed()
    assert [e.data["code"] for e in left] == [ErrorCode.FRAME_TOO_LARGE]


def test_client_limit(stack: Stack, bus, clients) -> None:
    full = [join(stack, clients, f"c{i}") for i in range(LIMITS["max_clients"])]
    extra = BridgeClient("127.0.0.1", bridge_port(stack), name="one-too-many")
    with pytest.raises(BridgeClosed) as info:
        extra.connect()
    assert [e.data["code"] for e in info.value.errors] == [ErrorCode.TOO_MANY_CLIENTS]
    extra.close()
    full[0].close()
    wait_disconnects(bus, {full[0].welcome.data["session"]})
    assert join(stack, clients, "next").request("ping").type == "pong"


def test_avatar_follows_the_stack(stack: Stack, bus, clients) -> None:
    avatar = join(stack, clients, "avatar")
    pub = BusPublisher(stack)
    try:
        pub.prime(avatar)
        stack.client.request("reset_expressions")
        pub.publish("chat_started", {"request_id": 7})
        assert avatar.wait_for("avatar_state").data["state"] == "thinking"
        assert bus.wait_event("avatar_state", lambda e: e.data["state"] == "thinking")
        for i, piece in enumerate(["Hello", " there", "!"]):
            pub.publish("chat_delta", {"request_id": 7, "text": piece, "index": i})
        assert avatar.wait_for("avatar_state").data["state"] == "speaking"
        speech = [avatar.wait_for("speech") for _ in range(3)]
        assert [s.data["delta"] for s in speech] == ["Hello", " there", "!"]
        assert speech[-1].data["text"] == "Hello there!" and not speech[-1].data["done"]
        pub.publish("emotion", {"name": "happy", "intensity": 0.8, "request_id": 7})
        assert avatar.wait_for("set_expression").data == {"name": "joy", "value": 0.8}
        pub.publish("emotion", {"name": "sad", "intensity": 2})
        changes = [avatar.wait_for("set_expression").data for _ in range(2)]
        assert changes == [{"name": "joy", "value": 0.0}, {"name": "sorrow", "value": 1.0}]
        pub.publish("chat_ended", {"request_id": 7, "text": "Hello there!", "cancelled": False})
        done = avatar.wait_for("speech", lambda e: e.data["done"])
        assert done.data["text"] == "Hello there!"
        assert avatar.wait_for("mouth").data["value"] == 0.0
        assert avatar.wait_for("avatar_state").data["state"] == "idle"
        pub.publish("profile_status", {"state": "switching", "profile": "cpu_fallback"})
        loading = avatar.wait_for("avatar_state").data
        assert (loading["state"], loading["profile"]) == ("loading", "cpu_fallback")
        pub.publish("profile_status", {"state": "ready", "profile": "cpu_fallback"})
        assert avatar.wait_for("avatar_state").data["state"] == "idle"
        assert join(stack, clients, "late").welcome.data["state"]["expressions"]["sorrow"] == 1
    finally:
        pub.close()


def test_mouth_follows_the_text(stack: Stack, clients) -> None:
    avatar = join(stack, clients, "avatar")
    pub = BusPublisher(stack)
    try:
        pub.prime(avatar)
        pub.publish("chat_started", {"request_id": 8})
        values = []
        for i, piece in enumerate(["aaa", "...", "str"]):
            pub.publish("chat_delta", {"request_id": 8, "text": piece, "index": i})
            values.append(avatar.wait_for("mouth").data["value"])
        assert values[0] > values[2] > values[1] == 0.0
        pub.publish("chat_ended", {"request_id": 8, "text": "aaa...str", "cancelled": False})
        assert avatar.wait_for("mouth").data["value"] == 0.0
    finally:
        pub.close()


def test_client_cli_sends_and_reads_state(stack: Stack, clients) -> None:
    avatar = join(stack, clients, "avatar")
    cli = [sys.executable, "-m", "unity_bridge.client", "--config", str(stack.config_path)]
    out = run(cli + ["send", "set_expression", "name=fun", "value=0.25"])
    assert json.loads(out) == {"type": "ok", "data": {"detail": "sent to 1 other client(s)"}}
    assert avatar.wait_for("set_expression").data == {"name": "fun", "value": 0.25}
    state = json.loads(run(cli + ["state"]))
    assert state["expressions"]["fun"] == 0.25
    bad = run(cli + ["send", "set_expression", "name=fun"], ok=False)
    assert "error 103" in bad


def test_client_cli_watch(stack: Stack, bus) -> None:
    cmd = [sys.executable, "-m", "unity_bridge.client", "--config", str(stack.config_path),
           "--name", "watcher", "watch", "--types", "set_auto_blink", "--count", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ev = bus.wait_event("client_connected", lambda e: e.data["client"] == "watcher", 30)
        stack.client.request("set_auto_blink", {"enabled": True})
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    line = json.loads(out)
    assert (line["type"], line["data"]) == ("set_auto_blink", {"enabled": True})
    wait_disconnects(bus, {ev.data["session"]})


def run(cmd: list[str], ok: bool = True) -> str:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout if ok else result.stderr
