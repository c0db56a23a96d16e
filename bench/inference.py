"""Inference benchmarks: the whole stack against llama-cpp-python, first reply, switches, threads.

Everything runs on the embedded default model and the cpu_fallback profile, with greedy
sampling (temperature 0) and the llama params the planner gives that profile.

1. overhead  The whole stack (client -> supervisor -> inference worker -> back, real processes)
             against direct in-process llama-cpp-python: same model, llama params, messages
             (persona + prompt, a fresh conversation per request so no history is added),
             sampling and max_tokens. Interleaved one request at a time, alternating which side
             goes first; the two never run concurrently, they only take turns on the same cores.
             Both are timed client-side: TTFT from send (or call) to the first token, tokens/s
             from the first to the last token. 1b repeats it against a worker without warm-up,
             to separate the worker's threading from the bus.
2. first     First chat after a load against the median TTFT of the next N, with ai.warmup on
             and off (two stacks; each load is a `restart inference`).
3. switch    Dark time: switch_profile sent -> first token of a chat sent right after it,
             served by the new process, against a standalone load of that profile (a fresh
             `python -c` that imports llama_cpp, opens the model and produces a first token).
4. threads   n_threads 1..physical cores, direct in-process: tokens/s and TTFT.

A shared 2-core machine is noisy, so every sample records how many cores *other* processes
kept busy meanwhile (system busy CPU time minus this process tree's, per wall second).
Before each sample it waits (bounded) for them to go quiet. Summaries use the quiet samples
(at most QUIET_CORES foreign) when there are enough of them, and say so; the raw samples are
all in the JSON.

Prints a table per part and writes bench/results/inference.json.

    .venv/bin/python -m bench.inference [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import zmq

from protocol.bus import BusClient, BusError
from protocol.codec import Envelope, ProtocolError, decode
from supervisor.config import DEFAULT_MODEL, default_config, load_profiles, validate
from supervisor.harness import ROOT, Stack, reloading_profile
from workers.gpu.gguf_info import read_model_info
from workers.gpu.planner import Plan, plan_profile
from workers.inference.llama_loader import open_model
from workers.inference.worker import TEMPLATE_TOKENS_PER_MESSAGE

RESULTS = Path(__file__).resolve().parent / "results"
PROFILE = "cpu_fallback"
SWITCH_TARGET_MS = 30  # a switch costs at most this much more than a fresh load to first token
QUIET_CORES = 0.25  # a sample is quiet when other processes used at most this many cores
PINGS = 50
SETTLE_S = 0.5  # pause after a load before the first chat, so it measures a cold model, not
#                 one still sharing the cores with the tail of its own start-up
PROMPTS = (
    "What is the capital of France?",
    "How do I make a good cup of tea?",
    "Tell me a short story about a cat.",
    "Why is the sky blue?",
    "What should I cook for dinner tonight?",
    "Give me one tip to sleep better.",
    "What is your favourite colour and why?",
    "How far away is the Moon?",
    "Can you recommend a good book?",
    "What is a fun fact about octopuses?",
    "How do plants make their food?",
    "What is the best way to learn to code?",
    "Describe a sunny day at the beach.",
    "How do I stay focused while working?",
    "What makes a good friend?",
    "Why do cats purr?",
    "What is the tallest mountain on Earth?",
    "Suggest a name for my new puppy.",
    "How does a rainbow form?",
    "What games do you like to play?",
)
WARMUP_PROMPTS = ("Hi there! How are you today?", "Do you like music?", "Good morning!")

Llama = Any  # llama_cpp.Llama, imported lazily by open_model
Messages = list[dict[str, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    quiet_wait_s: int  # the most time spent waiting for other processes to go quiet
    pairs: int  # part 1: interleaved stack/direct pairs
    diag_pairs: int  # part 1b: the same against a worker without warm-up
    warmup_requests: int  # part 1: requests per side before measuring (excluded)
    max_tokens: int  # parts 1 and 4
    loads: int  # part 2: loads per warm-up setting
    steady: int  # part 2: chats after the first one
    steady_max_tokens: int  # parts 2 and 3: only TTFT matters there
    switches: int  # part 3: switches (and as many standalone loads)
    sweep_prompts: int  # part 4: measured prompts per thread setting


FULL = Settings(quiet_wait_s=40, pairs=16, diag_pairs=8, warmup_requests=2, max_tokens=48,
                loads=3, steady=5, steady_max_tokens=16, switches=5, sweep_prompts=6)
QUICK = Settings(quiet_wait_s=8, pairs=4, diag_pairs=2, warmup_requests=1, max_tokens=32,
                 loads=1, steady=3, steady_max_tokens=8, switches=2, sweep_prompts=2)


@dataclass
class Reply:
    ttft_ms: float  # client-side: request sent (or call made) -> first token received
    tokens: int  # streamed pieces, which is what the worker counts as tokens
    tokens_per_s: float  # client-side: (tokens - 1) / (last token - first token)
    text: str
    server: dict[str, Any] = field(default_factory=dict)  # the stack's chat_done figures
    foreign_cores: float = 0.0  # cores other processes kept busy meanwhile
    trace: dict[str, float] = field(default_factory=dict)  # stack: wall-clock stamps


# -- interference from the rest of the machine -------------------------------------------------
def _busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq",
                                             "steal"))


def _own_cpu_s() -> float:
    """CPU time of this process and all its descendants, reaped ones included."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class Foreign:
    """Cores that other processes kept busy during the `with` block (10 ms tick resolution)."""

    cores = 0.0

    def __enter__(self) -> Foreign:
        self._t0, self._busy0, self._own0 = time.perf_counter(), _busy_cpu_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        other = (_busy_cpu_s() - self._busy0) - (_own_cpu_s() - self._own0)
        self.cores = max(0.0, other / wall) if wall > 0 else 0.0


