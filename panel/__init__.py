"""The control panel: a PySide6 window that is one more client of the companion's bus.

`python -m panel [--config PATH]` attaches a panel to a running stack; `launch.py` starts one as
the `panel` worker (panel/worker.py), which the supervisor restarts if it crashes.
"""
