"""The bridge worker: joins the bus, serves the Unity wire, and keeps the two in step.

All of it runs on the runtime's bus thread, which polls the bus sockets and the TCP sockets
together: a command from the bus is applied, sent to the clients and answered in one go. The
main thread only waits for the stop request.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from typing import Any

from protocol.codec import Envelope
from protocol.messages import AVATAR, PROTOCOL_VERSION, REGISTRY, ErrorCode, Kind
from unity_bridge.avatar import Avatar, CommandError
from unity_bridge.server import BridgeServer, Limits
from workers.runtime import WorkerRuntime

log = logging.getLogger("unity_bridge")

COMMANDS = sorted(n for n, s in REGISTRY.items()
                  if s.kind is Kind.REQUEST and s.handler == AVATAR and s.bus)
WIRE_ONLY_REQUESTS = sorted(n for n, s in REGISTRY.items()
                            if s.kind is Kind.REQUEST and s.handler == AVATAR and not s.bus)
EVENTS = ("chat_started", "chat_ended", "emotion", "profile_status", "worker_state")
# Per token, so only while a client listens: with nobody subscribed the chat worker's
# PUB socket drops it before it is sent, sparing two wake-ups per token on a busy CPU.
STREAM_EVENTS = ("chat_delta",)
STATE_FILE = "unity_bridge_state.json"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def limits_from(cfg: dict[str, Any]) -> Limits:
    return Limits(max_frame=cfg["max_frame_bytes"], handshake_timeout_s=cfg["handshake_timeout_s"],
                  ping_interval_s=cfg["ping_interval_s"], client_timeout_s=cfg["client_timeout_s"],
                  max_errors=cfg["max_errors"], max_clients=cfg["max_clients"],
                  token=cfg["token"])


class BridgeWorker:
    """The bridge's handlers, between the bus (the runtime) and the Unity wire (the server).

    The bus thread greets clients from the moment the server is attached, while the main
    thread may still be setting up: as bound methods, the handlers exist before anything can
    call them, and `serve` registers them all before it attaches the server.
    """

    def __init__(self, rt: WorkerRuntime, cfg: dict[str, Any]) -> None:
        self.rt = rt
        self.cfg = cfg
        self.avatar = Avatar(profile=str(rt.config["ai"]["gpu_profile"]),
                             state_file=rt.data_dir / "run" / STATE_FILE,
                             max_expressions=cfg["max_expressions"])
        self.server = BridgeServer(limits_from(cfg), self.avatar, rt.publish, rt,
                                   self.on_clients)
        self.streaming = False  # subscribed to STREAM_EVENTS
        self.port = 0

    def serve(self) -> int:
        """Bind, answer the bus, then serve the wire; returns the bound port."""
        self.port = self._listen()
        for type_ in COMMANDS:  # inline: on the bus thread, which owns the clients too
            self.rt.on_request(type_, self.run_command, inline=True)
        for type_ in WIRE_ONLY_REQUESTS:
            self.rt.on_request(type_, self.wire_only, inline=True)
        for type_ in EVENTS:
            self.rt.on_event(type_, self.forward, inline=True)
        self.rt.on_stop(self.stop)
        self.rt.call_on_bus(self.server.attach)
        return self.port

    def _listen(self) -> int:
        host, port = self.cfg["host"], self.cfg["port"]
        try:
            return self.server.listen(host, port)
        except socket.gaierror as exc:
            self.rt.fail_config(f"config: 'unity_bridge.host' {host!r} cannot be resolved: {exc}")
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", host, port, exc)
            raise SystemExit(1) from None  # maybe transient (port still held): retried

    # -- bus thread ----------------------------------------------------------------------
    def forward(self, env: Envelope) -> None:
        self.server.bus_event(env.type, env.data)

    def run_command(self, env: Envelope) -> None:
        try:
            count = self.server.command(env.type, env.data)
        except CommandError as exc:
            self.rt.error(env, ErrorCode.INVALID_FIELD, f"{env.type}: {exc}")
            return
        self.rt.reply(env, "ok", {"detail": f"sent to {count} client(s)"})

    def wire_only(self, env: Envelope) -> None:
        self.rt.error(env, ErrorCode.WRONG_DIRECTION,
                      f"'{env.type}' belongs to the Unity TCP wire (port {self.port}), not the bus")

    def on_clients(self, count: int) -> None:
        """Subscribe to the per-token events only while a client listens."""
        if bool(count) == self.streaming:
            return  # subscriptions are counted by ZeroMQ: change them only on 0 <-> 1
        self.streaming = bool(count)
        for type_ in STREAM_EVENTS:
            if self.streaming:
                self.rt.on_event(type_, self.forward, inline=True)
            else:
                self.rt.off_event(type_)

    # -- main thread ---------------------------------------------------------------------
    def stop(self, _drain: float) -> None:
        """Tell the clients why they lose us; the bus thread owns them, so it closes them."""
        closed = threading.Event()
        self.rt.call_on_bus(lambda: (self.server.close(), closed.set()))
        if not closed.wait(3):
            log.warning("closing the Unity wire took over 3 s; stopping anyway")


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    cfg = rt.config["unity_bridge"]
    host: str = cfg["host"]
    if not is_loopback(host) and not cfg["token"]:
        rt.fail_config(f"config: 'unity_bridge.host' is {host!r}, which other machines can "
                       f"reach: set 'unity_bridge.token' (clients must send it in hello), or "
                       f"bind 127.0.0.1")
    port = BridgeWorker(rt, cfg).serve()
    log.info("Unity wire listening on %s:%d (protocol %d)", host, port, PROTOCOL_VERSION)
    rt.ready({"host": host, "port": port, "protocol": PROTOCOL_VERSION})
    rt.run()
