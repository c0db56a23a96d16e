"""launch.py and the panel worker: opened by default, headless with one line when there is no
display, a kill -9 of the panel leaves the stack running (the panel comes back, and a new one
shows the same state), and quitting the launched panel stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from panel.app import attach_to_stack  # noqa: E402
from panel.availability import debian_package, no_panel_reason  # noqa: E402
from panel.avatar_link import CLIENT_NAME  # noqa: E402
from protocol.bus import BusInfo  # noqa: E402
from supervisor.harness import ROOT, Stack, pid_gone, wait_for  # noqa: E402
from tests.conftest import base_config  # noqa: E402

WORKERS = ("inference", "gpu_monitor", "unity_bridge")
TRACE = ROOT / "data" / "traces" / "companion_alone.csv"


def launch(stack: Stack, env: dict[str, str], *args: str) -> Stack:
    """What Stack.start does, without --headless: launch.py as a user runs it."""
    stack.proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "--config", str(stack.config_path), *args],
        cwd=ROOT,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stack._drain = threading.Thread(target=stack._read_console, args=(stack.proc,),
                                    daemon=True)
    stack._drain.start()
    wait_for(lambda: BusInfo.load(stack.data_dir / "run") or stack.proc.poll() is not None,
             30, "the supervisor's run file")
    assert stack.proc.poll() is None, stack.output()
    for name in WORKERS:
        stack.wait_state(name, "RUNNING", 60)
    return stack


def family(pid: int) -> list[int]:
    parent = psutil.Process(pid)
    return [pid, *(p.pid for p in parent.children(recursive=True))]


def test_pyside_keeps_none_alive() -> None:
    """PySide6 6.12.0 on Python 3.11 drops a reference to None per void call (pyproject pins
    below it there): the panel would abort with none_dealloc after a few thousand calls."""
    from PySide6.QtCore import QObject

    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(2000):
        obj.setObjectName("x")
    assert sys.getrefcount(None) - before > -100


def test_the_supervisor_core_and_launch_import_no_qt() -> None:
    from tests.test_layering import CORE, imported_after

    loaded = imported_after(*CORE, "launch")
    assert not {m for m in loaded if m.startswith(("PySide6", "pyqtgraph"))}
    # of the panel, only the check whether it can open (Qt-free)
    assert {m for m in loaded if m.startswith("panel")} <= {"panel", "panel.availability"}


def test_the_panel_imports_neither_the_supervisor_core_nor_llama() -> None:
    from tests.test_layering import CORE, imported_after

    loaded = imported_after("panel.app", "panel.worker")
    assert "panel.window" in loaded
    assert not loaded & set(CORE), sorted(loaded & set(CORE))
    assert not {m for m in loaded if m.startswith(("llama_cpp", "workers.inference"))}


def test_no_panel_reason() -> None:
    def starts(env: Mapping[str, str]) -> str:
        return ""

    def aborts(env: Mapping[str, str]) -> str:
        return "Qt's GUI platform did not start (qt.qpa.xcb: could not connect to display)"

    assert no_panel_reason({"QT_QPA_PLATFORM": "offscreen"}, "linux", starts) == ""
    assert no_panel_reason({}, "win32", aborts) == no_panel_reason({}, "darwin", aborts) == ""
    assert "no display" in no_panel_reason({}, "linux", starts)
    assert no_panel_reason({"DISPLAY": ":0"}, "linux", starts) == ""
    assert no_panel_reason({"WAYLAND_DISPLAY": "wayland-0"}, "linux", starts) == ""
    assert "could not connect" in no_panel_reason({"DISPLAY": ":0"}, "linux", aborts)
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux's")
def test_a_display_that_qt_cannot_use_is_found_before_qt_aborts() -> None:
    """A DISPLAY naming no X server: QApplication would abort the process (qFatal); the probe
    says why in a throwaway process instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    why = no_panel_reason({**env, "DISPLAY": ":97531"}, "linux")
    assert why.startswith("Qt's"), why
    assert no_panel_reason({**env, "QT_QPA_PLATFORM": "offscreen"}, "linux") == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a display is Linux's "
                    "question: Windows and macOS always have one")
def test_no_display_runs_headless_with_one_line(tmp_path: Path) -> None:
    stack = Stack(tmp_path, base_config())
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    try:
        launch(stack, env)
        assert "panel" not in stack.status()["workers"]
    finally:
        stack.stop()
    lines = [ln for ln in stack.output().splitlines() if "no display" in ln]
    assert len(lines) == 1, stack.output()[-3000:]
    assert lines[0].startswith("note: no display") and "running headless" in lines[0]
    assert "python -m panel" in lines[0]


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # a replayed GPU trace: the GPU tab has readings to plot here
    stack = Stack(tmp_path_factory.mktemp("launched"),
                  base_config(gpu_monitoring={"interval_s": 0.5}))
    launch(stack, {**os.environ, "QT_QPA_PLATFORM": "offscreen"}, "--gpu-trace", str(TRACE))
    yield stack
    stack.stop()


def attach(stack: Stack, tmp: Path, launched: bool = False) -> Any:
    return attach_to_stack(stack, tmp, launched=launched)


