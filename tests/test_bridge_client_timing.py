"""BridgeClient's receipt times (recv_timed, request_timed), which latency benches rely on:
the time the bytes were read off the socket, not the time the caller got to them. Against a
fake bridge on a local socket: no stack, and no assert on how fast anything is."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from protocol.codec import Envelope, decode
from protocol.framing import FrameDecoder, message
from unity_bridge.client import BridgeClient, BridgeError


class FakeBridge:
    """The server end of one client connection, speaking frames."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.decoder = FrameDecoder(1 << 20)
        self.pending: list[Envelope] = []

    def send(self, type_: str, data: dict, **kw: int) -> None:
        self.conn.sendall(message(type_, data, **kw))

    def recv(self) -> Envelope:
        while not self.pending:
            self.conn.settimeout(10)
            self.pending += [decode(p, validate=False)
                             for p in self.decoder.feed(self.conn.recv(65536))]
        return self.pending.pop(0)


@pytest.fixture
def pair() -> Iterator[tuple[BridgeClient, FakeBridge]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = BridgeClient("127.0.0.1", listener.getsockname()[1]).open()
        conn, _ = listener.accept()
        try:
            yield client, FakeBridge(conn)
        finally:
            client.close()
            conn.close()


def test_recv_timed_is_the_time_of_receipt(pair: tuple[BridgeClient, FakeBridge]) -> None:
    client, bridge = pair
    t_before = time.time()
    bridge.send("avatar_state", {"state": "idle"})
    # The reader answers pings in order, so once the pong is back the event was read.
    bridge.send("ping", {}, id=7)
    assert bridge.recv().reply_to == 7
    t_read = time.time()
    time.sleep(0.05)
    t, env = client.recv_timed(5)
    assert env.type == "avatar_state"
    assert t_before <= t <= t_read  # not when recv_timed returned it
    with pytest.raises(TimeoutError):  # the ping was answered, not queued
        client.recv(0.05)


def test_request_timed_and_held_messages_keep_their_times(
        pair: tuple[BridgeClient, FakeBridge]) -> None:
    client, bridge = pair
    bridge.send("avatar_state", {"state": "thinking"})  # unrelated: the request holds it
    bridge.send("ping", {}, id=8)
    assert bridge.recv().reply_to == 8  # the event was read by now
    t_mark = time.time()
    th = threading.Thread(target=lambda: bridge.send("pong", {"from": "fake"},
                                                     reply_to=bridge.recv().id))
    th.start()
    t_reply, reply = client.request_timed("ping", {}, timeout=5)
    th.join(5)
    assert reply.type == "pong"
    assert t_mark <= t_reply  # asked after t_mark, so answered after it
    t_held, held = client.recv_timed(0)  # from the backlog, with its own receipt time
    assert held.type == "avatar_state"
    assert t_held <= t_mark


def test_request_still_returns_the_envelope_and_raises_on_error(
        pair: tuple[BridgeClient, FakeBridge]) -> None:
    client, bridge = pair

    def answer() -> None:
        first = bridge.recv()
        bridge.send("ok", {"detail": "fine"}, reply_to=first.id)
        second = bridge.recv()
        bridge.send("error", {"code": 4, "message": "no"}, reply_to=second.id)
    th = threading.Thread(target=answer)
    th.start()
    env = client.request("set_expression", {"name": "joy", "value": 0.5})
    assert isinstance(env, Envelope) and env.data == {"detail": "fine"}
    with pytest.raises(BridgeError, match="no"):
        client.request_timed("set_expression", {"name": "joy", "value": 0.5})
    th.join(5)
