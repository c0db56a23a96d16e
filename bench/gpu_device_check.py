"""The GPU checks only a real NVIDIA card can answer (issue 12), as one prepared script.

    .venv/bin/python -m bench.gpu_device_check            # about 3-5 minutes on one GPU
    .venv/bin/python -m bench.gpu_device_check --quick    # parts 1-3 only

1. NVML contract: v1 and v2 memory, each metric on its own, the process calls (unversioned,
   _v2, _v3) and per-process memory for our own pid with a model loaded; per-process
   utilization where the driver has it.
2. The planner against llama.cpp's own buffer logs at n_gpu_layers 1, 15, 30 and -1, flash
   attention off and on: the GPU's model, KV and compute buffers, and the free-memory drop.
3. GPU use by cpu_fallback: a CUDA build with n_gpu_layers 0, with and without
   CUDA_VISIBLE_DEVICES="" (set after importing llama_cpp, as a warm spare does), a 200-token
   prompt each: per-process VRAM and GPU % while it runs.
4. A live `auto` run of the real stack: switches and chats; no false OVERLOADED, our own VRAM
   (NVML per-process) against the footprint the monitor used after each switch.

Prints a report and writes bench/results/gpu_device_check.json. Without a GPU it says so and
exits 2. It has not run yet: no GPU was lent to the session that wrote it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supervisor.config import DEFAULT_MODEL  # noqa: E402
from workers.gpu.gguf_info import read_model_info  # noqa: E402
from workers.gpu.planner import (  # noqa: E402
    CUDA_CONTEXT_BYTES,
    compute_bytes,
    gpu_blocks,
    kv_bytes,
)

MiB = 1 << 20
RESULTS = ROOT / "bench" / "results" / "gpu_device_check.json"
LAYERS = (1, 15, 30, -1)
PROMPT = "Describe the sea in great detail. " * 25  # about 200 tokens

# One llama load in a child process: prints its pid, then JSON lines of what it saw.
_LOAD = r"""
import json, os, sys, time
import llama_cpp.llama  # noqa: F401 (a warm spare imports first, then learns its profile)
ngl, fa, hide, prompt, model = json.loads(sys.argv[1])
if hide:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
print(json.dumps({"pid": os.getpid()}), flush=True)
from llama_cpp import Llama
llm = Llama(model_path=model, n_ctx=4096, n_batch=512, n_gpu_layers=ngl, flash_attn=fa,
            verbose=True)
print(json.dumps({"loaded": True}), flush=True)
time.sleep(1.0)
if prompt:
    print(json.dumps({"prompt_start": time.time()}), flush=True)
    llm(prompt, max_tokens=1)
    print(json.dumps({"prompt_end": time.time()}), flush=True)
