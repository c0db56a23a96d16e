"""A worker that dies during start, every time: for backoff and FATAL tests."""

import sys

from workers.runtime import read_boot

read_boot()
sys.stderr.write("crash_worker: failing at start on purpose\n")
sys.exit(1)
