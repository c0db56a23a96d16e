"""GPU profiler: sweep n_gpu_layers for a model and recommend GPU profiles from what it measured.

Each layer count runs in a fresh interpreter (llama-cpp does not give VRAM back on `del`, so
points measured in one process would pile up): it opens the model with `open_model`, generates
exactly N tokens greedily from a fixed prompt and reports load time, time to first token,
tokens/s and ms per token. The parent reads NVML meanwhile: the child's own VRAM (per-process
usage, else the card's used delta), GPU % and temperature during generation.

From the sweep it writes profiles in the format of data/profiles.json, with explicit
n_gpu_layers: fast = most layers under 50 % of the card's VRAM, balanced under 70 %,
performance under 85 %, and cpu_fallback with none. Without an NVIDIA GPU, or with a CPU-only
llama-cpp-python build, only layers = 0 is measured and the reason is printed and recorded.

Writes gpu_profile.json, gpu_profile.png and recommended_profiles.json to --out.

    .venv/bin/python -m bench.gpu_profiler [--model PATH] [--step 10] [--tokens 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from supervisor.config import DEFAULT_MODEL, REPO_ROOT, load_profiles
from workers.gpu.gguf_info import GGUFError, ModelInfo, read_model_info
from workers.gpu.planner import REBUILD_HINT
from workers.gpu.sources import NvmlSource

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1 << 20
PROMPT = ("The companion sits in the corner of the desktop and watches the user work. Write a "
          "short, friendly paragraph about what a good desktop companion should do all day.")
# (profile, VRAM cap in % of the card): each gets the most layers measured under its cap.
CAPS: tuple[tuple[str, float], ...] = (("fast", 50.0), ("balanced", 70.0),
                                       ("performance", 85.0))
GPU_PROFILES = tuple(name for name, _ in CAPS)
SAMPLE_EVERY_S = 0.05
ALL = -1  # llama.cpp: every layer and the output head
POINT_TIMEOUT_S = 300.0


@dataclass
class Point:
    """One layer count, measured in its own process."""

    layers: int
    load_ms: float = 0.0
    ttft_ms: float = 0.0
    tokens: int = 0
    tokens_per_s: float = 0.0
    ms_per_token: float = 0.0
    vram_mb: float | None = None  # the child's VRAM
    vram_source: str = "none"  # "process" (NVML per-process), "total delta" or "none"
    vram_percent: float | None = None  # of the card's total
    gpu_percent_mean: float | None = None
    gpu_percent_max: float | None = None
    temperature_c_max: float | None = None
    gpu_samples: int = 0
    rss_mb: float = 0.0  # the child's RSS after generating
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.tokens > 0


@dataclass
class Sweep:
    model: dict[str, Any]
    settings: dict[str, Any]
    machine: dict[str, Any]
    gpu: dict[str, Any]
    offload_supported: bool
    layer_counts: list[int]
    stopped_reason: str | None  # why the sweep measured layers = 0 only (or stopped early)
    points: list[Point] = field(default_factory=list)


# -- the child: one layer count ----------------------------------------------------------------
def emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


def child_main(model: Path, layers: int, tokens: int, n_ctx: int, n_batch: int) -> None:
    """Load, generate `tokens` greedily, report; then wait for the parent's last VRAM reading."""
    from workers.inference.llama_loader import open_model

    t0 = time.perf_counter()
    llm = open_model(model, n_gpu_layers=layers, n_ctx=n_ctx, n_batch=n_batch,
                     n_threads=psutil.cpu_count(logical=False) or 1, verbose=False)
    load_s = time.perf_counter() - t0
    emit({"stage": "loaded", "load_s": load_s})
    prompt = llm.tokenize(PROMPT.encode("utf-8"), add_bos=True)
    stamps: list[float] = []
    start = time.perf_counter()
    # generate() ignores EOS (stopping is the caller's business), so there are always N tokens.
    for _ in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) >= tokens:
            break
    span = stamps[-1] - stamps[0]
    emit({"stage": "done", "load_s": load_s, "prompt_tokens": len(prompt),
          "tokens": len(stamps), "ttft_s": stamps[0] - start,
          "tokens_per_s": (len(stamps) - 1) / span if span > 0 else 0.0,
          "ms_per_token": span * 1000 / (len(stamps) - 1) if len(stamps) > 1 else 0.0,
          "rss": psutil.Process().memory_info().rss})
    sys.stdin.readline()  # the parent reads this process's VRAM before letting it go
    os._exit(0)  # skip llama-cpp's teardown: the process is done either way


