"""The planner against llama.cpp's own numbers, and against the GGUF shapes that broke it.

llama.cpp logs the buffers it allocates (verbose=True): the model's weights, the KV cache and the
compute buffer. On this CPU-only build every buffer sits on the CPU whatever n_gpu_layers says,
so the log gives whole-model numbers: the KV cache of all blocks, the weights of all tensors, and
the compute buffer of a graph on one backend (what a full offload puts on the GPU). Per-layer
placement on a GPU is checked by bench/gpu_device_check.py where a GPU is lent.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config import DEFAULT_MODEL
from supervisor.harness import ROOT
from workers.gpu.gguf_info import ModelInfo, read_model_info
from workers.gpu.planner import compute_bytes, estimate_vram, gpu_blocks, kv_bytes

MiB = 1 << 20
# (n_ctx, flash_attn, n_gpu_layers): llama.cpp's placement does not change its CPU-side log.
CASES = [(512, False, 1), (2048, True, 15), (8192, False, -1), (8192, True, 30)]

_LOADER = """
import json, sys
from llama_cpp import Llama
for n_ctx, fa, ngl in json.loads(sys.argv[1]):
    print(f"CASE {n_ctx} {fa} {ngl}", file=sys.stderr, flush=True)
    Llama(model_path=sys.argv[2], n_ctx=n_ctx, n_batch=512, n_gpu_layers=ngl, flash_attn=fa,
          verbose=True)
