"""Start the companion: the supervisor, which starts and watches every worker, and the
control panel (a worker of its own) unless --headless or there is no display.

Ctrl-C, SIGTERM, and on Windows Ctrl-Break or closing the console, stop everything cleanly;
control it with the panel or `python -m supervisor`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from panel.availability import no_panel_reason
from protocol.bus import BusInfo, clean_stale_ipc_dirs, remove_stale_run_file, run_file
from protocol.messages import CHAT, GPU, PROFILES
from protocol.runfiles import StackLock
from supervisor.config import DEFAULT_CONFIG, ConfigError, check_profile, load_config
from supervisor.console import ConsoleGuard
from supervisor.core import Supervisor
from supervisor.logfiles import RotatingLog


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Start the desktop companion back end.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="config file; its folder holds logs/ and run/ (default: data/config.json)")
    p.add_argument("--profile", help="GPU profile to start with (overrides ai.gpu_profile)")
    p.add_argument("--model", type=Path, help="GGUF model file (overrides ai.model_path)")
    p.add_argument("--gpu-trace", type=Path,
                   help="replay this GPU history CSV instead of reading NVML (data/traces/)")
    p.add_argument("--gpu-sim", type=Path, metavar="SCENARIO",
                   help="run on a simulated NVIDIA card that reacts to the stack (a scenario "
                        "JSON in data/traces/) instead of NVML")
    p.add_argument("--headless", action="store_true",
                   help="no control panel (control it with python -m supervisor; attach a "
                        "panel later with python -m panel)")
    return p.parse_args(argv)


def setup_logging(data_dir: Path, cfg: dict) -> None:
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = RotatingLog(log_dir / "supervisor.log", cfg["logging"]["max_bytes"],
                               cfg["logging"]["backup_count"])
    console = logging.StreamHandler(sys.stderr)
    for h in (file_handler, console):
        h.setFormatter(fmt)
    root = logging.getLogger()
    root.setLevel(cfg["logging"]["level"])
    root.addHandler(file_handler)
    root.addHandler(console)


def _existing(path: Path, what: str, hint: str) -> str:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path} ({hint})")
    return str(path.resolve())


def worker_options(args: argparse.Namespace, cfg: dict) -> dict[str, dict]:
    """Start options from the command line, per role (the worker that provides the role gets
    them), checked before anything starts."""
    options: dict[str, dict] = {PROFILES: {}, CHAT: {}, GPU: {}}
    if args.profile:
        check_profile(args.profile, cfg)
        options[PROFILES]["profile"] = args.profile
    if args.model:
        options[CHAT]["model"] = _existing(args.model, "model file", "see models/README.md")
    if args.gpu_trace:
        options[GPU]["trace"] = _existing(args.gpu_trace, "GPU trace", "see data/traces/")
    if args.gpu_sim:
        from workers.gpu.simcard import ScenarioError, load_scenario

        sim = _existing(args.gpu_sim, "GPU scenario", "see data/traces/*.json")
        try:
            scenario = load_scenario(Path(sim))
        except ScenarioError as exc:
            raise ConfigError(str(exc)) from None
        options[GPU]["gpu_sim"] = options[PROFILES]["gpu_sim"] = sim
        if scenario.start_profile and not args.profile:
            check_profile(scenario.start_profile, cfg)
            options[PROFILES]["profile"] = scenario.start_profile
    return options


def clear_leftovers(run_dir: Path) -> None:
    """Remove what supervisors killed with -9 left: this data dir's run file, and socket folders
    (only where endpoints are files, i.e. not Linux) whose owner is provably gone."""
    stale = remove_stale_run_file(run_dir)
    if stale is not None:
        print(f"note: removed the stale run file {run_file(run_dir)} (supervisor pid "
              f"{stale.supervisor_pid} is no longer running)", file=sys.stderr)
    for folder in clean_stale_ipc_dirs():
        print(f"note: removed the socket folder of a dead supervisor: {folder}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config_path = args.config.resolve()
    try:
        cfg, warnings = load_config(config_path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    data_dir = config_path.parent
    # The stack's OS lock, held until this process ends: a pid in a run file proves nothing.
    try:
        lock = StackLock.acquire(data_dir / "run")
    except OSError as exc:
        print(f"error: cannot create the stack's lock file: {exc}; check that folder's "
              f"permissions", file=sys.stderr)
        return 2
    if lock is None:
        running = BusInfo.read(data_dir / "run")
        pid = f" (supervisor pid {running.supervisor_pid})" if running else ""
        print(f"error: a companion stack is already running for {data_dir}{pid}; stop it "
              f"with: python -m supervisor shutdown", file=sys.stderr)
        return 1
    clear_leftovers(data_dir / "run")
    try:
        options = worker_options(args, cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.headless:
        why = no_panel_reason()
        if why:
            print(f"note: {why}: running headless; attach a panel later with python -m panel "
                  f"--config {config_path}", file=sys.stderr)
        else:
            from supervisor.config import with_panel  # only a stack with a panel needs it

            cfg = with_panel(cfg)
    setup_logging(data_dir, cfg)
    # CUDA numbers devices as NVML does: the GPU monitor watches the card llama uses.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if args.gpu_sim:
        from workers.gpu.simcard import sim_folder, start

        start(sim_folder(data_dir))  # a fresh card: its clock starts with the stack
    sup = Supervisor(cfg, data_dir, options)
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: sup.request_shutdown())
    stopped = threading.Event()
    ConsoleGuard(sup.request_shutdown, stopped).install()  # console close: Windows only
    try:
        sup.run()
    finally:
        stopped.set()
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
