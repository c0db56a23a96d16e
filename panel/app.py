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


def attach_to_stack(stack: Any, settings_dir: Path, *, launched: bool = False) -> PanelWindow:
    """A shown panel on a running `supervisor.harness.Stack`, its settings in `settings_dir`
    (for tests, the benchmark and the screenshots: never the user's own settings)."""
    from PySide6.QtCore import QSettings

    from panel.qtbus import run_file_source

    application()
    settings = QSettings(str(settings_dir / "panel.ini"), QSettings.Format.IniFormat)
    win = open_panel(run_file_source(stack.data_dir / "run"), stack.config(), stack.data_dir,
                     config_path=stack.config_path, launched=launched, settings=settings)
    win.show()
    return win
