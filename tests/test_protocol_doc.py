"""docs/PROTOCOL.md and the C# constants are generated from the registry and must match it."""

from __future__ import annotations

import re
import subprocess
import sys

from protocol.messages import (
    AVATAR,
    ERROR_DOCS,
    REGISTRY,
    SUPERVISOR,
    ErrorCode,
    Kind,
    Wire,
    validate_data,
)
from supervisor.harness import ROOT
from unity_bridge import gen_protocol


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, "-m", "unity_bridge.gen_protocol", "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert gen_protocol.stale() == []


def test_doc_documents_every_type_and_code() -> None:
    doc = gen_protocol.DOC_PATH.read_text(encoding="utf-8")
    documented = re.findall(r"^### `(\w+)`$", doc, re.M)
    assert sorted(documented) == sorted(REGISTRY)
    for code in ErrorCode:
        assert f"| {int(code)} | `{code.name}` |" in doc
    assert set(ERROR_DOCS) == set(ErrorCode)


def test_cs_constants_list_exactly_the_wire_types() -> None:
    cs = gen_protocol.CS_PATH.read_text(encoding="utf-8")
    consts = dict(re.findall(r'public const string (\w+) = "(\w+)";', cs))
    assert sorted(consts.values()) == sorted(n for n, s in REGISTRY.items() if s.wire)
    codes = {int(v) for v in re.findall(r"public const int \w+ = (\d+);", cs)}
    assert {int(c) for c in ErrorCode} <= codes


def test_examples_fit_the_registry() -> None:
    for ms in REGISTRY.values():
        env = gen_protocol.example(ms)
        assert validate_data(ms, env["data"]) is None
        assert ("id" in env) == (ms.kind is Kind.REQUEST)


def test_wire_registry_is_consistent() -> None:
    for name, ms in REGISTRY.items():
        if not ms.bus:
            assert ms.wire is not None, f"{name} is on no channel at all"
        if ms.kind is Kind.REQUEST and ms.wire in (Wire.FROM_CLIENT, Wire.BOTH):
            # A request a TCP client may send must be answered by the bridge.
            assert ms.handler in (AVATAR, SUPERVISOR), name
