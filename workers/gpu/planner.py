"""Turning a profile name into llama settings that fit this model on this GPU (pure functions).

A profile states intent (a share of the VRAM, a context size); the layer count comes from the
model's own sizes, so the same profile suits a 135M and a 13B model. VRAM estimate = weights of
the offloaded layers (+ output head when all are offloaded) + f16 KV cache of those layers for
n_ctx + compute buffers + a fixed CUDA context overhead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from supervisor.config import AUTO_PROFILE
from workers.gpu.gguf_info import ModelInfo

MiB = 1 << 20
CUDA_CONTEXT_BYTES = 300 * MiB  # the CUDA runtime's own footprint, seen on 4-8 GB cards
AUTO_ORDER = ("performance", "balanced", "fast")  # best first
REBUILD_HINT = ('CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
                'llama-cpp-python  (or: CMAKE_ARGS="-DGGML_CUDA=on" python3 bootstrap.py setup)')


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
                "flash_attn": self.flash_attn}


def estimate_vram(model: ModelInfo, n_gpu_layers: int, n_ctx: int, n_batch: int) -> int:
    layers = model.n_layers if n_gpu_layers < 0 else min(n_gpu_layers, model.n_layers)
    if layers == 0:
        return 0
    weights = sum(model.layer_bytes[:layers])
    if layers == model.n_layers:
        weights += model.other_bytes
    kv = 2 * layers * n_ctx * model.n_head_kv * model.head_dim * 2
    compute = 4 * n_batch * (model.n_vocab + 4 * model.n_embd + model.n_head * min(n_ctx, 4096))
    return weights + kv + compute + CUDA_CONTEXT_BYTES


def _layers_within(model: ModelInfo, budget: int, n_ctx: int, n_batch: int) -> int:
    best = 0
    for k in range(1, model.n_layers + 1):
        if estimate_vram(model, k, n_ctx, n_batch) > budget:
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
        layers = _layers_within(model, budget, n_ctx, p["n_batch"])
        notes.append(f"{layers}/{model.n_layers} layers fit {budget / MiB:.0f} MiB "
                     f"({p['vram_fraction']:.0%} of {gpu.total / MiB:.0f} MiB, "
                     f"{gpu.free / MiB:.0f} MiB free)")
    else:
        layers = 0
        if p["vram_fraction"] > 0:
            notes.append("no NVIDIA GPU visible, so no layers on the GPU")
    plan = Plan(name, name, layers, n_ctx, p["n_batch"], p["n_threads"] or cores,
                p["use_mlock"], p["flash_attn"], estimate_vram(model, layers, n_ctx, p["n_batch"]),
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
