"""`python -m bench.chaos`: run the chaos soak and fuzz and write its results."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import tempfile
from pathlib import Path

from bench.chaos import report, runner
from bench.chaos.plan import Plan

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> int:
    if sys.platform == "win32":
        print("the chaos soak uses SIGKILL, SIGSTOP and ipc:// endpoints; run it on Linux")
        return 1
    ap = argparse.ArgumentParser(prog="python -m bench.chaos")
    how_long = ap.add_mutually_exclusive_group()
    how_long.add_argument("--minutes", type=float, help="whole run (full fuzz: 100 000 frames)")
    how_long.add_argument("--seconds", type=float,
                          help="whole run; up to 120 s it is the short run (smaller fuzz)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kill-every", type=float, help="seconds between faults on the chat "
                    "worker (default 3)")
    ap.add_argument("--fuzz-frames", type=int, help="hostile frames (default 100 000, short "
                    "4 000)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--keep", type=Path, help="run the stacks in this new folder and keep it "
                    "(their logs, memory.sqlite) for a post-mortem; default: a temporary one")
    args = ap.parse_args(argv)
    budget = args.seconds if args.seconds else (args.minutes or 10) * 60
    plan = Plan.short(budget, args.seed) if budget <= 120 else Plan.full(budget, args.seed)
    if args.kill_every:
        plan = plan.with_(kill_every_s=args.kill_every)
    if args.fuzz_frames:
        plan = plan.with_(fuzz_frames=args.fuzz_frames)
    command = "python -m bench.chaos " + shlex.join(argv if argv is not None else sys.argv[1:])
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True)
            work = args.keep
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        res = runner.run(plan, work, command.strip(), lambda m: print(m, flush=True))
    print(report.write(res, args.out))
    print(f"wrote {args.out / 'chaos.json'} and chaos.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
