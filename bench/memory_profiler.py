"""Memory profiler: RSS (and VRAM, with a GPU) of the real inference process, stage by stage.

Stages: started (process running, model not loaded yet), model loaded, after warm-up, first
reply, second reply, after 10, 50 and 100 messages. A message is one chat request through the
whole stack (launch.py, supervisor, inference worker) in one conversation, so the memory
history and the prompt grow with each one.

How each stage is read:
- The inference pid comes from `status` polled as soon as the supervisor is up (it is there
  from STARTING on); a thread then samples its RSS every few ms until it is ready.
- started: the last sample before the model load began. The load's start is placed from the
  worker's own figures: ready (the RUNNING event's timestamp) - warmup_s - load_s.
- model loaded: the worker loads and warms up in one go, so a second stack with
  ai.warmup false is started: its RSS when ready is the loaded model, exactly (idle process).
  The main stack's timeline gives an estimate too (sample at ready - warmup_s), also recorded.
- after warm-up, replies, messages: read right after ready / after each chat_done.
RSS splits into file-backed pages (mostly the mmap-ed GGUF) and anonymous memory (KV cache,
buffers, Python). Writes memory_profile.json and memory_profile.png to --out.

    .venv/bin/python -m bench.memory_profiler [--messages 100] [--max-tokens 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from supervisor.harness import Stack, wait_for
from workers.gpu.sources import NvmlSource

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1 << 20
CONFIG: dict[str, Any] = {"version": 1, "unity_bridge": {"port": 0}}  # port 0: no clashes
CONVERSATION = "memory-profile"
# One-token messages and tiny replies keep 100 exchanges inside the cpu_fallback context
# (2048): once the history window is full it slides, and every message re-evaluates the
# whole prompt (seconds each on 2 cores), which would measure prompt speed, not memory.
PROMPTS = ("Hi", "Yes", "Ok", "Why", "Cool", "Thanks", "Sure", "Nice")
CHECKPOINTS = (10, 50, 100)
SAMPLE_EVERY_S = 0.004
LOAD_MARGIN_S = 0.01  # "started" is read this much before the estimated start of the load


@dataclass
class Reading:
    """One look at the process: whole RSS, its file-backed part, VRAM if measurable."""

    t: float
    rss: int
    file: int  # RssFile + RssShmem: mostly the model's mmap
    vram: int | None = None

    @property
    def anon(self) -> int:
        return self.rss - self.file


@dataclass
class Stage:
    name: str
    label: str
    rss_mb: float
    anon_mb: float
    file_mb: float
    vram_mb: float | None
    how: str  # where the number comes from


@dataclass
class Profile:
    stages: list[Stage] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# -- reading a process ---------------------------------------------------------------------------
def read(proc: psutil.Process, source: NvmlSource | None = None) -> Reading:
    mem = proc.memory_info()
    vram = source.own_vram(proc.pid) if source is not None and source.available else None
    return Reading(time.time(), mem.rss, getattr(mem, "shared", 0), vram)


class Sampler(threading.Thread):
    """RSS every few ms, so stages inside the worker's start can be picked afterwards."""

    def __init__(self, proc: psutil.Process, source: NvmlSource) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.proc = proc
        self.source = source
        self.samples: list[Reading] = []
        self.halt = threading.Event()

    def run(self) -> None:
        last_vram = 0.0
        while not self.halt.is_set():
            # NVML's per-process query takes a driver lock: at most every 50 ms.
            gpu = self.source if time.monotonic() - last_vram > 0.05 else None
            try:
                self.samples.append(read(self.proc, gpu))
            except psutil.Error:
                return
            if gpu is not None:
                last_vram = time.monotonic()
            self.halt.wait(SAMPLE_EVERY_S)

    def stop(self) -> list[Reading]:
        self.halt.set()
        self.join(5)
        return self.samples


def last_before(samples: list[Reading], t: float) -> Reading | None:
    before = [s for s in samples if s.t <= t]
    return before[-1] if before else None


def last_vram_before(samples: list[Reading], t: float) -> int | None:
    known = [s for s in samples if s.t <= t and s.vram is not None]
    return known[-1].vram if known else None


def stage(name: str, label: str, r: Reading, how: str, vram: int | None = None) -> Stage:
    v = r.vram if vram is None else vram
    return Stage(name, label, r.rss / MiB, r.anon / MiB, r.file / MiB,
                 None if v is None else v / MiB, how)


# -- starting a stack and watching its inference worker ------------------------------------------
def inference_pid(stack: Stack) -> int:
    """The pid as soon as the supervisor reports it (state STARTING, before the model load)."""
    def pid() -> int | None:
        return stack.worker("inference").get("pid")
    return int(wait_for(pid, 30, "the inference worker's pid", every=0.005))


