"""The soak's clients: chats, other bus requests, and an avatar on the Unity wire.

Each is a thread with its own connection that sends one request at a time until told to stop
(or its deadline passes), and writes every request and its outcome in the ledger. A request
is never abandoned: the loop waits for its final reply up to its timeout, so stopping a
client costs at most what its request in flight still takes.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.chaos.ledger import CLOSED, COMPLETED, ERROR, LOST, Ledger, Record
from protocol.bus import BusClient
from protocol.messages import EMOTIONS, REGISTRY
from unity_bridge.client import BridgeClient, BridgeClosed, BridgeError

PROMPTS = ("Say hello.", "Name a colour.", "How are you?", "Tell me a short fact.",
           "What is your favourite food?", "Say something kind.")
CHATS_PER_CONVERSATION = 6  # then a new one: prompts stay short after the history fills


class Client(threading.Thread):
    """A load thread: `step` sends one request and waits for its end; `pause_s` between."""

    pause_s = 0.0

    def __init__(self, name: str, ledger: Ledger, seed: int) -> None:
        super().__init__(daemon=True, name=f"chaos-{name}")
        self.client_name = name
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.stop_flag = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                self.step()
                self.stop_flag.wait(self.pause_s)
        except BaseException as exc:  # the bench reports it rather than dying silently
            self.failure = exc
        finally:
            self.close()

    def step(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def stop(self) -> None:
        self.stop_flag.set()


def await_final(bus: BusClient, rec: Record, msg_id: int,
                on_progress: Callable[[Any], None] = lambda env: None) -> None:
    """Read replies to `msg_id` until its final one, an error, or `timeout_s` without any
    reply (lost)."""
    final = REGISTRY[rec.type].final
    rec.last_seen = rec.sent
    while True:
        left = rec.last_seen + rec.timeout_s - time.time()
        try:
            env = bus.recv_for(msg_id, max(0.001, left))
        except TimeoutError:
            Ledger.close(rec, LOST, message=f"no reply for {rec.timeout_s:g} s, and no final "
                                            f"reply ({rec.tokens} tokens before)")
            return
        rec.alive()
        if env.type == "error":
            Ledger.close(rec, ERROR, env.data.get("code"), str(env.data.get("message", "")))
            return
        if env.type in final:
            rec.reply = str(env.data.get("text", ""))
            Ledger.close(rec, COMPLETED)
            return
        on_progress(env)


class ChatClient(Client):
    """Chats of its own user and conversations; every text is unique, so the memory check
    can find each one."""

    pause_s = 0.05

    def __init__(self, name: str, ledger: Ledger, seed: int, bus: BusClient, max_tokens: int,
                 timeout_s: float) -> None:
        super().__init__(name, ledger, seed)
        self.bus, self.max_tokens, self.timeout_s = bus, max_tokens, timeout_s
        self.n = 0

    def step(self) -> None:
        self.n += 1
        data = {"text": f"[{self.client_name}-{self.n}] {self.rng.choice(PROMPTS)}",
                "max_tokens": self.max_tokens, "user": "chaos",
                "conversation": f"{self.client_name}-{self.n // CHATS_PER_CONVERSATION}"}
        rec = self.ledger.open("bus", "chat", self.client_name, self.timeout_s, data)

        def progress(env: Any) -> None:
            if env.type == "chat_token":
                rec.tokens += 1
            elif env.type == "request_retry":
                rec.retries += 1
        await_final(self.bus, rec, self.bus.send("chat", data), progress)

    def close(self) -> None:
        self.bus.close()


class BusLoad(Client):
    """Control and avatar requests through the supervisor, as the CLI and a GUI send them."""

    pause_s = 0.1

    def __init__(self, name: str, ledger: Ledger, seed: int, bus: BusClient, workers: list[str],
                 timeout_s: float) -> None:
        super().__init__(name, ledger, seed)
        self.bus, self.workers, self.timeout_s = bus, workers, timeout_s

    def step(self) -> None:
        kind = self.rng.choice(("status", "ping", "ping_worker", "set_expression"))
        if kind == "ping_worker":
            type_, data = "ping", {"target": self.rng.choice(self.workers)}
        elif kind == "set_expression":
            type_, data = "set_expression", {"name": self.rng.choice(EMOTIONS),
                                             "value": round(self.rng.random(), 3)}
        else:
            type_, data = kind, {}
        rec = self.ledger.open("bus", type_, self.client_name, self.timeout_s, data)
        await_final(self.bus, rec, self.bus.send(type_, data))

    def close(self) -> None:
        self.bus.close()


class WireClient(Client):
    """An avatar on the Unity wire: round trips, and a reconnect whenever the bridge goes.

    A request whose connection drops under it is `closed` (the client is told, by the
    connection itself); one that meets silence on a live connection is `lost`."""

    pause_s = 0.1

    def __init__(self, name: str, ledger: Ledger, seed: int, port: int,
                 timeout_s: float) -> None:
        super().__init__(name, ledger, seed)
        self.port, self.timeout_s = port, timeout_s
        self.conn: BridgeClient | None = None
        self.reconnects = 0
        self.connect_failures = 0

    def _connected(self) -> BridgeClient | None:
        if self.conn is not None and not self.conn.closed.is_set():
            return self.conn
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            self.reconnects += 1
        conn = BridgeClient("127.0.0.1", self.port, name=self.client_name)
        try:
            conn.connect(timeout=5)
        except (OSError, BridgeError):  # refused, reset, timed out: the bridge is restarting
            conn.close()
            self.connect_failures += 1
            self.stop_flag.wait(0.1)
            return None
        self.conn = conn
        return conn

    def step(self) -> None:
        conn = self._connected()
        if conn is None:
            return
        kind = self.rng.choice(("ping", "set_expression", "set_auto_blink"))
        data: dict[str, Any] = {}
        if kind == "set_expression":
            data = {"name": self.rng.choice(EMOTIONS), "value": round(self.rng.random(), 3)}
        elif kind == "set_auto_blink":
            data = {"enabled": self.rng.random() < 0.5}
        rec = self.ledger.open("wire", kind, self.client_name, self.timeout_s, data)
        try:
            conn.request(kind, data, timeout=self.timeout_s)
            Ledger.close(rec, COMPLETED)
        except BridgeError as exc:
            Ledger.close(rec, ERROR, exc.code, str(exc))
        except TimeoutError:  # before OSError, of which it is a subclass
            Ledger.close(rec, LOST, message=f"no final reply within {self.timeout_s:g} s")
        except (BridgeClosed, OSError) as exc:
            Ledger.close(rec, CLOSED, message=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError, BridgeClosed):
            for _ in range(10_000):  # broadcasts meanwhile (speech, mouth, commands)
                conn.recv(0)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
