"""Every request the soak sends, and how it ended: the one place outcomes are decided.

A request ends exactly once: `completed` (its final reply), `error` (an error reply, with its
code), `closed` (Unity wire only: the connection dropped under it, which the client sees), or
`lost`: no final reply within its timeout. Lost is what must never happen.

On the bus the timeout counts from the request's last sign of life (sent, a token, a retry
notice), as the CLI's does: a chat whose compute threads (nice 10) are starved by other work
on the machine is slow, not lost, while it still streams. `longest_silence` shows how close
each came.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

COMPLETED, ERROR, CLOSED, LOST = "completed", "error", "closed", "lost"


@dataclass
class Record:
    channel: str  # "bus" or "wire"
    type: str
    client: str
    sent: float  # time.time()
    timeout_s: float
    data: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""
    code: int | None = None
    message: str = ""
    ended: float = 0.0
    tokens: int = 0  # chat_token replies received (chats)
    retries: int = 0  # request_retry replies received (chats)
    reply: str = ""  # the final reply's text (chats)
    last_seen: float = 0.0  # the last sign of life: sent, or its latest reply
    longest_silence: float = 0.0  # seconds, between two signs of life

    def alive(self) -> None:
        """A reply to it came now."""
        now = time.time()
        self.longest_silence = max(self.longest_silence, now - (self.last_seen or self.sent))
        self.last_seen = now

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """Thread-safe: each load thread records its own requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[Record] = []

    def open(self, channel: str, type_: str, client: str, timeout_s: float,
             data: dict[str, Any] | None = None) -> Record:
        rec = Record(channel, type_, client, time.time(), timeout_s, dict(data or {}))
        with self._lock:
            self.records.append(rec)
        return rec

    @staticmethod
    def close(rec: Record, outcome: str, code: int | None = None, message: str = "") -> None:
        assert not rec.outcome, f"request ended twice: {rec}"
        rec.outcome, rec.code, rec.message, rec.ended = outcome, code, message[:300], time.time()

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def summary(self) -> dict[str, Any]:
        """Counts per channel and type: outcomes, and error codes."""
        out: dict[str, Any] = {}
        for rec in self.snapshot():
            row = out.setdefault(f"{rec.channel}:{rec.type}",
                                 {"sent": 0, COMPLETED: 0, ERROR: 0, CLOSED: 0, LOST: 0,
                                  "open": 0, "codes": Counter()})
            row["sent"] += 1
            row[rec.outcome or "open"] += 1
            if rec.outcome == ERROR:
                row["codes"][str(rec.code)] += 1
        for row in out.values():
            row["codes"] = dict(row["codes"])
        return out
