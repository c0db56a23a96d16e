"""Building the panel: the QApplication and a window on a bus (shared by both entry points)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

from panel.qtbus import QtBus
from panel.window import PanelWindow
from protocol.bus import BusInfo


def application() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("AI Companion")
    app.setOrganizationName("ai-companion")
    return app  # type: ignore[return-value]


def open_panel(info_source: Callable[[], BusInfo | None], config: dict[str, Any],
               data_dir: Path, *, config_path: Path | None, launched: bool,
               **kw: Any) -> PanelWindow:
    bus = QtBus(info_source)
    win = PanelWindow(bus, config, data_dir, config_path=config_path, launched=launched, **kw)
    bus.setParent(win)
    return win
