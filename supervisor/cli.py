"""`python -m supervisor`: control a running stack over the bus."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from protocol.bus import BusClient, BusError, connect
from protocol.messages import PROFILES, with_role
from supervisor.config import DEFAULT_CONFIG, REPO_ROOT

DOCTOR_MODULE = "workers.inference.doctor"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m supervisor",
                                description="Control a running companion stack.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="config file of the stack to talk to (default: data/config.json)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("status", help="state of every worker")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    for name, text in (("restart", "stop and start a worker (revives a FATAL one)"),
                       ("stop", "stop a worker until restart"),
                       ("kill", "hard-kill a worker to test recovery (counts as a crash)")):
        sub.add_parser(name, help=text).add_argument("worker")
    sw = sub.add_parser("switch-profile", help="reload the model with another GPU profile "
                                               "(restarts the worker that provides profiles)")
    sw.add_argument("profile")
    sw.add_argument("--emergency", action="store_true",
                    help="stop the reply in flight and re-run it after the switch")
    ch = sub.add_parser("chat", help="ask the companion; the reply streams")
    ch.add_argument("text")
    ch.add_argument("--max-tokens", type=int)
    lg = sub.add_parser("logs", help="last lines of a worker's log")
    lg.add_argument("worker")
    lg.add_argument("-n", "--lines", type=int, default=50)
    sub.add_parser("shutdown", help="stop the whole stack")
    dr = sub.add_parser("doctor", help="check llama build, GPU, model and profiles (no stack "
                                       "needed)")
    dr.add_argument("--json", action="store_true")
    dr.add_argument("--model", type=Path, help="check this GGUF instead of the configured one")
    return p


def utf8_output(*streams: object) -> None:
    """Print UTF-8, replacing what cannot be written: model text is any Unicode (emoji), and a
    redirected stdout on Windows is the ANSI code page (cp1252) with strict errors, where the
    first emoji ended the CLI with a UnicodeEncodeError mid-reply."""
    for stream in streams or (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    utf8_output()
    args = build_parser().parse_args(argv)
    if args.cmd == "doctor":  # its own process: it loads llama, which the CLI never imports
        cmd = [sys.executable, "-m", DOCTOR_MODULE, "--config", str(args.config)]
        cmd += ["--json"] * args.json + (["--model", str(args.model)] if args.model else [])
        return subprocess.call(cmd, cwd=REPO_ROOT)
    try:
        client = connect(args.config.resolve().parent / "run")
    except BusError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    try:
        with client:
            return run(client, args)
    except BusError as exc:
        print(f"error {exc.code}: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(client: BusClient, args: argparse.Namespace) -> int:
    t = args.timeout
    if args.cmd == "status":
        reply = client.request("status", timeout=t).data
        if args.json:
            print(json.dumps(reply, indent=2))
        else:
            print_status(reply)
    elif args.cmd in ("restart", "stop", "kill"):
        print(client.request(args.cmd, {"worker": args.worker}, timeout=t).data["detail"])
    elif args.cmd == "switch-profile":
        print(client.request("switch_profile", {"profile": args.profile,
                                                "emergency": args.emergency},
                             timeout=t).data["detail"])
    elif args.cmd == "chat":
        return chat(client, args)
    elif args.cmd == "logs":
        reply = client.request("logs", {"worker": args.worker, "lines": args.lines},
                               timeout=t).data
        print(f"# {reply['path']}", file=sys.stderr)
        for line in reply["lines"]:
            print(line)
    elif args.cmd == "shutdown":
        print(client.request("shutdown", timeout=t).data["detail"])
    return 0


def chat(client: BusClient, args: argparse.Namespace) -> int:
    data: dict = {"text": args.text}
    if args.max_tokens:
        data["max_tokens"] = args.max_tokens
    # Generous per-message wait: the request may sit in the queue while a model loads.
    for env in client.stream("chat", data, timeout=max(args.timeout, 180.0)):
        if env.type == "chat_token":
            print(env.data["text"], end="", flush=True)
        elif env.type == "request_retry":
            print(f"\n[{env.data['reason']}: running it again]", file=sys.stderr)
        elif env.type == "chat_done":
            d = env.data
            print()
            print(f"[{d['tokens']} tokens, first after {d['ttft_ms']:.0f} ms, "
                  f"{d['tokens_per_s']:.1f} tokens/s]", file=sys.stderr)
    return 0


def print_status(reply: dict) -> None:
    sup = reply.get("supervisor", {})
    print(f"supervisor pid {sup.get('pid')}  up {sup.get('uptime_s', 0):.0f} s  "
          f"rss {_mb(sup.get('rss'))}  profile {reply.get('profile') or '-'}")
    print(f"{'worker':<14}{'state':<10}{'pid':>8}{'cpu%':>7}{'rss':>9}{'up s':>8}"
          f"{'restarts':>9}  {'policy':<11}last exit")
    inf = with_role(reply["workers"], PROFILES).get("ready_info") or {}
    if inf.get("gpu_fallback"):
        print(f"note: profile '{inf.get('requested_profile')}' runs as '{inf.get('profile')}': "
              f"{(inf.get('notes') or ['-'])[-1]}")
    for name, w in reply["workers"].items():
        cpu = "-" if w["cpu_percent"] is None else f"{w['cpu_percent']:.1f}"
        print(f"{name:<14}{w['state']:<10}{w['pid'] or '-':>8}{cpu:>7}{_mb(w['rss']):>9}"
              f"{w['uptime_s']:>8.0f}{w['restarts']:>9}  {w['restart']:<11}"
              f"{w['last_exit'] or '-'}")


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.0f}MB"



