"""The control panel against a real stack (pytest-qt, offscreen): chat and Stop, sliders that
reach a Unity wire client and follow other clients, kills seen in the table, a profile switch
while a reply streams, another GGUF, and clear errors for bad input.

One stack and one panel are shared by the module; the tests run in file order.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402

from panel.app import attach_to_stack  # noqa: E402
from panel.window import PanelWindow  # noqa: E402
from supervisor.config import DEFAULT_MODEL  # noqa: E402
from supervisor.harness import RELOAD_PROFILE, Stack  # noqa: E402
from tests.conftest import base_config  # noqa: E402
from unity_bridge.avatar import PRESETS  # noqa: E402
from unity_bridge.client import BridgeClient  # noqa: E402

LONG = "Write a long story about a lighthouse keeper and a whale, with many details."


def make_panel(stack: Stack, settings_dir: Path, launched: bool = False) -> PanelWindow:
    return attach_to_stack(stack, settings_dir, launched=launched)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Short replies (48 tokens) keep the switch test's drain short; a busy 2-core box can
    # still take longer than the suite's 20 s drain for one, and a re-run is not a drain.
    s = Stack(tmp_path_factory.mktemp("panel"), base_config(supervisor={"drain_timeout_s": 90},
                                                            ai={"max_tokens": 48}))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def win(stack: Stack, qapp: Any, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[PanelWindow]:
    w = make_panel(stack, tmp_path_factory.mktemp("settings"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def avatar(stack: Stack) -> Iterator[BridgeClient]:
    port = stack.worker("unity_bridge")["ready_info"]["port"]
    with BridgeClient("127.0.0.1", port, name="unity-test") as c:
        c.connect()
        yield c


def ready(qtbot: Any, win: PanelWindow) -> None:
    qtbot.waitUntil(lambda: win.bus.up and win.avatar.link.greeted
                    and win.workers.state_of("inference") == "RUNNING", timeout=30_000)


def next_from(qtbot: Any, client: BridgeClient, type_: str, pred: Any,
              timeout: float = 10) -> Any:
    """The client's next message of a type, while the Qt loop keeps running."""
    found: list[Any] = []

    def check() -> bool:
        try:
            env = client.recv(0.005)
        except TimeoutError:
            return False
        if env.type == type_ and pred(env.data):
            found.append(env)
        return bool(found)
    qtbot.waitUntil(lambda: bool(found) or check(), timeout=int(timeout * 1000))
    return found[0]


def test_a_chat_typed_in_the_panel_streams_and_stop_cuts_it(qtbot: Any, win: PanelWindow
                                                            ) -> None:
    ready(qtbot, win)
    chat = win.chat
    pieces: list[int] = []
    original = chat._append_text
    chat._append_text = lambda text: (pieces.append(len(text)), original(text))  # type: ignore
    try:
        qtbot.keyClicks(chat.input, "Hello")
        qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
        assert chat.input.toPlainText() == "Hello\n" and chat.request_id is None  # a new line
        qtbot.keyClicks(chat.input, "there!")
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)  # Enter sends
        assert chat.request_id is not None and chat.stop_button.isEnabled()
        qtbot.waitUntil(lambda: chat.request_id is None, timeout=60_000)
        assert len(pieces) > 2, "the reply came in one piece, not streamed"
        assert "Reply done: emotion" in chat.figures.text()
        assert "first token" in chat.figures.text() and "tokens/s" in chat.figures.text()
        assert chat.reply_text and chat.reply_text in chat.transcript.toPlainText()
        # Stop: Esc in the input cancels between tokens
        pieces.clear()
        chat.input.setPlainText(LONG)
        chat.send()
        qtbot.waitUntil(lambda: len(pieces) >= 3, timeout=60_000)
        qtbot.keyClick(chat.input, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: chat.request_id is None, timeout=30_000)
        assert "Reply stopped" in chat.figures.text(), chat.figures.text()
        assert len(pieces) < 200
        assert chat.transcript.toPlainText().rstrip().endswith("[stopped]")
    finally:
        chat._append_text = original  # type: ignore[method-assign]
    # the conversation is in the memory: the picker lists it, and Clear forgets it
    chat.refresh_conversations()
    assert chat.conversation.findText("default") >= 0
    assert chat.memory.messages("default")
    chat.clear_conversation()
    assert chat.memory.messages("default") == [] and "cleared" in win.status_line.text()


