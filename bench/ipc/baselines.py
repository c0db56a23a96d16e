"""What the stack is compared with that needs no stack: example envelopes of every registry
type (their sizes make the floor's payloads), the codec against bare msgpack and JSON, and
the ancestor's newline-delimited JSON over TCP."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import time
import timeit
from typing import Any

import msgpack

from bench.ipc.stats import summary
from protocol.codec import Envelope, decode, encode
from protocol.messages import NUM, REGISTRY, Kind

_VALUES: dict[type, Any] = {str: "joy", int: 7, float: 0.5, bool: True, dict: {"k": 1},
                            list: ["a"]}


def example(name: str) -> Envelope:
    """A valid envelope of registry type `name`, every field filled with a small value."""
    ms = REGISTRY[name]
    data: dict[str, Any] = {}
    for f, spec in ms.fields.items():
        t = spec.type
        if t == NUM:
            t = float
        elif isinstance(t, tuple):
            t = t[0]
        data[f] = _VALUES.get(t, "x")
    if name == "chat_delta":
        data["text"] = " hello"
    return Envelope(name, data, id=1 if ms.kind is Kind.REQUEST else None,
                    reply_to=1 if ms.kind is Kind.REPLY else None, ts=time.time())


def _best_us(fn: Any, n: int) -> float:
    """µs per call, the best of 3 repeats of n calls (the least disturbed)."""
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def codec_compare(n: int) -> dict[str, dict[str, float]]:
    """Encode + decode per registry type: our codec, bare msgpack, json; and frame sizes."""
    out = {}
    for name in REGISTRY:
        env = example(name)
        m = {"type": env.type, "ts": env.ts, "data": env.data}
        js = json.dumps(m)
        out[name] = {
            "msgpack_codec_us": _best_us(lambda e=env: decode(encode(e)), n),
            "msgpack_bare_us": _best_us(lambda m=m: msgpack.unpackb(msgpack.packb(m)), n),
            "json_us": _best_us(lambda m=m: json.loads(json.dumps(m)), n),
            "msgpack_bytes": len(encode(env)), "json_bytes": len(js)}
    return out


def _json_echo(port_q: Any) -> None:
    """The ancestor's server side: one JSON line in, an `ok` line out."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port_q.put(ls.getsockname()[1])
    s, _ = ls.accept()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for line in s.makefile("rb"):
        m = json.loads(line)
        s.sendall((json.dumps({"type": "ok", "reply_to": m.get("id"), "data": {}}) + "\n")
                  .encode())


def ancestor_json_rt(n: int, warmup: int = 50) -> dict[str, Any]:
    """The ancestor's newline-delimited JSON over TCP: request -> reply, one process hop."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_json_echo, args=(q,), daemon=True)
    p.start()
    s = socket.create_connection(("127.0.0.1", q.get(timeout=10)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    xs = []
    for i in range(n + warmup):
        t0 = time.perf_counter()
        s.sendall((json.dumps({"type": "set_expression", "id": i,
                               "data": {"name": "joy", "value": 0.8}}) + "\n").encode())
        json.loads(f.readline())
        if i >= warmup:
            xs.append(time.perf_counter() - t0)
    s.close()
    p.kill()
    return summary(xs, sum(xs))