def measured(fn: Callable[..., Reply], *args: Any) -> Reply:
    with Foreign() as f:
        reply = fn(*args)
    reply.foreign_cores = f.cores
    return reply


class QuietGate:
    """Before a sample, wait (bounded, per wait and in all) until other processes go quiet."""

    PROBE_S = 0.15
    PER_WAIT_S = 3.0

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.waited_s = 0.0

    def wait(self) -> None:
        t0 = time.monotonic()
        limit = min(self.PER_WAIT_S, self.budget_s - self.waited_s)
        while time.monotonic() - t0 < limit:
            with Foreign() as f:
                time.sleep(self.PROBE_S)
            if f.cores <= QUIET_CORES:
                break
        self.waited_s += time.monotonic() - t0


GATE = QuietGate(0.0)  # main() sets the budget


def quiet_subset(items: list[T], foreign: Callable[[T], float], minimum: int
                 ) -> tuple[list[T], str]:
    """The quiet items when there are at least `minimum`, else all; and which it was."""
    quiet = [x for x in items if foreign(x) <= QUIET_CORES]
    if len(quiet) >= minimum:
        return quiet, f"{len(quiet)} quiet of {len(items)}"
    return items, f"all {len(items)}, only {len(quiet)} quiet"


# -- small helpers -------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def messages_for(persona: str, text: str) -> Messages:
    """What the worker builds for a chat with no history."""
    return [{"role": "system", "content": persona}, {"role": "user", "content": text}]


def plan_for(profile: str, profiles: Path | None = None) -> Plan:
    """The plan the worker makes for `profile` (this build and machine; no GPU needed)."""
    import llama_cpp

    cores = psutil.cpu_count(logical=False) or 1
    return plan_profile(profile, load_profiles(profiles), read_model_info(DEFAULT_MODEL), None,
                        bool(llama_cpp.llama_supports_gpu_offload()), cores,
                        default_config()["ai"]["vram_margin_mb"] << 20)


def stack_config(warmup: bool) -> dict[str, Any]:
    return {"version": 1,
            "ai": {"gpu_profile": PROFILE, "temperature": 0, "warmup": warmup},
            "unity_bridge": {"port": 0}}  # never collides with other stacks on this machine


def start_stack(root: Path, name: str, warmup: bool) -> Stack:
    data_dir = root / name
    data_dir.mkdir()
    return Stack(data_dir, stack_config(warmup)).start()


_conversations = itertools.count(1)


def new_conversation() -> str:
    """A fresh conversation per request, so the worker adds no memory history to the prompt."""
    return f"bench-{next(_conversations)}"


def load_avg() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def ctx_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over all threads of `pid` (Linux)."""
    totals = [0, 0]
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    totals[0] += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    totals[1] += int(line.split()[1])
        except OSError:
            continue  # a thread that just ended
    return totals[0], totals[1]


def wait_new_inference(stack: Stack, old_pid: int) -> dict[str, Any]:
    return stack.wait_state("inference", "RUNNING", 60, pred=lambda w: w["pid"] != old_pid)


# -- one chat each way ---------------------------------------------------------------------------
def stack_chat(client: BusClient, text: str, max_tokens: int) -> Reply:
    sent, t0 = time.time(), time.perf_counter()
    rid = client.send("chat", {"text": text, "conversation": new_conversation(),
                               "max_tokens": max_tokens})
    reply = collect_stack_reply(client, t0, rid)
    reply.trace["sent"] = sent
    return reply


def collect_stack_reply(client: BusClient, t0: float, rid: int, timeout: float = 60) -> Reply:
    first = last = 0.0
    pieces: list[str] = []
    trace: dict[str, float] = {}
    while True:
        env = client.recv_for(rid, timeout)
        now = time.perf_counter()
        if env.type == "chat_token":
            if not pieces:
                first = now
                # env.ts: when the worker made the token (the supervisor keeps it)
                trace = {"first_made": env.ts, "first_received": time.time()}
            last = now
            pieces.append(env.data["text"])
        elif env.type == "chat_done":
            reply = make_reply(t0, first, last, pieces, env.data)
            reply.trace = trace
            return reply
        elif env.type == "error":
            raise BusError(env.data.get("message", "error"), env.data.get("code"))


def direct_chat(llm: Llama, messages: Messages, max_tokens: int, ai: dict[str, Any]) -> Reply:
    """What the worker's generate loop does, minus the bus (same call, same arguments)."""
    t0 = time.perf_counter()
    first = last = 0.0
    pieces: list[str] = []
    for chunk in llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, stream=True,
            temperature=ai["temperature"], top_p=ai["top_p"],
            repeat_penalty=ai["repeat_penalty"]):
        piece = chunk["choices"][0]["delta"].get("content")
        if not piece:
            continue
        now = time.perf_counter()
        if not pieces:
            first = now
        last = now
        pieces.append(piece)
    return make_reply(t0, first, last, pieces)


