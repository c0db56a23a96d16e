"""Shared pieces of the Unity bridge tests: configs, the bound port, a real bus publisher."""

from __future__ import annotations

import socket
import time
from typing import Any

import zmq

from protocol.bus import BusClient, BusInfo, event_topic, secure_client
from protocol.codec import make
from supervisor.harness import Stack
from unity_bridge.client import BridgeClient

# Only the bridge (the other workers are not what these tests are about, and cost start time).
BRIDGE_ONLY: dict[str, Any] = {"workers": {"inference": {"enabled": False},
                                           "gpu_monitor": {"enabled": False}}}


def bridge_sections(**unity: Any) -> dict[str, dict[str, Any]]:
    return {**BRIDGE_ONLY, "unity_bridge": {"port": 0, **unity}}


def free_port() -> int:
    """A port nobody listens on now, for tests that need a fixed one (as real clients have)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bridge_port(stack: Stack) -> int:
    return int(stack.worker("unity_bridge")["ready_info"]["port"])


def connect(stack: Stack, name: str = "test-client", **kw: Any) -> BridgeClient:
    client = BridgeClient("127.0.0.1", bridge_port(stack), name=name, **kw)
    client.connect(timeout=10)
    return client


def connect_retry(host: str, port: int, timeout: float = 30, **kw: Any) -> BridgeClient:
    """Connect as an avatar client does after a restart: try again until the bridge is back."""
    deadline = time.monotonic() + timeout
    while True:
        client = BridgeClient(host, port, **kw)
        try:
            client.connect(timeout=5)
            return client
        except OSError:
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def live_bus(stack: Stack, types: list[str], timeout: float = 20) -> BusClient:
    """A bus client whose subscriptions are known to be in place.

    It also subscribes to worker_stats, which the supervisor publishes every stats interval:
    the first one to arrive proves the earlier subscriptions have reached the relay too.
    """
    bus = stack.new_client()
    bus.subscribe([*types, "worker_stats"])
    bus.wait_event("worker_stats", timeout=timeout)
    return bus


def wait_disconnects(bus: BusClient, sessions: set[int], timeout: float = 20) -> None:
    """Until the bridge has said goodbye to each of these sessions (it closes them async)."""
    deadline = time.monotonic() + timeout
    left = set(sessions)
    while left:
        ev = bus.recv_event(max(0.01, deadline - time.monotonic()))
        if ev.type == "client_disconnected":
            left.discard(ev.data["session"])


class BusPublisher:
    """Publishes events into the stack's real event relay, as the chat worker does."""

    def __init__(self, stack: Stack) -> None:
        info = BusInfo.load(stack.data_dir / "run")
        assert info is not None
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.sndhwm = 100_000  # as a worker's: a burst must not be dropped here
        secure_client(self.pub, info.secret)
        self.pub.connect(info.xsub)

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        self.pub.send_multipart([event_topic(type_), make(type_, data)])

    def prime(self, client: BridgeClient, timeout: float = 20) -> None:
        """Wait until the bridge's subscription has reached this publisher.

        A PUB drops what it publishes before the subscriptions arrive, so repeat a harmless
        probe (a chat that starts and ends) until the client sees its effect.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.publish("chat_started", {"request_id": -1})
            try:
                client.wait_for("avatar_state", lambda e: e.data["state"] == "thinking", 0.1)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        self.publish("chat_ended", {"request_id": -1, "text": "", "cancelled": True})
        client.wait_for("avatar_state", lambda e: e.data["state"] == "idle", 10)

    def close(self) -> None:
        self.pub.close(0)
        self.ctx.term()
