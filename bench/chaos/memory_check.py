"""The conversation memory against what the chat clients were told.

The worker stores a reply (the user's text, then the reply) before it sends chat_done, so
every completed chat with a non-empty reply must be in memory: its text, followed in its
conversation by exactly that reply. Also counted, as findings rather than failures: texts
stored twice (a kill between the store and chat_done, then the re-run stores it again), a
text without its reply (a kill between the two writes), and texts stored for chats that
ended in an error or were lost.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.chaos.ledger import COMPLETED, Record

USER = "chaos"


def check(db_path: Path, chats: list[Record]) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT id, conversation, role, content FROM messages WHERE user = ? "
                          "ORDER BY conversation, id", (USER,)).fetchall()
    finally:
        db.close()
    following: dict[int, tuple[str, str]] = {}  # user row id -> (role, content) of the next
    by_text: dict[str, list[int]] = defaultdict(list)
    for (rid, conv, role, content), nxt in zip(rows, [*rows[1:], None], strict=True):
        if role != "user":
            continue
        by_text[content].append(rid)
        if nxt is not None and nxt[1] == conv:
            following[rid] = (nxt[2], nxt[3])
    missing: list[str] = []
    wrong: list[str] = []
    stored_after_failure = 0
    completed = [c for c in chats if c.outcome == COMPLETED and c.reply]
    for chat in chats:
        text = chat.data["text"]
        ids = by_text.get(text, [])
        if chat.outcome != COMPLETED:
            stored_after_failure += bool(ids)
        elif chat.reply and not ids:
            missing.append(text)
        elif chat.reply and ("assistant", chat.reply) not in (following.get(i) for i in ids):
            wrong.append(text)
    return {
        "integrity": integrity, "rows": len(rows), "completed_with_text": len(completed),
        "missing": len(missing), "wrong_reply": len(wrong),
        "examples": (missing + wrong)[:5],
        "stored_twice": sum(len(ids) > 1 for ids in by_text.values()),
        "text_without_reply": sum(following.get(i, ("", ""))[0] != "assistant"
                                  for ids in by_text.values() for i in ids),
        "stored_for_failed_chats": stored_after_failure,
        "consistent": integrity == "ok" and not missing and not wrong,
    }
