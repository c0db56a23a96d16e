"""`python -m workers.inference.doctor` (or `python -m supervisor doctor`): what this machine
can do for inference, and how to fix gaps.

Works without a running stack; it reads the same config, profiles and model as the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil

from supervisor.config import DEFAULT_CONFIG, ConfigError, load_config, load_profiles, profiles_path
from workers.gpu.gguf_info import GGUFError, read_model_info
from workers.gpu.planner import MiB, estimate_vram, plan_profile, rebuild_hint
from workers.gpu.sources import NvmlSource
from workers.inference.llama_loader import build_gpu_backends, cpu_has_amx
from workers.inference.worker import model_path


def setup_hint() -> str:
    return "py bootstrap.py setup" if os.name == "nt" else "python3 bootstrap.py setup"


def diagnose(config_path: Path, model: Path | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"problems": []}
    problems: list[str] = report["problems"]
    try:
        cfg, _ = load_config(config_path)
    except ConfigError as exc:
        problems.append(f"{exc}")
        return report
    try:
        import llama_cpp

        backends = build_gpu_backends()
        # llama.cpp's own answer is False on a CUDA build that sees no device: the build's
        # support is its GPU backend libraries; whether a device is visible is asked apart.
        offload_now = bool(llama_cpp.llama_supports_gpu_offload())
        supports = bool(backends) or offload_now
        report["llama_cpp"] = {"version": llama_cpp.__version__, "gpu_offload": offload_now,
                               "build_gpu_support": supports, "gpu_backends": backends}
    except (ImportError, OSError) as exc:
        problems.append(f"llama-cpp-python is not installed ({exc}); fix: {setup_hint()}")
        return report
    source = NvmlSource()
    mem = source.memory()
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    report["gpu"] = ({"nvml": True, "visible": not hidden, "name": source.name,
                      "uuid": source.uuid, "vram_total_mb": mem.total // MiB,
                      "vram_free_mb": mem.free // MiB} if mem else
                     {"nvml": False, "visible": False, "reason": source.reason})
    if mem and not supports:
        problems.append(f"an NVIDIA GPU is visible but llama-cpp-python is a CPU-only build; "
                        f"fix: {rebuild_hint()}")
    if mem and hidden:
        problems.append("CUDA_VISIBLE_DEVICES is empty here, so llama.cpp sees no GPU; unset it")
    report["cpu"] = {"physical_cores": psutil.cpu_count(logical=False),
                     "logical_cores": psutil.cpu_count(), "amx": cpu_has_amx()}
    path = model or model_path({}, cfg)
    if not path.is_file():
        problems.append(f"model file not found: {path}; fix: {setup_hint()}, or "
                        f"--model PATH (see models/README.md)")
        return report
    try:
        info = read_model_info(path)
        profiles = load_profiles(profiles_path(cfg))
    except (GGUFError, ConfigError) as exc:
        problems.append(str(exc))
        return report
    report["model"] = {"path": str(path), **info.as_dict()}
    cores = psutil.cpu_count(logical=False) or 1
    margin = cfg["ai"]["vram_margin_mb"] * MiB
    report["profiles"] = {}
    for name in profiles:
        plan = plan_profile(name, profiles, info, mem, supports, cores, margin)
        report["profiles"][name] = {"runs_as": plan.profile, "n_gpu_layers": plan.n_gpu_layers,
                                    "n_ctx": plan.n_ctx, "est_vram_mb": plan.est_vram_bytes // MiB}
    report["model"]["all_layers_on_gpu_mb"] = {
        name: estimate_vram(info, -1, min(p["n_ctx"], info.n_ctx_train), p["n_batch"],
                            p["flash_attn"]) // MiB
        for name, p in profiles.items()}
    auto = plan_profile("auto", profiles, info, mem, supports, cores, margin)
    report["auto"] = {"profile": auto.profile, "n_gpu_layers": auto.n_gpu_layers,
                      "why": auto.notes[-1] if auto.notes else ""}
    return report


def print_report(report: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(report, indent=2))
        return 1 if report["problems"] else 0
    if "llama_cpp" in report:
        lc = report["llama_cpp"]
        backends = ", ".join(lc["gpu_backends"]) or "llama.cpp says so"
        print(f"llama-cpp-python {lc['version']}: build GPU support: "
              + (f"yes ({backends})" if lc["build_gpu_support"] else "NO (CPU-only build)"))
    if "gpu" in report:
        g = report["gpu"]
        print(f"GPU device: visible: {g['name']}, {g['vram_free_mb']} of {g['vram_total_mb']} "
              f"MiB free" if g["visible"] else
              f"GPU device: none visible. {g.get('reason') or 'CUDA_VISIBLE_DEVICES is empty'}")
    if "cpu" in report:
        c = report["cpu"]
        print(f"CPU: {c['physical_cores']} physical / {c['logical_cores']} logical cores"
              + (", AMX (weight repacking off)" if c["amx"] else ""))
    if "model" in report:
        m = report["model"]
        print(f"model: {m['path']}\n  {m['name']}: {m['layers']} layers, {m['file_mb']} MB, "
              f"context up to {m['n_ctx_train']}")
        print(f"  {'profile':<14}{'runs as':<14}{'gpu layers':>11}{'n_ctx':>7}{'est VRAM':>10}"
              f"{'all on GPU':>12}")
        for name, p in report["profiles"].items():
            print(f"  {name:<14}{p['runs_as']:<14}{p['n_gpu_layers']:>11}{p['n_ctx']:>7}"
                  f"{p['est_vram_mb']:>6} MiB{m['all_layers_on_gpu_mb'][name]:>8} MiB")
        a = report["auto"]
        print(f"auto would pick: {a['profile']} ({a['n_gpu_layers']} GPU layers): {a['why']}")
    for p in report["problems"]:
        print(f"problem: {p}")
    return 1 if report["problems"] else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workers.inference.doctor",
                                description="Check llama build, GPU, model and profiles.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", type=Path, help="check this GGUF instead of the configured one")
    args = p.parse_args(argv)
    return print_report(diagnose(args.config, args.model), args.json)


if __name__ == "__main__":
    sys.exit(main())
