"""The floor: rings of bare relay processes (pyzmq + msgpack, nothing of ours).

A ring has the same number of process hops and the same transports as a real path (ipc for
the bus, length-prefixed TCP for the Unity wire), and each relay does what every hop of the
stack does at least: msgpack unpack + pack. What the real path takes beyond its floor is what
our software adds.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgpack
import zmq

HDR = struct.Struct(">I")  # the Unity wire's length prefix
Addr = str | int  # an ipc:// endpoint, or a TCP port on 127.0.0.1


@dataclass(frozen=True)
class FloorSpec:
    hops: list[str]  # one transport per hop: "ipc" or "raw" (length-prefixed TCP)
    stamp_at: int  # 0: the origin stamps (a round trip); i: relay i stamps (one way)
    stands_for: str


FLOORS: dict[str, FloorSpec] = {
    "rt_ipc_2": FloorSpec(["ipc", "ipc"], 0, "client -> supervisor -> client"),
    "rt_ipc_4": FloorSpec(["ipc"] * 4, 0,
                          "client -> supervisor -> worker -> supervisor -> client"),
    "ow_ipc_ipc_tcp": FloorSpec(["ipc", "ipc", "raw"], 0,
                                "client -> supervisor -> bridge -> TCP client; "
                                "worker PUB -> XSUB/XPUB proxy -> bridge -> TCP client"),
    "ow_ipc_2": FloorSpec(["ipc", "ipc", "ipc"], 1, "worker -> supervisor -> client (one way)"),
    "ow_tcp_ipc_ipc": FloorSpec(["raw", "ipc", "ipc"], 0,
                                "TCP client -> bridge -> proxy -> bus SUB"),
    "rt_tcp": FloorSpec(["raw", "raw"], 0, "TCP client -> bridge -> TCP client"),
    "ow_tcp": FloorSpec(["ipc", "raw"], 1, "bridge -> TCP client (one way)"),
}
COLD = FloorSpec(["ipc"] * 3, 1, "publisher -> proxy -> bus SUB, sampled every 0.5 s")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def _tcp_connect(port: int, timeout: float = 10) -> socket.socket:
    """Connect, retrying while the relay that listens is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class Inlet:
    """The receiving end of one hop: a PULL socket, or a TCP listener (one peer)."""

    def __init__(self, ctx: zmq.Context, kind: str, addr: Addr) -> None:
        self.kind = kind
        self.zsock: zmq.Socket | None = None
        self.tsock: socket.socket | None = None
        self.listener: socket.socket | None = None
        if kind == "ipc":
            self.zsock = ctx.socket(zmq.PULL)
            self.zsock.bind(str(addr))
        else:
            self.listener = socket.socket()
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", int(addr)))
            self.listener.listen(1)

    def accept(self) -> None:
        """TCP: wait for the peer (after it was started); ipc: nothing to do."""
        if self.listener is not None:
            self.tsock, _ = self.listener.accept()
            self.tsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv(self) -> bytes:
        if self.zsock is not None:
            return self.zsock.recv()
        assert self.tsock is not None, "accept() first"
        (n,) = HDR.unpack(_recv_exact(self.tsock, 4))
        return _recv_exact(self.tsock, n)


class Outlet:
    """The sending end of one hop: a PUSH socket, or a TCP connection."""

    def __init__(self, ctx: zmq.Context, kind: str, addr: Addr) -> None:
        self.zsock: zmq.Socket | None = None
        self.tsock: socket.socket | None = None
        if kind == "ipc":
            self.zsock = ctx.socket(zmq.PUSH)
            self.zsock.connect(str(addr))
        else:
            self.tsock = _tcp_connect(int(addr))

    def send(self, frame: bytes) -> None:
        if self.zsock is not None:
            self.zsock.send(frame)
        else:
            assert self.tsock is not None
            self.tsock.sendall(HDR.pack(len(frame)) + frame)


