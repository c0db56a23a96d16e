"""Chat: the reply streams in token by token; Stop (or Esc) cancels; figures per reply;
conversations from the SQLite memory; a notice when a reply is re-run after a crash."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from panel.memory_view import MemoryView

if TYPE_CHECKING:
    from panel.window import PanelWindow
    from protocol.codec import Envelope

DEFAULT_CONVERSATION = "default"
CHAT_TIMEOUT_S = 180.0  # per reply piece: a reply queued behind a model load waits that long


class ChatTab(QWidget):
    def __init__(self, win: PanelWindow, memory: MemoryView) -> None:
        super().__init__()
        self.win = win
        self.memory = memory
        self.request_id: int | None = None
        self.reply_text = ""
        self.others = 0  # pieces of replies to other clients (chat_delta)
        self.other_text = ""

        self.conversation = QComboBox(editable=True)
        self.conversation.setToolTip("Conversations in the companion's memory; type a new name "
                                     "to start one")
        self.conversation.setMinimumWidth(200)
        self.conversation.activated.connect(lambda _i: self.show_history())
        self.conversation.lineEdit().editingFinished.connect(self.show_history)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh_conversations)
        self.clear_button = QPushButton("Clear conversation")
        self.clear_button.clicked.connect(self.clear_conversation)
        top = QHBoxLayout()
        top.addWidget(QLabel("Conversation:"))
        top.addWidget(self.conversation, 1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.clear_button)

        self.transcript = QTextBrowser()
        self.transcript.setOpenLinks(False)
        self.notice = QLabel()
        self.notice.setStyleSheet("background:#fff3cd; color:#664d03; padding:4px; "
                                  "border:1px solid #ffe69c;")
        self.notice.setWordWrap(True)
        self.notice.hide()
        self.figures = QLabel("No reply yet.")
        self.figures.setObjectName("figures")
        self.activity = QLabel("")
        self.activity.setStyleSheet("color:#666;")

        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Message the companion (Enter sends, Shift+Enter adds a "
                                      "line, Esc stops the reply)")
        self.input.setFixedHeight(70)
        self.input.installEventFilter(self)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.transcript, 1)
        lay.addWidget(self.notice)
        lay.addWidget(self.figures)
        lay.addWidget(self.activity)
        lay.addLayout(bottom)

        win.bus.on("chat_delta", self._on_delta)
        win.bus.on("chat_ended", self._on_ended)
        self._activity_timer = QTimer(self)  # other clients' replies: shown at 10 Hz at most
        self._activity_timer.timeout.connect(self._show_activity)
        self._activity_timer.start(100)
        self.refresh_conversations()
        self.show_history()

    # -- keys --------------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if obj is self.input and event.type() == QEvent.Type.KeyPress:
            key = QKeyEvent(event).key() if not isinstance(event, QKeyEvent) else event.key()
            mods = event.modifiers() if isinstance(event, QKeyEvent) else Qt.KeyboardModifier(0)
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if mods & Qt.KeyboardModifier.ShiftModifier:
                    self.input.insertPlainText("\n")
                else:
                    self.send()
                return True
            if key == Qt.Key.Key_Escape:
                self.stop()
                return True
        return super().eventFilter(obj, event)

    # -- conversations -------------------------------------------------------------------------
    def current_conversation(self) -> str:
        return self.conversation.currentText().strip() or DEFAULT_CONVERSATION

    def refresh_conversations(self) -> None:
        current = self.current_conversation()
        names = [c.name for c in self.memory.conversations()]
        if current not in names:
            names.insert(0, current)
        self.conversation.blockSignals(True)
        self.conversation.clear()
        for c in names:
            self.conversation.addItem(c)
        self.conversation.setCurrentText(current)
        self.conversation.blockSignals(False)

    def show_history(self) -> None:
        if self.request_id is not None:
            return  # a reply streams into the transcript: leave it
        self.transcript.clear()
        for role, text in self.memory.messages(self.current_conversation()):
            self._append_turn(role, text)

    def clear_conversation(self) -> None:
        name = self.current_conversation()
        if self.request_id is not None:
            self.win.say(f"Clear '{name}': wait until the reply ends (or Stop it)", error=True)
            return
        try:
            n = self.memory.clear(name)
        except Exception as exc:  # sqlite3.Error, OSError: shown, never raised into Qt
            self.win.say(f"Clear '{name}' failed: {exc}", error=True)
            return
        self.transcript.clear()
        self.refresh_conversations()
        self.win.say(f"Conversation '{name}' cleared ({n} messages forgotten)")

    # -- a reply -------------------------------------------------------------------------------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text:
            self.win.say("Nothing to send: type a message first", error=True)
            return
        if self.request_id is not None:
            self.win.say("A reply is still streaming: wait, or press Stop (Esc)", error=True)
            return
        self.input.clear()
        self.notice.hide()
        self._append_turn("user", text)
        self._append_turn("assistant", "")
        self.reply_text = ""
        self.send_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.figures.setText("Waiting for the reply… (request pending)")
        self.request_id = self.win.bus.request(
            "chat", {"text": text, "conversation": self.current_conversation()}, self._on_reply,
            timeout_s=CHAT_TIMEOUT_S)

    def stop(self) -> None:
        if self.request_id is None:
            return
        self.win.call("chat_cancel", {"request_id": self.request_id}, "Stop the reply")

    def _on_reply(self, env: Envelope) -> None:
        data: dict[str, Any] = env.data
        if env.type == "chat_token":
            self._append_text(data["text"])
            self.reply_text += data["text"]
            return
        if env.type == "request_retry":
            self.notice.setText(f"The language model stopped while replying ({data['reason']}); "
                                f"the reply is being run again (attempt {data['attempt']}).")
            self.notice.show()
            self._restart_reply()
            return
        self.request_id = None
        self.send_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if env.type == "chat_done":
            how = "stopped" if data.get("cancelled") else "done"
            self.figures.setText(
                f"Reply {how}: emotion {data.get('emotion', 'neutral')} "
                f"({float(data.get('intensity') or 0):.2f}) · first token "
                f"{float(data['ttft_ms']):.0f} ms · {float(data['tokens_per_s']):.1f} tokens/s · "
                f"{data['tokens']} tokens")
            self.win.say(f"Reply {how}")
            if data.get("cancelled"):
                self._append_text(" [stopped]")
            self.refresh_conversations()
        else:  # error
            self.figures.setText("The reply failed.")
            self.win.show_error("Chat", env)

    def _restart_reply(self) -> None:
        """The re-run streams from the first token again: drop the partial text."""
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        for _ in range(len(self.reply_text)):
            cursor.deletePreviousChar()
        self.reply_text = ""

    # -- transcript ----------------------------------------------------------------------------
    def _append_turn(self, role: str, text: str) -> None:
        who = "You" if role == "user" else "Companion"
        color = "#1f5fbf" if role == "user" else "#2f7d32"
        self.transcript.append(f'<b style="color:{color}">{who}:</b> '
                               f'{html.escape(text)}')

    def _append_text(self, text: str) -> None:
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.transcript.setTextCursor(cursor)
        self.transcript.ensureCursorVisible()

    # -- other clients' replies ----------------------------------------------------------------
    def _on_delta(self, data: dict[str, Any]) -> None:
        self.others += 1
        self.other_text = (self.other_text + str(data.get("text", "")))[-120:]

    def _on_ended(self, data: dict[str, Any]) -> None:
        self.other_text = ""

    def _show_activity(self) -> None:
        text = (f"Companion speaking: …{self.other_text}" if self.other_text else "")
        if text != self.activity.text():
            self.activity.setText(text)
