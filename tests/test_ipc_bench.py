"""bench.ipc end to end on a real stack: every registry type accounted for, every target
measured, the results written. (Its numbers are for the README, not asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from protocol.messages import REGISTRY
from supervisor.config import REPO_ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_ipc_bench_quick_run(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.ipc", "--quick", "--footprint-s", "3",
                           "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "ipc.json").read_text())
    types = res["types"]
    assert set(REGISTRY) <= set(types)  # measured, an alias of a measured one, or why not
    for name in REGISTRY:
        row = types[name]
        assert row["real"].get("n") or row.get("alias_of") or row.get("note"), name
    for name in ("ping", "status", "set_expression", "ok", "hello", "clicked", "chat_token",
                 "chat_delta", "worker_stats", "gpu_stats", "request_retry"):
        assert types[name]["real"]["n"] > 0, name
    for name in ("ping", "set_expression", "chat_token"):  # beside the floor
        assert types[name]["floor"]["n"] > 0 and types[name]["ratio_p50"] > 0, name
    assert types["ping"]["one_core"]["floor"]["n"] > 0
    tput = res["chat_delta_throughput"]
    assert tput["received"] == tput["sent"] == 20_000  # merged or not, no piece lost
    for case in ("switch", "switch_slow_load"):
        sw = res[case]
        assert sw["set_expression_tcp_during"]["n"] > 0 and sw["heartbeat_gap_max_s"]
    assert res["switch_slow_load"]["load_s"] >= 3.0
    assert set(res["recovery"]) == {"inference", "gpu_monitor", "unity_bridge"}
    assert res["footprint"]["supervisor_rss_mb"] > 0
    assert len(res["targets"]) >= 10
    assert all(measured for _, measured, _ in res["targets"])  # each with its value
    md = (tmp_path / "ipc.md").read_text()
    assert "| set_expression |" in md and "**Targets**" in md
    for png in ("ipc_latency.png", "ipc_codec.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC
