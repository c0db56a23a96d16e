"""Avatar: the Unity clients, the avatar's state, a VRM to load, one slider per expression,
and the animation settings, every control showing what the bridge keeps (AvatarLink)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from panel.avatar_link import CLIENT_NAME, AvatarLink
from protocol.messages import EMOTIONS, EXPRESSIONS

if TYPE_CHECKING:
    from panel.window import PanelWindow

# The wire names of the one expression table, emotions first (the bridge's PRESETS).
PRESET_ORDER = (*EMOTIONS, *(e.wire for e in EXPRESSIONS if e.wire not in EMOTIONS))
SEND_MS = 40  # a dragged slider sends at most this often


class ExpressionSlider(QWidget):
    def __init__(self, name: str, tab: AvatarTab) -> None:
        super().__init__()
        self.name = name
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setObjectName(f"expr_{name}")
        self.value = QLabel("0.00")
        self.value.setFixedWidth(34)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        label = QLabel(name)
        label.setFixedWidth(96)
        label.setToolTip(name)
        lay.addWidget(label)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.value)
        self.slider.valueChanged.connect(lambda v: tab.slider_moved(name, v / 100))

    def show_value(self, value: float) -> None:
        """The bridge's value (blocked: showing it is not a new command)."""
        if self.slider.isSliderDown():
            return  # the user is dragging: the next command will say where
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * 100))
        self.slider.blockSignals(False)
        self.value.setText(f"{value:.2f}")


