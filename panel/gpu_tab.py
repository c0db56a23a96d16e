"""GPU and profiles: a live plot (pyqtgraph) of VRAM %, GPU % and temperature with the
threshold lines and a marker at every profile switch, the profile in effect and a picker,
auto-switching on/off, the doctor's report, and the language model to load or make default.

Without a GPU reading, the plot's place says why instead of showing empty axes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QProcess, Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from panel.model_files import found_models
from supervisor.config import REPO_ROOT, ConfigError, load_profiles, profiles_path
from workers.gpu.gguf_info import gguf_problem
from workers.gpu.planner import REBUILD_HINT

if TYPE_CHECKING:
    from panel.window import PanelWindow

WINDOW_S = 300.0  # the plot's span: the last five minutes
MIN_SPAN_S = 60.0
MAX_LISTED = 100  # profile switches kept in the list under the plot
MAX_POINTS = 4096  # per curve, whatever the interval: memory stays flat
REDRAW_MS = 250
DOCTOR_MODULE = "workers.inference.doctor"
FIT_LABELS = {"stressed_profile_fits_below": "above: OVERLOADED (others' VRAM)",
              "optimal_profile_fits_below": "below: performance fits (others' VRAM)"}


class GpuTab(QWidget):
    def __init__(self, win: PanelWindow) -> None:
        super().__init__()
        self.win = win
        self.t0 = time.monotonic()
        self.samples: deque[tuple[float, float, float, float, float]] = deque(maxlen=MAX_POINTS)
        self.markers: deque[tuple[float, pg.InfiniteLine]] = deque()
        self._dirty = False
        self.last_pressure: dict[str, Any] = {}
        thresholds = win.config["gpu_monitoring"]["thresholds"]

        # -- the plot, or why there is none ---------------------------------------------------
        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        self.plot = pg.PlotWidget()
        self.plot.setObjectName("gpu_plot")
        self.plot.setYRange(0, 100)
        self.plot.setLabel("left", "% · °C")
        self.plot.setLabel("bottom", "seconds since the panel opened")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(-10, -40))  # bottom right: the thresholds' labels are left
        self.vram_curve = self.plot.plot(name="VRAM %", pen=pg.mkPen("#1f77b4", width=2))
        self.gpu_curve = self.plot.plot(name="GPU %", pen=pg.mkPen("#2ca02c", width=2))
        self.temp_curve = self.plot.plot(name="temperature °C", pen=pg.mkPen("#d62728", width=2))
        self.others_curve = self.plot.plot(
            name="VRAM % by other programs",
            pen=pg.mkPen("#1f77b4", width=1.5, style=Qt.PenStyle.DotLine))
        # The decision rule (workers/gpu_monitor/decision.py) as lines: a VRAM state is
        # whether a profile fits next to what other programs use, so its lines are on the
        # others' curve and move with the card's size (from each reading's `pressure`).
        self.fit_lines = {
            key: self._threshold_line(color, FIT_LABELS[key])
            for key, color in (("stressed_profile_fits_below", "#c62828"),
                               ("optimal_profile_fits_below", "#2e7d32"))}
        for key, color, label in (("stressed_gpu", "#ef6c00", "GPU % above: STRESSED"),
                                  ("optimal_gpu", "#558b2f", "GPU % below: OPTIMAL")):
            line = self._threshold_line(color, label)
            line.setPos(float(thresholds[key]))
            line.setVisible(True)
        self.switches = 0
        self._emergency = False
        self.switch_list = QListWidget()
        self.switch_list.setObjectName("switches")
        self.switch_list.setMaximumHeight(90)
        self.switch_list.setWordWrap(True)
        self.switch_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.switch_list.addItem("Profile switches appear here, numbered as on the plot.")
        self.no_gpu = QLabel("Waiting for the GPU monitor's first reading…")
        self.no_gpu.setObjectName("no_gpu")
        self.no_gpu.setWordWrap(True)
        self.no_gpu.setStyleSheet("font-size:13px; color:#444; padding:24px; "
                                  "background:#f4f4f4; border:1px solid #ddd;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.no_gpu)
        self.stack.addWidget(self.plot)
        self.reading = QLabel("")

        # -- profiles -------------------------------------------------------------------------
        self.in_effect = QLabel("Profile in effect: —")
        self.in_effect.setObjectName("profile_in_effect")
        self.profiles = QComboBox()
        self.profiles.addItems(self._profile_names())
        switch = QPushButton("Switch")
        switch.clicked.connect(lambda: self.switch(emergency=False))
        emergency = QPushButton("Emergency switch")
        emergency.setToolTip("Stop the reply in flight now and run it again after the switch")
        emergency.clicked.connect(lambda: self.switch(emergency=True))
        self.auto = QCheckBox("Automatic switching")
        self.auto.clicked.connect(self.set_auto)
        prof = QGroupBox("GPU profile")
        pl = QVBoxLayout(prof)
        pl.addWidget(self.in_effect)
        row = QHBoxLayout()
        row.addWidget(self.profiles, 1)
        row.addWidget(switch)
        row.addWidget(emergency)
        pl.addLayout(row)
        pl.addWidget(self.auto)

        # -- the language model ---------------------------------------------------------------
        self.model_now = QLabel("Model: —")
        self.model_now.setWordWrap(True)
        self.models = QComboBox()
        self.models.setEditable(False)
        self.refresh_models()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        load = QPushButton("Load for this session")
        load.clicked.connect(self.load_model)
        default = QPushButton("Set as default")
        default.clicked.connect(self.set_default)
        mod = QGroupBox("Language model")
        ml = QVBoxLayout(mod)
        ml.addWidget(self.model_now)
        row = QHBoxLayout()
        row.addWidget(self.models, 1)
        row.addWidget(browse)
        ml.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(load)
        row.addWidget(default)
        row.addStretch(1)
        ml.addLayout(row)

        # -- doctor ---------------------------------------------------------------------------
        self.doctor = QLabel("Doctor: not run yet")
        self.doctor.setObjectName("doctor")
        self.doctor.setWordWrap(True)
        self.doctor_button = QPushButton("Run doctor")
        self.doctor_button.clicked.connect(self.run_doctor)
        doc = QGroupBox("Doctor")
        dl = QFormLayout(doc)
        dl.addRow(self.doctor)
        dl.addRow(self.doctor_button)
        self._doctor_proc: QProcess | None = None
        self._doctor_ran = False

        right = QVBoxLayout()
        right.addWidget(prof)
        right.addWidget(mod)
        right.addWidget(doc)
        right.addStretch(1)
        left = QVBoxLayout()
        left.addWidget(self.stack, 1)
        left.addWidget(self.reading)
        left.addWidget(self.switch_list)
        lay = QHBoxLayout(self)
        lay.addLayout(left, 3)
        lay.addLayout(right, 2)

        win.bus.on("gpu_stats", self._on_stats)
        win.bus.on("auto_switch", self._on_auto_switch)
        win.bus.on("profile_status", self._on_profile_status)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._timer.start(REDRAW_MS)

    def _threshold_line(self, color: str, label: str) -> pg.InfiniteLine:
        """A dashed horizontal line, labelled at the right; hidden until it has a place."""
        line = pg.InfiniteLine(angle=0, pen=pg.mkPen(color, style=Qt.PenStyle.DashLine),
                               label=label, labelOpts={"position": 0.99, "color": color,
                                                       "anchors": [(1, 1), (1, 1)]})
        line.setVisible(False)
        self.plot.addItem(line)
        return line

    def _place_fit_lines(self, pressure: dict[str, Any]) -> None:
        """Where the profiles stop fitting on this card. When both need about the same (a small
        model), the lines coincide: one label says both."""
        places = {k: pressure.get(k) for k in self.fit_lines}
        if not all(isinstance(v, (int, float)) for v in places.values()):
            return
        for key, line in self.fit_lines.items():
            line.setPos(float(places[key]))
            line.setVisible(True)
        stressed, optimal = (self.fit_lines[k] for k in FIT_LABELS)
        close = abs(places["stressed_profile_fits_below"]
                    - places["optimal_profile_fits_below"]) < 4
        stressed.label.setFormat(FIT_LABELS["stressed_profile_fits_below"] if not close else
                                 "above: OVERLOADED, below: performance fits (others' VRAM)")
        optimal.label.setVisible(not close)

    def _profile_names(self) -> list[str]:
        try:
            return ["auto", *load_profiles(profiles_path(self.win.config))]
        except ConfigError as exc:
            self.win.say(str(exc), error=True)
            return ["auto"]

    # -- readings ------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def show_no_gpu(self, reason: str) -> None:
        self.no_gpu.setText(
            "No GPU plot: " + reason
            + "\n\nThe companion runs on the CPU; profiles still switch, and this page "
              "draws VRAM, GPU load and temperature as soon as a reading comes (an NVIDIA "
              "driver, or a replayed trace: launch.py --gpu-trace data/traces/…).")
        self.stack.setCurrentWidget(self.no_gpu)
        self.auto.setEnabled(False)
        self.auto.setChecked(False)
        self.auto.setToolTip("No GPU readings, so nothing to switch on")

    def _on_stats(self, d: dict[str, Any]) -> None:
        if not d.get("available"):
            self.show_no_gpu(str(d.get("reason") or "the GPU monitor has no reading"))
            return
        self.stack.setCurrentWidget(self.plot)
        self.auto.setEnabled(True)
        self.auto.setChecked(bool(d.get("auto_switching")))
        pressure = self.last_pressure = d.get("pressure") or {}
        self.samples.append((self.now(), float(d.get("vram_percent") or 0),
                             float(d.get("gpu_percent") or 0),
                             float(d.get("temperature_c") or 0),
                             float(pressure.get("others_percent", "nan"))))
        self._place_fit_lines(pressure)
        vram, load, temp = self.samples[-1][1:4]
        self.reading.setText(
            f"VRAM {vram:.0f} % · GPU {load:.0f} % · {temp:.0f} °C"
            f" · state {d.get('state') or '—'} · profile {d.get('profile') or '—'}")
        self._dirty = True

    def _on_auto_switch(self, d: dict[str, Any]) -> None:
        self._emergency = bool(d.get("emergency"))  # its profile_status "switching" follows

    def _on_profile_status(self, d: dict[str, Any]) -> None:
        if d["state"] == "ready":
            self.in_effect.setText(f"Profile in effect: {d['profile']}"
                                   + (f" (asked: {d['requested']})"
                                      if d.get("requested") not in (None, d["profile"]) else ""))
            return
        emergency, self._emergency = self._emergency, False
        self.mark(d["profile"], str(d.get("reason") or "requested"), emergency)

    def mark(self, profile: str, reason: str, emergency: bool) -> None:
        """A numbered line at this moment; its reason is in the list under the plot."""
        self.switches += 1
        if self.switches == 1:
            self.switch_list.clear()  # the placeholder
        color = "#c62828" if emergency else "#6a1b9a"
        label = f"{self.switches} → {profile}" + (" (emergency)" if emergency else "")
        height = 0.97 - 0.07 * (self.switches % 3)  # close switches: labels one above another
        line = pg.InfiniteLine(pos=self.now(), angle=90, pen=pg.mkPen(color, width=1.5),
                               label=label, labelOpts={"position": height, "color": color,
                                                       "anchors": [(0, 0), (0, 0)]})
        self.plot.addItem(line)
        self.markers.append((self.now(), line))
        at = time.strftime("%H:%M:%S")
        self.switch_list.insertItem(0, f"{self.switches}. {at} → {profile}"
                                       f"{' (emergency)' if emergency else ''}: {reason}")
        while self.switch_list.count() > MAX_LISTED:
            self.switch_list.takeItem(self.switch_list.count() - 1)
        self._dirty = True

    def redraw(self) -> None:
        """The x axis is seconds since the panel opened; the view follows the last
        WINDOW_S (less while there is less history). Curves are set again only when a
        reading came."""
        if not self.samples:
            return
        now = self.now()
        while self.markers and now - self.markers[0][0] > WINDOW_S:
            self.plot.removeItem(self.markers.popleft()[1])
        while self.samples and now - self.samples[0][0] > WINDOW_S:
            self.samples.popleft()
            self._dirty = True
        if self._dirty and self.samples:
            data = np.asarray(self.samples, dtype=float)
            self.vram_curve.setData(data[:, 0], data[:, 1])
            self.gpu_curve.setData(data[:, 0], data[:, 2])
            self.temp_curve.setData(data[:, 0], data[:, 3])
            self.others_curve.setData(data[:, 0], data[:, 4], connect="finite")
            self._dirty = False
        first = self.samples[0][0] if self.samples else now
        span = min(WINDOW_S, max(MIN_SPAN_S, now - first + 2))
        self.plot.setXRange(now - span, now, padding=0)

    # -- status (from the window) --------------------------------------------------------------
    def show_status(self, chat_worker: dict[str, Any]) -> None:
        """What the running model says it runs with (not the profile asked for while a switch
        is still loading)."""
        if chat_worker.get("state") != "RUNNING":
            return
        info = chat_worker.get("ready_info") or {}
        profile, asked = info.get("profile"), info.get("requested_profile")
        if profile:
            self.in_effect.setText(f"Profile in effect: {profile}"
                                   + (f" (asked: {asked})" if asked not in (None, profile)
                                      else ""))
        if info.get("model_path"):
            self.model_now.setText(f"Model: {info.get('model')} ({info['model_path']})")

    # -- actions -------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        """The doctor runs once, the first time the tab is shown (a second or two, in its own
        process)."""
        super().showEvent(event)
        if not self._doctor_ran:
            self._doctor_ran = True
            self.run_doctor()

    def switch(self, emergency: bool) -> None:
        profile = self.profiles.currentText()
        self.win.call("switch_profile", {"profile": profile, "emergency": emergency,
                                         "reason": "asked in the control panel"},
                      f"{'Emergency switch' if emergency else 'Switch'} to {profile}",
                      timeout_s=30)

    def set_auto(self, on: bool) -> None:
        self.win.call("set_auto_switching", {"enabled": on},
                      f"Automatic switching {'on' if on else 'off'}")

    def refresh_models(self, extra: Path | None = None) -> None:
        paths = found_models()
        if extra is not None and extra not in paths:
            paths.append(extra)
        self.models.clear()
        for p in paths:
            self.models.addItem(p.name, str(p))
        if extra is not None:
            self.models.setCurrentIndex(self.models.findData(str(extra)))

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Pick a GGUF model", str(REPO_ROOT / "models"),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.refresh_models(Path(path))

    def chosen_model(self) -> Path | None:
        data = self.models.currentData()
        if not data:
            self.win.say("No model picked: choose one in the list or Browse…", error=True)
            return None
        return Path(data)

    def load_model(self) -> None:
        path = self.chosen_model()
        if path is None:
            return
        problem = gguf_problem(path)
        if problem:
            self.win.say(f"Load model: {problem}; nothing was stopped", error=True)
            return
        self.win.call("switch_model", {"path": str(path)}, f"Load {path.name} for this session",
                      timeout_s=30)

    def set_default(self) -> None:
        path = self.chosen_model()
        if path is None:
            return
        problem = gguf_problem(path)
        if problem:
            self.win.say(f"Set as default: {problem}", error=True)
            return
        self.win.set_default_model(path)

    def run_doctor(self) -> None:
        if self._doctor_proc is not None:
            return
        self.doctor.setText("Doctor: running…")
        proc = QProcess(self)
        proc.setWorkingDirectory(str(REPO_ROOT))
        proc.finished.connect(lambda *_: self._doctor_done(proc))
        args = ["-m", DOCTOR_MODULE, "--json"]
        if self.win.config_path is not None:
            args += ["--config", str(self.win.config_path)]
        self._doctor_proc = proc
        proc.start(sys.executable, args)

    def stop_doctor(self) -> None:
        proc, self._doctor_proc = self._doctor_proc, None
        if proc is not None:
            proc.finished.disconnect()
            proc.kill()
            proc.waitForFinished(2000)

    def _doctor_done(self, proc: QProcess) -> None:
        self._doctor_proc = None
        raw = bytes(proc.readAllStandardOutput()).decode("utf-8", "replace")
        try:
            report = json.loads(raw)
        except ValueError:
            err = bytes(proc.readAllStandardError()).decode("utf-8", "replace").strip()
            self.doctor.setText(f"Doctor failed: {err[-300:] or 'no output'}")
            return
        self.doctor.setText(doctor_summary(report))


def doctor_summary(r: dict[str, Any]) -> str:
    llama = r.get("llama_cpp") or {}
    gpu = r.get("gpu") or {}
    backends = ", ".join(llama.get("gpu_backends") or ())
    # Two questions, as the doctor asks them: can this build offload, and is a card visible?
    build = f"yes ({backends})" if llama.get("build_gpu_support") else "no, a CPU-only build"
    device = (f"visible, {gpu.get('name')} {gpu.get('vram_total_mb')} MB" if gpu.get("visible")
              else f"none visible ({gpu.get('reason') or 'CUDA_VISIBLE_DEVICES is empty'})")
    lines = [f"Build GPU support: {build} (llama-cpp-python {llama.get('version', '?')})",
             f"GPU device: {device}"]
    auto = r.get("auto") or {}
    if auto:
        lines.append(f"Recommended profile: {auto.get('profile')} ({auto.get('n_gpu_layers')} "
                     f"GPU layers){': ' + auto['why'] if auto.get('why') else ''}")
    if llama and not llama.get("build_gpu_support"):
        lines.append(f"To use an NVIDIA GPU, rebuild: {REBUILD_HINT}")
    for p in r.get("problems") or []:
        lines.append(f"Problem: {p}")
    return "\n".join(lines)