def start_watched(data_dir: Path, config: dict[str, Any],
                  source: NvmlSource) -> tuple[Stack, psutil.Process, list[Reading], float,
                                               dict[str, Any]]:
    """Start a stack, sample its inference process until ready: (stack, proc, samples,
    ready time on the supervisor's clock, ready_info)."""
    data_dir.mkdir(parents=True)
    stack = Stack(data_dir, config).start(ready=False)
    client = stack.client
    client.subscribe(["worker_state"])
    pid = inference_pid(stack)
    proc = psutil.Process(pid)
    sampler = Sampler(proc, source)
    sampler.start()
    info = stack.wait_state("inference", "RUNNING", 120)
    try:
        ready = client.wait_event("worker_state", lambda e: e.data["worker"] == "inference"
                                  and e.data["state"] == "RUNNING", timeout=2).ts
    except TimeoutError:  # subscribed too late to see it: the status answer is close enough
        ready = time.time()
    samples = sampler.stop()
    for name in ("gpu_monitor", "unity_bridge"):
        stack.wait_state(name, "RUNNING", 60)
    return stack, proc, samples, ready, info["ready_info"]


def load_window(ready: float, info: dict[str, Any]) -> tuple[float, float]:
    """(load start, warm-up start) on the wall clock, from the worker's own timings."""
    warm_start = ready - float(info.get("warmup_s") or 0.0)
    return warm_start - float(info.get("load_s") or 0.0), warm_start


# -- the stages ----------------------------------------------------------------------------------
def loaded_without_warmup(root: Path, source: NvmlSource) -> tuple[Reading, dict[str, Any]]:
    """A stack with ai.warmup false: ready means loaded and nothing else."""
    stack, proc, _samples, _ready, info = start_watched(
        root / "no-warmup", {**CONFIG, "ai": {"warmup": False}}, source)
    try:
        return read(proc, source), info
    finally:
        stack.stop()


def start_stages(samples: list[Reading], ready: float, info: dict[str, Any],
                 after_warmup: Reading, exact_loaded: Reading | None,
                 profile: Profile) -> None:
    load_start, warm_start = load_window(ready, info)
    started = last_before(samples, load_start - LOAD_MARGIN_S)
    if started is None:
        started = samples[0]
        profile.notes.append("the first RSS sample came after the estimated start of the load: "
                             "'started' is that first sample")
    profile.stages.append(stage("started", "started", started,
                                f"last sample before the load (ready - warmup_s - load_s; "
                                f"{len(samples)} samples)"))
    estimate = last_before(samples, warm_start)
    if exact_loaded is not None:
        profile.stages.append(stage("model_loaded", "model loaded", exact_loaded,
                                    "second stack with ai.warmup false, when ready"))
    elif estimate is not None:
        profile.stages.append(stage("model_loaded", "model loaded", estimate,
                                    "sample at ready - warmup_s"))
    if estimate is not None:
        profile.extra["model_loaded_timeline_estimate_mb"] = round(estimate.rss / MiB, 1)
    profile.stages.append(stage("after_warmup", "after warm-up", after_warmup,
                                f"when ready (warm-up {info.get('warmup_s')} s)"))


def checkpoints(n: int) -> dict[int, tuple[str, str]]:
    """Message number -> (stage name, label) for the stages that n messages reach."""
    marks = {1: ("first_reply", "first reply"), 2: ("second_reply", "second reply")}
    marks.update({k: (f"after_{k}", f"after {k} messages") for k in CHECKPOINTS if k <= n})
    marks.setdefault(n, (f"after_{n}", f"after {n} messages"))
    return {k: v for k, v in sorted(marks.items()) if k <= n}


def send_messages(stack: Stack, proc: psutil.Process, source: NvmlSource, n: int,
                  max_tokens: int, profile: Profile) -> None:
    marks = checkpoints(n)
    client = stack.client
    for i in range(1, n + 1):
        t0 = time.perf_counter()
        done = client.request("chat", {"text": PROMPTS[(i - 1) % len(PROMPTS)],
                                       "conversation": CONVERSATION,
                                       "max_tokens": max_tokens}, timeout=120).data
        ms = (time.perf_counter() - t0) * 1000
        r = read(proc, source if i in marks else None)
        profile.messages.append({"n": i, "ms": round(ms, 1), "rss_mb": round(r.rss / MiB, 2),
                                 "anon_mb": round(r.anon / MiB, 2),
                                 "prompt_tokens": done.get("prompt_tokens"),
                                 "tokens": done.get("tokens")})
        if i in marks:
            name, label = marks[i]
            profile.stages.append(stage(name, label, r, "after chat_done"))
    note_window(profile)


def note_window(profile: Profile) -> None:
    """Say whether the history window filled (the prompt stops growing): memory stops too."""
    tokens = [m["prompt_tokens"] or 0 for m in profile.messages]
    full = next((m["n"] for prev, m in zip(tokens, profile.messages[1:], strict=False)
                 if (m["prompt_tokens"] or 0) <= prev), None)
    last = tokens[-1] if tokens else 0
    if full is not None:
        profile.notes.append(f"the history window was full from message {full}: older turns "
                             f"drop out and each message re-evaluates the whole prompt")
    else:
        profile.notes.append(f"the prompt grew with every message, to {last} tokens")


