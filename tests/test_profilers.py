"""The profiling tools, run as a user runs them (subprocesses, real model, real stack).

Quick modes keep this file at a few seconds per tool; outputs go to tmp dirs so the committed
results in bench/results are never overwritten. A fake NVML source drives the GPU sweep path
(which this GPU-less machine cannot reach otherwise) through real child processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench import gpu_profiler
from bench.gpu_profiler import Point, recommend
from supervisor.config import DEFAULT_MODEL, REPO_ROOT, load_profiles
from workers.gpu.gguf_info import read_model_info
from workers.gpu.sources import NvmlSource

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MiB = 1 << 20


def run_tool(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("gpu")
    proc = run_tool("bench.gpu_profiler", "--tokens", "8", "--out", str(out))
    return out, proc.stdout


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("memory")
    proc = run_tool("bench.memory_profiler", "--messages", "12", "--out", str(out))
    return out, proc.stdout


# -- GPU profiler ------------------------------------------------------------------------------
def test_gpu_profiler_measures_layer_zero(gpu_run: tuple[Path, str]) -> None:
    out, stdout = gpu_run
    data = json.loads((out / "gpu_profile.json").read_text())
    first = data["points"][0]
    assert first["layers"] == 0 and not first["error"]
    assert first["tokens"] == 8
    assert first["tokens_per_s"] > 0 and first["ms_per_token"] > 0 and first["ttft_ms"] > 0
    assert first["rss_mb"] > 50
    assert data["model"]["layers"] == read_model_info(DEFAULT_MODEL).n_layers
    assert "tok/s" in stdout  # the table
    assert_png(out / "gpu_profile.png")


def test_gpu_profiler_says_why_it_stops_at_zero(gpu_run: tuple[Path, str]) -> None:
    out, stdout = gpu_run
    data = json.loads((out / "gpu_profile.json").read_text())
    source = NvmlSource()
    if source.available and data["offload_supported"]:
        pytest.skip("a GPU and a CUDA build: the sweep goes past layers = 0 here")
    assert data["layer_counts"] == [0] and len(data["points"]) == 1
    reason = data["stopped_reason"]
    if not source.available:
        assert source.reason in reason and not data["gpu"]["available"]
    if not data["offload_supported"]:
        assert "CPU-only" in reason and "-DGGML_CUDA=on" in reason
    assert "why the sweep ends at 0 layers" in stdout


def test_recommended_profiles_load_like_the_worker_loads_them(gpu_run: tuple[Path, str]) -> None:
    out, _ = gpu_run
    path = out / "recommended_profiles.json"
    profiles = load_profiles(path)
    raw = json.loads(path.read_text())
    assert set(raw) == {"fast", "balanced", "performance", "cpu_fallback"}
    assert all(isinstance(p["n_gpu_layers"], int) for p in raw.values())  # explicit
    assert profiles["cpu_fallback"]["n_gpu_layers"] == 0


def test_recommend_picks_the_most_layers_under_each_cap() -> None:
    template = load_profiles()
    total = 8192.0
    points = [Point(layers=k, tokens=8, tokens_per_s=10.0 + k, vram_mb=300 + 200 * k)
              for k in (0, 10, 20, 30)]  # 3.7 %, 28 %, 52 %, 76.9 % of 8 GiB
    out = recommend(points, total, 30, template, None)
    assert [out[n]["n_gpu_layers"] for n in ("fast", "balanced", "performance",
                                             "cpu_fallback")] == [10, 20, 30, 0]
    assert out["performance"].get("flash_attn") is True  # carried over from data/profiles.json
    assert "76.9 %" in out["performance"]["description"]


def test_layer_counts_end_with_the_whole_model_and_its_output_head() -> None:
    assert gpu_profiler.layer_counts(30, 10) == [0, 10, 20, 30, -1]
    assert gpu_profiler.layer_counts(30, 7) == [0, 7, 14, 21, 28, 30, -1]
    assert gpu_profiler.layer_counts(5, 10) == [0, 5, -1]


def test_recommend_without_measurements_offloads_nothing() -> None:
    out = recommend([Point(layers=0, tokens=8, tokens_per_s=5.0)], None, 30, load_profiles(),
                    "NVML unavailable (...)")
    assert {p["n_gpu_layers"] for p in out.values()} == {0}
    assert "no NVIDIA GPU" in out["fast"]["description"]


class FakeNvml:
    """A 8 GiB card on which a child uses 300 MiB + 200 MiB per offloaded layer."""

    available = True
    reason = ""
    name = "Fake GPU 8 GB"

    def __init__(self) -> None:
        from workers.gpu.planner import GpuMemory

        self.total = 8192 * MiB
        self.memory = lambda: GpuMemory(self.total, self.total - 512 * MiB, self.name)

    def own_vram(self, pid: int | None) -> int | None:
        cmd = psutil.Process(pid).cmdline()
        layers = int(cmd[cmd.index("--layers") + 1])
        return (300 + 200 * (31 if layers < 0 else layers)) * MiB

    def read(self, own_pid: int | None = None) -> dict[str, Any]:
        return {"gpu_percent": 40, "temperature_c": 55}


def test_sweep_with_a_gpu_runs_each_point_in_its_own_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_profiler, "NvmlSource", FakeNvml)
    monkeypatch.setattr(gpu_profiler, "offload_supported", lambda: True)
    sweep = gpu_profiler.run_sweep(DEFAULT_MODEL, step=15, tokens=4)
    assert sweep.stopped_reason is None
    assert [p.layers for p in sweep.points] == [0, 15, 30, -1]  # -1: the output head too
    assert all(p.ok and p.vram_source == "process" and p.gpu_samples > 0 for p in sweep.points)
    assert [round(p.vram_mb) for p in sweep.points] == [300, 3300, 6300, 6500]
    paths = gpu_profiler.write_results(sweep, tmp_path, 1.0)
    profiles = load_profiles(paths["profiles"])  # 3.7 %, 40 %, 76.9 %, 79.3 % of 8 GiB
    assert [profiles[n]["n_gpu_layers"] for n in ("fast", "balanced", "performance")] == \
        [15, 15, -1]
    assert_png(paths["png"])


def test_a_point_whose_child_fails_records_why(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    point = gpu_profiler.run_point(bad, 0, 4, 512, 64, NvmlSource())
    assert not point.ok
    assert "before 'loaded'" in point.error and "exit code 1" in point.error


def test_gpu_profiler_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model")
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_profiler", "--model", str(bad),
                           "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "not a GGUF file" in proc.stderr


# -- memory profiler ---------------------------------------------------------------------------
def test_memory_profiler_stages_in_order(memory_run: tuple[Path, str]) -> None:
    out, stdout = memory_run
    data = json.loads((out / "memory_profile.json").read_text())
    names = [s["name"] for s in data["stages"]]
    assert names == ["started", "model_loaded", "after_warmup", "first_reply", "second_reply",
                     "after_10", "after_12"]
    rss = {s["name"]: s["rss_mb"] for s in data["stages"]}
    assert 5 < rss["started"] < rss["model_loaded"]  # the interpreter, before the model
    assert all(rss[n] > 50 for n in names[1:])
    assert rss["after_12"] >= rss["first_reply"] - 5
    assert [m["n"] for m in data["messages"]] == list(range(1, 13))
    tokens = [m["prompt_tokens"] for m in data["messages"]]
    assert tokens == sorted(tokens) and tokens[-1] > tokens[0]  # one growing conversation
    assert "after 12 messages" in stdout and "RSS MB" in stdout
    assert_png(out / "memory_profile.png")


def test_memory_profiler_records_why_there_is_no_vram(memory_run: tuple[Path, str]) -> None:
    out, _ = memory_run
    data = json.loads((out / "memory_profile.json").read_text())
    source = NvmlSource()
    if source.available:
        assert all(s["vram_mb"] is not None for s in data["stages"][2:])
        return
    assert data["extra"]["gpu"]["reason"] == source.reason
    assert all(s["vram_mb"] is None for s in data["stages"])
    assert any(source.reason in n for n in data["notes"])


def test_memory_checkpoints_for_short_and_full_runs() -> None:
    from bench.memory_profiler import checkpoints

    assert [v[0] for v in checkpoints(100).values()] == [
        "first_reply", "second_reply", "after_10", "after_50", "after_100"]
    assert list(checkpoints(2)) == [1, 2]