def make_reply(t0: float, first: float, last: float, pieces: list[str],
               server: dict[str, Any] | None = None) -> Reply:
    n = len(pieces)
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return Reply((first - t0) * 1000 if n else float("nan"), n, rate, "".join(pieces),
                 dict(server or {}))


def open_direct(params: dict[str, Any], ai: dict[str, Any]) -> Llama:
    """Open the model as the worker does, and warm it up as the worker does."""
    llm = open_model(DEFAULT_MODEL, **params, verbose=False)
    llm.create_chat_completion(messages=messages_for(ai["persona"], "Hello"), max_tokens=1)
    return llm


def prompt_tokens(llm: Llama, messages: Messages) -> int:
    """Exact prompt length: the GGUF chat template applied and tokenized as llama-cpp does it."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos])
    result = formatter(messages=messages)
    return len(llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                            special=True))


def count_tokens(llm: Llama, text: str) -> int:
    """The worker's own count (content only, no template)."""
    return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


# -- part 1: stack vs direct ---------------------------------------------------------------------
def ping_ms(client: BusClient) -> float:
    t0 = time.perf_counter()
    client.request("ping", {"target": "inference"})
    return (time.perf_counter() - t0) * 1000


def part_overhead(stack: Stack, llm: Llama, ai: dict[str, Any], s: Settings,
                  pairs: int) -> dict[str, Any]:
    client = stack.client
    persona = ai["persona"]
    for text in WARMUP_PROMPTS[:s.warmup_requests]:  # excluded: first requests of each side
        stack_chat(client, text, s.max_tokens)
        direct_chat(llm, messages_for(persona, text), s.max_tokens, ai)
    pings = [ping_ms(client) for _ in range(PINGS)]
    client.subscribe(["chat_started"])  # its ts: the worker starts the llama call
    time.sleep(0.3)
    worker_pid = stack.worker("inference")["pid"]
    switches_before = ctx_switches(worker_pid)
    rows: list[dict[str, Any]] = []
    attempts = pairs + pairs // 4  # a pair disturbed by other processes is run again
    for i in range(attempts):
        if i >= pairs and sum(r["foreign_cores"] <= QUIET_CORES for r in rows) >= pairs:
            break
        GATE.wait()
        while client.sub.poll(0):
            client.sub.recv_multipart()
        text = PROMPTS[i % len(PROMPTS)]
        messages = messages_for(persona, text)
        order = ("stack", "direct") if i % 2 == 0 else ("direct", "stack")
        got: dict[str, Reply] = {}
        for side in order:
            got[side] = (measured(stack_chat, client, text, s.max_tokens) if side == "stack"
                         else measured(direct_chat, llm, messages, s.max_tokens, ai))
        st, di = got["stack"], got["direct"]
        started = client.wait_event("chat_started", timeout=5).ts
        rows.append({
            "prompt": text, "first": order[0], "stack": asdict(st), "direct": asdict(di),
            "foreign_cores": max(st.foreign_cores, di.foreign_cores),
            "exact_prompt_tokens": prompt_tokens(llm, messages),
            "content_tokens": sum(count_tokens(llm, m["content"]) for m in messages),
            "same_text": st.text == di.text,
            "ttft_overhead_ms": st.ttft_ms - di.ttft_ms,
            "tps_ratio": st.tokens_per_s / di.tokens_per_s if di.tokens_per_s else float("nan"),
            "outside_llama_ttft_ms": st.ttft_ms - st.server["ttft_ms"],
            # client send -> worker about to call llama (supervisor, bus thread, generate
            # thread, prompt planning); and worker made the first token -> client has it
            "request_path_ms": (started - st.trace["sent"]) * 1000,
            "response_path_ms": (st.trace["first_received"] - st.trace["first_made"]) * 1000,
        })
    switches_after = ctx_switches(worker_pid)
    stack_tokens = sum(r["stack"]["tokens"] for r in rows)
    used, basis = quiet_subset(rows, lambda r: r["foreign_cores"], max(2, pairs // 2))
    summary = {
        "n": len(rows), "basis": basis, "warmup_requests_excluded_per_side": s.warmup_requests,
        "max_tokens": s.max_tokens, "stack_ai_warmup": stack.config()["ai"]["warmup"],
        "ping_n": len(pings), "ping_ms": median(pings),
        "worker_ctx_switches_per_token": {
            "voluntary": (switches_after[0] - switches_before[0]) / stack_tokens,
            "involuntary": (switches_after[1] - switches_before[1]) / stack_tokens},
        **pair_figures(used),
        "all_pairs": pair_figures(rows),
        "same_text": sum(r["same_text"] for r in rows),
        "prompt_tokens_stack_minus_exact": sorted({
            r["stack"]["server"]["prompt_tokens"] - r["exact_prompt_tokens"] for r in rows}),
        "exact_prompt_tokens_median": median([r["exact_prompt_tokens"] for r in rows]),
        "template_tokens": sorted({r["exact_prompt_tokens"] - r["content_tokens"]
                                   for r in rows}),
    }
    summary["tps_target_met"] = summary["tps_ratio"] >= 0.97
    summary["ttft_target_met"] = summary["ttft_overhead_ms"] <= 1.0
    return {"summary": summary, "rows": rows}


def pair_figures(rows: list[dict[str, Any]]) -> dict[str, float]:
    def med(path: str) -> float:
        side, key = path.split(".", 1) if "." in path else ("", path)
        return median([(r[side][key] if side else r[key]) for r in rows])

    return {
        "pairs_used": len(rows),
        "stack_tokens_per_s": med("stack.tokens_per_s"),
        "direct_tokens_per_s": med("direct.tokens_per_s"),
        "tps_ratio": med("tps_ratio"),  # median of the per-pair ratios
        "stack_ttft_ms": med("stack.ttft_ms"), "direct_ttft_ms": med("direct.ttft_ms"),
        "ttft_overhead_ms": med("ttft_overhead_ms"),  # median of the per-pair differences
        "worker_tokens_per_s": median([r["stack"]["server"]["tokens_per_s"] for r in rows]),
        "worker_ttft_ms": median([r["stack"]["server"]["ttft_ms"] for r in rows]),
        "outside_llama_ttft_ms": med("outside_llama_ttft_ms"),
        "request_path_ms": med("request_path_ms"), "response_path_ms": med("response_path_ms"),
        "worker_minus_direct_ttft_ms": median([r["stack"]["server"]["ttft_ms"]
                                               - r["direct"]["ttft_ms"] for r in rows]),
        "tokens_stack": med("stack.tokens"), "tokens_direct": med("direct.tokens"),
        "foreign_cores": med("foreign_cores"),
    }


def print_overhead(res: dict[str, Any], title: str) -> None:
    s, a = res["summary"], res["summary"]["all_pairs"]
    print(f"{title}\n({s['basis']} interleaved pairs, one request at a time, never concurrent;"
          f" stack with ai.warmup {str(s['stack_ai_warmup']).lower()}; "
          f"{s['warmup_requests_excluded_per_side']} warm-up request(s) per side excluded; "
          f"max_tokens {s['max_tokens']}; medians)")
    print(f"{'':<26}{'stack':>10}{'direct':>10}{'stack/direct':>14}{'stack-direct':>14}"
          f"{'all pairs':>12}")
    print(f"{'tokens/s (client-side)':<26}{s['stack_tokens_per_s']:>10.1f}"
          f"{s['direct_tokens_per_s']:>10.1f}{s['tps_ratio']:>14.3f}{'':>14}"
          f"{a['tps_ratio']:>12.3f}")
    print(f"{'TTFT ms (client-side)':<26}{s['stack_ttft_ms']:>10.2f}{s['direct_ttft_ms']:>10.2f}"
          f"{'':>14}{s['ttft_overhead_ms']:>14.2f}{a['ttft_overhead_ms']:>12.2f}")
    print(f"  TTFT overhead, where: request path (client send -> worker starts llama: "
          f"supervisor, worker bus and generate threads, prompt planning) "
          f"{s['request_path_ms']:.2f} ms; llama call in the worker vs in-process "
          f"{s['worker_minus_direct_ttft_ms']:+.2f} ms (worker TTFT {s['worker_ttft_ms']:.2f});"
          f" response path (worker made the first token -> client has it) "
          f"{s['response_path_ms']:.2f} ms. Idle bus round trip client->supervisor->worker->"
          f"client (ping): {s['ping_ms']:.2f} ms, n={s['ping_n']}")
    cs = s["worker_ctx_switches_per_token"]
    print(f"  worker-reported {s['worker_tokens_per_s']:.1f} tokens/s; worker context switches "
          f"per token: {cs['voluntary']:.1f} voluntary, {cs['involuntary']:.1f} involuntary; "
          f"other processes meanwhile {s['foreign_cores']:.2f} cores")
    print(f"  tokens per reply {s['tokens_stack']:.0f} / {s['tokens_direct']:.0f}; identical "
          f"replies {s['same_text']}/{s['n']}; stack prompt_tokens - exact prompt tokens = "
          f"{s['prompt_tokens_stack_minus_exact']} (exact median "
          f"{s['exact_prompt_tokens_median']:.0f}, of which chat template "
          f"{s['template_tokens']}; the worker estimates the template at "
          f"{2 * TEMPLATE_TOKENS_PER_MESSAGE} for two messages)")
    print(f"  target tokens/s ratio >= 0.97: {'met' if s['tps_target_met'] else 'MISSED'}; "
          f"target TTFT overhead <= 1 ms: {'met' if s['ttft_target_met'] else 'MISSED'}")


# -- part 2: first request after load ------------------------------------------------------------
def measure_load(stack: Stack, s: Settings, k: int) -> dict[str, Any]:
    old_pid = stack.worker("inference")["pid"]
    stack.client.request("restart", {"worker": "inference"})
    info = wait_new_inference(stack, old_pid)["ready_info"]
    time.sleep(SETTLE_S)
    GATE.wait()
    texts = [PROMPTS[(k * (s.steady + 1) + j) % len(PROMPTS)] for j in range(s.steady + 1)]
    with Foreign() as f:
        replies = [stack_chat(stack.client, t, s.steady_max_tokens) for t in texts]
    first, rest = replies[0], replies[1:]
    steady = median([r.ttft_ms for r in rest])
    return {"load_s": info.get("load_s"), "warmup_s": info.get("warmup_s"),
            "prompts": texts, "first_ttft_ms": first.ttft_ms,
            "steady_ttft_ms": [r.ttft_ms for r in rest], "steady_median_ms": steady,
            "ratio": first.ttft_ms / steady, "foreign_cores": f.cores,
            "worker_first_ttft_ms": first.server["ttft_ms"],
            "worker_steady_median_ms": median([r.server["ttft_ms"] for r in rest])}


def part_first(stack: Stack, s: Settings) -> dict[str, Any]:
    """Loads (each a `restart inference`) of one stack: first chat vs the next s.steady."""
    loads = [measure_load(stack, s, k) for k in range(s.loads)]
    used, basis = quiet_subset(loads, lambda x: x["foreign_cores"], max(1, s.loads // 2))
    out = {"loads": loads, "basis": basis, "steady_n": s.steady,
           "first_ttft_ms": median([x["first_ttft_ms"] for x in used]),
           "steady_ttft_ms": median([x["steady_median_ms"] for x in used]),
           "ratio": median([x["ratio"] for x in used]),
           "warmup_s": median([x["warmup_s"] or 0.0 for x in used])}
    out["target_met"] = out["ratio"] <= 1.2
    return out


def print_first(res: dict[str, Any]) -> None:
    res = {name: res[name] for name in ("warmup_on", "warmup_off") if name in res}
    steady_n = next(iter(res.values()))["steady_n"]
    print(f"\n2. first chat after a load vs the next {steady_n} (client-side TTFT; each load a "
          f"`restart inference`, first chat {SETTLE_S} s after ready; medians over loads)")
    print(f"{'ai.warmup':<10}{'loads':<22}{'first ms':>9}{'steady ms':>10}{'ratio':>7}"
          f"{'warm-up ms':>11}  per load: first/steady ms (other processes, cores)")
    for name, r in res.items():
        per = ", ".join(f"{x['first_ttft_ms']:.0f}/{x['steady_median_ms']:.0f} "
                        f"({x['foreign_cores']:.2f})" for x in r["loads"])
        print(f"{name.removeprefix('warmup_'):<10}{r['basis']:<22}{r['first_ttft_ms']:>9.1f}"
              f"{r['steady_ttft_ms']:>10.1f}{r['ratio']:>7.2f}{r['warmup_s'] * 1000:>11.0f}"
              f"  {per}")
    print("  target first/steady <= 1.2: " + "; ".join(
        f"{name} {'met' if r['target_met'] else 'MISSED'}" for name, r in res.items()))


# -- part 3: profile-switch dark time ------------------------------------------------------------
STANDALONE = r"""
import json, os, sys, time
t0 = time.perf_counter()
from pathlib import Path
import llama_cpp
from workers.inference.llama_loader import open_model
t1 = time.perf_counter()
a = json.loads(sys.argv[1])
llm = open_model(Path(a["model"]), **a["params"], verbose=False)
t2 = time.perf_counter()
for chunk in llm.create_chat_completion(messages=a["messages"], max_tokens=a["max_tokens"],
                                        stream=True, **a["sampling"]):
    if chunk["choices"][0]["delta"].get("content"):
        break
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_token_s": t3 - t2,
                  "in_process_s": t3 - t0}), flush=True)
os._exit(0)
"""


def standalone_load(params: dict[str, Any], messages: Messages, ai: dict[str, Any],
                    max_tokens: int) -> dict[str, float]:
    """A fresh interpreter: import llama_cpp, open the model, first token; timed from Popen."""
    arg = json.dumps({"model": str(DEFAULT_MODEL), "params": params, "messages": messages,
                      "max_tokens": max_tokens,
                      "sampling": {k: ai[k] for k in ("temperature", "top_p", "repeat_penalty")}})
    with Foreign() as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", STANDALONE, arg], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        wall = time.perf_counter() - t0
        proc.wait(30)
    got = json.loads(line)
    ms = {k.removesuffix("_s") + "_ms": v * 1000 for k, v in got.items()}
    ms["wall_ms"] = wall * 1000
    ms["interpreter_ms"] = ms["wall_ms"] - ms["in_process_ms"]
    ms["foreign_cores"] = f.cores
    return ms


def switch_once(stack: Stack, profile: str, text: str, max_tokens: int) -> dict[str, Any]:
    """switch_profile, then at once a chat; times what the client sees until its first token."""
    client = stack.client
    while client.sub.poll(0):  # events from before this switch
        client.sub.recv_multipart()
    old_pid = stack.worker("inference")["pid"]
    marks: dict[str, float] = {}
    ready: dict[str, Any] = {}
    with Foreign() as f:
        t0_wall, t0 = time.time(), time.perf_counter()
        client.send("switch_profile", {"profile": profile, "reason": "benchmark"})
        rid = client.send("chat", {"text": text, "conversation": new_conversation(),
                                   "max_tokens": max_tokens})
        for env in until_first_token(client, rid):
            at = (env.ts - t0_wall) * 1000  # the supervisor's send time, on our clock
            if env.type == "worker_state" and env.data["worker"] == "inference":
                marks.setdefault(f"{env.data['state'].lower()}_ms", at)
            elif env.type == "profile_status":
                marks.setdefault(f"profile_{env.data['state']}_ms", at)
                if env.data["state"] == "ready":
                    ready = env.data
            elif env.type == "chat_token":
                marks["first_token_ms"] = (time.perf_counter() - t0) * 1000
    rest = collect_stack_reply(client, t0, rid)  # the rest of the reply, to leave it idle
    assert stack.worker("inference")["pid"] != old_pid, "not served by a new process"
    load_ms, warmup_ms = ready.get("load_s", 0) * 1000, ready.get("warmup_s", 0) * 1000
    start_to_ready = marks["running_ms"] - marks["starting_ms"]
    return {
        "profile_requested": profile, "profile_in_effect": ready.get("profile"),
        "dark_ms": marks["first_token_ms"], "marks_ms": marks, "tokens": rest.tokens + 1,
        "old_stopped_ms": marks.get("exited_ms", float("nan")),
        "new_spawned_ms": marks["starting_ms"],
        "start_to_ready_ms": start_to_ready, "load_ms": load_ms, "warmup_ms": warmup_ms,
        "process_start_ms": start_to_ready - load_ms - warmup_ms,
        "ready_to_first_token_ms": marks["first_token_ms"] - marks["running_ms"],
        "foreign_cores": f.cores,
    }


def until_first_token(client: BusClient, rid: int) -> Iterator[Envelope]:
    """Events, and the replies to request `rid`, as they come, up to its first chat_token."""
    poller = zmq.Poller()
    poller.register(client.dealer, zmq.POLLIN)
    poller.register(client.sub, zmq.POLLIN)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for sock, _ in poller.poll(1000):
            frame = (client.sub.recv_multipart()[-1] if sock is client.sub
                     else client.dealer.recv())
            try:
                env = decode(frame, client.max_frame, validate=False)
            except ProtocolError:
                continue
            if sock is client.dealer and env.reply_to != rid:
                continue  # the switch's own "ok"
            if env.type == "error":
                raise BusError(env.data.get("message", "error"), env.data.get("code"))
            yield env
            if env.type == "chat_token":
                return
    raise TimeoutError("no first token within 60 s of the switch")


def part_switch(stack: Stack, ai: dict[str, Any], s: Settings) -> dict[str, Any]:
    """Switches that reload (a profile already in effect would be answered at once), each
    beside a standalone load with the same llama params."""
    profiles = Path(stack.config()["ai"]["profiles_file"])
    stack.client.subscribe(["worker_state", "profile_status"])
    time.sleep(0.3)  # let the subscription reach the publishers
    switches: list[dict[str, Any]] = []
    standalone: list[dict[str, float]] = []
    for k in range(s.switches):  # interleaved: switch, standalone, switch, ...
        text = PROMPTS[(3 * k + 1) % len(PROMPTS)]
        profile = reloading_profile(stack.worker("inference")["ready_info"])
        params = plan_for(profile, profiles).llama_params()
        GATE.wait()
        switches.append(switch_once(stack, profile, text, s.steady_max_tokens))
        time.sleep(SETTLE_S)
        GATE.wait()
        standalone.append(standalone_load(params, messages_for(ai["persona"], text), ai,
                                          s.steady_max_tokens))
        time.sleep(SETTLE_S)
    minimum = max(1, s.switches // 2)
    used_sw, basis_sw = quiet_subset(switches, lambda x: x["foreign_cores"], minimum)
    used_sa, basis_sa = quiet_subset(standalone, lambda x: x["foreign_cores"], minimum)
    keys = ("dark_ms", "old_stopped_ms", "new_spawned_ms", "start_to_ready_ms",
            "process_start_ms", "load_ms", "warmup_ms", "ready_to_first_token_ms",
            "foreign_cores")
    summary: dict[str, Any] = {k: median([x[k] for x in used_sw]) for k in keys}
    summary.update({f"standalone_{k}": median([x[k] for x in used_sa]) for k in standalone[0]})
    summary.update({"n": len(switches), "basis": basis_sw, "standalone_basis": basis_sa,
                    "profile_in_effect": sorted({str(x["profile_in_effect"])
                                                 for x in switches})})
    summary["dark_minus_standalone_ms"] = summary["dark_ms"] - summary["standalone_wall_ms"]
    summary["target_met"] = summary["dark_minus_standalone_ms"] <= SWITCH_TARGET_MS
    return {"summary": summary, "switches": switches, "standalone": standalone}


def print_switch(res: dict[str, Any]) -> None:
    s = res["summary"]
    print(f"\n3. profile switch dark time: {s['n']} switches (in effect "
          f"{', '.join(s['profile_in_effect'])}) interleaved with {s['n']} standalone loads; "
          f"medians over switches: {s['basis']}, standalone: {s['standalone_basis']}")
    print(f"{'switch, ms from switch_profile sent':<46}{'ms':>8}   "
          f"{'standalone, fresh python -c':<30}{'ms':>8}")
    left = [("old worker exited", s["old_stopped_ms"]),
            ("new worker spawned", s["new_spawned_ms"]),
            ("  spawn -> ready", s["start_to_ready_ms"]),
            ("    interpreter, imports, plan, bus connect", s["process_start_ms"]),
            ("    model load (ready_info load_s)", s["load_ms"]),
            ("    warm-up (ready_info warmup_s)", s["warmup_ms"]),
            ("  ready -> first token", s["ready_to_first_token_ms"]),
            ("dark time: switch -> first token", s["dark_ms"])]
    right = [("interpreter start", s["standalone_interpreter_ms"]),
             ("import llama_cpp + loader", s["standalone_import_ms"]),
             ("model load alone", s["standalone_load_ms"]),
             ("first token (prompt eval)", s["standalone_first_token_ms"]),
             None, None, None,
             ("Popen -> first token", s["standalone_wall_ms"])]
    for (name, value), other in zip(left, right, strict=True):
        tail = f"{other[0]:<30}{other[1]:>8.1f}" if other else ""
        print(f"{name:<46}{value:>8.1f}   {tail}")
    print(f"  dark - standalone = {s['dark_minus_standalone_ms']:.1f} ms; target <= "
          f"{SWITCH_TARGET_MS} ms: {'met' if s['target_met'] else 'MISSED'}")


# -- part 4: thread sweep ------------------------------------------------------------------------
def part_threads(ai: dict[str, Any], s: Settings) -> dict[str, Any]:
    base = plan_for(PROFILE).llama_params()
    physical = psutil.cpu_count(logical=False) or 1
    logical = os.cpu_count() or 1
    variants: list[dict[str, Any]] = []
    for t in range(1, physical + 1):
        variants.append({"n_threads": t, "n_threads_batch": None})  # llama-cpp's default
        if t != logical:
            variants.append({"n_threads": t, "n_threads_batch": t})
    models = []
    for v in variants:
        params = {**base, "n_threads": v["n_threads"]}
        if v["n_threads_batch"] is not None:
            params["n_threads_batch"] = v["n_threads_batch"]
        llm = open_direct(params, ai)
        v["n_threads_batch_effective"] = llm.n_threads_batch
        direct_chat(llm, messages_for(ai["persona"], WARMUP_PROMPTS[0]), s.max_tokens, ai)
        models.append(llm)
    samples: list[list[Reply]] = [[] for _ in variants]
    for i in range(s.sweep_prompts):  # round-robin, rotating which setting goes first
        messages = messages_for(ai["persona"], PROMPTS[(2 * i + 5) % len(PROMPTS)])
        for j in range(len(variants)):
            idx = (i + j) % len(variants)
            GATE.wait()
            samples[idx].append(measured(direct_chat, models[idx], messages, s.max_tokens,
                                         ai))
    rows = []
    for v, got in zip(variants, samples, strict=True):
        used, basis = quiet_subset(got, lambda r: r.foreign_cores, max(1, len(got) // 2))
        rows.append({**v, "basis": basis,
                     "tokens_per_s": median([r.tokens_per_s for r in used]),
                     "ttft_ms": median([r.ttft_ms for r in used]),
                     "samples": [asdict(r) for r in got]})
    models.clear()
    gc.collect()
    return {"physical_cores": physical, "logical_cpus": logical,
            "plan_n_threads": base["n_threads"], "max_tokens": s.max_tokens, "rows": rows}


def print_threads(res: dict[str, Any]) -> None:
    print(f"\n4. thread sweep, direct in-process, {PROFILE} params (1 request per setting "
          f"excluded, max_tokens {res['max_tokens']}, medians; {res['physical_cores']} physical "
          f"cores, {res['logical_cpus']} logical; the profile plans n_threads "
          f"{res['plan_n_threads']})")
    print(f"{'n_threads':>10}{'n_threads_batch':>17}{'tokens/s':>10}{'TTFT ms':>10}  samples")
    for r in res["rows"]:
        batch = (f"{r['n_threads_batch']}" if r["n_threads_batch"] is not None
                 else f"{r['n_threads_batch_effective']} (default)")
        print(f"{r['n_threads']:>10}{batch:>17}{r['tokens_per_s']:>10.1f}{r['ttft_ms']:>10.1f}"
              f"  {r['basis']}")


# -- main ----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import llama_cpp

    try:
        cpu = next(line.split(":", 1)[1].strip()
                   for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpu": cpu, "physical_cores": psutil.cpu_count(logical=False),
            "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__, "model": DEFAULT_MODEL.name,
            "profile": PROFILE}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    args = ap.parse_args()
    s = QUICK if args.quick else FULL
    GATE.budget_s = s.quiet_wait_s
    started = time.monotonic()
    plan = plan_for(PROFILE)
    ai = validate(stack_config(True), [])["ai"]  # what the stacks run with
    out: dict[str, Any] = {
        "settings": asdict(s), "quick": args.quick, "machine": machine(),
        "llama_params": plan.llama_params(), "persona": ai["persona"],
        "sampling": {k: ai[k] for k in ("temperature", "top_p", "repeat_penalty")},
        "quiet_cores": QUIET_CORES, "load_avg": {"start": load_avg()}, "part_s": {}}
    print(f"{PROFILE} on {DEFAULT_MODEL.name}: {plan.llama_params()}; sampling "
          f"{out['sampling']}; load average {load_avg()}; a sample is quiet when other "
          f"processes used <= {QUIET_CORES} cores meanwhile")

    def timed(name: str, fn: Callable[..., T], *args: Any) -> T:
        t0 = time.monotonic()
        result = fn(*args)
        out["part_s"][name] = round(time.monotonic() - t0, 1)
        out["load_avg"][f"after_{name}"] = load_avg()
        return result

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as d:
        root = Path(d)
        llm = open_direct(plan.llama_params(), ai)
        stack = start_stack(root, "warmup-on-1", warmup=True)  # the default: warm-up on
        try:
            assert stack.worker("inference")["ready_info"]["profile"] == PROFILE
            out["overhead"] = timed("overhead", part_overhead, stack, llm, ai, s, s.pairs)
            print_overhead(out["overhead"], "\n1. whole stack vs direct llama-cpp-python")
        finally:
            stack.stop()
        out["first"] = {}
        # 1b, a diagnostic: the same against a worker that skips its warm-up (the warm-up runs
        # on the worker's main thread, its chats on its generate thread).
        stack = start_stack(root, "warmup-off", warmup=False)
        try:
            out["overhead_warmup_off"] = timed("overhead_warmup_off", part_overhead, stack,
                                               llm, ai, s, s.diag_pairs)
            print_overhead(out["overhead_warmup_off"],
                           "\n1b. diagnostic: the same against a worker without warm-up")
            llm = None  # free it before the thread sweep loads its own
            gc.collect()
            out["first"]["warmup_off"] = timed("first_warmup_off", part_first, stack, s)
        finally:
            stack.stop()
        stack = start_stack(root, "warmup-on-2", warmup=True)
        try:
            out["first"]["warmup_on"] = timed("first_warmup_on", part_first, stack, s)
            print_first(out["first"])
            out["switch"] = timed("switch", part_switch, stack, ai, s)
            print_switch(out["switch"])
        finally:
            stack.stop()
    out["threads"] = timed("threads", part_threads, ai, s)
    print_threads(out["threads"])
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    out["waited_for_quiet_s"] = round(GATE.waited_s, 1)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "inference.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"\nload average {out['load_avg']['start']} at start, {load_avg()} at the end; "
          f"{out['elapsed_s']} s, of which {out['waited_for_quiet_s']} s waiting for other "
          f"processes to go quiet; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
