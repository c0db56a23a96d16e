"""Whether the panel can open here, asked before this process touches Qt's GUI: Qt aborts the
process (qFatal) when no platform plugin starts, which no Python code can catch, and a
restarted panel would abort again and again."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

PROBE = "from PySide6.QtGui import QGuiApplication as A; print(A([]).platformName())"
PROBE_TIMEOUT_S = 20.0


def no_panel_reason(env: Mapping[str, str] | None = None, platform: str = sys.platform,
                    probe: Callable[[Mapping[str, str]], str] | None = None) -> str:
    """Why the control panel cannot open here ("" when it can): no PySide6, no display, or,
    on Linux, a GUI platform that does not start (a throwaway process tries, ~0.3 s). An
    explicit QT_QPA_PLATFORM (offscreen, vnc...) needs no display."""
    env = dict(os.environ) if env is None else env
    if importlib.util.find_spec("PySide6") is None:
        return "PySide6 is not installed (python3 bootstrap.py setup)"
    if not platform.startswith("linux"):
        return ""  # Windows and macOS always have their platform plugin
    if (not env.get("QT_QPA_PLATFORM") and not env.get("DISPLAY")
            and not env.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    return (probe or qt_start_problem)(env)


def qt_start_problem(env: Mapping[str, str]) -> str:
    """Start Qt's GUI platform once in a throwaway process; why it failed, or ""."""
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], env=dict(env), capture_output=True,
                             text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"Qt's GUI platform did not start within {PROBE_TIMEOUT_S:g} s"
    if out.returncode == 0:
        return ""
    missing = missing_xcb_libraries()
    if missing:  # Qt's own message names only xcb-cursor, whatever is missing
        return (f"Qt's X11 platform (xcb) needs {', '.join(missing)}: install them (Debian/"
                f"Ubuntu: sudo apt-get install {' '.join(map(debian_package, missing))})")
    lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
    # Qt's own lines, less its hint about xcb-cursor, which it gives whatever the cause
    said = [ln for ln in lines if ln.startswith("qt.qpa") and "xcb-cursor0" not in ln]
    return f"Qt's GUI platform did not start ({'; '.join(said or lines[-1:]) or out.returncode})"


def missing_xcb_libraries() -> list[str]:
    """Shared libraries that Qt's xcb plugin needs and the system lacks (ldd's 'not found')."""
    spec = importlib.util.find_spec("PySide6")
    ldd = shutil.which("ldd")
    if spec is None or not spec.submodule_search_locations or ldd is None:
        return []
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    missing: set[str] = set()
    for lib in (qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6"):
        if lib.is_file():
            out = subprocess.run([ldd, str(lib)], capture_output=True, text=True).stdout
            missing |= set(re.findall(r"^\s*(\S+) => not found", out, re.MULTILINE))
    return sorted(missing)


def debian_package(soname: str) -> str:
    """Debian's package for a library: libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0
    -> libxkbcommon-x11-0 (a dash when the name ends in a digit)."""
    name, _, version = soname.partition(".so.")
    return f"{name}{'-' if name[-1:].isdigit() else ''}{version.split('.')[0]}"
