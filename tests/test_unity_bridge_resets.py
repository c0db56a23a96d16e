"""Avatar clients that reset their connection (the Unity app closed mid-reply) while the bridge
broadcasts: the bridge must drop them and serve on, in the same process.

Regression: a send that failed during a broadcast dropped the client and unwatched its socket;
when that client's own event was in the same poll batch, the runtime took the socket number for
a bus socket and its bus thread died (`'int' object has no attribute 'recv_multipart'`).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from protocol.codec import decode
from protocol.framing import FrameDecoder, message
from protocol.messages import PROTOCOL_VERSION
from supervisor.harness import Stack
from tests.helpers.bridge import BusPublisher, bridge_port, bridge_sections, connect
from unity_bridge.client import BridgeClient

ROUNDS = 40
PER_ROUND = 8  # 320 resets at most; unfixed, the bridge died within a few dozen


def greeted_socket(port: int, name: str) -> socket.socket:
    """A raw client past its handshake, so every broadcast targets it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(message("hello", {"protocol": PROTOCOL_VERSION, "client": name}, id=1))
    decoder = FrameDecoder(8 << 20)
    while True:
        data = sock.recv(1 << 16)
        assert data, "the bridge closed a connection before welcome"
        if any(decode(p).type == "welcome" for p in decoder.feed(data)):
            return sock


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, as when a process is killed or closed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Stream:
    """Replies streaming from the bus, one chat_delta after another, until stopped."""

    REPLY_TOKENS = 200  # then the next reply: a speech frame carries the whole text so far

    def __init__(self, pub: BusPublisher) -> None:
        self.pub = pub
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="stream")

    def _run(self) -> None:
        request_id = 0
        while not self.stop.is_set():
            request_id += 1
            self.pub.publish("chat_started", {"request_id": request_id})
            for index in range(self.REPLY_TOKENS):
                if self.stop.is_set():
                    break
                self.pub.publish("chat_delta", {"request_id": request_id, "text": "la ",
                                                "index": index})
                time.sleep(0.0002)
            self.pub.publish("chat_ended", {"request_id": request_id, "text": "",
                                            "cancelled": False})

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def reset_storm(stack: Stack, port: int, pid: int) -> tuple[int, str]:
    """Greet and reset clients in rounds while the stream flows: how many were reset, and
    why the storm ended early ("" if it did not)."""
    done = 0
    for r in range(ROUNDS):
        try:
            socks = [greeted_socket(port, f"reset-{r}-{i}") for i in range(PER_ROUND)]
        except OSError as exc:
            return done, f"a new client could not connect: {exc}"
        for sock in socks:
            reset(sock)
        done += len(socks)
        w = stack.worker("unity_bridge")
        if (w["pid"], w["state"]) != (pid, "RUNNING"):
            return done, f"the bridge is now {w['state']} pid {w['pid']}"
    return done, ""


def bridge_log(stack: Stack) -> list[str]:
    """The bridge's last log lines: why it died, when it did."""
    return stack.client.request("logs", {"worker": "unity_bridge", "lines": 30}).data["lines"]


def test_clients_that_reset_during_a_streaming_reply_do_not_kill_the_bridge(make_stack) -> None:
    stack = make_stack(**bridge_sections()).start()
    before = stack.worker("unity_bridge")
    port = bridge_port(stack)
    watcher = connect(stack, "watcher")  # stays: the bridge streams while a client listens
    pub = BusPublisher(stack)
    try:
        pub.prime(watcher)
        with Stream(pub):
            resets, stopped = reset_storm(stack, port, before["pid"])
        print(f"\n{resets} clients reset during the stream")
        assert not stopped, (stopped, resets, bridge_log(stack))
        after = stack.worker("unity_bridge")
        assert (after["pid"], after["restarts"], after["state"]) == (
            before["pid"], 0, "RUNNING"), (after, bridge_log(stack))
        assert not watcher.closed.is_set()
        with BridgeClient("127.0.0.1", port, name="after") as fresh:
            fresh.connect(timeout=10)
            assert fresh.request("ping").type == "pong"
    finally:
        pub.close()
        watcher.close()
