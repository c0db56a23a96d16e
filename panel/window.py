"""The main window: four tabs, a status line where every request shows that it is pending
and then its result or numbered error, the model-load progress and the queue, QSettings for
size/position/tab, and a tray icon where the desktop has one.

Quitting the panel that launch.py opened stops the whole stack (the supervisor then stops
this worker too); closing an attached panel only closes the window.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QIcon
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QStyle,
    QSystemTrayIcon,
    QTabWidget,
)

from panel.avatar_tab import AvatarTab
from panel.chat_tab import ChatTab
from panel.gpu_tab import GpuTab
from panel.memory_view import MemoryView, memory_path
from panel.qtbus import QtBus
from panel.workers_tab import WorkersTab
from protocol.codec import Envelope
from protocol.messages import AVATAR, CHAT, GPU, ErrorCode, with_role
from supervisor.config import ConfigError, write_model_default

SHUTDOWN_WAIT_MS = 15_000  # a launched panel that asked for shutdown leaves after this anyway


class PanelWindow(QMainWindow):
    def __init__(self, bus: QtBus, config: dict[str, Any], data_dir: Path, *,
                 config_path: Path | None = None, launched: bool = False,
                 settings: QSettings | None = None) -> None:
        super().__init__()
        self.bus = bus
        self.config = config
        self.data_dir = data_dir
        self.config_path = config_path
        self.launched = launched
        self.settings = settings or QSettings("ai-companion", "control-panel")
        self.quitting = False
        self.last_status: dict[str, Any] = {}
        self.setWindowTitle("AI Companion — control panel" + ("" if launched else " (attached)"))

        self.tabs = QTabWidget()
        self.chat = ChatTab(self, MemoryView(memory_path(config, data_dir)))
        self.avatar = AvatarTab(self)
        self.workers = WorkersTab(self)
        self.gpu = GpuTab(self)
        self.tabs.addTab(self.chat, "Chat")
        self.tabs.addTab(self.avatar, "Avatar")
        self.tabs.addTab(self.workers, "Workers")
        self.tabs.addTab(self.gpu, "GPU and profiles")
        self.setCentralWidget(self.tabs)

        self.status_line = QLabel("Starting…")
        self.status_line.setObjectName("status_line")
        self.status_line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.queue_label = QLabel("")
        self.load_bar = QProgressBar()
        self.load_bar.setMinimumWidth(230)
        self.load_bar.setRange(0, 100)
        self.load_bar.hide()
        self.conn_label = QLabel("stack: connecting…")
        sb = self.statusBar()
        sb.addWidget(self.status_line, 1)
        sb.addPermanentWidget(self.load_bar)
        sb.addPermanentWidget(self.queue_label)
        sb.addPermanentWidget(self.conn_label)

        menu = self.menuBar().addMenu("&Companion")
        stop_all = QAction("Shut down the companion", self)
        stop_all.triggered.connect(self.shutdown_stack)
        menu.addAction(stop_all)
        quit_action = QAction("&Quit" if launched else "&Close this panel", self)
        quit_action.setShortcut("Ctrl+Q")
        quit_action.triggered.connect(self.quit)
        menu.addAction(quit_action)
        self.tray = self._make_tray() if launched else None

        bus.connection.connect(self._on_connection)
        bus.on("worker_stats", self._on_stats)
        bus.on("worker_state", self._on_worker_state)
        bus.on("progress", self._on_progress)
        bus.on("profile_status", self._on_profile_status)
        self._restore()

    # -- the status line -----------------------------------------------------------------------
    def say(self, text: str, error: bool = False) -> None:
        self.status_line.setStyleSheet("color:#c62828;" if error else "")
        self.status_line.setText(text)

    def show_error(self, what: str, env: Envelope) -> None:
        code = env.data.get("code")
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = "ERROR"
        self.say(f"{what}: error {code} {name}: {env.data.get('message', '')}", error=True)

    def call(self, type_: str, data: dict[str, Any], what: str, *, quiet: bool = False,
             timeout_s: float = 15.0, on_done: Any = None) -> int:
        """Send a request; the status line says it is pending, then how it ended."""
        if not quiet:
            self.say(f"{what}… (pending)")

        def done(env: Envelope) -> None:
            if env.type == "error":
                self.show_error(what, env)
            elif not quiet:
                self.say(f"{what}: {env.data.get('detail') or env.type}")
            if on_done is not None:
                on_done(env)
        return self.bus.request(type_, data, done, timeout_s=timeout_s)

    # -- the stack's state ---------------------------------------------------------------------
    def _on_connection(self, up: bool, why: str) -> None:
        self.conn_label.setText("stack: " + ("connected" if up else "not running"))
        self.say(why, error=not up)
        if up:
            self.refresh_status()

    def refresh_status(self) -> None:
        self.bus.request("status", {}, self._on_status, timeout_s=10)

    def _on_status(self, env: Envelope) -> None:
        if env.type == "status_reply":
            self.last_status = env.data
            self._on_stats({"workers": env.data["workers"]})

    def _on_stats(self, data: dict[str, Any]) -> None:
        workers = data["workers"]
        self.workers.update_workers(workers)
        chat = with_role(workers, CHAT)
        waiting = int(chat.get("queued") or 0)
        self.queue_label.setText(f"queue: {waiting} waiting" if waiting else "queue: empty")
        self.gpu.show_status(chat)
        bridge = with_role(workers, AVATAR)
        port = (bridge.get("ready_info") or {}).get("port")
        if bridge.get("state") == "RUNNING" and port:
            cfg = self.config["unity_bridge"]
            self.avatar.bridge_at((bridge["ready_info"].get("host") or cfg["host"]), int(port),
                                  cfg["token"])
        if chat.get("state") == "RUNNING":
            self.load_bar.hide()
        gpu = (with_role(workers, GPU).get("ready_info") or {})
        if gpu.get("gpu") is False and not self.gpu.samples:  # said once, at its start
            self.gpu.show_no_gpu(str(gpu.get("reason") or "no GPU reading"))

    def _on_worker_state(self, data: dict[str, Any]) -> None:
        if data["state"] == "RUNNING":
            self.refresh_status()  # ready_info (model, profile, bridge port) comes with it
        if CHAT in data.get("roles", ()) and data["state"] == "STARTING":
            self.load_bar.setValue(0)
            self.load_bar.setFormat("model: starting")
            self.load_bar.show()

    def _on_progress(self, data: dict[str, Any]) -> None:
        fraction = data.get("fraction")
        self.load_bar.show()
        self.load_bar.setValue(int(100 * float(fraction)) if fraction is not None else 0)
        self.load_bar.setFormat(f"model: {data['stage']}"
                                + (" %p%" if fraction is not None else ""))

    def _on_profile_status(self, data: dict[str, Any]) -> None:
        if data["state"] == "switching":
            self.say(f"Switching to profile {data['profile']}: {data.get('reason', '')}")
        else:
            self.say(f"Profile {data['profile']} ready: {data.get('reason', '')}")

    # -- actions -------------------------------------------------------------------------------
    def set_default_model(self, path: Path) -> None:
        if self.config_path is None:
            self.say("Set as default: this panel does not know the config file", error=True)
            return
        try:
            write_model_default(self.config_path, str(path))
        except (OSError, ValueError, ConfigError) as exc:
            self.say(f"Set as default: could not write {self.config_path}: {exc}", error=True)
            return
        self.say(f"{path.name} is the default model from the next start "
                 f"(ai.model_path in {self.config_path}); load it now with "
                 f"'Load for this session'")

    def shutdown_stack(self) -> None:
        self.call("shutdown", {}, "Shut down the companion")

    def quit(self) -> None:
        """Launched: stop the whole stack (it stops this worker too). Attached: close."""
        self.quitting = True
        self.save_settings()
        if not self.launched:
            self.close()
            return
        self.hide()
        if self.tray is not None:
            self.tray.hide()
        self.call("shutdown", {}, "Quit: shutting the companion down",
                  on_done=lambda env: None if env.type == "ok" else QApplication.quit())
        QTimer.singleShot(SHUTDOWN_WAIT_MS, QApplication.quit)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.save_settings()
        if self.quitting or not self.launched:
            self.avatar.link.close()
            self.bus.close()
            self.gpu.stop_doctor()
            event.accept()
            return
        if self.tray is not None and self.tray.isVisible():
            event.ignore()  # to the tray; its menu's Quit stops the stack
            self.hide()
            return
        event.ignore()
        self.quit()

    # -- settings and tray ---------------------------------------------------------------------
    def _restore(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 720)
        tab = self.settings.value("tab", 0)
        with contextlib.suppress(TypeError, ValueError):
            self.tabs.setCurrentIndex(int(tab))

    def save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("tab", self.tabs.currentIndex())
        self.settings.sync()

    def _make_tray(self) -> QSystemTrayIcon | None:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return None
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon)
        tray = QSystemTrayIcon(QIcon(icon), self)
        menu = QMenu(self)
        menu.addAction("Show", self.showNormal)
        menu.addAction("Hide", self.hide)
        menu.addSeparator()
        menu.addAction("Quit", self.quit)
        tray.setContextMenu(menu)
        tray.setToolTip("AI Companion")
        tray.show()
        return tray
