"""`python -m bench.ipc`: run the IPC benchmark and write its results (see bench.ipc)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.ipc import report, runner
from bench.ipc.sampling import Plan

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> int:
    if sys.platform == "win32":
        print("the IPC bench uses ipc:// endpoints and SIGKILL; run it on Linux or macOS")
        return 1
    ap = argparse.ArgumentParser(prog="python -m bench.ipc")
    ap.add_argument("--quick", action="store_true", help="fewer samples, 30 s footprint")
    ap.add_argument("--footprint-s", type=float, help="idle footprint seconds (default 60, "
                    "30 with --quick)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args(argv)
    plan = Plan.for_run(args.quick, args.footprint_s)
    with tempfile.TemporaryDirectory(prefix="ipcb-") as d:
        res = runner.run(plan, Path(d))
    res["quick"] = args.quick
    print(report.write(res, args.out))
    print(f"wrote {args.out / 'ipc.json'}, ipc.md, ipc_latency.png, ipc_codec.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
