"""doctor: the build's GPU support and a visible device are two answers, and its fixes are
written in the shell of the machine (PowerShell on Windows)."""

from __future__ import annotations

import os

import pytest

from supervisor.config import DEFAULT_CONFIG
from workers.gpu.planner import rebuild_hint
from workers.inference import doctor


def test_build_support_and_device_visibility_are_shown_apart(capsys) -> None:
    report = doctor.diagnose(DEFAULT_CONFIG)
    lc, gpu = report["llama_cpp"], report["gpu"]
    assert set(lc) >= {"build_gpu_support", "gpu_backends", "gpu_offload"}
    assert "visible" in gpu
    doctor.print_report(report, as_json=False)
    out = capsys.readouterr().out
    assert "build GPU support:" in out and "GPU device:" in out


def test_a_cuda_build_without_a_visible_device_is_told_as_such(capsys) -> None:
    report = {"problems": [], "llama_cpp": {"version": "x", "gpu_offload": False,
                                            "build_gpu_support": True,
                                            "gpu_backends": ["cuda"]},
              "gpu": {"nvml": False, "visible": False, "reason": "NVML unavailable"}}
    doctor.print_report(report, as_json=False)
    out = capsys.readouterr().out
    assert "build GPU support: yes (cuda)" in out and "GPU device: none visible" in out


def test_hints_use_powershell_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rebuild_hint(windows=True).startswith('$env:CMAKE_ARGS="-DGGML_CUDA=on"; ')
    assert "CMAKE_ARGS=" in rebuild_hint(windows=False) and "$env:" not in rebuild_hint(False)
    monkeypatch.setattr(os, "name", "nt")
    assert doctor.setup_hint() == "py bootstrap.py setup"
    assert rebuild_hint().startswith("$env:")
