"""Workers: the table supervisord's web page gives (state, pid, uptime, CPU, RSS, VRAM,
restarts, last exit), Start / Stop / Restart / Kill, and a live tail of the selected log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from protocol.messages import PROFILES

if TYPE_CHECKING:
    from panel.window import PanelWindow

COLUMNS = ("worker", "state", "pid", "uptime", "CPU %", "RSS", "VRAM", "restarts", "last exit")
STATE_COLORS = {"RUNNING": "#2f7d32", "STARTING": "#b26a00", "STOPPING": "#b26a00",
                "BACKOFF": "#b26a00", "FATAL": "#c62828", "EXITED": "#666666"}
LOG_MS = 1000
LOG_LINES = 200


def _mb(n: int | None) -> str:
    return "—" if not n else f"{n / 2**20:.0f} MB"


def _uptime(s: float) -> str:
    if not s:
        return "—"
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class WorkersTab(QWidget):
    def __init__(self, win: PanelWindow) -> None:
        super().__init__()
        self.win = win
        self.workers: dict[str, dict[str, Any]] = {}
        self.own_vram: int | None = None  # the profiles worker's VRAM, from gpu_stats
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selected_changed)
        buttons = QHBoxLayout()
        for label, request in (("Start", "restart"), ("Stop", "stop"), ("Restart", "restart"),
                               ("Kill", "kill")):
            b = QPushButton(label)
            b.setObjectName(f"worker_{label.lower()}")
            b.clicked.connect(lambda _c=False, r=request, t=label: self.act(r, t))
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.log_title = QLabel("Log: select a worker")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES * 2)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSize(8)
        self.log.setFont(mono)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.table)
        tl.addLayout(buttons)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.log_title)
        bl.addWidget(self.log)
        split = QSplitter()
        split.setOrientation(split.orientation().Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setSizes([260, 300])
        QVBoxLayout(self).addWidget(split)
        self._log_pending = False
        self._log_lines: list[str] = []
        timer = QTimer(self)
        timer.timeout.connect(self._poll_log)
        timer.start(LOG_MS)
        win.bus.on("worker_stats", lambda d: self.update_workers(d["workers"]))
        win.bus.on("worker_state", self._on_state)
        win.bus.on("gpu_stats", self._on_gpu)

    # -- data ------------------------------------------------------------------------------
    def update_workers(self, workers: dict[str, dict[str, Any]]) -> None:
        self.workers = {n: dict(w) for n, w in workers.items()}
        self._render()

    def _on_state(self, data: dict[str, Any]) -> None:
        """A change between stats: shown at once (a kill -9 appears before the next stats)."""
        w = self.workers.setdefault(data["worker"], {"restarts": 0})
        w["state"] = data["state"]
        if "pid" in data:
            w["pid"] = data["pid"]
        if data["state"] in ("EXITED", "BACKOFF", "FATAL"):
            w["last_exit"] = data.get("reason") or w.get("last_exit")
            w["cpu_percent"] = w["rss"] = None
            w["uptime_s"] = 0
        if data["state"] == "STARTING" and data.get("previous") in ("BACKOFF", "EXITED",
                                                                    "STOPPING"):
            w["uptime_s"] = 0
        self._render()

    def _on_gpu(self, data: dict[str, Any]) -> None:
        if data.get("own_vram") is not None:
            self.own_vram = int(data["own_vram"])

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.text() if item else None

    def _render(self) -> None:
        chosen = self.selected()
        names = sorted(self.workers)
        self.table.setRowCount(len(names))
        for row, name in enumerate(names):
            w = self.workers[name]
            vram = "—"
            if PROFILES in w.get("roles", ()) and w.get("state") == "RUNNING":
                est = (w.get("ready_info") or {}).get("est_vram_mb")
                vram = (_mb(self.own_vram) if self.own_vram
                        else (f"~{est} MB" if est else "0 MB (CPU)"))
            cpu = w.get("cpu_percent")
            cells = (name, w.get("state", "?"), str(w.get("pid") or "—"),
                     _uptime(w.get("uptime_s") or 0), "—" if cpu is None else f"{cpu:.1f}",
                     _mb(w.get("rss")), vram, str(w.get("restarts", 0)),
                     w.get("last_exit") or "—")
            for col, text in enumerate(cells):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
                if col == 1:
                    item.setForeground(QColor(STATE_COLORS.get(text, "#000000")))
        if chosen in names:
            self.table.selectRow(names.index(chosen))
        elif names and chosen is None:
            self.table.selectRow(0)

    def state_of(self, name: str) -> str | None:
        return self.workers.get(name, {}).get("state")

    # -- actions ---------------------------------------------------------------------------
    def act(self, request: str, label: str) -> None:
        name = self.selected()
        if name is None:
            self.win.say(f"{label}: select a worker in the table first", error=True)
            return
        self.win.call(request, {"worker": name}, f"{label} {name}")

    # -- the log tail ----------------------------------------------------------------------
    def _selected_changed(self) -> None:
        name = self.selected()
        self.log_title.setText(f"Log: {name}" if name else "Log: select a worker")
        self._log_lines = []
        self.log.clear()
        self._poll_log()

    def _poll_log(self) -> None:
        name = self.selected()
        if name is None or self._log_pending or not self.win.bus.up or not self.isVisible():
            return
        self._log_pending = True
        self.win.bus.request("logs", {"worker": name, "lines": LOG_LINES},
                             lambda env, n=name: self._on_log(n, env), timeout_s=5)

    def _on_log(self, name: str, env: Any) -> None:
        self._log_pending = False
        if env.type != "logs_reply" or name != self.selected():
            return
        lines = list(env.data["lines"])
        if lines == self._log_lines:
            return
        bar = self.log.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        self._log_lines = lines
        self.log.setPlainText("\n".join(lines))
        if at_end:
            bar.setValue(bar.maximum())
