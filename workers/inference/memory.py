"""Conversation memory in SQLite (WAL), so a restart or a profile switch loses no history.

Each message is stored with its token count, so building a prompt that fits the context window
never re-tokenizes the whole history. The window's first message is remembered too: when the
history outgrows the budget, the window jumps forward to half of it and then stays put while it
refills. A window that slid one turn at a time would change the prompt right after the persona
on every turn, and llama.cpp would re-evaluate the whole history each time instead of reusing
its cached prefix.
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
CREATE TABLE IF NOT EXISTS windows (
    user TEXT NOT NULL,
    conversation TEXT NOT NULL,
    start_id INTEGER NOT NULL,
    PRIMARY KEY (user, conversation)
);
"""
KEEP_FRACTION = 0.5  # of the budget, kept when the window has to jump


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
        """Messages from the window's start on, oldest first, at most `budget` tokens."""
        row = self.db.execute("SELECT start_id FROM windows WHERE user = ? AND conversation = ?",
                              (user, conversation)).fetchone()
        start = row[0] if row else 0
        rows = self.db.execute("SELECT id, role, content, tokens FROM messages WHERE user = ? "
                               "AND conversation = ? AND id >= ? ORDER BY id",
                               (user, conversation, start)).fetchall()
        total = sum(r[3] for r in rows)
        first = 0
        if total > budget:
            while first < len(rows) and (total > budget * KEEP_FRACTION
                                         or rows[first][1] != "user"):
                total -= rows[first][3]
                first += 1
            new_start = rows[first][0] if first < len(rows) else rows[-1][0] + 1
            self.db.execute("INSERT INTO windows (user, conversation, start_id) VALUES (?, ?, ?) "
                            "ON CONFLICT (user, conversation) DO UPDATE SET start_id = "
                            "excluded.start_id", (user, conversation, new_start))
        return [Message(role, content, tokens) for _, role, content, tokens in rows[first:]]

    def count(self, user: str, conversation: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM messages WHERE user = ? AND "
                               "conversation = ?", (user, conversation)).fetchone()[0]

    def close(self) -> None:
        self.db.close()
