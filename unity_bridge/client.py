"""Python reference client of the Unity wire: a library (tests and tools use it) and a CLI.

    python -m unity_bridge.client send set_expression name=joy value=0.8
    python -m unity_bridge.client watch --types avatar_state,speech
    python -m unity_bridge.client state

A reader thread answers the bridge's pings (so an idle client is not dropped) and queues
everything else for `recv`, stamped with its time of receipt (`recv_timed`, `request_timed`:
latency benchmarks need when the bytes came, not when they were read from the queue).
Framing and envelope are the bridge's own (framing.py, codec.py).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.codec import DEFAULT_MAX_FRAME, Envelope, ProtocolError, decode
from protocol.framing import FrameDecoder, message
from protocol.messages import PROTOCOL_VERSION, REGISTRY, Kind


class BridgeError(Exception):
    """The bridge answered with an error; `code` is its ErrorCode number."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BridgeClosed(ConnectionError):
    """The connection ended; `errors` holds the unanswered error frames that came before."""

    def __init__(self, message: str, errors: list[Envelope] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


_EOF = object()


class BridgeClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 5555, *, name: str = "python-client",
                 token: str | None = None, auto_pong: bool = True,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.host, self.port, self.name, self.token = host, port, name, token
        self.auto_pong = auto_pong
        self.max_frame = max_frame
        self.sock: socket.socket | None = None
        self.welcome: Envelope | None = None
        self._ids = itertools.count(1)
        self._inbox: queue.Queue[Any] = queue.Queue()  # (receipt time, Envelope) or _EOF
        self._backlog: list[tuple[float, Envelope]] = []
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.closed = threading.Event()

    # -- connection ----------------------------------------------------------------------
    def open(self, timeout: float = 5.0) -> BridgeClient:
        """TCP connect only (no hello): for tests that speak the handshake themselves."""
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = threading.Thread(target=self._read, daemon=True, name="bridge-client")
        self._reader.start()
        return self

    def connect(self, timeout: float = 5.0) -> Envelope:
        """Connect and greet; returns `welcome`, raises BridgeError if the bridge refuses."""
        self.open(timeout)
        data: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "client": self.name}
        if self.token is not None:
            data["token"] = self.token
        self.welcome = self.request("hello", data, timeout)
        return self.welcome

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        if self._reader is not None:
            self._reader.join(timeout=2)

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------
    def send(self, type_: str, data: dict[str, Any] | None = None, *,
             reply_to: int | None = None) -> int | None:
        """Send one message; requests get a fresh id, which is returned."""
        ms = REGISTRY.get(type_)
        msg_id = next(self._ids) if ms is not None and ms.kind is Kind.REQUEST else None
        self.send_raw(message(type_, data, id=msg_id, reply_to=reply_to))
        return msg_id

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (tests use it for broken frames)."""
        assert self.sock is not None, "not connected"
        with self._send_lock:
            self.sock.sendall(data)

    def request(self, type_: str, data: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Envelope:
        """Send a request and return its final reply; BridgeError on an error reply."""
        return self.request_timed(type_, data, timeout)[1]

    def request_timed(self, type_: str, data: dict[str, Any] | None = None,
                      timeout: float = 5.0) -> tuple[float, Envelope]:
        """`request`, with the time.time() at which the final reply was received."""
        msg_id = self.send(type_, data)
        final = REGISTRY[type_].final
        deadline = time.monotonic() + timeout
        held: list[tuple[float, Envelope]] = []
        try:
            while True:
                try:
                    t, env = self.recv_timed(max(0.0, deadline - time.monotonic()))
                except BridgeClosed as exc:  # e.g. refused before our hello was read
                    raise BridgeClosed(str(exc), [e for _, e in held if e.type == "error"]
                                       ) from None
                if env.reply_to != msg_id:
                    held.append((t, env))
                elif env.type == "error":
                    raise BridgeError(str(env.data.get("message")), env.data.get("code"))
                elif env.type in final:
                    return t, env
        finally:
            self._backlog[:0] = held

    # -- receiving -----------------------------------------------------------------------
    def recv(self, timeout: float = 5.0) -> Envelope:
        """The next message; TimeoutError, or BridgeClosed once the connection is gone."""
        return self.recv_timed(timeout)[1]

    def recv_timed(self, timeout: float = 5.0) -> tuple[float, Envelope]:
        """`recv`, with the time.time() at which the message's bytes were read off the socket."""
        if self._backlog:
            return self._backlog.pop(0)
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing from the bridge within {timeout:.1f} s") from None
        if item is _EOF:
            self._inbox.put(_EOF)  # stay closed for later calls
            raise BridgeClosed("the bridge closed the connection")
        return item

    def wait_for(self, type_: str, pred: Callable[[Envelope], bool] = lambda e: True,
                 timeout: float = 5.0) -> Envelope:
        """The first message of `type_` matching `pred`; earlier ones are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            env = self.recv(max(0.0, deadline - time.monotonic()))
            if env.type == type_ and pred(env):
                return env

    def drain_until_closed(self, timeout: float = 10.0) -> list[Envelope]:
        """Everything left before the bridge closes the connection."""
        out: list[Envelope] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.append(self.recv(max(0.0, deadline - time.monotonic())))
            except BridgeClosed:
                return out

    def _read(self) -> None:
        decoder = FrameDecoder(self.max_frame)
        assert self.sock is not None
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                t = time.time()
                for payload in decoder.feed(data):
                    try:
                        env = decode(payload, self.max_frame, validate=False)
                    except ProtocolError:
                        continue
                    if env.type == "ping" and env.id is not None and self.auto_pong:
                        self.send("pong", {"from": self.name}, reply_to=env.id)
                        continue
                    self._inbox.put((t, env))
        except (OSError, ProtocolError):
            pass
        finally:
            self.closed.set()
            self._inbox.put(_EOF)


# -- CLI -------------------------------------------------------------------------------------
def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def resolve_address(args: argparse.Namespace) -> tuple[str, int, str | None]:
    """Host, port and token from the flags, else the config, else the running stack."""
    from supervisor.config import load_config

    cfg = load_config(args.config)[0]["unity_bridge"]
    host = args.host or cfg["host"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    token = args.token if args.token is not None else cfg["token"]
    port = args.port if args.port is not None else cfg["port"]
    if port == 0:  # picked at start: the bridge reports it in its ready info
        from protocol.bus import connect

        with connect(args.config.resolve().parent / "run") as bus:
            info = bus.request("status", timeout=5).data["workers"]["unity_bridge"]
            port = int(info["ready_info"]["port"])
    return host, port, token


def build_parser() -> argparse.ArgumentParser:
    from supervisor.config import DEFAULT_CONFIG

    p = argparse.ArgumentParser(prog="python -m unity_bridge.client",
                                description="Talk to the Unity bridge like an avatar client.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="config of the stack (for host, port, token)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--token")
    p.add_argument("--name", default="python-client", help="client name sent in hello")
    p.add_argument("--timeout", type=float, default=5.0)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send", help="send one message, e.g. set_expression name=joy value=0.8")
    s.add_argument("type")
    s.add_argument("fields", nargs="*", metavar="key=value",
                   help="data fields; values are JSON when they parse as JSON, else strings")
    w = sub.add_parser("watch", help="print every message as a JSON line")
    w.add_argument("--types", help="comma-separated types to show (default: all)")
    w.add_argument("--count", type=int, help="stop after this many messages")
    sub.add_parser("state", help="print the avatar state from welcome")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        host, port, token = resolve_address(args)
        with BridgeClient(host, port, name=args.name, token=token) as client:
            welcome = client.connect(args.timeout)
            return _run(client, welcome, args)
    except KeyboardInterrupt:
        return 130
    except BridgeError as exc:
        print(f"error {exc.code}: {exc}", file=sys.stderr)
    except Exception as exc:  # refused, timed out, config errors, no stack running, ...
        print(f"error: {exc}", file=sys.stderr)
    return 1


def _run(client: BridgeClient, welcome: Envelope, args: argparse.Namespace) -> int:
    if args.cmd == "state":
        print(json.dumps(welcome.data["state"], indent=2))
    elif args.cmd == "send":
        fields = {}
        for item in args.fields:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected key=value, got {item!r}")
            fields[key] = _parse_value(value)
        ms = REGISTRY.get(args.type)
        if ms is not None and ms.kind is Kind.REQUEST:
            reply = client.request(args.type, fields, args.timeout)
            print(json.dumps({"type": reply.type, "data": reply.data}))
        else:
            client.send(args.type, fields)
            client.request("ping", {}, args.timeout)  # the bridge saw it when this comes back
            print("sent")
    else:
        wanted = set(args.types.split(",")) if args.types else None
        seen = 0
        while args.count is None or seen < args.count:
            try:
                env = client.recv(3600)
            except TimeoutError:
                continue
            if wanted is None or env.type in wanted:
                print(json.dumps({"type": env.type, "id": env.id, "reply_to": env.reply_to,
                                  "data": env.data}), flush=True)
                seen += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
