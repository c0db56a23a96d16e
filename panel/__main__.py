"""`python -m panel [--config PATH]`: a control panel for a stack that is already running.

Closing it only closes this window; the stack goes on. It waits for the stack when none runs
yet, and follows a restarted one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panel.qtbus import run_file_source
from supervisor.config import DEFAULT_CONFIG, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panel",
                                description="Attach a control panel to a running companion.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="config file of the stack (default: data/config.json)")
    args = p.parse_args(argv)
    config_path = args.config.resolve()
    try:
        cfg, _ = load_config(config_path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from panel.app import application, open_panel  # Qt only once the arguments are good

    app = application()
    win = open_panel(run_file_source(config_path.parent / "run"), cfg, config_path.parent,
                     config_path=config_path, launched=False)
    win.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
