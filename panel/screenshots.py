"""`python -m panel.screenshots`: a PNG of each tab, rendered from a live stack, in docs/.

It starts a real stack that replays a GPU trace (so the plot has data and profile switches),
connects a Unity wire client, chats through the panel, then grabs each tab
(`QWidget.grab()`); a second stack without the trace shows the GPU tab with no GPU.
QT_QPA_PLATFORM=offscreen is set unless the caller chose a platform.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.harness import RELOAD_PROFILE, ROOT, Stack

OUT = ROOT / "docs" / "screenshots"
TRACE = ROOT / "data" / "traces" / "game_started.csv"
FAST = {"heartbeat_interval_s": 0.5, "stats_interval_s": 1.0, "backoff_initial_s": 0.1,
        "drain_timeout_s": 20.0}


def stack_config(**sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"version": 1, "supervisor": dict(FAST), "unity_bridge": {"port": 0},
                           "logging": {"level": "INFO"}}
    cfg.update(sections)
    return cfg


def spin(seconds: float, until: Callable[[], Any] | None = None) -> bool:
    """Run the Qt event loop for up to `seconds` (until `until()` is true)."""
    from PySide6.QtCore import QCoreApplication, QEventLoop

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        if until is not None and until():
            return True
        time.sleep(0.01)
    return False


def attach(stack: Stack, settings_dir: Path) -> Any:
    from panel.app import attach_to_stack

    win = attach_to_stack(stack, settings_dir)
    win.resize(1180, 760)
    return win


def grab(win: Any, index: int, path: Path) -> None:
    win.tabs.setCurrentIndex(index)
    spin(0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(path))
    print(f"wrote {path}")


def live_shots(tmp: Path, out: Path) -> None:
    from unity_bridge.client import BridgeClient

    gm = {"interval_s": 0.5, "min_switch_interval_s": 5.0,
          "state_profiles": {"OVERLOADED": RELOAD_PROFILE}}
    (tmp / "live").mkdir()
    stack = Stack(tmp / "live", stack_config(gpu_monitoring=gm, ai={"gpu_profile": "auto"}))
    stack.start("--gpu-trace", str(TRACE))
    avatar = None
    try:
        win = attach(stack, tmp)
        port = stack.worker("unity_bridge")["ready_info"]["port"]
        spin(20, lambda: win.avatar.link.greeted)
        avatar = BridgeClient("127.0.0.1", port, name="unity-avatar")
        avatar.connect()
        avatar.send("model_loaded", {"path": "C:/Avatars/Alicia.vrm"})
        for name, value in (("fun", 0.35), ("blink", 0.2), ("sparkle_eyes", 0.7)):
            avatar.request("set_expression", {"name": name, "value": value})
        avatar.request("load_model", {"path": "C:/Avatars/Alicia.vrm"})
        chat = win.chat
        chat.input.setPlainText("Hello! Who are you?")
        chat.send()
        spin(120, lambda: chat.request_id is None)
        chat.input.setPlainText("Tell me something nice about autumn.")
        chat.send()
        spin(120, lambda: chat.request_id is None)
        # the trace's overload comes ~6 s in and its recovery ~14 s later
        spin(40, lambda: len(win.gpu.markers) >= 4)
        spin(4)
        win.tabs.setCurrentIndex(3)  # the doctor runs when the tab is first shown
        spin(60, lambda: win.gpu._doctor_ran and win.gpu._doctor_proc is None)
        wt = win.workers
        wt.table.selectRow(sorted(wt.workers).index("inference"))
        spin(2.5)
        for i, name in enumerate(("chat", "avatar", "workers", "gpu")):
            grab(win, i, out / f"{name}.png")
        win.close()
    finally:
        if avatar is not None:
            avatar.close()
        stack.stop()


def no_gpu_shot(tmp: Path, out: Path) -> None:
    (tmp / "cpu").mkdir()
    stack = Stack(tmp / "cpu", stack_config())
    stack.start()
    try:
        win = attach(stack, tmp)
        spin(30, lambda: win.gpu.stack.currentWidget() is win.gpu.no_gpu
             and "No GPU" in win.gpu.no_gpu.text())
        win.tabs.setCurrentIndex(3)  # the doctor runs when the tab is first shown
        spin(60, lambda: win.gpu._doctor_ran and win.gpu._doctor_proc is None)
        grab(win, 3, out / "gpu_no_gpu.png")
        win.close()
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panel.screenshots", description=__doc__)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="panel-shots-") as d:
        live_shots(Path(d), args.out)
        no_gpu_shot(Path(d), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
