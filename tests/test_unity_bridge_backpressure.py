"""Clients that read slowly or not at all: merged speech for the first, a drop for the second."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from protocol.codec import Envelope, decode
from protocol.framing import FrameDecoder, message
from protocol.messages import PROTOCOL_VERSION
from supervisor.harness import Stack
from tests.conftest import base_config
from tests.helpers.bridge import BusPublisher, bridge_port, bridge_sections, connect, live_bus


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("backpressure"), base_config(**bridge_sections()))
    s.start()
    yield s
    s.stop()


class StalledReader:
    """A raw client that greets, then stops reading (until `read_until`)."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.sock = socket.socket()
        self.sock.connect(("127.0.0.1", bridge_port(stack)))
        self.decoder = FrameDecoder(8 << 20)
        self.sock.sendall(message("hello", {"protocol": PROTOCOL_VERSION, "client": name}, id=1))
        assert self.read_until(lambda e: e.type == "welcome")[-1].type == "welcome"

    def read_until(self, done, timeout: float = 30) -> list[Envelope]:
        """Read (now at full speed) until `done(env)`; everything read, in order."""
        self.sock.settimeout(timeout)
        got: list[Envelope] = []
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                return got
            for payload in self.decoder.feed(data):
                got.append(decode(payload))
                if done(got[-1]):
                    return got

    def close(self) -> None:
        self.sock.close()


def test_a_slow_reader_gets_merged_speech_with_the_whole_text(stack: Stack) -> None:
    bus = live_bus(stack, ["client_disconnected"])
    watcher = connect(stack, "watcher")  # primes the publisher (it reads at full speed)
    slow = StalledReader(stack, "slow")
    pub = BusPublisher(stack)
    try:
        pub.prime(watcher)
        pub.publish("chat_started", {"request_id": 5})
        pieces = [f" piece{i:05d}" for i in range(4000)]  # unmerged: ~1 GB of speech frames
        for i, piece in enumerate(pieces):
            pub.publish("chat_delta", {"request_id": 5, "text": piece, "index": i})
        whole = "".join(pieces)
        pub.publish("chat_ended", {"request_id": 5, "text": whole, "cancelled": False})
        watcher.wait_for("speech", lambda e: e.data["done"], timeout=60)

        got = slow.read_until(lambda e: e.type == "speech" and e.data["done"]
                              and e.data["request_id"] == 5, timeout=60)
        speech = [e.data for e in got if e.type == "speech" and e.data["request_id"] == 5]
        assert speech[-1] == {"request_id": 5, "delta": "", "text": whole, "done": True}
        partial = speech[:-1]
        assert len(partial) < len(pieces)  # merged while the reader lagged behind
        assert "".join(s["delta"] for s in partial) == whole  # no piece lost or doubled
        assert all(s["text"].endswith(s["delta"]) for s in partial)
        assert partial[-1]["text"] == whole
        closing = slow.read_until(lambda e: e.type == "mouth")  # after all merged ones
        assert [e.type for e in closing] == ["mouth"] and closing[0].data["value"] == 0.0
        slow.sock.sendall(message("ping", {}, id=2))  # still served
        assert slow.read_until(lambda e: e.reply_to == 2)[-1].type == "pong"
    finally:
        pub.close()
        slow.close()
        watcher.close()
        bus.close()


def test_a_client_that_never_reads_is_dropped_and_the_others_go_on(stack: Stack) -> None:
    bus = live_bus(stack, ["client_disconnected"])
    watcher = connect(stack, "watcher")
    stalled = StalledReader(stack, "stalled")
    sender = stack.new_client()
    try:
        path = "/avatars/" + "x" * 4000  # commands are never merged: each one must arrive
        deadline = time.monotonic() + 60
        reason = None
        while reason is None and time.monotonic() < deadline:
            for _ in range(100):
                sender.send("load_model", {"path": path})
            while True:
                try:
                    ev = bus.recv_event(0.01)
                except TimeoutError:
                    break
                if ev.type == "client_disconnected" and ev.data["client"] == "stalled":
                    reason = ev.data["reason"]
        assert reason == "does not read (slow consumer)"
        assert watcher.request("ping").type == "pong"
        assert watcher.wait_for("load_model").data["path"] == path
    finally:
        sender.close()
        stalled.close()
        watcher.close()
        bus.close()
