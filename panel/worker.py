"""The panel as the stack's `panel` worker (launch.py adds it unless --headless).

The worker runtime's bus thread sends the heartbeats and takes `worker_stop`; the main thread
is Qt's. The window itself is an ordinary bus client (panel/qtbus.py) with the boot's bus
address. A crash is restarted by the supervisor (restart policy "transient"); Quit asks the
supervisor to shut the stack down, which stops this worker last, with exit code 0.
"""

from __future__ import annotations

import logging
import os
import sys

from PySide6.QtCore import QObject, Signal

from panel.availability import no_panel_reason
from protocol.codec import Envelope
from protocol.messages import EXIT_CONFIG_ERROR
from workers.runtime import WorkerRuntime

log = logging.getLogger("panel")


class _Stopper(QObject):
    """Carries worker_stop from the bus thread to the Qt thread (a queued signal)."""

    stop = Signal()


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    why = no_panel_reason()
    if why:  # QApplication would abort, at every restart: say why once and stay down (FATAL)
        log.error("the control panel cannot open: %s; the stack runs on without it", why)
        sys.exit(EXIT_CONFIG_ERROR)
    from panel.app import application, open_panel

    app = application()
    stopper = _Stopper()
    stopper.stop.connect(app.quit)

    def on_stop(env: Envelope) -> None:
        rt.reply(env, "ok", {"detail": f"{rt.name} closing"})
        stopper.stop.emit()
    rt.on_request("worker_stop", on_stop, inline=True)
    config_file = rt.data_dir / "config.json"
    win = open_panel(lambda: rt.info, rt.config, rt.data_dir,
                     config_path=config_file if config_file.is_file() else None, launched=True)
    win.show()
    rt.ready({"platform": app.platformName(), "pid": os.getpid(),
              "config": str(config_file) if config_file.is_file() else None})
    app.exec()
    win.quitting = True
    win.save_settings()  # also when the stack was stopped from elsewhere (CLI, Ctrl-C)
    log.info("window closed")
    rt.stopping.set()
    rt.run()  # stopping already set: flushes the bus, then ends the process with 0


if __name__ == "__main__":
    main()


