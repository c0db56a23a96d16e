"""Streamed replies: chat events timed during real generation (their floor under the same
load), chat_cancel between tokens, and chat_delta throughput to the TCP client."""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from bench.ipc.baselines import example
from bench.ipc.floors import Ring
from bench.ipc.measurements import Rig
from bench.ipc.probes import Probe
from bench.ipc.sampling import Rows, Sampler
from bench.ipc.stats import summary
from protocol.bus import BusClient, event_topic, secure_client
from protocol.codec import make
from unity_bridge.client import BridgeClosed

UNDER_LOAD = "during generation (llama on both cores); the floor under the same load, " \
             "sampled in alternate chats"


# -- chat: inference -> supervisor -> client, inference -> bridge -> TCP client ----------------
def _finish(bus: BusClient, mid: int, timeout: float = 120) -> None:
    """Read a chat's replies until it is done."""
    while bus.recv_for(mid, timeout).type not in ("chat_done", "error"):
        pass


def chat(rig: Rig, s: Sampler) -> list[float]:
    """Token events while llama keeps both cores busy. The floor is taken under the same
    load: every other chat, the floor rings are sampled at about the token rate while it
    generates (real and floor chats alternate, after one warm-up chat).

    Returns the one-way floor samples under load (the floor of the inference events)."""
    chats = 4 if s.plan.quick else 10
    print(f"{2 * chats} short chats (half real, half floor) ...", flush=True)
    bus, p, col = rig.bus, rig.probe, rig.collector
    tok: list[float] = []
    done: list[float] = []
    e2e: list[float] = []
    floor_tok: list[float] = []
    floor_tcp: list[float] = []
    piece = {"type": "chat_delta", "data": example("chat_delta").data}
    for i in range(2 * chats + 1):
        p.drain()
        k = len(col.seen)
        mid = bus.send("chat", {"text": f"Say hello number {i}.", "max_tokens": 24,
                                "conversation": f"bench{i}"})
        if i and i % 2 == 0:  # a floor turn
            th = threading.Thread(target=_finish, args=(bus, mid))
            th.start()
            while th.is_alive():
                floor_tok.append(s.floors["ow_ipc_2"].sample(piece))
                floor_tcp.append(s.floors["ow_ipc_ipc_tcp"].sample(piece))
                time.sleep(0.01)  # about one token's time
            th.join()
            time.sleep(0.3)
            continue
        while True:
            env = bus.recv_for(mid, 120)
            lat = time.time() - env.ts
            if env.type == "chat_token" and i:
                tok.append(lat)
            if env.type in ("chat_done", "error"):
                if i:
                    done.append(lat)
                break
        time.sleep(0.3)
        if not i:
            continue  # warm-up chat
        deltas = [e for _, e in col.seen[k:] if e.type == "chat_delta"]
        speech = [t for t, e in p.pending() if e.type == "speech" and not e.data["done"]]
        e2e += [t - d.ts for d, t in zip(deltas, speech, strict=False)]
    rows = s.rows
    rows.set("chat_token", path="inference -> supervisor -> client (one way, reply ts -> "
             "receipt)", real=summary(tok), warmup=1)
    rows.set("chat_done", path="inference -> supervisor -> client (one way)",
             real=summary(done), warmup=1)
    rows.set("chat_delta→TCP", path="inference PUB -> proxy -> bridge -> TCP client as speech "
             "(inference ts -> TCP receipt)", real=summary(e2e), warmup=1)
    rows.add_floor("chat_token", floor_tok, "ow_ipc_2", note=UNDER_LOAD)
    rows.add_floor("chat_done", floor_tok, "ow_ipc_2", note=UNDER_LOAD)
    rows.add_floor("chat_delta→TCP", floor_tcp, "ow_ipc_ipc_tcp", note=UNDER_LOAD)
    rows.set("chat", path="client -> supervisor -> inference -> ... -> chat_done: a model call,"
             " not IPC; see bench/inference.py", real={"n": 0}, note="not an IPC figure")
    _cancel(bus, rows, 2 if s.plan.quick else 4)
    return floor_tok


def _cancel(bus: BusClient, rows: Rows, rounds: int) -> None:
    """chat_cancel -> ok round trip, sent between tokens of a long reply."""
    xs = []
    for i in range(rounds):
        mid = bus.send("chat", {"text": "Tell me a long story.", "max_tokens": 200,
                                "conversation": f"cancel{i}"})
        bus.recv_for(mid, 60)  # first token
        t0 = time.time()
        cid = bus.send("chat_cancel", {"request_id": mid})
        bus.recv_for(cid, 30)
        xs.append(time.time() - t0)
        _finish(bus, mid, 60)
    rows.set("chat_cancel", path="client -> supervisor -> inference -> supervisor -> client "
             "(ok), while generating", real=summary(xs), warmup=0,
             note="few samples; the cancel waits for the token in progress")


def throughput(rig: Rig, floor: Ring, quick: bool) -> dict[str, Any]:
    """chat_delta events published on the real bus -> bridge -> TCP client (speech).

    The bridge merges speech pieces for a client that reads slower than they come, so
    pieces are counted by the text they carry, not by frames: every piece is " ab"."""
    n = 20_000 if quick else 50_000
    print(f"chat_delta throughput ({n} events) ...", flush=True)
    p = rig.probe
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.sndhwm = 0
    secure_client(pub, rig.stack.client.info.secret)
    pub.connect(rig.stack.client.info.xsub)
    time.sleep(0.5)  # the subscription from the bridge reaches us
    topic = event_topic("chat_delta")
    piece = " ab"
    rid = 999_999
    rig.collector.paused = True
    p.drain()
    t0 = time.time()
    for i in range(n):
        if i % 50 == 0:  # a fresh reply every 50 pieces, as real replies are short
            rid += 1
            pub.send_multipart([event_topic("chat_started"),
                                make("chat_started", {"request_id": rid})])
        pub.send_multipart([topic, make("chat_delta", {"request_id": rid, "text": piece,
                                                       "index": i % 50})])
    t_sent = time.time() - t0
    chars, frames, last_rx = 0, 0, t0
    deadline = time.monotonic() + 60
    try:
        while chars < n * len(piece) and time.monotonic() < deadline:
            t, env = p.recv_timed(1.0)  # nothing new for 1 s: the rest is lost
            if env.type == "speech":
                frames += 1
                chars += len(env.data["delta"])
                last_rx = t
    except (TimeoutError, BridgeClosed):
        pass
    got = chars // len(piece)
    elapsed = last_rx - t0
    pub.send_multipart([event_topic("chat_ended"), make("chat_ended", {
        "request_id": rid, "text": "", "cancelled": True})])
    pub.close(0)
    time.sleep(0.8)
    p.drain()
    rig.collector.paused = False
    dropped = p.closed.is_set()
    if dropped:
        p.close()
        rig.probe = Probe(rig.port)
    fl = floor.throughput(
        {"type": "chat_delta", "data": {"request_id": rid, "text": piece, "index": 1}}, n)
    res = {"sent": n, "received": got, "speech_frames": frames,
           "dropped_by_bridge": "slow consumer" if dropped else "",
           "publish_s": t_sent, "elapsed_s": elapsed,
           "per_s": got / elapsed if elapsed > 0 else 0.0, "floor_per_s": fl,
           "note": "pieces counted by the speech text received (merged frames carry every "
                   "piece); per_s = pieces / (first publish -> last receipt)"}
    print(f"  {res['per_s']:.0f}/s to the TCP client ({got}/{n} pieces in {frames} speech "
          f"frames), floor {fl:.0f}/s", flush=True)
    return res