def test_kill9_of_the_panel_leaves_the_stack_and_a_new_panel_shows_the_same_state(
        launched: Stack, qtbot: Any, tmp_path: Path) -> None:
    stack = launched
    panel = stack.wait_state("panel", "RUNNING", 60)
    assert "panel.worker" in " ".join(psutil.Process(panel["pid"]).cmdline())
    assert panel["restart"] == "transient"
    # state made before the kill: a conversation, an expression
    c = stack.client
    c.request("chat", {"text": "Remember the word lighthouse.", "conversation": "before-kill",
                       "max_tokens": 8}, timeout=60)
    # not an emotion preset: the reply's emotion event may reach the bridge after this
    c.request("set_expression", {"name": "blink", "value": 0.6})
    others = {n: stack.worker(n)["pid"] for n in WORKERS}
    os.kill(panel["pid"], signal.SIGKILL)
    back = stack.wait_state("panel", "RUNNING", 60, lambda w: w["pid"] != panel["pid"])
    assert back["restarts"] == 1 and "SIGKILL" in back["last_exit"]
    assert {n: stack.worker(n)["pid"] for n in WORKERS} == others  # nothing else restarted
    assert stack.proc is not None and stack.proc.poll() is None
    win = attach(stack, tmp_path)
    try:
        qtbot.waitUntil(lambda: win.avatar.link.greeted
                        and win.workers.state_of("panel") == "RUNNING", timeout=30_000)
        qtbot.waitUntil(lambda: win.avatar.sliders["blink"].slider.value() == 60, timeout=5000)
        assert win.chat.conversation.findText("before-kill") >= 0
        win.chat.conversation.setCurrentText("before-kill")
        win.chat.show_history()
        assert "Remember the word lighthouse." in win.chat.transcript.toPlainText()
        # the launched panel, a client of the bridge since before this one opened, is listed
        qtbot.waitUntil(lambda: [name for session, (name, _) in win.avatar.clients.items()
                                 if session != win.avatar.link.session] == [CLIENT_NAME],
                        timeout=5000)
        row = sorted(win.workers.workers).index("panel")
        qtbot.waitUntil(lambda: win.workers.table.item(row, 7).text() == "1", timeout=5000)
        # closing an attached panel closes only that window
        win.close()
        assert stack.worker("panel")["pid"] == back["pid"]
        assert all(stack.worker(n)["state"] == "RUNNING" for n in WORKERS)
    finally:
        win.close()


def test_the_gpu_tab_plots_readings_and_auto_switching_turns_off_and_on(
        launched: Stack, qtbot: Any, tmp_path: Path) -> None:
    win = attach(launched, tmp_path)
    gpu = win.gpu
    win.tabs.setCurrentWidget(gpu)
    try:
        qtbot.waitUntil(lambda: len(gpu.samples) >= 3, timeout=30_000)
        assert gpu.stack.currentWidget() is gpu.plot
        qtbot.waitUntil(lambda: gpu.vram_curve.getData()[0] is not None
                        and len(gpu.vram_curve.getData()[0]) >= 3, timeout=5000)
        # The decision rule's lines sit where the monitor says a profile stops fitting, on
        # the curve of others' VRAM that the monitor reports.
        pressure = gpu.last_pressure
        for key, line in gpu.fit_lines.items():
            assert line.isVisible() and line.value() == pytest.approx(pressure[key])
        assert gpu.samples[-1][4] == pytest.approx(pressure["others_percent"])
        qtbot.waitUntil(lambda: gpu.auto.isChecked(), timeout=10_000)
        # off, by a click on the box (a check box takes clicks on its box and text only)
        qtbot.mouseClick(gpu.auto, Qt.MouseButton.LeftButton, pos=QPoint(8, gpu.auto.height() // 2))
        qtbot.waitUntil(lambda: "auto-switching off until the next start"
                        in win.status_line.text(), timeout=10_000)
        n = len(gpu.samples)
        qtbot.waitUntil(lambda: len(gpu.samples) > n + 1 and not gpu.auto.isChecked(),
                        timeout=10_000)  # readings say it is off, not the panel's guess
        gpu.set_auto(True)
        qtbot.waitUntil(lambda: gpu.auto.isChecked(), timeout=10_000)
    finally:
        win.close()


def test_quitting_the_launched_panel_stops_the_stack_and_leaves_no_process(
        launched: Stack, qtbot: Any, tmp_path: Path) -> None:
    stack = launched
    assert stack.proc is not None
    stack.wait_state("panel", "RUNNING", 60)
    pids = family(stack.proc.pid)
    assert len(pids) >= 5, pids  # supervisor, 3 workers, the panel (and warm spares)
    win = attach(stack, tmp_path, launched=True)  # the window the panel worker shows
    qtbot.waitUntil(lambda: win.bus.up, timeout=10_000)
    win.quit()
    assert not win.isVisible()
    qtbot.waitUntil(lambda: stack.proc.poll() is not None, timeout=60_000)
    assert stack.proc.returncode == 0, stack.output()[-3000:]
    wait_for(lambda: all(pid_gone(p) for p in pids), 10, "every process of the stack to end")
    out = stack.output()
    assert "panel" in out and "shutting down" in out


def test_the_doctor_summary_asks_build_support_and_device_apart() -> None:
    """The GPU tab shows the real doctor's report (a CPU-only build here, no card; a CUDA
    machine gets the other lines): build support and a visible device are separate answers."""
    from panel.gpu_tab import doctor_summary
    from workers.gpu.planner import REBUILD_HINT

    out = subprocess.run([sys.executable, "-m", "workers.inference.doctor", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout)
    lines = doctor_summary(report).splitlines()
    build, device = report["llama_cpp"]["build_gpu_support"], report["gpu"]["visible"]
    assert lines[0].startswith("Build GPU support: " + ("yes (" if build else "no, a CPU-only"))
    assert lines[1].startswith("GPU device: " + ("visible, " if device else "none visible ("))
    assert any(f"rebuild: {REBUILD_HINT}" in line for line in lines) is not build
    hidden = {**report, "gpu": {"nvml": True, "visible": False}}
    assert "CUDA_VISIBLE_DEVICES is empty" in doctor_summary(hidden)

