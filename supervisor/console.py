"""Windows console events for the supervisor: a console close, logoff or shutdown stops the
stack in order before Windows ends the process.

Ctrl-C and Ctrl-Break arrive as SIGINT and SIGBREAK (launch.py's signal handlers). A close,
logoff or shutdown event also becomes SIGBREAK in the C runtime, but Windows ends the process
as soon as the console handler returns, long before Python's handler would run on the main
thread. So a handler of our own asks the supervisor to stop and holds the event until the stack
is down or the grace Windows gives (5 s) is nearly spent. Workers are not on the console at all
(CREATE_NO_WINDOW), so the event reaches none of them: nothing crashes, nothing restarts.

`ConsoleGuard.handle` is plain Python, so a Linux test drives it with the event numbers; only
`install` touches the Win32 API.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

CTRL_C_EVENT = 0
CTRL_BREAK_EVENT = 1
CTRL_CLOSE_EVENT = 2
CTRL_LOGOFF_EVENT = 5
CTRL_SHUTDOWN_EVENT = 6
GRACE_S = 4.5  # Windows ends the process 5 s after a close event (SPI_GETHUNGAPPTIMEOUT)


class ConsoleGuard:
    def __init__(self, request_stop: Callable[[], None], stopped: threading.Event,
                 grace_s: float = GRACE_S) -> None:
        self.request_stop = request_stop
        self.stopped = stopped
        self.grace_s = grace_s
        self._callback: Any = None  # the ctypes callback must outlive the registration

    def handle(self, event: int) -> bool:
        """True: handled here; False: the next handler (the C runtime's, hence Python's
        SIGINT/SIGBREAK handler) takes it."""
        if event in (CTRL_C_EVENT, CTRL_BREAK_EVENT):
            return False
        self.request_stop()
        self.stopped.wait(self.grace_s)
        return True

    def install(self) -> bool:
        """Register with SetConsoleCtrlHandler (Windows only); whether it was registered."""
        if sys.platform != "win32":
            return False
        import ctypes
        from ctypes import wintypes

        routine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)
        self._callback = routine(lambda event: bool(self.handle(int(event))))
        return bool(ctypes.windll.kernel32.SetConsoleCtrlHandler(self._callback, True))