# -- the parent: NVML around each child --------------------------------------------------------
class GpuSampler(threading.Thread):
    """GPU % and temperature while the child generates (NVML reads are cheap without pids)."""

    def __init__(self, source: NvmlSource) -> None:
        super().__init__(daemon=True, name="gpu-sampler")
        self.source = source
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self._sample()
                self.halt.wait(SAMPLE_EVERY_S)
            self._sample()  # utilisation covers the last period too
        except self.source.nvml.NVMLError:
            pass  # e.g. a sensor this card lacks: keep what was read

    def _sample(self) -> None:
        reading = self.source.read()
        if reading.get("available") is not False:  # False: NVML lost the GPU just now
            self.samples.append(reading)

    def stop(self) -> list[dict[str, Any]]:
        self.halt.set()
        self.join(5)
        return self.samples


def gpu_used(source: NvmlSource) -> int | None:
    mem = source.memory()
    return None if mem is None else mem.total - mem.free


def child_vram(source: NvmlSource, pid: int, baseline: int | None) -> tuple[int | None, str]:
    """Per-process VRAM where NVML reports it (not across PID namespaces), else the delta."""
    own = source.own_vram(pid)
    if own:
        return own, "process"
    used = gpu_used(source)
    if used is None or baseline is None:
        return None, "none"
    return max(used - baseline, 0), "total delta"


def read_stage(stdout: IO[str], stage: str) -> dict[str, Any]:
    """The child's next JSON line; its stage must be `stage`."""
    for line in stdout:
        line = line.strip()
        if line.startswith("{"):
            got = json.loads(line)
            if got.get("stage") == stage:
                return got
    raise RuntimeError(f"the child ended before '{stage}'")


def child_command(model: Path, layers: int, tokens: int, n_ctx: int, n_batch: int) -> list[str]:
    return [sys.executable, "-m", "bench.gpu_profiler", "--child", "--model", str(model),
            "--layers", str(layers), "--tokens", str(tokens), "--n-ctx", str(n_ctx),
            "--n-batch", str(n_batch)]


