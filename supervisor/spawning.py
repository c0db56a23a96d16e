"""How a worker process is started on this platform: which interpreter, which flags.

One seam for what differs on Windows, so a Linux test can ask for the Windows answer in the
code's own terms (`spawn_plan(platform="win32", ...)`) and the real spawn uses the same plan:

- The interpreter. In a Windows venv, `sys.executable` is a small launcher that starts the real
  interpreter as its child (bpo-35797), so the pid Popen returns is the launcher's. Like
  multiprocessing, we start the base interpreter with `__PYVENV_LAUNCHER__` naming the venv's,
  which then runs with the venv's packages. Whatever still wraps the worker (a conda or pyenv
  shim, AI_COMPANION_WORKER_PYTHON), the supervisor follows the pid the worker reports about
  itself (supervisor/host.py).
- The console. Workers get CREATE_NO_WINDOW: no console window pops up when the stack is started
  without one (from Unity, a shortcut), and they are not attached to the user's console, so
  Ctrl-Break or closing it reaches the supervisor alone, which stops them in order.
  CREATE_NEW_PROCESS_GROUP keeps them out of the launcher's Ctrl-C group as well.
- On POSIX, a session of their own does the same for a signal sent to the launcher's group.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

# Windows process-creation flags (named in subprocess only on Windows).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
# The interpreter command that runs workers, when not this one (tests, unusual installs).
PYTHON_ENV = "AI_COMPANION_WORKER_PYTHON"


@dataclass(frozen=True)
class SpawnPlan:
    python: tuple[str, ...]  # the command that runs `-m module` (an interpreter, maybe wrapped)
    env: dict[str, str] = field(default_factory=dict)  # added to the worker's environment
    creationflags: int = 0
    new_session: bool = False


def _same_path(a: str, b: str) -> bool:
    return a == b or os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _split(command: str, windows: bool) -> tuple[str, ...]:
    """A command line into its words (Windows: quotes group words and are dropped)."""
    if not windows:
        return tuple(shlex.split(command))
    return tuple(w[1:-1] if len(w) > 1 and w[0] == w[-1] == '"' else w
                 for w in shlex.split(command, posix=False))


def spawn_plan(platform: str = sys.platform, executable: str = sys.executable,
               base_executable: str | None = None,
               environ: Mapping[str, str] = os.environ) -> SpawnPlan:
    """How to start a worker here (see the module's docstring)."""
    windows = platform == "win32"
    flags = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW if windows else 0
    override = environ.get(PYTHON_ENV, "").strip()
    if override:
        return SpawnPlan(_split(override, windows), {}, flags, not windows)
    if base_executable is None:
        base_executable = getattr(sys, "_base_executable", executable)
    if windows and base_executable and not _same_path(executable, base_executable):
        # In a venv: skip the launcher, as multiprocessing does on Windows.
        return SpawnPlan((base_executable,), {"__PYVENV_LAUNCHER__": executable}, flags, False)
    return SpawnPlan((executable,), {}, flags, not windows)
