"""Turning a profile name into llama settings that fit this model on this GPU (pure functions).

A profile states intent (a share of the VRAM, a context size); the layer count comes from the
model's own sizes, so the same profile suits a 135M and a 13B model.

Placement follows llama.cpp (llama_model::load_tensors): n_gpu_layers = k puts the output head
on the GPU first and then the last k-1 repeating blocks; the input embedding always stays on the
CPU. VRAM estimate = those weights + the f16 KV cache of the offloaded blocks (per-layer KV heads,
key/value lengths from the GGUF) + the compute buffer (the larger of the logits and, without
flash attention, the KQ matrix over the whole n_ctx) + a fixed CUDA context overhead.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from supervisor.config import AUTO_PROFILE
from workers.gpu.gguf_info import ModelInfo

MiB = 1 << 20
CUDA_CONTEXT_BYTES = 300 * MiB  # the CUDA runtime's own footprint, seen on 4-8 GB cards
AUTO_ORDER = ("performance", "balanced", "fast")  # best first


def rebuild_hint(windows: bool | None = None) -> str:
    """How to rebuild llama-cpp-python with CUDA, in the syntax of this machine's shell
    (PowerShell on Windows)."""
    if windows if windows is not None else os.name == "nt":
        return ('$env:CMAKE_ARGS="-DGGML_CUDA=on"; py -m pip install --force-reinstall '
                '--no-cache-dir llama-cpp-python  (or: $env:CMAKE_ARGS="-DGGML_CUDA=on"; '
                'py bootstrap.py setup; needs the CUDA toolkit with its Visual Studio '
                'integration)')
    return ('CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
            'llama-cpp-python  (or: CMAKE_ARGS="-DGGML_CUDA=on" python3 bootstrap.py setup)')


REBUILD_HINT = rebuild_hint()


@dataclass
class GpuMemory:
    total: int
    free: int
    name: str = ""


@dataclass
class Plan:
    profile: str  # in effect
    requested: str
    n_gpu_layers: int
    n_ctx: int
    n_batch: int
    n_threads: int
    use_mlock: bool
    flash_attn: bool
    est_vram_bytes: int
    model_layers: int = 0
    notes: list[str] = field(default_factory=list)
    gpu_fallback: bool = False  # a GPU profile was asked for and cannot be honoured

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def llama_params(self) -> dict[str, Any]:
        # llama.cpp counts the output head as one more layer: only -1 offloads everything.
        all_layers = self.model_layers and self.n_gpu_layers >= self.model_layers
        return {"n_gpu_layers": -1 if all_layers else self.n_gpu_layers,
                "n_ctx": self.n_ctx, "n_batch": self.n_batch,
                "n_threads": self.n_threads, "n_threads_batch": self.n_threads,
                "use_mlock": self.use_mlock,
                "flash_attn": self.flash_attn,
                # No layer on the GPU: no prompt batch either (llama.cpp offloads batches over
                # 32 tokens to a GPU it can see; the worker also hides the GPU from CUDA).
                "op_offload": self.n_gpu_layers != 0}


N_UBATCH = 512  # llama-cpp-python's default; the micro-batch is min(n_batch, n_ubatch)
CTX_PAD = 256  # llama.cpp rounds n_ctx up to a multiple of this


def gpu_blocks(model: ModelInfo, n_gpu_layers: int) -> int:
    """Repeating blocks on the GPU for a plan's n_gpu_layers: the output head takes the first
    slot, so k < n_layers offloads k-1 blocks; n_layers or more (or -1) offloads them all."""
    if n_gpu_layers < 0 or n_gpu_layers >= model.n_layers:
        return model.n_layers
    return max(n_gpu_layers - 1, 0)


def padded_ctx(n_ctx: int) -> int:
    return -(-n_ctx // CTX_PAD) * CTX_PAD


def kv_bytes(model: ModelInfo, blocks: int, n_ctx: int) -> int:
    """f16 K and V of the last `blocks` repeating blocks (those llama.cpp offloads)."""
    per_head = model.head_dim_k + model.head_dim_v
    first = model.n_layers - blocks
    return sum(padded_ctx(n_ctx) * model.kv_heads(i) * per_head * 2
               for i in range(first, model.n_layers))


def compute_bytes(model: ModelInfo, n_ctx: int, n_batch: int, flash_attn: bool) -> int:
    """The compute buffer: its largest live set is the logits (f32, n_vocab per token of the
    micro-batch) or, without flash attention, the KQ scores over the whole context (f32, per
    head, plus the mask) next to the feed-forward activations. Flash attention never builds KQ.
    """
    ub = min(n_batch, N_UBATCH)
    logits = 4 * ub * (model.n_vocab + 2 * model.n_embd)
    if flash_attn:
        return logits
    attention = 4 * ub * (padded_ctx(n_ctx) * (model.n_head + 1) + 2 * model.n_ff)
    return max(logits, attention)


def estimate_vram(model: ModelInfo, n_gpu_layers: int, n_ctx: int, n_batch: int,
                  flash_attn: bool = False) -> int:
    if n_gpu_layers == 0:
        return 0
    blocks = gpu_blocks(model, n_gpu_layers)
    weights = model.output_bytes + sum(model.layer_bytes[model.n_layers - blocks:])
    return (weights + kv_bytes(model, blocks, n_ctx)
            + compute_bytes(model, n_ctx, n_batch, flash_attn) + CUDA_CONTEXT_BYTES)


def _layers_within(model: ModelInfo, budget: int, n_ctx: int, n_batch: int,
                   flash_attn: bool) -> int:
    best = 0
    for k in range(1, model.n_layers + 1):
        if estimate_vram(model, k, n_ctx, n_batch, flash_attn) > budget:
            break
        best = k
    return best


def plan_profile(name: str, profiles: dict[str, dict[str, Any]], model: ModelInfo,
                 gpu: GpuMemory | None, supports_offload: bool, cores: int,
                 margin_bytes: int = 512 * MiB) -> Plan:
    """Settings for profile `name` ('auto' picks one); never more GPU than can work."""
    if name == AUTO_PROFILE:
        return choose_auto(profiles, model, gpu, supports_offload, cores, margin_bytes)
    if name not in profiles:
        raise KeyError(f"unknown profile '{name}'; profiles: {', '.join(profiles)}, auto")
    p = profiles[name]
    n_ctx = min(p["n_ctx"], model.n_ctx_train) if model.n_ctx_train else p["n_ctx"]
    notes: list[str] = []
    if p["n_gpu_layers"] is not None:
        layers = model.n_layers if p["n_gpu_layers"] < 0 else min(p["n_gpu_layers"],
                                                                 model.n_layers)
    elif p["vram_fraction"] > 0 and gpu is not None:
        budget = min(int(p["vram_fraction"] * gpu.total), gpu.free - margin_bytes)
        layers = _layers_within(model, budget, n_ctx, p["n_batch"], p["flash_attn"])
        notes.append(f"{layers}/{model.n_layers} layers fit {budget / MiB:.0f} MiB "
                     f"({p['vram_fraction']:.0%} of {gpu.total / MiB:.0f} MiB, "
                     f"{gpu.free / MiB:.0f} MiB free)")
    else:
        layers = 0
        if p["vram_fraction"] > 0:
            notes.append("no NVIDIA GPU visible, so no layers on the GPU")
    plan = Plan(name, name, layers, n_ctx, p["n_batch"], p["n_threads"] or cores,
                p["use_mlock"], p["flash_attn"],
                estimate_vram(model, layers, n_ctx, p["n_batch"], p["flash_attn"]),
                model.n_layers, notes)
    wants_gpu = layers > 0 or p["vram_fraction"] > 0
    if wants_gpu and name != "cpu_fallback" and (not supports_offload or layers == 0):
        fallback = plan_profile("cpu_fallback", profiles, model, gpu, supports_offload, cores,
                                margin_bytes)
        fallback.requested = name
        fallback.gpu_fallback = True
        if not supports_offload:
            fallback.notes = notes + [
                f"profile '{name}' wants the GPU, but this llama-cpp-python build is CPU-only: "
                f"running as cpu_fallback. Rebuild with CUDA: {REBUILD_HINT}"]
        else:
            fallback.notes = notes + [f"profile '{name}' fits no layer on the GPU: running as "
                                      f"cpu_fallback"]
        return fallback
    return plan


def profile_need(name: str, profiles: dict[str, dict[str, Any]], model: ModelInfo, total: int,
                 cores: int = 1) -> int:
    """VRAM a profile takes on a card of `total` bytes that nothing else uses.

    It is the profile's own appetite, not what happens to fit now: the GPU monitor adds it to
    what others use, so a busy card does not make a profile look cheaper than it is.
    """
    if name not in profiles:
        return 0
    return plan_profile(name, profiles, model, GpuMemory(total, total), True, cores,
                        margin_bytes=0).est_vram_bytes


def choose_auto(profiles: dict[str, dict[str, Any]], model: ModelInfo, gpu: GpuMemory | None,
                supports_offload: bool, cores: int, margin_bytes: int = 512 * MiB) -> Plan:
    """The best GPU profile whose model fits entirely, else the one offloading most layers."""
    def pick(plan: Plan, why: str) -> Plan:
        plan.requested = AUTO_PROFILE
        plan.notes.append(f"auto: {why}")
        return plan

    if not supports_offload:
        return pick(plan_profile("cpu_fallback", profiles, model, gpu, False, cores),
                    "this llama-cpp-python build cannot offload to a GPU")
    if gpu is None:
        return pick(plan_profile("cpu_fallback", profiles, model, gpu, True, cores),
                    "no NVIDIA GPU visible")
    candidates = [plan_profile(n, profiles, model, gpu, True, cores, margin_bytes)
                  for n in AUTO_ORDER if n in profiles]
    candidates = [c for c in candidates if not c.gpu_fallback]
    for c in candidates:
        if c.n_gpu_layers >= model.n_layers:
            return pick(c, f"'{c.profile}' fits all {model.n_layers} layers in "
                           f"{c.est_vram_bytes / MiB:.0f} MiB")
    if candidates:
        best = max(candidates, key=lambda c: c.n_gpu_layers)
        return pick(best, f"'{best.profile}' offloads the most layers "
                          f"({best.n_gpu_layers}/{model.n_layers})")
    return pick(plan_profile("cpu_fallback", profiles, model, gpu, True, cores),
                f"not one layer fits the {gpu.free / MiB:.0f} MiB free")


def equivalent_profiles(plan: Plan, profiles: dict[str, dict[str, Any]], model: ModelInfo,
                        gpu: GpuMemory | None, supports_offload: bool, cores: int,
                        margin_bytes: int = 512 * MiB) -> list[str]:
    """Profile names (and 'auto') that would load the model exactly as `plan` does, under the
    conditions it was planned with: switching to one of them would restart for nothing.

    On a CPU-only build that is every profile, since each falls back to cpu_fallback.
    """
    wanted = plan.llama_params()
    return sorted(name for name in (*profiles, AUTO_PROFILE)
                  if plan_profile(name, profiles, model, gpu, supports_offload, cores,
                                  margin_bytes).llama_params() == wanted)
