"""A launcher, as a Windows venv's python.exe is one: it runs the real interpreter as its child,
with the same arguments and standard streams, waits, and passes the exit code on.

With AI_COMPANION_WORKER_PYTHON naming it, the process the supervisor starts is not the process
that runs the worker, which is what a Windows venv does to sys.executable (bpo-35797).
"""

import subprocess
import sys

sys.exit(subprocess.call([sys.executable, *sys.argv[1:]]))