def run_point(model: Path, layers: int, tokens: int, n_ctx: int, n_batch: int,
              source: NvmlSource) -> Point:
    """Spawn one child for `layers`, sample NVML around it, collect its figures."""
    point = Point(layers)
    baseline = gpu_used(source)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(child_command(model, layers, tokens, n_ctx, n_batch),
                                cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        killer = threading.Timer(POINT_TIMEOUT_S, proc.kill)
        killer.start()
        sampler = GpuSampler(source) if source.available else None
        try:
            read_stage(proc.stdout, "loaded")
            if sampler:
                sampler.start()
            done = read_stage(proc.stdout, "done")
            samples = sampler.stop() if sampler else []
            vram, point.vram_source = child_vram(source, proc.pid, baseline)
            fill_point(point, done, vram, samples, source)
            proc.stdin.write("exit\n")
            proc.stdin.flush()
        except (RuntimeError, json.JSONDecodeError, BrokenPipeError) as exc:
            finish(proc, 10)
            err.seek(0)
            tail = " | ".join(err.read().strip().splitlines()[-3:])
            point.error = f"{exc}; exit code {proc.returncode}; stderr: {tail or '-'}"
        finally:
            killer.cancel()
            if sampler and sampler.is_alive():
                sampler.stop()
            finish(proc, 30)
    wait_vram_back(source, baseline)
    return point


def finish(proc: subprocess.Popen, timeout: float) -> None:
    """Let the child exit on its own (its exit code tells why), kill it if it hangs."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()  # a child still waiting for its "exit" line reads EOF
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def fill_point(point: Point, done: dict[str, Any], vram: int | None,
               samples: list[dict[str, Any]], source: NvmlSource) -> None:
    point.load_ms = done["load_s"] * 1000
    point.ttft_ms = done["ttft_s"] * 1000
    point.tokens = done["tokens"]
    point.tokens_per_s = done["tokens_per_s"]
    point.ms_per_token = done["ms_per_token"]
    point.rss_mb = done["rss"] / MiB
    mem = source.memory()
    if vram is not None and mem is not None:
        point.vram_mb = vram / MiB
        point.vram_percent = 100.0 * vram / mem.total
    # A metric the card cannot give is None in a reading (NvmlSource reads each on its own).
    util = [float(s["gpu_percent"]) for s in samples if s.get("gpu_percent") is not None]
    temps = [float(s["temperature_c"]) for s in samples if s.get("temperature_c") is not None]
    if util:
        point.gpu_percent_mean = statistics.fmean(util)
        point.gpu_percent_max = max(util)
    if temps:
        point.temperature_c_max = max(temps)
    if samples:
        point.gpu_samples = len(samples)


def wait_vram_back(source: NvmlSource, baseline: int | None, timeout: float = 10.0) -> None:
    """The driver frees a dead process's VRAM a moment later; the next point needs it back."""
    if baseline is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        used = gpu_used(source)
        if used is None or used <= baseline + 64 * MiB:
            return
        time.sleep(0.1)


# -- what to sweep, and why not more -----------------------------------------------------------
def offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def no_sweep_reason(source: NvmlSource, offload: bool) -> str | None:
    """Why layers > 0 cannot be measured here; None when they can."""
    reasons = []
    if not source.available:
        reasons.append(source.reason)
    if not offload:
        reasons.append("this llama-cpp-python build is CPU-only (llama_supports_gpu_offload() "
                       f"is False), so GPU layers would not leave the CPU. Rebuild with CUDA: "
                       f"{REBUILD_HINT}")
    return "; ".join(reasons) or None


def layer_counts(n_layers: int, step: int) -> list[int]:
    """0, step, 2*step, ..., n_layers, then -1.

    llama.cpp counts the output head as one more slot: n_gpu_layers = n_layers (what the
    planner passes for "all") still leaves one slot on the CPU, -1 offloads everything.
    """
    counts = list(range(0, n_layers, max(step, 1)))
    return [*counts, n_layers, ALL]


def slots(layers: int, n_layers: int) -> int:
    """Order of layer counts: -1 is the most (every layer and the output head)."""
    return n_layers + 1 if layers < 0 else layers


def layers_label(layers: int) -> str:
    return "-1 all" if layers < 0 else str(layers)


def sweep_settings(model: ModelInfo, template: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """The largest n_ctx and n_batch of the GPU profiles: measured VRAM is an upper bound."""
    gpu = [template[n] for n in GPU_PROFILES if n in template] or [template["cpu_fallback"]]
    n_ctx = max(p["n_ctx"] for p in gpu)
    if model.n_ctx_train:
        n_ctx = min(n_ctx, model.n_ctx_train)
    return n_ctx, max(p["n_batch"] for p in gpu)


def run_sweep(model_path: Path, step: int, tokens: int) -> Sweep:
    model = read_model_info(model_path)
    template = load_profiles()
    n_ctx, n_batch = sweep_settings(model, template)
    source = NvmlSource()
    offload = offload_supported()
    reason = no_sweep_reason(source, offload)
    counts = [0] if reason else layer_counts(model.n_layers, step)
    mem = source.memory()
    gpu = {"available": source.available, "name": source.name, "reason": source.reason,
           "total_mb": None if mem is None else mem.total / MiB,
           "used_before_mb": None if mem is None else (mem.total - mem.free) / MiB}
    settings = {"step": step, "tokens": tokens, "n_ctx": n_ctx, "n_batch": n_batch,
                "n_threads": psutil.cpu_count(logical=False) or 1, "prompt": PROMPT,
                "sampling": "greedy; EOS ignored, so every point generates exactly N tokens"}
    sweep = Sweep({**model.as_dict(), "path": str(model_path)}, settings, machine(), gpu,
                  offload, counts, reason)
    if reason:
        print(f"measuring layers = 0 only: {reason}")
    for layers in counts:
        print(f"  n_gpu_layers {layers_label(layers)} of {model.n_layers} ...", flush=True)
        point = run_point(model_path, layers, tokens, n_ctx, n_batch, source)
        sweep.points.append(point)
        if point.error:
            sweep.stopped_reason = f"{layers} layers failed: {point.error}"
            print(f"  {sweep.stopped_reason}")
            break
    sweep.machine["load_avg_end"] = load_avg()
    return sweep


def load_avg() -> float | None:
    """Other work on the cores slows llama.cpp's threads a lot: record it with the numbers."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine() -> dict[str, Any]:
    import llama_cpp

    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip()
                   for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"cpu": cpu, "physical_cores": psutil.cpu_count(logical=False),
            "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__, "load_avg_start": load_avg()}


# -- recommendation ----------------------------------------------------------------------------
def pick_layers(points: list[Point], total_mb: float | None, cap_percent: float,
                n_layers: int) -> Point | None:
    """The measured point with the most layers whose VRAM stays under the cap."""
    if not total_mb:
        return None
    fits = [p for p in points if p.ok and p.vram_mb is not None
            and 100.0 * p.vram_mb / total_mb < cap_percent]
    return max(fits, key=lambda p: slots(p.layers, n_layers), default=None)


def recommend(points: list[Point], total_mb: float | None, n_layers: int,
              template: dict[str, dict[str, Any]], reason: str | None) -> dict[str, Any]:
    """Profiles in data/profiles.json's format; n_ctx/n_batch/flash_attn from its profiles."""
    out: dict[str, Any] = {}
    for name, cap in CAPS:
        chosen = pick_layers(points, total_mb, cap, n_layers)
        layers = chosen.layers if chosen else 0
        if chosen and chosen.vram_mb is not None and total_mb:
            where = ("all layers and the output head" if layers < 0
                     else f"{layers}/{n_layers} layers")
            why = (f"measured {chosen.vram_mb:.0f} MiB = {100 * chosen.vram_mb / total_mb:.1f} %"
                   f" of {total_mb:.0f} MiB with {where}, {chosen.tokens_per_s:.1f} tokens/s")
        else:
            why = f"no GPU measurement ({short_reason(reason)}), so no layers on the GPU"
        out[name] = profile_entry(f"Under {cap:.0f} % of the VRAM: {why}", layers,
                                  template.get(name, template["cpu_fallback"]))
    cpu = next((p for p in points if p.layers == 0 and p.ok), None)
    speed = f": measured {cpu.tokens_per_s:.1f} tokens/s" if cpu else ""
    out["cpu_fallback"] = profile_entry(f"No GPU at all{speed}", 0, template["cpu_fallback"])
    return out


def short_reason(reason: str | None) -> str:
    """A label for a profile's description; the whole reason is in gpu_profile.json."""
    if not reason:
        return "no layer count fits"
    labels = [label for key, label in (("NVML unavailable", "no NVIDIA GPU or driver"),
                                       ("CPU-only", "CPU-only llama-cpp-python build"),
                                       ("failed", "offloading failed"))
              if key in reason]
    return " and ".join(labels) or reason.split(":")[0]


def profile_entry(description: str, layers: int, base: dict[str, Any]) -> dict[str, Any]:
    entry = {"description": description, "n_gpu_layers": layers, "n_ctx": base["n_ctx"],
             "n_batch": base["n_batch"]}
    if base.get("flash_attn"):
        entry["flash_attn"] = True
    return entry


# -- output --------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(sweep: Sweep) -> None:
    s = sweep.settings
    gpu = sweep.gpu["name"] or "no GPU"
    m = sweep.machine
    print(f"\n{sweep.model['name']} ({sweep.model['layers']} layers), {gpu}; n_ctx {s['n_ctx']},"
          f" n_batch {s['n_batch']}, n_threads {s['n_threads']}, {s['tokens']} tokens each; "
          f"load average {m['load_avg_start']} -> {m.get('load_avg_end')}")
    print(f"{'layers':>8}{'VRAM MB':>9}{'VRAM %':>8}{'src':>8}{'tok/s':>8}{'ms/tok':>8}"
          f"{'TTFT ms':>9}{'load ms':>9}{'GPU % mean/max':>16}{'temp C':>8}{'RSS MB':>8}")
    for p in sweep.points:
        if p.error:
            print(f"{layers_label(p.layers):>8}  failed: {p.error}")
            continue
        util = (f"{fmt(p.gpu_percent_mean, '.0f')}/{fmt(p.gpu_percent_max, '.0f')}"
                if p.gpu_samples else "-")
        src = {"process": "proc", "total delta": "delta"}.get(p.vram_source, "-")
        print(f"{layers_label(p.layers):>8}{fmt(p.vram_mb, '.0f'):>9}"
              f"{fmt(p.vram_percent, '.1f'):>8}{src:>8}"
              f"{p.tokens_per_s:>8.1f}{p.ms_per_token:>8.2f}{p.ttft_ms:>9.1f}{p.load_ms:>9.1f}"
              f"{util:>16}{fmt(p.temperature_c_max, '.0f'):>8}{p.rss_mb:>8.0f}")
    if sweep.stopped_reason:
        print(f"why the sweep ends at {sweep.points[-1].layers} layers: {sweep.stopped_reason}")


def write_plot(sweep: Sweep, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = sweep.model["layers"]
    ok = [p for p in sweep.points if p.ok]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot([slots(p.layers, n) for p in ok], [p.tokens_per_s for p in ok], "o-",
            color="tab:blue", label="tokens/s")
    ax.set_xlabel(f"n_gpu_layers ({n + 1} = -1: all layers and the output head)")
    ax.set_ylabel("tokens/s", color="tab:blue")
    ax.set_xlim(-1, n + 2)
    ax.set_ylim(bottom=0)
    vram = [p for p in ok if p.vram_mb is not None]
    if vram:
        ax2 = ax.twinx()
        ax2.plot([slots(p.layers, n) for p in vram], [p.vram_mb for p in vram], "s--",
                 color="tab:red", label="VRAM MB")
        ax2.set_ylabel("VRAM MB (this process)", color="tab:red")
        ax2.set_ylim(bottom=0)
    title = f"{sweep.model['name']} on {sweep.gpu['name'] or 'CPU only'}"
    if sweep.stopped_reason:
        title += f"\nsweep ends at {sweep.points[-1].layers} layers: "
        title += short_reason(sweep.stopped_reason)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(sweep: Sweep, out: Path, elapsed: float) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    template = load_profiles()
    profiles = recommend(sweep.points, sweep.gpu["total_mb"], sweep.model["layers"], template,
                         sweep.stopped_reason)
    paths = {"json": out / "gpu_profile.json", "png": out / "gpu_profile.png",
             "profiles": out / "recommended_profiles.json"}
    data = asdict(sweep)
    data["recommended"] = profiles
    data["elapsed_s"] = round(elapsed, 1)
    paths["json"].write_text(json.dumps(data, indent=2))
    paths["profiles"].write_text(json.dumps(profiles, indent=2) + "\n")
    load_profiles(paths["profiles"])  # what the inference worker would do with it
    write_plot(sweep, paths["png"])
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file")
    ap.add_argument("--step", type=int, default=10, help="layers between points")
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per point")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n-ctx", type=int, default=2048, help=argparse.SUPPRESS)
    ap.add_argument("--n-batch", type=int, default=512, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tokens < 2:
        ap.error("--tokens must be at least 2 (tokens/s needs two)")
    if args.child:
        child_main(args.model, args.layers, args.tokens, args.n_ctx, args.n_batch)
        return 0
    if not args.model.is_file():
        ap.error(f"model file not found: {args.model}")
    started = time.monotonic()
    try:
        sweep = run_sweep(args.model, args.step, args.tokens)
    except GGUFError as exc:
        ap.error(str(exc))
    print_table(sweep)
    paths = write_results(sweep, args.out, time.monotonic() - started)
    for name, prof in json.loads(paths["profiles"].read_text()).items():
        print(f"  {name:<13} n_gpu_layers {prof['n_gpu_layers']:>3}  {prof['description']}")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0 if any(p.ok for p in sweep.points) else 1


if __name__ == "__main__":
    sys.exit(main())
