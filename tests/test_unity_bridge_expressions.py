"""A bounded number of expression names, so `welcome` stays small and every client can connect.

Regression: 16 000 valid set_expression commands with distinct names made welcome exceed the
1 MiB frame limit, so no new client could connect, and the state file (1.17 MB) kept it so
across bridge restarts. Any local process could do it.
"""

from __future__ import annotations

import json

import msgpack
import pytest

from protocol.bus import BusError
from protocol.messages import REGISTRY, ErrorCode
from supervisor.harness import Stack
from tests.helpers.bridge import bridge_sections, connect
from unity_bridge.avatar import MAX_EXPRESSIONS
from unity_bridge.client import BridgeError
from unity_bridge.worker import STATE_FILE

WELCOME_BYTES = 16 * 1024  # what a bounded welcome stays under, with room to spare


def long_name(i: int) -> str:
    """A valid name of 63 characters (MAX_NAME is 64), as long as the report's were."""
    return f"custom-{i:05d}-" + "x" * 50


def welcome_size(stack: Stack) -> tuple[int, dict[str, float]]:
    """A new client connects: the size of its welcome's data, and the expressions in it."""
    client = connect(stack, "newcomer")
    try:
        assert client.request("ping").type == "pong"
        assert client.welcome is not None
        data = client.welcome.data
        return len(msgpack.packb(data)), data["state"]["expressions"]
    finally:
        client.close()


def test_the_protocol_doc_states_the_limit() -> None:
    assert f"at most {MAX_EXPRESSIONS} names" in REGISTRY["set_expression"].doc


def test_new_expression_names_past_the_limit_are_refused(make_stack) -> None:
    stack = make_stack(**bridge_sections()).start()
    bus = stack.client
    refused: list[BusError] = []
    for i in range(MAX_EXPRESSIONS + 20):
        try:
            bus.request("set_expression", {"name": f"custom-{i}", "value": 0.5})
        except BusError as exc:
            refused.append(exc)
    assert len(refused) == 20, [str(e) for e in refused[:3]]
    assert {e.code for e in refused} == {ErrorCode.INVALID_FIELD}
    assert f"at most {MAX_EXPRESSIONS}" in str(refused[0])
    assert "unity_bridge.max_expressions" in str(refused[0])
    # Known names still change, and the presets (an emotion sets them) are always taken.
    bus.request("set_expression", {"name": "custom-0", "value": 1.0})
    bus.request("set_expression", {"name": "happy", "value": 1.0})
    with connect(stack, "avatar") as avatar:  # the same rule on the Unity wire
        with pytest.raises(BridgeError) as info:
            avatar.request("set_expression", {"name": "one-too-many", "value": 1.0})
        assert info.value.code == ErrorCode.INVALID_FIELD
    size, expressions = welcome_size(stack)
    assert size < WELCOME_BYTES, size
    assert len(expressions) == MAX_EXPRESSIONS + 1
    assert expressions["custom-0"] == 1.0 and expressions["joy"] == 1.0
    # reset_expressions makes room again.
    bus.request("reset_expressions", {})
    bus.request("set_expression", {"name": "one-too-many", "value": 1.0})


def test_a_bloated_state_file_from_before_the_limit_is_trimmed_at_load(make_stack) -> None:
    stack = make_stack(**bridge_sections())
    state_file = stack.data_dir / "run" / STATE_FILE
    state_file.parent.mkdir(parents=True, exist_ok=True)
    bloated = {long_name(i): 0.5 for i in range(16_000)}
    line = json.dumps({"model": "/avatars/alice.vrm", "auto_blink": False,
                       "expressions": {"joy": 0.8, **bloated}})
    state_file.write_text(line + "\n")
    assert state_file.stat().st_size > 1 << 20  # as in the report: welcome would exceed 1 MiB
    stack.start()
    size, expressions = welcome_size(stack)
    assert size < WELCOME_BYTES, size
    assert expressions == {"joy": 0.8, **{long_name(i): 0.5 for i in range(MAX_EXPRESSIONS)}}
    assert stack.worker("unity_bridge")["restarts"] == 0
    # The rest of the state came through, and the file itself no longer holds the bloat.
    saved = json.loads(state_file.read_text().splitlines()[-1])
    assert saved["model"] == "/avatars/alice.vrm" and saved["auto_blink"] is False
    assert saved["expressions"] == expressions
    assert state_file.stat().st_size < WELCOME_BYTES