def test_a_slider_reaches_a_tcp_client_and_follows_other_clients(
        qtbot: Any, win: PanelWindow, avatar: BridgeClient) -> None:
    ready(qtbot, win)
    # one slider per name of the one expression table, by its wire name
    assert set(PRESETS) <= set(win.avatar.sliders)
    win.avatar.sliders["blink_l"].slider.setValue(70)
    env = next_from(qtbot, avatar, "set_expression", lambda d: d["name"] == "blink_l")
    assert env.data["value"] == pytest.approx(0.7)
    # VRM 0.x's "A" or VRM 1.0's "aa" from another client: the same slider, no new one
    avatar.request("set_expression", {"name": "A", "value": 0.5})
    qtbot.waitUntil(lambda: win.avatar.sliders["aa"].slider.value() == 50, timeout=5000)
    assert not {"a", "A"} & set(win.avatar.sliders)
    # another client's change moves the panel's slider (the bridge's value, clamped)
    avatar.request("set_expression", {"name": "lookup", "value": 1.7})
    qtbot.waitUntil(lambda: win.avatar.sliders["lookup"].slider.value() == 100, timeout=5000)
    avatar.request("set_expression", {"name": "sparkle", "value": 0.25})  # a custom name
    qtbot.waitUntil(lambda: "sparkle" in win.avatar.sliders
                    and win.avatar.sliders["sparkle"].slider.value() == 25, timeout=5000)
    avatar.request("set_auto_blink", {"enabled": False})
    qtbot.waitUntil(lambda: not win.avatar.blink.isChecked(), timeout=5000)
    clients = [win.avatar.client_list.item(i).text()
               for i in range(win.avatar.client_list.count())]
    assert any(c.startswith("unity-test — since ") for c in clients), clients
    # Reset from the panel reaches the client
    win.call("reset_expressions", {}, "Reset expressions")
    next_from(qtbot, avatar, "reset_expressions", lambda d: True)
    qtbot.waitUntil(lambda: win.avatar.sliders["blink_l"].slider.value() == 0, timeout=5000)


def test_kill_from_the_panel_and_a_kill9_outside_it_show_in_the_table(
        qtbot: Any, win: PanelWindow, stack: Stack) -> None:
    ready(qtbot, win)
    wt = win.workers
    before = stack.worker("gpu_monitor")
    wt.table.selectRow(sorted(wt.workers).index("gpu_monitor"))
    qtbot.mouseClick(wt.findChild(type(win.chat.send_button), "worker_kill"),
                     Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "killed gpu_monitor" in win.status_line.text(), timeout=5000)
    qtbot.waitUntil(lambda: wt.workers["gpu_monitor"].get("restarts") == before["restarts"] + 1
                    and wt.workers["gpu_monitor"]["state"] == "RUNNING"
                    and wt.workers["gpu_monitor"]["pid"] != before["pid"], timeout=20_000)
    row = sorted(wt.workers).index("gpu_monitor")
    assert wt.table.item(row, 7).text() == str(before["restarts"] + 1)
    assert "SIGKILL" in wt.table.item(row, 8).text()
    # a kill -9 made outside the panel: seen from the worker_state event, before any stats
    pid = wt.workers["gpu_monitor"]["pid"]
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: wt.workers["gpu_monitor"].get("pid") != pid
                    or wt.workers["gpu_monitor"]["state"] != "RUNNING", timeout=10_000)
    seen_s = time.monotonic() - t0
    assert seen_s < 10  # the figure itself is bench/gui.py's (one stats interval + 50 ms)
    qtbot.waitUntil(lambda: wt.workers["gpu_monitor"]["state"] == "RUNNING", timeout=20_000)