def _relay(inlet: tuple[str, Addr], outlet: tuple[str, Addr], stamp: bool) -> None:
    """One relay process: unpack, (stamp,) pack, pass on; ends after a {"stop": True}."""
    ctx = zmq.Context()
    inp = Inlet(ctx, *inlet)
    out = Outlet(ctx, *outlet)
    inp.accept()
    while True:
        m = msgpack.unpackb(inp.recv(), raw=False)  # what every hop of the stack does
        if stamp:
            m["ts"] = time.time()
        out.send(msgpack.packb(m, use_bin_type=True))
        if m.get("stop"):
            return


class Ring:
    """origin -> relay 1 -> ... -> relay k -> origin; one transport per hop.

    The latency is time.time() at receipt minus the `ts` set at hop `stamp_at` (0: the
    origin, so a round trip; i: relay i stamps it, as a worker stamps the envelope it sends).
    """

    def __init__(self, name: str, spec: FloorSpec, tmp: Path) -> None:
        self.name, self.spec = name, spec
        hops = spec.hops
        ctx = zmq.Context.instance()
        addrs: list[Addr] = []
        for i, kind in enumerate(hops):
            if kind == "ipc" and zmq.has("ipc") and sys.platform != "win32":
                addrs.append(f"ipc://{tmp}/{name}-{i}")
            else:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                # A zmq hop goes over tcp where the bus does (Windows: protocol/bus.py).
                addrs.append(f"tcp://127.0.0.1:{port}" if kind == "ipc" else port)
        # hop i goes into relay i+1 (the last hop back into the origin)
        self.inp = Inlet(ctx, hops[-1], addrs[-1])
        spawn = mp.get_context("spawn")
        self.procs: list[BaseProcess] = []
        for r in range(1, len(hops)):
            p = spawn.Process(target=_relay, daemon=True, args=(
                (hops[r - 1], addrs[r - 1]), (hops[r], addrs[r]), r == spec.stamp_at))
            p.start()
            self.procs.append(p)
        self.out = Outlet(ctx, hops[0], addrs[0])
        self.inp.accept()
        for _ in range(20):  # connections up
            self.sample({"type": "warm"})

    def sample(self, payload: dict[str, Any]) -> float:
        """One message around the ring; its latency in seconds."""
        self.out.send(msgpack.packb({"payload": payload, "ts": time.time()}, use_bin_type=True))
        back = msgpack.unpackb(self.inp.recv(), raw=False)
        return time.time() - back["ts"]

    def throughput(self, payload: dict[str, Any], n: int) -> float:
        """Messages per second pushed through the ring with a sender thread (pipelined)."""
        frame = msgpack.packb({"payload": payload, "ts": 0.0}, use_bin_type=True)
        t0 = time.perf_counter()

        def sender() -> None:
            for _ in range(n):
                self.out.send(frame)
        th = threading.Thread(target=sender)
        th.start()
        for _ in range(n):
            self.inp.recv()
        th.join()
        return n / (time.perf_counter() - t0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.out.send(msgpack.packb({"stop": True, "ts": 0.0}))
            self.inp.recv()
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.kill()


def open_floors(tmp: Path) -> dict[str, Ring]:
    """Every ring of FLOORS, started (its relays are processes of their own)."""
    return {name: Ring(name, spec, tmp) for name, spec in FLOORS.items()}


class ColdFloor(threading.Thread):
    """The floor for events that come on their own schedule (stats every 0.5 s, state changes):
    a ring of its own, sampled every 0.5 s through the run, so it is as cold as they are and
    shares the bench process with the Collector that times them."""

    def __init__(self, tmp: Path, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.ring = Ring("cold", COLD, tmp)
        self.every = every
        self.samples: list[float] = []
        self._stop_flag = threading.Event()

    def run(self) -> None:
        while not self._stop_flag.wait(self.every):
            self.samples.append(self.ring.sample({"type": "worker_stats"}))

    def stop(self) -> None:
        """Stop sampling and close the ring."""
        self._stop_flag.set()
        self.join()
        self.ring.close()
