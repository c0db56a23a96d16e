"""`python -m workers.inference.doctor` (or `python -m supervisor doctor`): what this machine
can do for inference, and how to fix gaps.

Works without a running stack; it reads the same config, profiles and model as the worker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psutil

from supervisor.config import DEFAULT_CONFIG, ConfigError, load_config, load_profiles, profiles_path
from workers.gpu.gguf_info import GGUFError, read_model_info
from workers.gpu.planner import REBUILD_HINT, MiB, estimate_vram, plan_profile
from workers.gpu.sources import NvmlSource
from workers.inference.llama_loader import cpu_has_amx
from workers.inference.worker import model_path


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

        supports = bool(llama_cpp.llama_supports_gpu_offload())
        report["llama_cpp"] = {"version": llama_cpp.__version__, "gpu_offload": supports}
    except ImportError as exc:
        problems.append(f"llama-cpp-python is not installed ({exc}); fix: python3 bootstrap.py "
                        f"setup")
        return report
    source = NvmlSource()
    mem = source.memory()
    report["gpu"] = ({"nvml": True, "name": source.name, "vram_total_mb": mem.total // MiB,
                      "vram_free_mb": mem.free // MiB} if mem else
                     {"nvml": False, "reason": source.reason})
    if mem and not supports:
        problems.append(f"an NVIDIA GPU is visible but llama-cpp-python is a CPU-only build; "
                        f"fix: {REBUILD_HINT}")
    report["cpu"] = {"physical_cores": psutil.cpu_count(logical=False),
                     "logical_cores": psutil.cpu_count(), "amx": cpu_has_amx()}
    path = model or model_path({}, cfg)
    if not path.is_file():
        problems.append(f"model file not found: {path}; fix: python3 bootstrap.py setup, or "
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
        name: estimate_vram(info, -1, min(p["n_ctx"], info.n_ctx_train), p["n_batch"]) // MiB
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
        print(f"llama-cpp-python {lc['version']}: GPU offload "
              f"{'supported' if lc['gpu_offload'] else 'NOT supported (CPU-only build)'}")
    if "gpu" in report:
        g = report["gpu"]
        print(f"GPU: {g['name']}, {g['vram_free_mb']} of {g['vram_total_mb']} MiB free"
              if g["nvml"] else f"GPU: none visible. {g['reason']}")
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
