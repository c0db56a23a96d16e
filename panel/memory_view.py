"""The conversation memory (the inference worker's SQLite file), as the Chat tab needs it.

Reads go through a read-only connection with a short busy timeout, so a write in progress
never holds the window; clearing deletes one conversation's rows in one transaction (SQLite's
WAL lets the worker keep writing meanwhile, and it reads the history afresh for each reply).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSY_MS = 200
USER = "local"  # the chat requests of the panel carry no user: the worker's default


@dataclass
class Conversation:
    name: str
    messages: int
    last_ts: float


def memory_path(config: dict[str, Any], data_dir: Path) -> Path:
    chosen = config["ai"]["memory_file"]
    return Path(chosen).expanduser() if chosen else data_dir / "memory.sqlite"


class MemoryView:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self, write: bool = False) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        uri = f"file:{self.path.as_posix()}{'' if write else '?mode=ro'}"
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_MS / 1000, isolation_level=None)
        return db

    def conversations(self) -> list[Conversation]:
        db = self._connect()
        if db is None:
            return []
        try:
            rows = db.execute("SELECT conversation, COUNT(*), MAX(ts) FROM messages WHERE user = ? "
                              "GROUP BY conversation ORDER BY MAX(ts) DESC", (USER,)).fetchall()
        except sqlite3.Error:
            return []
        finally:
            db.close()
        return [Conversation(name, n, ts) for name, n, ts in rows]

    def messages(self, conversation: str, limit: int = 200) -> list[tuple[str, str]]:
        """The last `limit` (role, text) of a conversation, oldest first."""
        db = self._connect()
        if db is None:
            return []
        try:
            rows = db.execute("SELECT role, content FROM messages WHERE user = ? AND "
                              "conversation = ? ORDER BY id DESC LIMIT ?",
                              (USER, conversation, limit)).fetchall()
        except sqlite3.Error:
            return []
        finally:
            db.close()
        return rows[::-1]

    def clear(self, conversation: str) -> int:
        """Forget a conversation; returns how many messages went. sqlite3.Error on failure."""
        db = self._connect(write=True)
        if db is None:
            return 0
        try:
            db.execute("BEGIN IMMEDIATE")
            n = db.execute("DELETE FROM messages WHERE user = ? AND conversation = ?",
                           (USER, conversation)).rowcount
            db.execute("DELETE FROM windows WHERE user = ? AND conversation = ?",
                       (USER, conversation))
            db.execute("COMMIT")
            return n
        finally:
            db.close()