time.sleep(float(os.environ.get("HOLD_S", "1.5")))
"""


def nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def guarded(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except Exception as exc:  # NVMLError_*, NVMLLibraryMismatchError
        return f"{type(exc).__name__}: {exc}"


def proc_mem(n: Any, h: Any, pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for call in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2",
                 "nvmlDeviceGetComputeRunningProcesses_v3"):
        if not hasattr(n, call):
            out[call] = "absent in this pynvml"
            continue
        procs = guarded(getattr(n, call), h)
        if isinstance(procs, str):
            out[call] = procs
            continue
        mine = [p.usedGpuMemory for p in procs if p.pid == pid]
        out[call] = {"listed_pids": [p.pid for p in procs],
                     "ours_mib": [None if m is None else m // MiB for m in mine]}
    return out


# -- 1. the NVML contract ---------------------------------------------------------------------
def probe_contract(n: Any, h: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"driver": guarded(n.nvmlSystemGetDriverVersion),
                           "name": guarded(n.nvmlDeviceGetName, h),
                           "uuid": guarded(n.nvmlDeviceGetUUID, h),
                           "device_count": guarded(n.nvmlDeviceGetCount)}
    v1 = guarded(n.nvmlDeviceGetMemoryInfo, h)
    res["memory_v1_mib"] = v1 if isinstance(v1, str) else {
        "total": v1.total // MiB, "used": v1.used // MiB, "free": v1.free // MiB}
    if hasattr(n, "nvmlMemory_v2"):
        v2 = guarded(n.nvmlDeviceGetMemoryInfo, h, version=n.nvmlMemory_v2)
        res["memory_v2_mib"] = v2 if isinstance(v2, str) else {
            "total": v2.total // MiB, "used": v2.used // MiB, "free": v2.free // MiB,
            "reserved": v2.reserved // MiB}
    util = guarded(n.nvmlDeviceGetUtilizationRates, h)
    res["utilization"] = util if isinstance(util, str) else {"gpu": util.gpu,
                                                            "memory": util.memory}
    res["temperature"] = guarded(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU)
    res["power_mw"] = guarded(n.nvmlDeviceGetPowerUsage, h)
    res["mig_mode"] = guarded(n.nvmlDeviceGetMigMode, h)
    res["process_utilization"] = str(guarded(n.nvmlDeviceGetProcessUtilization, h, 0))[:300]
    # Our own pid with a model loaded: in a child, as the inference worker is.
    child, log = start_load(-1, True, False, prompt=False, hold_s=3.0)
    assert child.stdout is not None
    child.stdout.readline()
    child.stdout.readline()  # loaded
    res["own_pid_with_model"] = {"pid": child.pid, **proc_mem(n, h, child.pid)}
    read_log(child, log)
    res["build_gpu_backends"] = _backends()
    return res


def _backends() -> dict[str, Any]:
    import llama_cpp

    from workers.inference.llama_loader import build_gpu_backends

    return {"files": build_gpu_backends(),
            "llama_supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}


# -- 2. planner vs llama.cpp -------------------------------------------------------------------
def start_load(ngl: int, fa: bool, hide: bool, prompt: bool, hold_s: float = 1.5
               ) -> tuple[subprocess.Popen, Any]:
    """A child loading the embedded model; its log goes to a file (a pipe nobody reads while
    it loads would fill and stall it)."""
    import tempfile

    env = {**os.environ, "HOLD_S": str(hold_s)}
    args = json.dumps([ngl, fa, hide, PROMPT if prompt else "", str(DEFAULT_MODEL)])
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (read_log closes it)
    child = subprocess.Popen([sys.executable, "-c", _LOAD, args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=log, text=True)
    return child, log


def read_log(child: subprocess.Popen, log: Any) -> str:
    child.communicate(timeout=120)
    log.seek(0)
    text = log.read()
    log.close()
    return text


def buffers(log: str) -> dict[str, dict[str, float]]:
    """{device: {model, kv, compute}} MiB from llama.cpp's log lines."""
    out: dict[str, dict[str, float]] = {}
    for dev, kind, mib in re.findall(r"(\S+?)(?:_Mapped)? +(model|KV|compute) buffer size = +"
                                     r"([\d.]+) MiB", log):
        out.setdefault(dev, {})
        out[dev][kind.lower()] = out[dev].get(kind.lower(), 0.0) + float(mib)
    return out


def planner_vs_llama(n: Any, h: Any) -> list[dict[str, Any]]:
    m = read_model_info(DEFAULT_MODEL)
    rows = []
    for fa in (False, True):
        for ngl in LAYERS:
            before = n.nvmlDeviceGetMemoryInfo(h).free
            child, log = start_load(ngl, fa, False, prompt=False, hold_s=2.0)
            assert child.stdout is not None
            child.stdout.readline()  # pid
            child.stdout.readline()  # loaded
            time.sleep(0.5)
            after = n.nvmlDeviceGetMemoryInfo(h).free
            gpu = {d: b for d, b in buffers(read_log(child, log)).items()
                   if not d.startswith("CPU") and "Host" not in d}
            blocks = gpu_blocks(m, ngl)
            plan = {"weights": (m.output_bytes + sum(m.layer_bytes[m.n_layers - blocks:])) / MiB,
                    "kv": kv_bytes(m, blocks, 4096) / MiB,
                    "compute": compute_bytes(m, 4096, 512, fa) / MiB,
                    "context": CUDA_CONTEXT_BYTES / MiB}
            logged = {k: round(sum(b.get(k, 0.0) for b in gpu.values()), 2)
                      for k in ("model", "kv", "compute")}
            rows.append({"ngl": ngl, "flash_attn": fa, "blocks_planned": blocks,
                         "planner_mib": {k: round(v, 2) for k, v in plan.items()},
                         "llama_logged_mib": logged, "devices": sorted(gpu),
                         "free_drop_mib": round((before - after) / MiB, 1),
                         "planner_total_mib": round(sum(plan.values()), 1)})
            print(f"  ngl {ngl:>3} fa {fa!s:<5}: planner {rows[-1]['planner_mib']} | "
                  f"llama {logged} | free drop {rows[-1]['free_drop_mib']} MiB", flush=True)
    return rows


