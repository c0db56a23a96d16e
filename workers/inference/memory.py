"""Conversation memory in SQLite (WAL), so a restart or a profile switch loses no history.

Each message is stored with its token count, so building a prompt that fits the context window
never re-tokenizes the whole history.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    conversation TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (user, conversation, id);
"""


@dataclass
class Message:
    role: str
    content: str
    tokens: int


class Memory:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def add(self, user: str, conversation: str, role: str, content: str, tokens: int) -> None:
        self.db.execute("INSERT INTO messages (user, conversation, role, content, tokens, ts) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (user, conversation, role, content, tokens, time.time()))

    def window(self, user: str, conversation: str, budget: int) -> list[Message]:
        """The most recent messages whose tokens add up to at most `budget`, oldest first."""
        picked: list[Message] = []
        used = 0
        rows = self.db.execute("SELECT role, content, tokens FROM messages WHERE user = ? AND "
                               "conversation = ? ORDER BY id DESC", (user, conversation))
        for role, content, tokens in rows:
            if used + tokens > budget:
                break
            used += tokens
            picked.append(Message(role, content, tokens))
        picked.reverse()
        if picked and picked[0].role == "assistant":
            picked.pop(0)  # a window starts with the user's turn, as chat templates expect
        return picked

    def count(self, user: str, conversation: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM messages WHERE user = ? AND "
                               "conversation = ?", (user, conversation)).fetchone()[0]

    def close(self) -> None:
        self.db.close()
