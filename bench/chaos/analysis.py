"""Figures from what the run wrote down: the ledger, the faults, the observed lives, the logs.

No verdicts here (report.py judges); only counting, so every figure can be traced back to
the records it came from.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from bench.chaos.faults import EMERGENCY, KILL, STOP, SWITCH, Fault
from bench.chaos.ledger import CLOSED, COMPLETED, ERROR, LOST, Ledger, Record
from bench.chaos.observer import Life
from bench.ipc.stats import summary
from protocol.messages import ErrorCode

REGISTERED = {int(c) for c in ErrorCode}
EXCEPTION_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Exit)\b.*|.*thread '.*' died.*")


def requests(ledger: Ledger) -> dict[str, Any]:
    recs = ledger.snapshot()
    for r in recs:
        if not r.outcome:  # its thread never closed it: no final reply, so lost
            Ledger.close(r, LOST, message="never ended (its client stopped waiting)")
    lost = [r for r in recs if r.outcome == LOST]
    chats = [r for r in recs if r.type == "chat"]
    silent_errors = [r for r in chats if r.outcome == ERROR and r.tokens == 0]
    codes = Counter(r.code for r in recs if r.outcome == ERROR)
    return {
        "sent": len(recs), "by_outcome": dict(Counter(r.outcome for r in recs)),
        "by_type": ledger.summary(), "lost": len(lost),
        "lost_examples": [_brief(r) for r in lost[:10]],
        "chats": len(chats), "chats_completed": sum(r.outcome == COMPLETED for r in chats),
        "chats_retried": sum(r.retries > 0 for r in chats),
        "chats_completed_after_retry": sum(r.retries > 0 and r.outcome == COMPLETED
                                           for r in chats),
        "chat_s": summary([r.ended - r.sent for r in chats if r.outcome == COMPLETED]),
        "longest_silence_s": max((r.longest_silence for r in recs), default=0.0),
        "answered_after_30s_silence": sum(r.longest_silence > 30 and r.outcome != LOST
                                          for r in recs),
        "chat_errors": sum(r.outcome == ERROR for r in chats),
        "chat_errors_without_token": len(silent_errors),
        "chat_errors_without_token_examples": [_brief(r) for r in silent_errors[:10]],
        "wire_closed": sum(r.outcome == CLOSED for r in recs),
        "error_codes": {str(k): v for k, v in sorted(codes.items(), key=lambda kv: str(kv[0]))},
        "unregistered_codes": sorted(str(c) for c in codes if c not in REGISTERED),
    }


def _brief(r: Record) -> dict[str, Any]:
    return {"type": r.type, "channel": r.channel, "client": r.client, "sent": r.sent,
            "outcome": r.outcome, "code": r.code, "message": r.message, "tokens": r.tokens,
            "retries": r.retries, "text": r.data.get("text")}


def faults(fs: list[Fault]) -> dict[str, Any]:
    done = [f for f in fs if not f.detail.startswith("missed")]
    chat_times = sorted(f.t for f in done if f.chat_worker)
    gaps = [b - a for a, b in zip(chat_times, chat_times[1:], strict=False)]
    return {"total": len(done), "missed": len(fs) - len(done),
            "kills": sum(f.kind == KILL for f in done),
            "by_kind": dict(Counter(f.kind for f in done)),
            "by_worker": dict(Counter(f"{f.kind} {f.worker}" for f in done)),
            "chat_worker_faults": len(chat_times),
            "min_chat_fault_gap_s": min(gaps) if gaps else None}


def exits(lives: dict[str, list[Life]], fs: list[Fault],
          windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Each worker's ended lives: by one of our faults (a kill, a SIGSTOP, a thread death: the
    same worker and pid, while that life lasted), by a stop we asked for (a profile switch),
    or unexplained: a crash, placed in the named window it fell in."""
    def ours(life: Life) -> bool:
        return any(f.worker == life.worker and f.pid == life.pid and f.kind != SWITCH
                   and f.kind != EMERGENCY and (not f.t or life.started - 1 <= f.t
                                                <= (life.ended or f.t) + 1) for f in fs)

    out: dict[str, Any] = {}
    for name, ls in lives.items():
        ended = [life for life in ls if life.ended is not None]
        requested = [life for life in ended if life.reason.startswith("stopped (")]
        by_us = [life for life in ended if ours(life) and life not in requested]
        crashes = [life for life in ended if life not in by_us and life not in requested]
        out[name] = {
            "lives": len(ls), "ended": len(ended), "ended_by_us": len(by_us),
            "requested_stops": len(requested),
            "crashes": [{"pid": c.pid, "at": c.ended, "reason": c.reason,
                         "during": next((w for w, (a, b) in windows.items()
                                         if a <= (c.ended or 0) <= b), "between phases")}
                        for c in crashes]}
    return out


def sigstops(lives: dict[str, list[Life]], fs: list[Fault], heartbeat_s: float
             ) -> list[dict[str, Any]]:
    """For each SIGSTOP: when the supervisor called the process hung (its life ended), and
    when the very next process of that worker was ready. One the bench itself had to kill
    at its end, or whose replacement was killed before it was ready, is marked so."""
    out = []
    for f in fs:
        if f.kind != STOP or f.detail:
            continue
        ls = lives.get(f.worker, [])
        idx = next((i for i, life in enumerate(ls) if life.pid == f.pid), None)
        if idx is None or ls[idx].ended is None:
            out.append({"worker": f.worker, "pid": f.pid, "error": "its end was not seen"})
            continue
        life = ls[idx]
        if not life.reason.startswith("hung"):
            out.append({"worker": f.worker, "pid": f.pid, "skipped": life.reason})
            continue
        noticed = (life.ended or 0.0) - f.t
        row: dict[str, Any] = {"worker": f.worker, "pid": f.pid, "reason": life.reason,
                               "noticed_s": noticed, "noticed_heartbeats": noticed / heartbeat_s}
        nxt = ls[idx + 1] if idx + 1 < len(ls) else None
        if nxt is not None and nxt.ready is not None:
            row["start_s"] = nxt.ready - (life.ended or 0.0)
            row["replaced_s"] = nxt.ready - f.t
        else:
            row["start_s"] = None  # its replacement did not get to ready (killed, or the end)
        out.append(row)
    return out


def log_exceptions(log_dir: Path, worker: str) -> dict[str, Any]:
    """Tracebacks in a worker's logs (rotated ones too) and the lines that name them."""
    tracebacks = 0
    lines: Counter[str] = Counter()
    for path in sorted(log_dir.glob(f"{worker}.log*")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            text = line.split(": ", 1)[-1] if " CRITICAL " in line else line
            if EXCEPTION_LINE.match(text.strip()):
                lines[text.strip()[:200]] += 1
    return {"tracebacks": tracebacks,
            "exceptions": [f"{n}x {text}" for text, n in lines.most_common(6)]}
