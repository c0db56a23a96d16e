"""Pure parts of inference: GGUF header reading, VRAM planning, emotion, memory window."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NoReturn

import llama_cpp
import pytest

from protocol.messages import EMOTIONS
from supervisor.config import DEFAULT_MODEL, default_config, load_profiles
from workers.gpu.gguf_info import GGUFError, ModelInfo, read_model_info
from workers.gpu.planner import GpuMemory, MiB, equivalent_profiles, estimate_vram, plan_profile
from workers.gpu.sources import NvmlSource
from workers.inference.emotion import LEXICON, PRESETS, detect
from workers.inference.llama_loader import build_gpu_backends
from workers.inference.memory import Memory
from workers.inference.worker import InferenceWorker, Throttle

GiB = 1024 * MiB
PROFILES = load_profiles()


def seven_b() -> ModelInfo:
    """A Llama-2-7B Q4_K_M-like shape: 32 layers of ~120 MB."""
    return ModelInfo(Path("x.gguf"), "llama", "7b", n_layers=32, n_embd=4096, n_head=32,
                     n_head_kv=32, n_vocab=32000, n_ctx_train=4096, file_bytes=4 * GiB,
                     layer_bytes=[120 * MiB] * 32, other_bytes=200 * MiB)


def test_reads_the_embedded_model_header() -> None:
    info = read_model_info(DEFAULT_MODEL)
    assert (info.arch, info.n_layers, info.n_embd, info.n_head, info.n_head_kv) == (
        "llama", 30, 576, 9, 3)
    assert info.n_vocab == 49152 and info.n_ctx_train == 8192
    assert len(info.layer_bytes) == 30 and min(info.layer_bytes) > 0
    assert sum(info.layer_bytes) + info.other_bytes <= info.file_bytes


def test_rejects_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_model_info(bad)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(DEFAULT_MODEL.read_bytes()[:64])
    with pytest.raises(GGUFError):
        read_model_info(truncated)


def test_estimate_grows_with_layers_and_context() -> None:
    m = seven_b()
    assert estimate_vram(m, 0, 4096, 512) == 0
    per_layer = [estimate_vram(m, k, 2048, 512) for k in range(1, 33)]
    assert per_layer == sorted(per_layer)
    assert estimate_vram(m, -1, 4096, 512) > estimate_vram(m, -1, 2048, 512)
    # 7B Q4 fully offloaded at 4k context is known to need roughly 5.5-7 GB.
    assert 5 * GiB < estimate_vram(m, -1, 4096, 512) < 7.5 * GiB


def test_profiles_scale_with_the_card_not_fixed_counts() -> None:
    m = seven_b()
    gpu8 = GpuMemory(total=8 * GiB, free=7 * GiB)
    layers = {n: plan_profile(n, PROFILES, m, gpu8, True, 4).n_gpu_layers
              for n in ("fast", "balanced", "performance")}
    assert 0 < layers["fast"] < layers["balanced"] <= layers["performance"] <= 32
    for name in layers:
        plan = plan_profile(name, PROFILES, m, gpu8, True, 4)
        assert plan.est_vram_bytes <= PROFILES[name]["vram_fraction"] * gpu8.total
        assert plan.profile == name and not plan.gpu_fallback
    tiny = read_model_info(DEFAULT_MODEL)
    assert plan_profile("fast", PROFILES, tiny, gpu8, True, 4).n_gpu_layers == 30


def test_others_using_vram_shrink_the_plan() -> None:
    m = seven_b()
    free = plan_profile("performance", PROFILES, m, GpuMemory(8 * GiB, 7 * GiB), True, 4)
    busy = plan_profile("performance", PROFILES, m, GpuMemory(8 * GiB, 3 * GiB), True, 4)
    assert busy.n_gpu_layers < free.n_gpu_layers
    assert busy.est_vram_bytes <= 3 * GiB - 512 * MiB


def test_cpu_only_build_falls_back_and_says_how_to_rebuild() -> None:
    plan = plan_profile("performance", PROFILES, seven_b(), GpuMemory(8 * GiB, 7 * GiB),
                        False, 4)
    assert (plan.profile, plan.requested, plan.n_gpu_layers) == ("cpu_fallback",
                                                                 "performance", 0)
    assert plan.gpu_fallback
    assert "CPU-only" in plan.notes[-1] and "-DGGML_CUDA=on" in plan.notes[-1]


def test_auto_choice() -> None:
    m = seven_b()
    assert plan_profile("auto", PROFILES, m, GpuMemory(16 * GiB, 15 * GiB), True, 4
                        ).profile == "performance"
    partial = plan_profile("auto", PROFILES, m, GpuMemory(6 * GiB, 5 * GiB), True, 4)
    assert partial.profile in ("fast", "balanced", "performance")
    assert 0 < partial.n_gpu_layers < 32
    assert plan_profile("auto", PROFILES, m, GpuMemory(8 * GiB, 200 * MiB), True, 4
                        ).profile == "cpu_fallback"
    assert plan_profile("auto", PROFILES, m, None, True, 4).profile == "cpu_fallback"
    no_build = plan_profile("auto", PROFILES, m, GpuMemory(16 * GiB, 15 * GiB), False, 4)
    assert no_build.profile == "cpu_fallback" and "cannot offload" in no_build.notes[-1]


def test_all_layers_means_the_output_head_too() -> None:
    m = seven_b()
    full = plan_profile("performance", PROFILES, m, GpuMemory(24 * GiB, 23 * GiB), True, 4)
    assert full.n_gpu_layers == 32 and full.llama_params()["n_gpu_layers"] == -1
    part = plan_profile("fast", PROFILES, m, GpuMemory(6 * GiB, 5 * GiB), True, 4)
    assert 0 < part.llama_params()["n_gpu_layers"] == part.n_gpu_layers < 32


def test_threads_default_to_physical_cores_and_ctx_to_the_model() -> None:
    plan = plan_profile("cpu_fallback", PROFILES, seven_b(), None, False, 6)
    assert plan.n_threads == 6
    small_ctx = ModelInfo(Path("s"), "llama", "s", 4, 64, 4, 4, 100, 512, 1, [1] * 4, 1)
    assert plan_profile("balanced", PROFILES, small_ctx, None, True, 2).n_ctx == 512


def test_on_a_cpu_only_build_every_profile_runs_the_same() -> None:
    """So a switch between any of them (or to auto) needs no restart."""
    for gpu in (GpuMemory(8 * GiB, 7 * GiB), None):
        for name in ("performance", "cpu_fallback", "auto"):
            plan = plan_profile(name, PROFILES, seven_b(), gpu, False, 4)
            assert equivalent_profiles(plan, PROFILES, seven_b(), gpu, False, 4) == sorted(
                [*PROFILES, "auto"])


def test_equivalent_profiles_on_a_gpu_build() -> None:
    m, big = seven_b(), GpuMemory(24 * GiB, 23 * GiB)
    perf = plan_profile("performance", PROFILES, m, big, True, 4)
    # auto picks performance on a card this size; balanced fits too, but without flash_attn.
    assert equivalent_profiles(perf, PROFILES, m, big, True, 4) == ["auto", "performance"]
    cpu = plan_profile("cpu_fallback", PROFILES, m, big, True, 4)
    assert equivalent_profiles(cpu, PROFILES, m, big, True, 4) == ["cpu_fallback"]
    # No GPU visible: the share-of-VRAM profiles fall back to the CPU, but `custom` asks for
    # 16 layers outright, so it would load differently.
    cpu = plan_profile("cpu_fallback", PROFILES, m, None, True, 4)
    assert equivalent_profiles(cpu, PROFILES, m, None, True, 4) == [
        "auto", "balanced", "cpu_fallback", "fast", "performance"]


def test_unknown_profile() -> None:
    with pytest.raises(KeyError, match="unknown profile 'turbo'"):
        plan_profile("turbo", PROFILES, seven_b(), None, True, 2)


@pytest.mark.parametrize(("text", "preset"), [
    ("I'm so happy you came back, that's wonderful!", "joy"),
    ("Haha, that joke is so funny", "fun"),
    ("I am sad and lonely today", "sorrow"),
    ("Je suis vraiment triste, désolée", "sorrow"),
    ("Wow, c'est incroyable !", "surprised"),
    ("Je déteste ça, quelle colère", "angry"),
    ("The meeting is at three.", "neutral"),
])
def test_emotion_presets(text: str, preset: str) -> None:
    name, intensity = detect(text)
    assert name == preset
    assert (intensity == 0.0) if preset == "neutral" else (0.3 < intensity <= 1.0)


def test_emotions_are_the_registry_presets() -> None:
    """One preset list for the whole stack: a name the bridge does not know never leaves."""
    assert (*EMOTIONS, "neutral") == PRESETS
    assert set(LEXICON) <= set(EMOTIONS)


def test_emotion_intensity_grows_with_evidence() -> None:
    assert detect("happy")[1] < detect("happy happy, so glad and delighted!")[1]


def test_memory_window_respects_budget_and_stays_put(tmp_path: Path) -> None:
    mem = Memory(tmp_path / "m.sqlite")
    for i in range(10):
        mem.add("u", "c", "user", f"question {i}", 10)
        mem.add("u", "c", "assistant", f"answer {i}", 20)
    mem.add("other", "c", "user", "not mine", 1)
    window = mem.window("u", "c", 95)
    # Over budget: the window jumps forward to at most half of it, starting with a user turn.
    assert [m.content for m in window] == ["question 9", "answer 9"]
    assert all(m.content != "not mine" for m in window)
    # It then stays put while it refills, so the prompt's prefix (and llama's cache) is stable.
    mem.add("u", "c", "user", "question 10", 10)
    mem.add("u", "c", "assistant", "answer 10", 20)
    assert [m.content for m in mem.window("u", "c", 95)][0] == "question 9"
    for i in range(11, 13):
        mem.add("u", "c", "user", f"question {i}", 10)
        mem.add("u", "c", "assistant", f"answer {i}", 20)
    refilled = mem.window("u", "c", 95)
    assert sum(m.tokens for m in refilled) <= 95 and refilled[0].role == "user"
    assert refilled[-1].content == "answer 12"
    mem.close()
    reopened = Memory(tmp_path / "m.sqlite")
    assert reopened.count("u", "c") == 26
    assert reopened.window("u", "c", 95)[0].content == refilled[0].content  # start persisted


class RecordingRuntime:
    """What InferenceWorker._load needs of WorkerRuntime, recording progress."""

    def __init__(self, data_dir: Path, **ai: Any) -> None:
        self.config = default_config()
        self.config["ai"].update(ai)
        self.options: dict[str, Any] = {}
        self.data_dir = data_dir
        self.progress_calls: list[tuple[str, float | None]] = []

    def progress(self, stage: str, fraction: float | None = None) -> None:
        self.progress_calls.append((stage, fraction))

    def fail_config(self, message: str) -> NoReturn:
        raise AssertionError(f"unexpected config error: {message}")


def test_load_reports_each_stage_and_llama_cpp_own_weight_progress(tmp_path: Path) -> None:
    rt = RecordingRuntime(tmp_path)
    info = InferenceWorker(rt)._load()  # type: ignore[arg-type]
    stages = list(dict.fromkeys(stage for stage, _ in rt.progress_calls))
    vram = ["waiting for VRAM"] if build_gpu_backends() and NvmlSource().available else []
    assert stages == ["checking model", "opening memory", *vram, "planning", "loading weights",
                      "warming up"]
    weights = [f for stage, f in rt.progress_calls if stage == "loading weights" and f]
    assert weights == sorted(set(weights)) and weights[-1] == 1.0, weights
    # llama.cpp reports once per tensor (273 times for this model): throttled to tenths, plus
    # one per 0.25 s of loading.
    assert 2 <= len(weights) <= 10 + info["load_s"] / 0.25 + 1, weights


def test_ready_info_lists_the_profiles_that_would_load_the_same(tmp_path: Path) -> None:
    rt = RecordingRuntime(tmp_path, gpu_profile="performance")
    info = InferenceWorker(rt)._load()  # type: ignore[arg-type]
    assert info["requested_profile"] in info["equivalent_profiles"]
    if not llama_cpp.llama_supports_gpu_offload():
        assert info["equivalent_profiles"] == sorted([*PROFILES, "auto"])
    elif NvmlSource().available:  # this tiny model fits any card: performance, all layers
        assert "cpu_fallback" not in info["equivalent_profiles"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_passes_tenths_and_slow_growth_but_never_a_stall() -> None:
    sent: list[float] = []
    clock = FakeClock()
    throttle = Throttle(sent.append, every_s=0.25, clock=clock)
    for i in range(1, 101):  # a fast load: 100 reports within the same instant
        throttle(i / 100)
    assert sent == [i / 100 for i in range(10, 101, 10)]
    sent.clear()
    slow = Throttle(sent.append, every_s=0.25, clock=clock)
    slow(0.01)
    clock.now += 0.3
    slow(0.02)  # not a new tenth, but the load moved and 0.25 s went by
    assert sent == [0.02]
    clock.now += 60
    slow(0.02)
    slow(0.015)
    assert sent == [0.02]  # a stuck load says nothing: its deadline must still run out


class FreeingCard:
    """A card whose free VRAM still grows for `settle_s` (the old process's memory coming
    back after it exited), then holds."""

    def __init__(self, settle_s: float) -> None:
        self.t0, self.settle_s = time.monotonic(), settle_s

    def memory(self) -> GpuMemory:
        grown = min(time.monotonic() - self.t0, self.settle_s) / self.settle_s
        return GpuMemory(8 << 30, int((2 + 4 * grown) * (1 << 30)))


def test_planning_waits_for_the_old_process_vram_to_come_back(tmp_path: Path) -> None:
    worker = InferenceWorker(RecordingRuntime(tmp_path))  # type: ignore[arg-type]
    card = FreeingCard(0.5)
    t0 = time.monotonic()
    worker._wait_for_vram(card)  # type: ignore[arg-type]
    assert time.monotonic() - t0 >= 0.5
    assert card.memory().free == 6 << 30  # what planning then reads: all of it back


def test_a_profile_without_gpu_layers_waits_for_no_vram(tmp_path: Path) -> None:
    """The emergency step down to cpu_fallback happens while a game fills the card: waiting
    for free VRAM to hold still would only lengthen the dark time."""
    rt = RecordingRuntime(tmp_path)
    worker = InferenceWorker(rt)  # type: ignore[arg-type]
    profiles = {"cpu_fallback": {"n_gpu_layers": 0}, "balanced": {"vram_fraction": 0.65},
                "custom": {"n_gpu_layers": 16}}
    for profile, waits in (("cpu_fallback", False), ("balanced", True), ("custom", True),
                           ("auto", True)):
        rt.options["profile"] = profile
        assert worker._may_offload(profiles) is waits, profile

