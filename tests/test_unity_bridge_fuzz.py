"""Hypothesis against the live bridge: whatever a connection sends, the bridge answers only with
valid messages or a close, stays up, and a well-behaved client on another connection is served.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import decode
from protocol.framing import HEADER, FrameDecoder, frame, message
from protocol.messages import PROTOCOL_VERSION, REGISTRY, ErrorCode
from supervisor.harness import Stack
from tests.conftest import base_config
from tests.helpers.bridge import bridge_port, bridge_sections, connect
from unity_bridge.client import BridgeClient

MAX_FRAME = 4096
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(), st.text(max_size=16), st.binary(max_size=16))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
field_names = sorted({f for s in REGISTRY.values() for f in s.fields})
type_names = st.sampled_from(sorted(REGISTRY)) | st.text(max_size=12) | values
envelopes = st.fixed_dictionaries(
    {"type": type_names},
    optional={"id": st.integers(-(2**63), 2**64 - 1) | values, "reply_to": values,
              "ts": values,
              "data": st.dictionaries(st.sampled_from(field_names) | st.text(max_size=8),
                                      values, max_size=6) | values})
well_framed = st.one_of(
    st.binary(max_size=300).map(frame),  # right length, random body
    envelopes.map(lambda m: frame(msgpack.packb(m))),  # msgpack maps of every wrong shape
)
last_frame = st.one_of(  # what may end a stream: a cut frame or a length past the limit
    st.builds(lambda b, extra: HEADER.pack(len(b) + extra) + b, st.binary(max_size=64),
              st.integers(1, 100)),
    st.integers(MAX_FRAME + 1, 2**32 - 1).map(HEADER.pack),
    st.binary(max_size=3),
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("fuzz"), base_config(**bridge_sections(
        max_frame_bytes=MAX_FRAME, max_errors=1000, ping_interval_s=0.5)))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def good(stack: Stack) -> Iterator[BridgeClient]:
    """A well-behaved client, connected before the fuzzing and checked after every example."""
    c = connect(stack, "good")
    yield c
    c.close()


def exchange(port: int, payload: bytes, greet: bool) -> list[bytes]:
    """Send `payload` (after a valid hello if `greet`), half-close, collect frames until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if greet:
            sock.sendall(message("hello", {"protocol": PROTOCOL_VERSION, "client": "fuzz"}, id=1))
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the bridge may already have closed on us: that is a valid outcome
        decoder = FrameDecoder(1 << 24)
        frames: list[bytes] = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:  # closed with our bytes unread: RST may cut the tail
                return frames
            if not data:
                assert decoder.pending == 0, "the bridge sent a cut frame"
                return frames
            frames.extend(decoder.feed(data))


def check_answers(frames: list[bytes], greeted: bool) -> None:
    for raw in frames:
        env = decode(raw, 1 << 24)  # the bridge only ever sends valid registry messages
        if env.type == "error":
            assert env.data["code"] in set(ErrorCode)
        else:
            assert greeted, f"{env.type} sent to a client that never said hello"


def still_serving(stack: Stack, good: BridgeClient) -> None:
    assert good.request("ping", timeout=10).data == {"from": "unity_bridge"}


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_before_hello(stack: Stack, good: BridgeClient, data: bytes) -> None:
    check_answers(exchange(bridge_port(stack), data, greet=False), greeted=False)
    still_serving(stack, good)


@FUZZ
@given(frames=st.lists(well_framed, max_size=6), tail=st.none() | last_frame)
def test_bad_frames_after_hello(stack: Stack, good: BridgeClient, frames: list[bytes],
                                tail: bytes | None) -> None:
    answers = exchange(bridge_port(stack), b"".join(frames) + (tail or b""), greet=True)
    check_answers(answers, greeted=True)
    assert answers and decode(answers[0]).type == "welcome"
    still_serving(stack, good)


def test_bridge_survived_the_fuzzing(stack: Stack, good: BridgeClient) -> None:
    w = stack.worker("unity_bridge")
    assert (w["state"], w["restarts"]) == ("RUNNING", 0)
    reply = stack.client.request("set_expression", {"name": "surprised", "value": 0.5})
    assert reply.type == "ok"
    assert good.wait_for("set_expression", lambda e: e.data["name"] == "surprised",
                         timeout=10).data["value"] == 0.5
    log = stack.client.request("logs", {"worker": "unity_bridge", "lines": 2000}).data["lines"]
    assert not [line for line in log if "Traceback" in line or "failed" in line]