def test_profile_switch_while_a_reply_streams_drains_and_the_avatar_keeps_working(
        qtbot: Any, win: PanelWindow, stack: Stack, avatar: BridgeClient) -> None:
    ready(qtbot, win)
    chat, gpu = win.chat, win.gpu
    bridge_pid = stack.worker("unity_bridge")["pid"]
    stages: list[str] = []
    bars: list[str] = []
    order: list[str] = []
    win.bus.on("progress", lambda d: stages.append(d["stage"]))
    win.bus.on("profile_status", lambda d: order.append(f"switch {d['state']}"))
    win.bus.on("chat_ended", lambda d: order.append("reply ended"))
    win.load_bar.valueChanged.connect(lambda _v: bars.append(win.load_bar.format()))
    chat.input.setPlainText(LONG)
    chat.send()
    qtbot.waitUntil(lambda: len(chat.reply_text) > 10, timeout=60_000)
    gpu.profiles.setCurrentText(RELOAD_PROFILE)
    gpu.switch(emergency=False)
    qtbot.waitUntil(lambda: "switching inference" in win.status_line.text()
                    or "Switching to profile" in win.status_line.text(), timeout=5000)
    # while the reply drains and the model reloads, the avatar controls still work
    # not an emotion preset: the reply's end sets those
    win.avatar.sliders["lookleft"].slider.setValue(40)
    env = next_from(qtbot, avatar, "set_expression", lambda d: d["name"] == "lookleft")
    assert env.data["value"] == pytest.approx(0.4)
    qtbot.waitUntil(lambda: chat.request_id is None, timeout=90_000)
    assert "Reply done" in chat.figures.text(), chat.figures.text()  # drained, not cut
    # the switch began while the reply streamed, and waited for it
    qtbot.waitUntil(lambda: "switch ready" in order, timeout=90_000)
    assert order.index("switch switching") < order.index("reply ended") < order.index(
        "switch ready"), order
    assert not chat.notice.isVisible(), chat.notice.text()  # a normal switch drains
    qtbot.waitUntil(lambda: f"Profile in effect: {RELOAD_PROFILE}" in gpu.in_effect.text(),
                    timeout=90_000)
    assert stack.worker("unity_bridge")["pid"] == bridge_pid  # only inference restarted
    # the load's progress (llama.cpp's callback, through the supervisor) drove the bar
    assert "loading weights" in stages, stages
    assert any(b.startswith("model: loading weights") for b in bars), bars
    assert not win.load_bar.isVisible()  # hidden again once the model runs


def test_an_emergency_switch_shows_that_the_reply_is_run_again(
        qtbot: Any, win: PanelWindow, stack: Stack) -> None:
    ready(qtbot, win)
    chat, gpu = win.chat, win.gpu
    chat.input.setPlainText(LONG)
    chat.send()
    qtbot.waitUntil(lambda: len(chat.reply_text) > 10, timeout=60_000)
    gpu.profiles.setCurrentText("cpu_fallback")
    gpu.switch(emergency=True)
    qtbot.waitUntil(lambda: chat.notice.isVisible(), timeout=30_000)
    assert "run again (attempt 2)" in chat.notice.text(), chat.notice.text()
    qtbot.waitUntil(lambda: chat.request_id is None, timeout=120_000)
    assert "Reply done" in chat.figures.text(), chat.figures.text()
    assert chat.transcript.toPlainText().rstrip().endswith(chat.reply_text.rstrip())


