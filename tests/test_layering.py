"""The protocol package stands alone, and worker packages never import each other."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from supervisor.harness import ROOT

CORE = ("supervisor.core", "supervisor.lifecycle", "supervisor.child", "supervisor.host",
        "supervisor.states", "supervisor.specs")


def imported_after(*modules: str) -> set[str]:
    """The project's modules a fresh interpreter holds after importing `modules`."""
    code = ("import importlib, json, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return set(json.loads(out))


def test_the_protocol_imports_nothing_of_the_supervisor() -> None:
    loaded = imported_after("protocol.messages", "protocol.codec", "protocol.framing",
                            "protocol.bus")
    assert "protocol.bus" in loaded
    assert not {m for m in loaded if m == "supervisor" or m.startswith("supervisor.")}


@pytest.mark.parametrize("module", ["workers.runtime", "workers.inference.worker",
                                    "workers.gpu_monitor.worker", "unity_bridge.worker",
                                    "unity_bridge.client", "unity_bridge.gen_protocol",
                                    "supervisor.cli", "supervisor.harness"])
def test_workers_tools_and_the_cli_never_import_the_supervisor_core(module: str) -> None:
    loaded = imported_after(module)
    assert module in loaded
    assert not loaded & set(CORE), sorted(loaded & set(CORE))


@pytest.mark.parametrize("module, other", [("workers.inference.worker", "workers.gpu_monitor"),
                                           ("workers.gpu_monitor.worker", "workers.inference"),
                                           ("unity_bridge.worker", "workers.inference")])
def test_worker_packages_do_not_import_each_other(module: str, other: str) -> None:
    loaded = imported_after(module)
    assert not {m for m in loaded if m == other or m.startswith(other + ".")}
