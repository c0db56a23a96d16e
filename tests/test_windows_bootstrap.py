"""bootstrap.py on Windows, asked for its Windows answers on any OS: the supported Python range
(`py` picks the newest installed), the toolchain checks before a 10-minute CUDA build, the fixes
in PowerShell syntax, and the wheel cache in local app-data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bootstrap
from bootstrap import (
    Toolchain,
    cache_dir,
    check_python,
    env_command,
    probe_toolchain,
    toolchain_problems,
    wants_cuda,
)
from supervisor.harness import ROOT

VS = r"C:\Program Files (x86)\Microsoft Visual Studio\2022\BuildTools"
CUDA = r"C:\Program Files\NVIDIA GPU Computing Toolkit\CUDA\v12.4"


def test_the_supported_python_range_is_checked_with_the_fix_for_the_platform() -> None:
    assert check_python((3, 10)) is None and check_python((3, 12)) is None
    newest = check_python((3, 13), "win32", {})
    assert newest is not None and "Python 3.13 is not supported" in newest
    assert "Python 3.10 to 3.12" in newest and "py -3.12 bootstrap.py setup" in newest
    assert "python3.12 bootstrap.py setup" in check_python((3, 9), "linux", {})
    assert check_python((3, 13), "win32", {"AI_COMPANION_ANY_PYTHON": "1"}) is None
    assert check_python((3, 9), "win32", {"AI_COMPANION_ANY_PYTHON": "1"}) is not None
    # CI runs the range's ends (.github/workflows/windows.yml): keep them in step.
    workflow = (ROOT / ".github" / "workflows" / "windows.yml").read_text(encoding="utf-8")
    for v in (bootstrap.PYTHON_MIN, bootstrap.PYTHON_MAX):
        assert f'"{v[0]}.{v[1]}"' in workflow


def test_hints_use_the_shell_of_the_platform() -> None:
    assert env_command("CMAKE_ARGS", "-DGGML_CUDA=on", "py bootstrap.py setup", "win32") == \
        '$env:CMAKE_ARGS = "-DGGML_CUDA=on"; py bootstrap.py setup'
    assert env_command("CMAKE_ARGS", "-DGGML_CUDA=on", "python3 bootstrap.py setup",
                       "linux") == 'CMAKE_ARGS="-DGGML_CUDA=on" python3 bootstrap.py setup'


def test_cuda_builds_are_recognised_from_cmake_args() -> None:
    assert wants_cuda("-DGGML_CUDA=on") and wants_cuda("-DGGML_NATIVE=off -DGGML_CUDA=ON")
    assert not wants_cuda("") and not wants_cuda("-DGGML_CUDA=off")
    assert not wants_cuda("-DGGML_CUDA_F16=on")


def test_a_windows_cuda_build_without_the_visual_studio_integration_is_stopped_first() -> None:
    """'No CUDA toolset found' (llama-cpp-python #1917) after minutes of building: said up front,
    with the PowerShell command that fixes it."""
    tc = Toolchain("win32", VS, CUDA + r"\bin\nvcc.exe", False, CUDA, VS)
    [problem] = toolchain_problems(tc, cuda=True)
    assert "No CUDA toolset found" in problem
    assert (f'Copy-Item "{CUDA}\\extras\\visual_studio_integration\\MSBuildExtensions\\*" '
            f'"{VS}\\MSBuild\\Microsoft\\VC\\v170\\BuildCustomizations"') in problem
    assert toolchain_problems(tc, cuda=False) == []  # a CPU build does not need it
    ok = Toolchain("win32", VS, CUDA + r"\bin\nvcc.exe", True, CUDA, VS)
    assert toolchain_problems(ok, cuda=True) == []


def test_missing_compiler_and_nvcc_name_their_fix_per_platform() -> None:
    bare = toolchain_problems(Toolchain("win32", None, None, False), cuda=True)
    assert len(bare) == 2
    assert "Visual Studio 2022 Build Tools" in bare[0] and "Desktop development with C++" in \
        bare[0]
    assert "nvcc was not found" in bare[1]
    assert '$env:CMAKE_ARGS = ""; py bootstrap.py setup' in bare[1]
    linux = toolchain_problems(Toolchain("linux", None, None, False), cuda=True)
    assert "build-essential" in linux[0] and "export PATH=/usr/local/cuda/bin:$PATH" in linux[1]
    assert 'CMAKE_ARGS="" python3 bootstrap.py setup' in linux[1]


def test_the_probe_finds_nvcc_under_cuda_path(tmp_path: Path) -> None:
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("")
    tc = probe_toolchain("linux", {"CUDA_PATH": str(tmp_path)},
                         lambda name: "/usr/bin/c++" if name == "c++" else None)
    assert tc.nvcc == str(nvcc) and tc.compiler == "/usr/bin/c++"
    # On Windows without vswhere (no Visual Studio): no compiler, and the probe says so.
    win = probe_toolchain("win32", {"ProgramFiles(x86)": str(tmp_path)}, lambda name: None)
    assert win.compiler is None and win.visual_studio is None and not win.cuda_vs_integration


def test_the_wheel_cache_lives_in_local_app_data_on_windows(tmp_path: Path) -> None:
    assert cache_dir("win32", {"LOCALAPPDATA": str(tmp_path)}) == tmp_path / "ai-companion" / \
        "cache"
    assert cache_dir("linux", {}) == Path.home() / ".cache" / "ai-companion"


def test_bootstrap_still_runs_on_the_stdlib_alone() -> None:
    """It must start before anything is installed: no import outside the standard library."""
    code = ("import sys, bootstrap; names = {m.split('.')[0] for m in sys.modules}; "
            "print(sorted(names - set(sys.stdlib_module_names) - {'bootstrap', '__main__'}))")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
