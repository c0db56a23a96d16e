"""What Windows does to a stack, produced on any OS with the real stack: a launcher between the
supervisor and each worker (a venv's python.exe), a redirected CLI in the ANSI code page, and a
checkout under a path with spaces and non-ASCII characters."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from protocol.bus import run_file
from supervisor.harness import ROOT, Stack, pid_gone, wait_for
from supervisor.spawning import PYTHON_ENV
from tests.conftest import base_config

LAUNCHER = ROOT / "tests" / "helpers" / "launcher.py"
LIGHT = {"inference": {"enabled": False}}  # the launcher test needs no model


def launcher_env() -> dict[str, str]:
    if sys.platform == "win32":
        return {PYTHON_ENV: subprocess.list2cmdline([sys.executable, str(LAUNCHER)])}
    return {PYTHON_ENV: shlex.join([sys.executable, str(LAUNCHER)])}


def real_worker(launcher_pid: int) -> psutil.Process:
    """The interpreter the launcher started: the process that runs the worker."""
    kids = psutil.Process(launcher_pid).children()
    assert len(kids) == 1, kids
    return kids[0]


def test_status_reports_the_pid_the_worker_runs_as_not_its_launcher(tmp_path: Path) -> None:
    """A Windows venv starts workers through a launcher (bpo-35797): status, the stats, the GPU
    monitor and `kill` must all follow the worker's own os.getpid(), which it reports."""
    stack = Stack(tmp_path, base_config(workers=LIGHT), env=launcher_env())
    try:
        stack.start()
        sup = psutil.Process(stack.proc.pid)
        launchers = {p.pid: p for p in sup.children() if str(LAUNCHER) in " ".join(p.cmdline())}
        for name in ("unity_bridge", "gpu_monitor"):
            w = stack.wait_state(name, "RUNNING", 30)
            real = {real_worker(pid).pid: pid for pid in launchers}
            assert w["pid"] in real, f"{name}: status says pid {w['pid']}; the processes that " \
                f"run workers are {sorted(real)}, their launchers {sorted(launchers)}"
            launcher = real[w["pid"]]
            worker = real_worker(launcher)
            assert w["pid"] == worker.pid != launcher
            assert "-m" in worker.cmdline()  # the interpreter running the worker's module
        # The stats sample the worker, not the launcher: rss after a stats interval is the
        # worker's (imports: zmq, msgpack), several times the launcher's.
        bridge = stack.worker("unity_bridge")
        launcher_rss = psutil.Process(psutil.Process(bridge["pid"]).ppid()).memory_info().rss
        w = wait_for(lambda: (lambda w: w if w["rss"] and w["rss"] > 1.5 * launcher_rss
                              else None)(stack.worker("unity_bridge")), 10, "a worker sample")
        assert abs(w["rss"] - psutil.Process(w["pid"]).memory_info().rss) < launcher_rss
        # A kill hits the worker itself; it restarts, again behind a launcher.
        killed = stack.cli("kill", "unity_bridge")
        assert killed.returncode == 0 and f"(pid {bridge['pid']})" in killed.stdout
        wait_for(lambda: pid_gone(bridge["pid"]), 10, "the killed worker to be gone")
        again = stack.wait_state("unity_bridge", "RUNNING", 30,
                                 lambda w: w["restarts"] == 1 and w["pid"] != bridge["pid"])
        assert psutil.Process(again["pid"]).parent().cmdline()[-3:] == [
            str(LAUNCHER), "-m", "unity_bridge"]
        stack.interrupt()
        assert stack.proc.wait(30) == 0
        assert stack.output().count("-> EXITED (stopped (shutdown): exit code 0)") == 2
    finally:
        stack.stop()


def test_a_redirected_cli_chat_survives_an_emoji_under_cp1252(tmp_path: Path) -> None:
    """Redirected, a Windows console program writes the ANSI code page (cp1252) with strict
    errors; PYTHONIOENCODING=cp1252 makes that so here. The model is asked for emoji."""
    stack = Stack(tmp_path, base_config(ai={"temperature": 0.0,
                                            "persona": "You answer with emoji only."}))
    try:
        stack.start()
        env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
        out = subprocess.run([sys.executable, "-m", "supervisor", "--config",
                              str(stack.config_path), "chat", "Repeat exactly: 🍕🍕🍕",
                              "--max-tokens", "16"], cwd=ROOT, env=env, capture_output=True,
                             timeout=180)
        assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
        text = out.stdout.decode("utf-8")  # strict: the output is whole UTF-8
        assert any(ord(c) > 0xFFFF for c in text), text  # an emoji, not a '?' for one
        assert "tokens/s]" in out.stderr.decode("utf-8")
    finally:
        stack.stop()


def _copy_checkout(dest: Path) -> None:
    """What a user's checkout holds to run: the packages, launch.py, data/ and the model (a
    hard link where it can be: the model is 98 MB)."""
    for pkg in ("protocol", "supervisor", "workers", "unity_bridge"):
        shutil.copytree(ROOT / pkg, dest / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "unity"))
    shutil.copy2(ROOT / "launch.py", dest / "launch.py")
    (dest / "data").mkdir()
    for name in ("config.json", "profiles.json"):
        shutil.copy2(ROOT / "data" / name, dest / "data" / name)
    model = (ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    (dest / "models").mkdir()
    try:
        os.link(model, dest / "models" / model.name)
    except OSError:
        shutil.copy2(model, dest / "models" / model.name)


def test_a_checkout_under_a_path_with_spaces_and_non_ascii_runs_end_to_end(
        tmp_path: Path) -> None:
    """C:\\Users\\Zoë Müller\\My Companion: spaces and non-ASCII in the checkout, the data dir,
    the logs and the model path. A real stack runs from there, chats, and stops cleanly."""
    root = tmp_path / "Zoë Müller" / "My Companion 日本"
    _copy_checkout(root)
    data = root / "data" / "my data ü"
    data.mkdir()
    stack = Stack(data, base_config(), root=root)
    try:
        stack.start()
        for w in stack.status()["workers"].values():
            assert w["state"] == "RUNNING"
            assert Path(psutil.Process(w["pid"]).cwd()) == root  # it runs the copy
        info = stack.worker("inference")["ready_info"]
        assert Path(info["model_path"]).parent == root / "models"
        chat = stack.cli("chat", "Say hello in one word.", "--max-tokens", "4")
        assert chat.returncode == 0 and "tokens/s]" in chat.stderr, chat.stderr
        assert run_file(data / "run").is_file()
        stack.interrupt()
        assert stack.proc.wait(30) == 0
        out = stack.output()
        assert "Traceback" not in out and out.count("exit code 0)") == 3, out
        assert (data / "logs" / "inference.log").read_text(encoding="utf-8")
    finally:
        stack.stop()
