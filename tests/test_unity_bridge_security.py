"""A bridge reachable from other machines needs a token, and checks it on every client."""

from __future__ import annotations

import pytest

from protocol.messages import PROTOCOL_VERSION, ErrorCode
from tests.helpers.bridge import bridge_port, bridge_sections
from unity_bridge.client import BridgeClient, BridgeError
from unity_bridge.worker import is_loopback

TOKEN = "s3cret-token"


def test_non_loopback_bind_without_token_refuses_to_start(make_stack) -> None:
    stack = make_stack(**bridge_sections(host="0.0.0.0"))
    stack.start(ready=False)
    w = stack.wait_state("unity_bridge", "FATAL", 30)
    assert w["restarts"] == 0  # a config error: no retry loop
    assert "unity_bridge.token" in w["last_exit"] and "0.0.0.0" in w["last_exit"]


def test_non_loopback_bind_requires_the_token(make_stack) -> None:
    stack = make_stack(**bridge_sections(host="0.0.0.0", token=TOKEN)).start()
    port = bridge_port(stack)
    assert stack.worker("unity_bridge")["ready_info"]["host"] == "0.0.0.0"
    for token in (None, "", "s3cret-tokeX", TOKEN + "x"):
        c = BridgeClient("127.0.0.1", port, token=token)
        with pytest.raises(BridgeError) as info:
            c.connect()
        assert info.value.code == ErrorCode.UNAUTHORIZED
        assert c.drain_until_closed() == []  # refused and closed
        c.close()
    with BridgeClient("127.0.0.1", port, token=TOKEN) as c:
        assert c.connect().data["protocol"] == PROTOCOL_VERSION
        assert c.request("ping").type == "pong"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("my-pc.lan", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
