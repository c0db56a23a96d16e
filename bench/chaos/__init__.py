"""Chaos soak and Unity-wire fuzz of a whole stack: `python -m bench.chaos`.

Chat clients, bus clients and a Unity-wire client keep the stack busy while workers are killed
with -9, stopped with SIGSTOP, reloaded by profile switches (normal and emergency) and while
Unity clients vanish with TCP resets. Every request is classified (completed, explicit error
with its code, lost), the conversation memory is checked against the completed chats, and the
bridge is fuzzed with hostile frames while a good client times its round trips. The run ends
with a kill -9 of the supervisor. Verdicts are computed from the figures (bench/chaos/report.py)
and written to bench/results/chaos.json and chaos.md.

    python -m bench.chaos --seconds 60      # short (the test suite runs this)
    python -m bench.chaos --minutes 10      # full: 100 000 hostile frames, ~300 faults
"""