# -- 3. cpu_fallback on a CUDA build ------------------------------------------------------------
def cpu_fallback_use(n: Any, h: Any) -> dict[str, Any]:
    out = {}
    for hide in (False, True):
        child, log = start_load(0, False, hide, prompt=True, hold_s=1.0)
        assert child.stdout is not None
        pid = json.loads(child.stdout.readline())["pid"]
        peak_util, mem = 0, None
        while child.poll() is None:
            util = guarded(n.nvmlDeviceGetUtilizationRates, h)
            if not isinstance(util, str):
                peak_util = max(peak_util, util.gpu)
            pm = proc_mem(n, h, pid)
            for v in pm.values():
                if isinstance(v, dict) and v["ours_mib"]:
                    mem = v["ours_mib"]
            time.sleep(0.1)
        read_log(child, log)
        out["hidden" if hide else "visible"] = {"per_process_mib": mem,
                                                "peak_gpu_percent": peak_util}
        print(f"  cpu_fallback, CUDA {'hidden' if hide else 'visible'}: "
              f"{out['hidden' if hide else 'visible']}", flush=True)
    return out


# -- 4. a live auto run ------------------------------------------------------------------------
def live_auto(n: Any, h: Any, seconds: float) -> dict[str, Any]:
    import tempfile

    from supervisor.harness import Stack

    with tempfile.TemporaryDirectory() as d:
        stack = Stack(Path(d), {"version": 1, "unity_bridge": {"port": 0},
                                "ai": {"gpu_profile": "auto"},
                                "gpu_monitoring": {"interval_s": 1.0}})
        stack.start()
        c = stack.new_client()
        c.subscribe(["gpu_stats", "auto_switch", "profile_status"])
        events: list[dict[str, Any]] = []
        checks: list[dict[str, Any]] = []
        end = time.monotonic() + seconds
        plan = ["balanced", "performance", "fast", "auto"]
        next_switch = time.monotonic() + 10
        while time.monotonic() < end:
            if time.monotonic() > next_switch and plan:
                stack.client.request("switch_profile", {"profile": plan.pop(0)}, timeout=30)
                next_switch = time.monotonic() + 12
            if int(time.monotonic()) % 5 == 0:
                stack.client.request("chat", {"text": "Hello there!", "max_tokens": 32},
                                     timeout=60)
            try:
                ev = c.recv_event(0.5)
            except TimeoutError:
                continue
            events.append({"type": ev.type, **{k: v for k, v in ev.data.items()
                                               if k != "pressure"}})
            if ev.type == "gpu_stats" and ev.data.get("available"):
                pid = stack.worker("inference")["pid"]
                nv = proc_mem(n, h, pid)
                checks.append({"monitor_own_mib": (ev.data.get("own_vram") or 0) // MiB,
                               "own_source": ev.data.get("own_vram_source"),
                               "nvml": nv})
        c.close()
        stack.stop()
    false_alarms = [e for e in events if e["type"] == "auto_switch" and e.get("emergency")]
    return {"auto_switches": [e for e in events if e["type"] == "auto_switch"],
            "emergencies": false_alarms, "own_checks": checks[-30:],
            "states": sorted({e.get("state", "") for e in events if e["type"] == "gpu_stats"})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="parts 1-3 only")
    ap.add_argument("--live-s", type=float, default=75.0, help="length of the live auto run")
    args = ap.parse_args(argv)
    try:
        n = nvml()
        h = n.nvmlDeviceGetHandleByIndex(0)
    except Exception as exc:
        print(f"no NVIDIA GPU here ({type(exc).__name__}: {exc}): nothing to check",
              file=sys.stderr)
        return 2
    report: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S")}
    print("1. NVML contract", flush=True)
    report["contract"] = probe_contract(n, h)
    print(json.dumps(report["contract"], indent=1, default=str), flush=True)
    print("2. planner vs llama.cpp's buffers", flush=True)
    report["planner"] = planner_vs_llama(n, h)
    print("3. cpu_fallback on the GPU", flush=True)
    report["cpu_fallback"] = cpu_fallback_use(n, h)
    if not args.quick:
        print("4. live auto run", flush=True)
        report["live"] = live_auto(n, h, args.live_s)
        live = report["live"]
        print(f"  switches {[(e['profile'], e['emergency']) for e in live['auto_switches']]}, "
              f"emergencies {len(live['emergencies'])}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