"""


@pytest.fixture(scope="module")
def logged() -> dict[tuple[int, bool, int], dict[str, float]]:
    """Buffer sizes (MiB) llama.cpp logged for each case, from one process loading four times."""
    out = subprocess.run([sys.executable, "-c", _LOADER, json.dumps(CASES), str(DEFAULT_MODEL)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    found: dict[tuple[int, bool, int], dict[str, float]] = {}
    for chunk in out.stderr.split("CASE ")[1:]:
        head, _, body = chunk.partition("\n")
        n_ctx, fa, ngl = head.split()
        nums = {name: re.search(pattern, body) for name, pattern in (
            ("model", r"model buffer size =\s+([\d.]+) MiB"),
            ("kv", r"KV buffer size =\s+([\d.]+) MiB"),
            ("compute", r"compute buffer size =\s+([\d.]+) MiB"))}
        assert all(nums.values()), f"llama.cpp's log format changed: {body[-1500:]}"
        found[(int(n_ctx), fa == "True", int(ngl))] = {
            k: float(m.group(1)) for k, m in nums.items() if m}
    assert set(found) == set(CASES)
    return found


@pytest.mark.parametrize("case", CASES)
def test_planner_matches_llama_cpp_buffers(logged, case) -> None:
    n_ctx, fa, _ngl = case
    m = read_model_info(DEFAULT_MODEL)
    log = logged[case]
    # Weights: every tensor the file holds (llama.cpp maps them all on a CPU build).
    assert abs((sum(m.layer_bytes) + m.other_bytes) / MiB - log["model"]) < 0.01
    # KV cache: f16 K and V of every block, n_ctx rounded up as llama.cpp does: exact.
    assert abs(kv_bytes(m, m.n_layers, n_ctx) / MiB - log["kv"]) < 0.01, (kv_bytes(m, m.n_layers,
                                                                               n_ctx) / MiB, log)
    # Compute buffer of the whole graph: within 10 % (the old estimate, capped at n_ctx 4096
    # and blind to flash attention, said 181 MiB for the 98 MiB logged at n_ctx 8192 with it).
    est = compute_bytes(m, n_ctx, 512, fa) / MiB
    assert abs(est - log["compute"]) <= 0.10 * log["compute"], (est, log)


def _tiny(**kw) -> ModelInfo:
    base = dict(path=Path("x"), arch="qwen3", name="x", n_layers=36, n_embd=2560, n_head=32,
                n_head_kv=8, n_vocab=151936, n_ctx_train=40960, file_bytes=0,
                layer_bytes=[60 * MiB] * 36, other_bytes=700 * MiB, embd_bytes=350 * MiB,
                output_bytes=350 * MiB, n_ff=9728)
    base.update(kw)
    return ModelInfo(**base)  # type: ignore[arg-type]


def test_head_dim_comes_from_key_and_value_length() -> None:
    """Qwen3-4B: 32 heads of 128, in an n_embd of 2560 (2560 / 32 = 80 would be 37 % low)."""
    qwen = _tiny(key_length=128, value_length=128)
    assert kv_bytes(qwen, 36, 4096) == 36 * 4096 * 8 * (128 + 128) * 2  # 576 MiB
    assert kv_bytes(_tiny(), 36, 4096) / kv_bytes(qwen, 36, 4096) == pytest.approx(0.625)


def test_partial_offload_puts_the_output_head_first_and_keeps_the_embedding_on_cpu() -> None:
    m = _tiny()
    one = estimate_vram(m, 1, 4096, 512)  # llama.cpp's ngl 1: the output head only
    assert gpu_blocks(m, 1) == 0 and gpu_blocks(m, 10) == 9 and gpu_blocks(m, -1) == 36
    fixed = compute_bytes(m, 4096, 512, False) + 300 * MiB
    assert one == m.output_bytes + fixed
    assert estimate_vram(m, 10, 4096, 512) == (m.output_bytes + 9 * 60 * MiB
                                               + kv_bytes(m, 9, 4096) + fixed)
    full = estimate_vram(m, -1, 4096, 512)
    assert full == m.output_bytes + 36 * 60 * MiB + kv_bytes(m, 36, 4096) + fixed  # no embd


def test_flash_attention_shrinks_the_compute_buffer_at_long_contexts() -> None:
    m = _tiny()
    assert compute_bytes(m, 32768, 512, True) < compute_bytes(m, 32768, 512, False) / 4
    assert compute_bytes(m, 32768, 512, False) > compute_bytes(m, 4096, 512, False)  # no cap


def _gguf(path: Path, meta: dict[str, object]) -> Path:
    """A minimal GGUF v3 file: metadata and one tensor per block, enough for the header reader."""
    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    def value(v: object) -> bytes:
        if isinstance(v, list):
            return struct.pack("<IQ", 4, len(v)) + b"".join(struct.pack("<I", x) for x in v)
        if isinstance(v, str):
            return s(v)
        return struct.pack("<I", v)

    def vtype(v: object) -> int:
        return 9 if isinstance(v, list) else 8 if isinstance(v, str) else 4

    kvs = b"".join(s(k) + struct.pack("<I", vtype(v)) + value(v) for k, v in meta.items())
    tensors = [("token_embd.weight", 0), ("blk.0.attn_q.weight", 64), ("blk.1.attn_q.weight", 128)]
    infos = b"".join(s(n) + struct.pack("<IQIQ", 1, 16, 0, off) for n, off in tensors)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + kvs + infos
    head += b"\0" * (-len(head) % 32) + b"\0" * 192
    path.write_bytes(head)
    return path


def test_a_per_layer_head_count_kv_array_is_read_not_a_crash(tmp_path: Path) -> None:
    meta = {"general.architecture": "openelm", "openelm.block_count": 2,
            "openelm.embedding_length": 64, "openelm.attention.head_count": [4, 8],
            "openelm.attention.head_count_kv": [2, 4], "openelm.context_length": 2048}
    m = read_model_info(_gguf(tmp_path / "m.gguf", meta))
    assert m.head_kv_per_layer == [2, 4] and m.n_head == 8
    assert kv_bytes(m, 2, 256) == 256 * (2 + 4) * (m.head_dim_k + m.head_dim_v) * 2
    assert kv_bytes(m, 1, 256) == 256 * 4 * (m.head_dim_k + m.head_dim_v) * 2  # the last block


def test_a_plan_without_gpu_layers_offloads_no_prompt_batch_either() -> None:
    from supervisor.config import load_profiles
    from workers.gpu.planner import GpuMemory, plan_profile

    profiles, m = load_profiles(), _tiny()
    cpu = plan_profile("cpu_fallback", profiles, m, GpuMemory(8 << 30, 8 << 30), True, 4)
    gpu = plan_profile("performance", profiles, m, GpuMemory(8 << 30, 8 << 30), True, 4)
    assert cpu.llama_params()["op_offload"] is False and gpu.llama_params()["op_offload"]