class AvatarTab(QWidget):
    def __init__(self, win: PanelWindow) -> None:
        super().__init__()
        self.win = win
        self.link = AvatarLink(self)
        self.link.welcomed.connect(self._on_welcome)
        self.link.received.connect(self._on_message)
        self.link.link.connect(self._on_link)
        self.clients: dict[int, tuple[str, float]] = {}  # session -> (name, since)
        self.sliders: dict[str, ExpressionSlider] = {}
        self._outgoing: dict[str, float] = {}
        self._send_timer = QTimer(self)
        self._send_timer.setSingleShot(True)
        self._send_timer.timeout.connect(self._flush_expressions)

        self.link_label = QLabel("Bridge: waiting for the stack…")
        self.state_label = QLabel("Avatar: —")
        self.state_label.setObjectName("avatar_state")
        self.client_list = QListWidget()
        self.client_list.setMaximumHeight(90)
        self.model_label = QLabel("VRM: none loaded")
        self.model_label.setWordWrap(True)
        load = QPushButton("Load VRM…")
        load.clicked.connect(self.pick_vrm)
        status_box = QGroupBox("Unity clients and avatar")
        sl = QVBoxLayout(status_box)
        sl.addWidget(self.link_label)
        sl.addWidget(self.state_label)
        sl.addWidget(QLabel("Connected clients:"))
        sl.addWidget(self.client_list)
        row = QHBoxLayout()
        row.addWidget(self.model_label, 1)
        row.addWidget(load)
        sl.addLayout(row)

        self.grid = QGridLayout()
        grid_host = QWidget()
        grid_host.setLayout(self.grid)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(grid_host)
        for name in PRESET_ORDER:
            self._slider(name)
        self.custom = QLineEdit()
        self.custom.setPlaceholderText("custom expression name")
        add = QPushButton("Add")
        add.clicked.connect(self.add_custom)
        reset = QPushButton("Reset all")
        reset.clicked.connect(lambda: win.call("reset_expressions", {}, "Reset expressions"))
        expr_box = QGroupBox("Expressions")
        el = QVBoxLayout(expr_box)
        el.addWidget(scroll, 1)
        row = QHBoxLayout()
        row.addWidget(self.custom, 1)
        row.addWidget(add)
        row.addWidget(reset)
        el.addLayout(row)

        self.blink = QCheckBox("Auto-blink")
        self.blink.clicked.connect(lambda on: win.call("set_auto_blink", {"enabled": on},
                                                       "Auto-blink"))
        self.head = QCheckBox("Head movement")
        self.head_min = self._spin(0.1, 120, " s")
        self.head_max = self._spin(0.1, 120, " s")
        self.head_angle = self._spin(0, 90, "°")
        head_apply = QPushButton("Apply head movement")
        head_apply.clicked.connect(self.apply_head)
        self.head.clicked.connect(lambda _on: self.apply_head())
        self.speed = self._spin(0.1, 10, "×")
        speed_apply = QPushButton("Apply speed")
        speed_apply.clicked.connect(
            lambda: win.call("set_transition_speed", {"speed": self.speed.value()},
                             "Transition speed"))
        anim = QGroupBox("Animation")
        form = QFormLayout(anim)
        form.addRow(self.blink)
        form.addRow(self.head)
        form.addRow("Interval min", self.head_min)
        form.addRow("Interval max", self.head_max)
        form.addRow("Max angle", self.head_angle)
        form.addRow(head_apply)
        form.addRow("Transition speed", self.speed)
        form.addRow(speed_apply)

        left = QVBoxLayout()
        left.addWidget(status_box)
        left.addWidget(anim)
        left.addStretch(1)
        lay = QHBoxLayout(self)
        lay.addLayout(left, 2)
        lay.addWidget(expr_box, 3)
        win.bus.on("client_connected", self._on_client_connected)
        win.bus.on("client_disconnected", self._on_client_disconnected)

    @staticmethod
    def _spin(lo: float, hi: float, suffix: str) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(1)
        s.setSuffix(suffix)
        return s

    def _slider(self, name: str) -> ExpressionSlider:
        if name not in self.sliders:
            s = ExpressionSlider(name, self)
            i = len(self.sliders)
            self.grid.addWidget(s, i // 2, i % 2)
            self.sliders[name] = s
        return self.sliders[name]

    # -- the bridge's address (from the status) ----------------------------------------------
    def bridge_at(self, host: str, port: int, token: str | None) -> None:
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        self.link.open(host, port, token)

    def _on_link(self, up: bool, why: str) -> None:
        self.link_label.setText(f"Bridge: {why}")
        if not up:
            self.state_label.setText("Avatar: unknown (no connection to the bridge)")

    # -- state from the bridge -----------------------------------------------------------------
    def _on_welcome(self, data: dict[str, Any]) -> None:
        # Who was connected before this panel: the events only tell what changes after.
        self.clients = {c["session"]: (str(c["client"]), float(c["since"]))
                        for c in data.get("clients") or ()}
        self._show_clients()
        state = data.get("state") or {}
        self._show_state(state.get("avatar_state", "idle"), state.get("reason", ""))
        self._show_model(state.get("model"))
        for s in self.sliders.values():
            s.show_value(0.0)
        for name, value in (state.get("expressions") or {}).items():
            self._slider(name).show_value(float(value))
        self.speed.setValue(float(state.get("transition_speed", 1.0)))
        self.blink.setChecked(bool(state.get("auto_blink", True)))
        self._show_head(state.get("auto_head_movement") or {})

    def _on_message(self, type_: str, data: dict[str, Any]) -> None:
        if type_ == "set_expression":
            self._slider(data["name"]).show_value(float(data["value"]))
        elif type_ == "reset_expressions":
            for s in self.sliders.values():
                s.show_value(0.0)
        elif type_ == "avatar_state":
            self._show_state(data["state"], data.get("reason", ""))
        elif type_ == "load_model":
            self._show_model(data.get("path"))
        elif type_ == "set_transition_speed":
            self.speed.setValue(float(data["speed"]))
        elif type_ == "set_auto_blink":
            self.blink.setChecked(bool(data["enabled"]))
        elif type_ == "set_auto_head_movement":
            self._show_head(data)

    def _show_state(self, state: str, reason: str) -> None:
        self.state_label.setText(f"Avatar: {state}" + (f" ({reason})" if reason else ""))

    def _show_model(self, path: str | None) -> None:
        self.model_label.setText(f"VRM: {path}" if path else "VRM: none loaded")

    def _show_head(self, head: dict[str, Any]) -> None:
        self.head.setChecked(bool(head.get("enabled", True)))
        self.head_min.setValue(float(head.get("min_interval", 2.0)))
        self.head_max.setValue(float(head.get("max_interval", 6.0)))
        self.head_angle.setValue(float(head.get("max_angle", 10.0)))

    # -- clients (bus events) ------------------------------------------------------------------
    def _on_client_connected(self, data: dict[str, Any]) -> None:
        if data["client"] == CLIENT_NAME and data["session"] == self.link.session:
            return
        self.clients[data["session"]] = (data["client"], time.time())
        self._show_clients()

    def _on_client_disconnected(self, data: dict[str, Any]) -> None:
        self.clients.pop(data["session"], None)
        self._show_clients()

    def _show_clients(self) -> None:
        self.client_list.clear()
        for session, (name, since) in sorted(self.clients.items()):
            if name == CLIENT_NAME and session == self.link.session:
                continue
            at = time.strftime("%H:%M:%S", time.localtime(since))
            self.client_list.addItem(f"{name} — since {at} (session {session})")
        if not self.client_list.count():
            self.client_list.addItem("(none)")

    # -- commands (over the bus; the bridge's echo updates the controls) ----------------------
    def slider_moved(self, name: str, value: float) -> None:
        self.sliders[name].value.setText(f"{value:.2f}")
        self._outgoing[name] = value
        if not self._send_timer.isActive():
            self._send_timer.start(SEND_MS)

    def _flush_expressions(self) -> None:
        pending, self._outgoing = self._outgoing, {}
        for name, value in pending.items():
            self.win.call("set_expression", {"name": name, "value": value},
                          f"Expression {name} = {value:.2f}", quiet=True)

    def add_custom(self) -> None:
        name = self.custom.text().strip()
        if not name:
            self.win.say("Type an expression name first", error=True)
            return
        self.win.call("set_expression", {"name": name, "value": 0.0}, f"Add expression {name}")
        self.custom.clear()

    def apply_head(self) -> None:
        lo, hi = self.head_min.value(), self.head_max.value()
        if lo > hi:
            self.win.say(f"Head movement: the minimum interval ({lo:g} s) is above the maximum "
                         f"({hi:g} s); make min ≤ max", error=True)
            return
        self.win.call("set_auto_head_movement",
                      {"enabled": self.head.isChecked(), "min_interval": lo, "max_interval": hi,
                       "max_angle": self.head_angle.value()}, "Head movement")

    def pick_vrm(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a VRM model", "",
                                              "VRM models (*.vrm);;All files (*)")
        if path:
            self.load_vrm(path)

    def load_vrm(self, path: str) -> None:
        self.win.call("load_model", {"path": path}, f"Load VRM {path}")
