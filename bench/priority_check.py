"""Does lowering llama's compute threads help bus latency, and does it cost tokens/s?

One real stack (launch.py, {"version": 1, "unity_bridge": {"port": 0}}), a TCP client of the
bridge in its own process (the Unity side), short chats in rounds. The inference worker lowers
its llama thread and the ggml threads it starts (workers.priority); this script finds those
threads (the inference process's threads whose nice is not 0) and, between blocks of chats,
puts them under each setting tested: "0" is "not lowered", "N" nice N, "batchN" SCHED_BATCH at
nice N, "idle" SCHED_IDLE. Blocks are interleaved so drift in the machine's load spreads over
all settings; each chat records the cores other processes used meanwhile, and the summary keeps
the quiet chats. Linux only; going below the worker's own nice needs root (CAP_SYS_NICE),
without it only nice values >= COMPUTE_NICE are tried.

Per setting: one-way latency of chat_token replies (inference -> supervisor -> bus client,
reply ts -> receipt), of chat_delta reaching the TCP client as `speech` (inference -> proxy ->
bridge -> TCP client), and tokens/s (the worker's own figure in chat_done).

    .venv/bin/python -m bench.priority_check [--rounds 4] [--chats 3] [--settings 0,5,10,19]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.inference import GATE, QUIET_CORES, Foreign
from bench.ipc.probes import Probe
from bench.ipc.stats import pct
from supervisor.harness import Stack
from workers.priority import COMPUTE_NICE


def compute_threads(pid: int) -> list[int]:
    """Threads of the inference process that the worker lowered (its llama + ggml threads)."""
    return [t.id for t in psutil.Process(pid).threads()
            if os.getpriority(os.PRIO_PROCESS, t.id) != 0]


def apply(tids: list[int], setting: str) -> None:
    """"N": SCHED_OTHER at nice N; "batchN": SCHED_BATCH at nice N; "idle": SCHED_IDLE."""
    for tid in tids:
        if setting == "idle":
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            continue
        batch = setting.startswith("batch")
        policy = os.SCHED_BATCH if batch else os.SCHED_OTHER
        os.sched_setscheduler(tid, policy, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, int(setting.removeprefix("batch")))


def tcp_client(port: int, out: Any, stop: Any) -> None:
    """The Unity side, in its own process: in this one its reader thread would hold the GIL
    the bus client needs, and add that wait to chat_token's latency."""
    probe = Probe(port, "priority-check")
    while not stop.is_set():
        try:
            t, env = probe.recv_timed(0.1)
        except TimeoutError:
            continue
        if env.type == "speech" and not env.data.get("done"):
            out.put((t, env.data["request_id"]))
    probe.close()


def chat(client: Any, speech_q: Any, i: int, max_tokens: int
         ) -> tuple[list[float], list[float], float, float]:
    """One chat: chat_token latencies, speech latencies (matched by order), tokens/s, and the
    cores other processes kept busy meanwhile."""
    GATE.wait()
    foreign = Foreign().__enter__()
    mid = client.send("chat", {"text": f"Tell me a short story about number {i}.",
                               "max_tokens": max_tokens, "conversation": f"prio{i}"})
    token_ts: list[float] = []
    tok: list[float] = []
    while True:
        env = client.recv_for(mid, 120)
        now = time.time()
        if env.type == "chat_token":
            tok.append(now - env.ts)
            token_ts.append(env.ts)
        elif env.type in ("chat_done", "error"):
            break
    foreign.__exit__()
    if env.type == "error":
        raise RuntimeError(env.data)
    time.sleep(0.2)  # the last speech frames
    speech: list[float] = []
    while True:
        try:
            t, rid = speech_q.get(timeout=0.05)
        except queue.Empty:
            break
        if rid == mid:
            speech.append(t)
    lat_speech = [t - ts for t, ts in zip(speech, token_ts, strict=False)]
    return tok, lat_speech, float(env.data.get("tokens_per_s") or 0.0), foreign.cores


def ms(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return " ".join(f"{v * 1e3:6.2f}" for v in (pct(xs, 50), pct(xs, 95), pct(xs, 99), max(xs)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--chats", type=int, default=3, help="chats per setting per round")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--settings", default="0,5,10,19",
                    help="comma-separated: N (nice N), batchN (SCHED_BATCH, nice N), idle "
                         "(SCHED_IDLE)")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="seconds in all to wait for other processes to go quiet")
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        print("Linux only (per-thread nice)")
        return 2
    settings = args.settings.split(",")
    if os.geteuid() != 0:
        settings = [n for n in settings if n.isdigit() and int(n) >= COMPUTE_NICE]
        print(f"not root: only nice >= {COMPUTE_NICE} can be set: {settings}")
    GATE.budget_s = args.quiet_wait
    rows: dict[str, list[tuple[list[float], list[float], float, float]]] = {
        n: [] for n in settings}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), {"version": 1, "unity_bridge": {"port": 0}})
        stack.start()
        try:
            port = stack.status()["workers"]["unity_bridge"]["ready_info"]["port"]
            ctx = mp.get_context("spawn")
            speech_q, stop = ctx.Queue(), ctx.Event()
            probe = ctx.Process(target=tcp_client, args=(port, speech_q, stop), daemon=True)
            probe.start()
            client = stack.new_client()
            pid = stack.worker("inference")["pid"]
            chat(client, speech_q, 0, args.max_tokens)  # warm-up; ggml's threads exist now
            tids = compute_threads(pid)
            print(f"inference pid {pid}: {len(psutil.Process(pid).threads())} threads, "
                  f"lowered by the worker: {len(tids)} "
                  f"(nice {[os.getpriority(os.PRIO_PROCESS, t) for t in tids]})", flush=True)
            if not tids:
                print("no lowered threads found: is workers.priority in use?")
                return 1
            i = 1
            for r in range(args.rounds):
                for n in settings if r % 2 == 0 else reversed(settings):
                    apply(tids, n)
                    for _ in range(args.chats):
                        rows[n].append(chat(client, speech_q, i, args.max_tokens))
                        i += 1
                print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}",
                      flush=True)
            apply(tids, str(COMPUTE_NICE))
            client.close()
            stop.set()
            probe.join(5)
        finally:
            stack.stop()
    print(f"\nchats with other processes using <= {QUIET_CORES} cores (quiet) / all chats; "
          f"latencies in ms")
    print(f"{'setting':>8} {'quiet':>7}  {'chat_token p50 p95 p99 max':<28}  "
          f"{'speech (TCP) p50 p95 p99 max':<28}  tokens/s median")
    for n in settings:
        quiet = [x for x in rows[n] if x[3] <= QUIET_CORES] or rows[n]
        tok = [v for x in quiet for v in x[0]]
        sp = [v for x in quiet for v in x[1]]
        tps = statistics.median(x[2] for x in quiet)
        print(f"{n:>8} {len(quiet):>3}/{len(rows[n]):<3}  {ms(tok):<28}  {ms(sp):<28}  "
              f"{tps:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