def test_bad_input_gives_a_clear_message_and_stops_nothing(
        qtbot: Any, win: PanelWindow, stack: Stack, tmp_path: Path) -> None:
    ready(qtbot, win)
    inference_pid = stack.worker("inference")["pid"]
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model")
    win.gpu.refresh_models(bogus)
    win.gpu.load_model()
    assert "not a usable GGUF" in win.status_line.text() and "nothing was stopped" in \
        win.status_line.text()
    # the supervisor checks it too, for any client
    win.call("switch_model", {"path": str(bogus)}, "Load notes.gguf")
    qtbot.waitUntil(lambda: "error 300 INVALID_REQUEST" in win.status_line.text(),
                    timeout=5000)
    assert "not a usable GGUF" in win.status_line.text()
    # a value out of order, and a wrong type
    win.avatar.head_min.setValue(9)
    win.avatar.head_max.setValue(3)
    win.avatar.apply_head()
    assert "minimum interval (9 s) is above the maximum (3 s)" in win.status_line.text()
    win.call("set_expression", {"name": "joy", "value": "high"}, "Expression")
    qtbot.waitUntil(lambda: "error 103 INVALID_FIELD" in win.status_line.text(), timeout=5000)
    # a worker that is gone
    win.call("stop", {"worker": "gpu_monitor"}, "Stop gpu_monitor")
    qtbot.waitUntil(lambda: win.workers.state_of("gpu_monitor") == "EXITED", timeout=20_000)
    win.call("set_auto_switching", {"enabled": True}, "Automatic switching on")
    qtbot.waitUntil(lambda: "error 201 WORKER_UNAVAILABLE" in win.status_line.text(),
                    timeout=5000)
    win.call("kill", {"worker": "gpu_monitor"}, "Kill gpu_monitor")
    qtbot.waitUntil(lambda: "Kill gpu_monitor: error 201" in win.status_line.text(),
                    timeout=5000)
    win.call("restart", {"worker": "gpu_monitor"}, "Start gpu_monitor")
    qtbot.waitUntil(lambda: win.workers.state_of("gpu_monitor") == "RUNNING", timeout=20_000)
    # no GPU here: the monitor refuses auto-switching with its reason
    win.gpu.set_auto(True)
    qtbot.waitUntil(lambda: "no GPU readings" in win.status_line.text()
                    or "auto-switching on" in win.status_line.text(), timeout=5000)
    assert stack.worker("inference")["pid"] == inference_pid
    assert win.isVisible()


def test_load_another_gguf_restarts_only_inference(qtbot: Any, win: PanelWindow, stack: Stack,
                                                   tmp_path: Path) -> None:
    ready(qtbot, win)
    other = tmp_path / "other-copy.gguf"
    shutil.copyfile(DEFAULT_MODEL, other)
    bridge_pid = stack.worker("unity_bridge")["pid"]
    win.gpu.refresh_models(other)
    win.gpu.load_model()
    qtbot.waitUntil(lambda: "loading other-copy.gguf" in win.status_line.text()
                    or "Profile" in win.status_line.text(), timeout=10_000)
    qtbot.waitUntil(lambda: "other-copy.gguf" in win.gpu.model_now.text(), timeout=90_000)
    assert stack.worker("inference")["ready_info"]["model"] == "other-copy.gguf"
    assert stack.worker("unity_bridge")["pid"] == bridge_pid
    # "set as default" is a separate action: it writes the config, loads nothing
    pid = stack.worker("inference")["pid"]
    win.gpu.refresh_models(DEFAULT_MODEL)
    win.gpu.set_default()
    assert "default model from the next start" in win.status_line.text()
    assert str(DEFAULT_MODEL) in stack.config_path.read_text()
    assert stack.worker("inference")["pid"] == pid


def test_size_position_and_tab_are_remembered(qtbot: Any, stack: Stack, tmp_path: Path) -> None:
    first = make_panel(stack, tmp_path)
    first.resize(700, 500)  # within the offscreen screen (800 x 600): restoring keeps it on screen
    first.tabs.setCurrentIndex(2)
    size = (first.width(), first.height())  # the layout's minimum may have grown it
    assert size != (1100, 720)
    first.close()
    again = make_panel(stack, tmp_path)
    try:
        assert again.tabs.currentIndex() == 2
        assert (again.width(), again.height()) == size
    finally:
        again.close()


def test_without_a_gpu_the_gpu_tab_says_why(qtbot: Any, win: PanelWindow) -> None:
    from workers.gpu.sources import NvmlSource

    if NvmlSource().available:
        pytest.skip("this machine has an NVIDIA driver: the tab plots real readings")
    ready(qtbot, win)
    gpu = win.gpu
    # the monitor said it once, before this panel attached: the status' ready_info tells
    qtbot.waitUntil(lambda: gpu.stack.currentWidget() is gpu.no_gpu
                    and "No GPU plot: NVML unavailable" in gpu.no_gpu.text(), timeout=10_000)
    assert not gpu.auto.isEnabled()
