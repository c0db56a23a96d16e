"""The Unity package's C# (UnityEngine-free part) against a live bridge, compiled with Mono.

Handshake, a set_expression sent from the Python side, an event back onto the bus, and the
C# client's reconnect with state replay when the bridge restarts.
"""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from supervisor.harness import ROOT
from tests.helpers.bridge import BusPublisher, bridge_sections, connect, free_port, live_bus

PROTOCOL_CS = sorted((ROOT / "unity_bridge" / "unity" / "Runtime" / "Protocol").glob("*.cs"))
PROBE_CS = ROOT / "tests" / "csharp" / "BridgeProbe.cs"


def toolchain() -> tuple[str, str]:
    mcs, mono = shutil.which("mcs"), shutil.which("mono")
    if not (mcs and mono):
        if sys.platform != "linux":
            pytest.skip("mcs/mono are installed by bootstrap.py test on Linux only")
        pytest.fail("mcs and mono are needed: apt-get install mono-mcs mono-runtime "
                    "(python3 bootstrap.py test does it when run as root)")
    return mcs, mono


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    mcs, mono = toolchain()
    exe = tmp_path_factory.mktemp("csharp") / "probe.exe"
    result = subprocess.run([mcs, "-warnaserror+", f"-out:{exe}", *map(str, PROTOCOL_CS),
                             str(PROBE_CS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return mono, exe


def test_protocol_code_does_not_use_unityengine() -> None:
    # The compile above has no UnityEngine.dll to see; this names the rule for a reader.
    for path in PROTOCOL_CS:
        assert not re.search(r"^\s*using\s+UnityEngine", path.read_text(encoding="utf-8"),
                             re.M), path


class Lines:
    """stdout of the probe, line by line, with a bounded wait for each."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.q.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 60) -> str:
        while True:
            try:
                line = self.q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line {prefix!r}; got {self.seen}") from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line
            assert not line.startswith(("TIMEOUT", "SELFTEST failed")), self.seen


def test_csharp_client_against_the_live_bridge(make_stack, probe) -> None:
    mono, exe = probe
    port = free_port()
    stack = make_stack(**bridge_sections(port=port)).start()
    bus = live_bus(stack, ["clicked"])
    proc = subprocess.Popen([mono, str(exe), "127.0.0.1", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = Lines(proc)
        assert lines.expect("SELFTEST") == "SELFTEST ok"
        assert lines.expect("WELCOME") == "WELCOME 1 "
        reply = stack.client.request("set_expression", {"name": "happy", "value": 0.8})
        assert reply.data["detail"] == "sent to 1 client(s)"
        assert lines.expect("SET_EXPRESSION") == "SET_EXPRESSION joy 0.8"
        ev = bus.wait_event("clicked", timeout=30)
        assert ev.data == {"target": "head", "x": 0.25, "y": 0.75, "client": "mono-probe"}
        # Lip sync: a reply piece on the real bus reaches the C# client as visemes, which its
        # VisemePlayer plays in order.
        watcher = connect(stack, "watcher")
        pub = BusPublisher(stack)
        try:
            pub.prime(watcher)
            pub.publish("chat_started", {"request_id": 11})
            # (a trailing space: a word at the end of a piece waits for the next one)
            pub.publish("chat_delta", {"request_id": 11, "text": "Hello there ", "index": 0})
            assert lines.expect("VISEME") == "VISEME ee,oh,ee,ee"
            assert lines.expect("PLAYED") == "PLAYED ee,oh,ee,ee"
            pub.publish("chat_ended", {"request_id": 11, "text": "Hello there ",
                                       "cancelled": False})
        finally:
            pub.close()
            watcher.close()
        # The bridge restarts: the C# client reconnects by itself and gets the state back.
        stack.client.request("restart", {"worker": "unity_bridge"})
        assert lines.expect("DISCONNECTED").startswith("DISCONNECTED ")
        assert lines.expect("WELCOME") == "WELCOME 2 joy=0.8"
        lines.expect("DONE")
        assert proc.wait(30) == 0
    finally:
        bus.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