def profile_stack(root: Path, n: int, max_tokens: int) -> Profile:
    profile = Profile()
    source = NvmlSource()
    profile.extra["gpu"] = {"available": source.available, "name": source.name,
                            "reason": source.reason}
    if not source.available:
        profile.notes.append(f"no VRAM column: {source.reason}")
    exact, info_nw = loaded_without_warmup(root, source)
    profile.extra["no_warmup_ready_info"] = info_nw
    stack, proc, samples, ready, info = start_watched(root / "main", CONFIG, source)
    try:
        after_warmup = read(proc, source)
        start_stages(samples, ready, info, after_warmup, exact, profile)
        profile.extra["ready_info"] = info
        profile.extra["timeline"] = [
            {"ms": round((s.t - ready) * 1000, 1), "rss_mb": round(s.rss / MiB, 2)}
            for s in samples]
        send_messages(stack, proc, source, n, max_tokens, profile)
    finally:
        stack.stop()
    return profile


# -- output --------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(profile: Profile) -> None:
    info = profile.extra["ready_info"]
    print(f"\ninference worker: {info.get('model')}, profile {info.get('profile')}, n_ctx "
          f"{info.get('n_ctx')}, n_gpu_layers {info.get('n_gpu_layers')}; load "
          f"{info.get('load_s')} s, warm-up {info.get('warmup_s')} s")
    print(f"{'stage':<20}{'RSS MB':>9}{'delta':>8}{'anon MB':>9}{'file MB':>9}{'VRAM MB':>9}"
          f"   how")
    prev = None
    for s in profile.stages:
        delta = "" if prev is None else f"{s.rss_mb - prev:+.1f}"
        print(f"{s.label:<20}{s.rss_mb:>9.1f}{delta:>8}{s.anon_mb:>9.1f}{s.file_mb:>9.1f}"
              f"{fmt(s.vram_mb, '.0f'):>9}   {s.how}")
        prev = s.rss_mb
    est = profile.extra.get("model_loaded_timeline_estimate_mb")
    if est is not None:
        print(f"model loaded, estimated from the main stack's timeline: {est:.1f} MB")
    ms = [m["ms"] for m in profile.messages]
    if ms:
        print(f"{len(ms)} messages, {profile.extra['max_tokens']} max tokens each: median "
              f"{sorted(ms)[len(ms) // 2]:.0f} ms, last prompt "
              f"{profile.messages[-1]['prompt_tokens']} tokens")
    for note in profile.notes:
        print(f"note: {note}")


def write_plot(profile: Profile, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_msgs) = plt.subplots(1, 2, figsize=(11, 4.4),
                                      gridspec_kw={"width_ratios": [3, 2]})
    labels = [s.label.replace(" messages", "") for s in profile.stages]
    x = range(len(labels))
    ax.bar(x, [s.file_mb for s in profile.stages], color="tab:gray",
           label="file-backed (model mmap, libraries)")
    ax.bar(x, [s.anon_mb for s in profile.stages], bottom=[s.file_mb for s in profile.stages],
           color="tab:blue", label="anonymous")
    ax.plot(x, [s.rss_mb for s in profile.stages], "ko-", label="RSS")
    vram = [s.vram_mb for s in profile.stages]
    if any(v is not None for v in vram):
        ax2 = ax.twinx()
        ax2.plot(x, [v if v is not None else float("nan") for v in vram], "s--",
                 color="tab:red", label="VRAM MB")
        ax2.set_ylabel("VRAM MB", color="tab:red")
    ax.set_xticks(list(x), labels, rotation=30, ha="right")
    ax.set_ylabel("MB")
    ax.set_title("inference process: RSS by stage", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    msgs = profile.messages
    ax_msgs.plot([m["n"] for m in msgs], [m["rss_mb"] for m in msgs], color="tab:blue",
                 label="RSS MB")
    ax_msgs.set_xlabel("messages in one conversation")
    ax_msgs.set_ylabel("RSS MB")
    tok = ax_msgs.twinx()
    tok.plot([m["n"] for m in msgs], [m["prompt_tokens"] or 0 for m in msgs], ":",
             color="tab:green")
    tok.set_ylabel("prompt tokens", color="tab:green")
    ax_msgs.set_title("RSS and prompt size per message", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_avg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=100, help="chat messages to send")
    ap.add_argument("--max-tokens", type=int, default=2, help="reply length per message")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args(argv)
    if args.messages < 2:
        ap.error("--messages must be at least 2 (first and second reply)")
    started = time.monotonic()
    load_start = load_avg()
    with tempfile.TemporaryDirectory(prefix="memory-profile-") as d:
        profile = profile_stack(Path(d), args.messages, args.max_tokens)
    profile.extra.update({"messages": args.messages, "max_tokens": args.max_tokens,
                          "conversation": CONVERSATION, "config": CONFIG,
                          "load_avg": {"start": load_start, "end": load_avg()},
                          "elapsed_s": round(time.monotonic() - started, 1)})
    print_table(profile)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / "memory_profile.json", args.out / "memory_profile.png"
    json_path.write_text(json.dumps(asdict(profile), indent=2))
    write_plot(profile, png_path)
    print(f"{profile.extra['elapsed_s']} s; wrote {json_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
