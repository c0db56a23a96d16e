"""A rotating log file that keeps every line when the rotation itself cannot happen.

On Windows a file another process holds open (a `Get-Content -Wait`, an editor, a virus
scanner) cannot be renamed. The standard RotatingFileHandler then reports a traceback on every
record and drops the record, and tries again on the next, so from then on every line is lost.
Here a failed rename falls back to copy-and-truncate (what logrotate's copytruncate does); if
even that fails, the lines go on into the same file and the next try waits a while.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

RETRY_AFTER_S = 30.0  # after a rotation that failed every way: keep writing, try again later


class RotatingLog(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler with a fallback; `rename` is the seam a test drives (os.replace)."""

    def __init__(self, path: Path, max_bytes: int, backups: int,
                 rename: Callable[[str, str], None] = os.replace) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._rename = rename
        self._retry_at = 0.0
        self.fallbacks = 0  # rotations done by copy-and-truncate (visible to tests and tools)
        self.failures = 0  # rotations that could not happen at all

    def rotate(self, source: str, dest: str) -> None:
        self._rename(source, dest)

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - logging's name
        if time.monotonic() < self._retry_at:
            return 0
        return super().shouldRollover(record)

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        if self.backupCount > 0:
            try:
                self._shift_backups()
                self.rotate(self.baseFilename, self.rotation_filename(f"{self.baseFilename}.1"))
            except OSError as exc:
                self._fallback(exc)
        self.stream = self._open()

    def _fallback(self, reason: OSError) -> None:
        try:
            self._copy_truncate()
            self.fallbacks += 1
        except OSError as exc:
            self.failures += 1
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            sys.stderr.write(f"log: cannot rotate {self.baseFilename} ({reason}; copy: {exc}); "
                             f"writing on, next try in {RETRY_AFTER_S:.0f} s\n")

    def _shift_backups(self) -> None:
        """name.1 -> name.2 ... (as the base class does; a replace drops the oldest), each move
        on its own: a backup that a reader holds stays where it is, and the others still move."""
        for i in range(self.backupCount - 1, 0, -1):
            src, dst = self.rotation_filename(f"{self.baseFilename}.{i}"), \
                self.rotation_filename(f"{self.baseFilename}.{i + 1}")
            if os.path.exists(src):
                with contextlib.suppress(OSError):
                    self._rename(src, dst)

    def _copy_truncate(self) -> None:
        """Copy the full file to name.1, then empty it in place: neither needs a rename."""
        shutil.copyfile(self.baseFilename, self.rotation_filename(f"{self.baseFilename}.1"))
        with open(self.baseFilename, "r+b") as fh:
            fh.truncate(0)
