"""What the avatar should show, kept by the bridge: pure logic, no sockets, no threads.

Commands are normalised here (clamped, VRM 1.0 names mapped to the VRM 0.x presets) so every
client receives the same values the bridge keeps and replays in `welcome`. Events of the stack
(chat, emotion, profile switch, worker state) become messages for the avatar clients.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocol.messages import CHAT, EMOTIONS, EXPRESSIONS
from unity_bridge.visemes import VisemeStream

# VRM 1.0 and VRM 0.x preset names (lowercased, from the one table in protocol.messages) and
# common spellings -> the wire's names: happy -> joy, blinkleft -> blink_l, a -> aa.
ALIASES = {**{alias: e.wire for e in EXPRESSIONS for alias in (e.vrm10.lower(), e.vrm0.lower())
              if alias and alias != e.wire},
           "surprise": "surprised", "anger": "angry", "joyful": "joy"}
MAX_NAME = 64
MAX_PATH = 4096
# Expression names kept besides the presets: every name is in `welcome` and the state file, so
# without a bound any local process could grow them past the frame limit (config key to come:
# unity_bridge.max_expressions).
MAX_EXPRESSIONS = 64
# The table's names (the VRM presets, and the emotions the bridge sets): always accepted.
PRESETS = frozenset({*(e.wire for e in EXPRESSIONS), *EMOTIONS})
# A state file is read from its end, at most this much: its last line is all that is needed.
MAX_STATE_READ = 16 << 20
# The state file gets a line per save; past this size the next save starts a fresh one.
COMPACT_BYTES = 256 * 1024
O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
HEAD_DEFAULTS = {"enabled": True, "min_interval": 2.0, "max_interval": 6.0, "max_angle": 10.0}

Outgoing = tuple[str, dict[str, Any]]  # a message type of the registry and its data


class CommandError(ValueError):
    """A command that cannot be carried out as given (the client gets INVALID_FIELD)."""


def canonical_expression(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


def _number(data: dict[str, Any], key: str, lo: float, hi: float,
            default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"'{key}' must be a number")
    if not math.isfinite(value):
        raise CommandError(f"'{key}' must be a finite number, got {value}")
    return float(min(hi, max(lo, value)))


def normalize(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """The data to keep and forward for an avatar command (types already checked by the codec)."""
    if type_ == "load_model":
        path = data["path"].strip()
        if not path or len(path) > MAX_PATH:
            raise CommandError(f"'path' must be 1..{MAX_PATH} characters")
        return {"path": path}
    if type_ == "set_expression":
        name = canonical_expression(data["name"])
        if not name or len(name) > MAX_NAME:
            raise CommandError(f"'name' must be 1..{MAX_NAME} characters")
        return {"name": name, "value": _number(data, "value", 0.0, 1.0)}
    if type_ == "reset_expressions":
        return {}
    if type_ == "set_transition_speed":
        return {"speed": _number(data, "speed", 0.1, 10.0)}
    if type_ == "set_auto_blink":
        return {"enabled": data["enabled"]}
    if type_ == "set_auto_head_movement":
        out = {"enabled": data["enabled"],
               "min_interval": _number(data, "min_interval", 0.1, 600.0,
                                       HEAD_DEFAULTS["min_interval"]),
               "max_interval": _number(data, "max_interval", 0.1, 600.0,
                                       HEAD_DEFAULTS["max_interval"]),
               "max_angle": _number(data, "max_angle", 0.0, 45.0, HEAD_DEFAULTS["max_angle"])}
        if out["min_interval"] > out["max_interval"]:
            raise CommandError("'min_interval' must not exceed 'max_interval'")
        return out
    raise CommandError(f"'{type_}' is not an avatar command")


def mouth_open(text: str) -> float:
    """A mouth opening 0..1 for a piece of text: vowel-rich text opens wider; none closes it.

    Deliberately simple (no phonemes, no audio): enough for a mouth that moves with the bubble.
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    vowels = sum(1 for c in letters if c.lower() in "aeiouyàáâäèéêëìíîïòóôöùúûü")
    return round(0.3 + 0.7 * min(1.0, 2.0 * vowels / len(letters)), 3)


@dataclass
class AvatarState:
    """Everything a (re)connecting client needs in `welcome`."""

    avatar_state: str = "idle"
    reason: str = ""
    profile: str = ""
    model: str | None = None
    expressions: dict[str, float] = field(default_factory=dict)
    transition_speed: float = 1.0
    auto_blink: bool = True
    auto_head_movement: dict[str, Any] = field(default_factory=lambda: dict(HEAD_DEFAULTS))

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


PERSISTED = ("model", "expressions", "transition_speed", "auto_blink", "auto_head_movement")


class Avatar:
    """The bridge's model of the avatar; every method returns the messages to broadcast."""

    def __init__(self, profile: str = "", state_file: Path | None = None,
                 max_expressions: int = MAX_EXPRESSIONS) -> None:
        self.state = AvatarState(profile=profile)
        self.state_file = state_file
        self.max_expressions = max_expressions
        self.request_id: int | None = None
        self.text = ""
        self.visemes = VisemeStream()  # of the reply being spoken
        self.switching = False  # a profile switch runs: the chat worker stopping is not "idle"
        self.dirty = False  # changed since the last save
        self._fd: int | None = None
        self._size = 0  # bytes in the file behind _fd
        self._load()

    # -- commands ------------------------------------------------------------------------
    def command(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """Apply a command; returns its normalised data, which is what clients receive."""
        clean = normalize(type_, data)
        s = self.state
        if type_ == "set_expression":
            if clean["name"] not in s.expressions:
                self._admit(clean["name"])
            if s.expressions.get(clean["name"]) != clean["value"]:
                s.expressions[clean["name"]] = clean["value"]
                self.dirty = True
            return clean
        attr, value = {"load_model": ("model", clean.get("path")),
                       "reset_expressions": ("expressions", {}),
                       "set_transition_speed": ("transition_speed", clean.get("speed")),
                       "set_auto_blink": ("auto_blink", clean.get("enabled")),
                       "set_auto_head_movement": ("auto_head_movement", clean)}[type_]
        if getattr(s, attr) != value:
            setattr(s, attr, dict(value) if isinstance(value, dict) else value)
            self.dirty = True  # only a change is worth a write
        return clean

    def _admit(self, name: str) -> None:
        """Refuse a new name past the limit: a preset, or a name already kept, always goes."""
        if name in PRESETS:
            return
        others = sum(1 for n in self.state.expressions if n not in PRESETS)
        if others >= self.max_expressions:
            raise CommandError(
                f"at most {self.max_expressions} expression names besides the VRM presets "
                f"(unity_bridge.max_expressions); '{name}' would be one more: set a name "
                f"already in use, or reset_expressions first")

    def emotion(self, name: str, intensity: float) -> list[Outgoing]:
        """An emotion replaces the previous one: its preset goes to `intensity`, the others to 0."""
        key = canonical_expression(name)
        if key != "neutral" and key not in EMOTIONS:
            raise CommandError(f"unknown emotion '{name}'")
        value = _number({"v": intensity}, "v", 0.0, 1.0)
        out: list[Outgoing] = []
        for preset in EMOTIONS:
            target = value if preset == key else 0.0
            if self.state.expressions.get(preset, 0.0) != target:
                out.append(("set_expression",
                            self.command("set_expression", {"name": preset, "value": target})))
        return out

    # -- the stack's events --------------------------------------------------------------
    def set_state(self, state: str, reason: str = "") -> list[Outgoing]:
        s = self.state
        if (s.avatar_state, s.reason) == (state, reason):
            return []
        s.avatar_state, s.reason = state, reason
        data: dict[str, Any] = {"state": state, "profile": s.profile}
        if reason:
            data["reason"] = reason
        return [("avatar_state", data)]

    def on_event(self, type_: str, data: dict[str, Any]) -> list[Outgoing]:
        if type_ == "chat_started":
            self.request_id, self.text, self.visemes = data["request_id"], "", VisemeStream()
            return self.set_state("thinking")
        if type_ == "chat_delta":
            if self.request_id not in (None, data["request_id"]):
                return []  # a stale piece of a reply that already ended
            self.request_id = data["request_id"]
            self.text += data["text"]
            return [*self.set_state("speaking"),
                    ("speech", {"request_id": data["request_id"], "delta": data["text"],
                                "text": self.text, "done": False}),
                    *self._viseme(data["request_id"], self.visemes.feed(data["text"])),
                    ("mouth", {"value": mouth_open(data["text"])})]
        if type_ == "chat_ended":
            return [*self._end_speech(data["request_id"], data["text"]),
                    *self.set_state("idle")]
        if type_ == "emotion":
            return self.emotion(data["name"], data["intensity"])
        if type_ == "profile_status":
            self.state.profile = data["profile"]
            self.switching = data["state"] == "switching"
            if self.switching:
                return self.set_state("loading", f"switching to profile {data['profile']}")
            return self.set_state("idle")
        if type_ == "worker_state" and CHAT in data.get("roles", ()):
            return self._chat_worker_state(data["state"])
        return []

    def _chat_worker_state(self, state: str) -> list[Outgoing]:
        """The language model is whichever worker provides 'chat' (its worker_state lists
        the roles), so a config may call it anything."""
        out: list[Outgoing] = []
        if state != "RUNNING" and self.request_id is not None:
            out += self._end_speech(self.request_id, self.text)
        if state == "FATAL":
            self.switching = False
            return out + self.set_state("idle", "the language model failed to start")
        if self.switching:  # stop, exit, start, ready: all of it is the switch's "loading"
            return out
        if state in ("STARTING", "BACKOFF", "STOPPING"):
            return out + self.set_state("loading", "the language model is starting")
        if state == "RUNNING" and self.state.avatar_state == "loading":
            return out + self.set_state("idle")
        if state == "EXITED":
            return out + self.set_state("idle", "the language model is stopped")
        return out

    def _end_speech(self, request_id: int, text: str) -> list[Outgoing]:
        rest = self._viseme(request_id, self.visemes.end())
        self.request_id, self.text, self.visemes = None, "", VisemeStream()
        return [*rest,
                ("speech", {"request_id": request_id, "delta": "", "text": text, "done": True}),
                ("mouth", {"value": 0.0})]

    @staticmethod
    def _viseme(request_id: int, shapes: list[str]) -> list[Outgoing]:
        return [("viseme", {"request_id": request_id, "visemes": shapes})] if shapes else []

    # -- persistence: a restarted bridge replays the same state --------------------------
    def save(self) -> None:
        """Append the state, if it changed, to its file as one line of JSON; `_load` takes the
        last whole line.

        A write never touches what is already in the file, so a kill -9 at any point (even one
        that cuts a write spanning pages) leaves the last saved state readable: no state is
        torn in two. Appending to a file kept open costs about what rewriting it in place did
        (5 us); a temporary file and a rename cost 0.3-0.7 ms on ext4, so only the first save
        of a process and one every COMPACT_BYTES start a fresh file that way. Nothing is
        fsynced: a power cut may lose the last lines, and `_load` then falls back to an older
        one, or to the defaults.
        """
        if self.state_file is None or not self.dirty:
            return
        self.dirty = False
        line = json.dumps({k: getattr(self.state, k) for k in PERSISTED}).encode() + b"\n"
        try:
            if self._fd is None or self._size + len(line) > COMPACT_BYTES:
                self._start_file(line)
            else:
                _write_all(self._fd, line)
                self._size += len(line)
        except OSError:  # losing the replay after a restart is not worth failing a command
            self.close()  # so the next save starts a fresh file, not one ending in a cut line

    def _start_file(self, line: bytes) -> None:
        """Replace the file with one holding only `line`, and keep it open for appending.

        Written aside and renamed over: a kill leaves the old file or the new one whole. The
        first save of a process always comes here, so it never appends to a line that a kill
        of the previous process cut.
        """
        self.close()
        assert self.state_file is not None
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        aside = self.state_file.with_name(self.state_file.name + ".tmp")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_BINARY, 0o600)
        try:
            _write_all(fd, line)
        finally:
            os.close(fd)
        os.replace(aside, self.state_file)
        self._fd = os.open(self.state_file, os.O_WRONLY | os.O_APPEND | O_BINARY)
        self._size = len(line)

    def close(self) -> None:
        """Let go of the state file (what was saved stays)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _load(self) -> None:
        if self.state_file is None:
            return
        try:
            saved = last_state(_read_tail(self.state_file, MAX_STATE_READ))
        except OSError:
            return
        if saved is None:
            return
        fresh = AvatarState()
        for key in PERSISTED:
            if key in saved and type(saved[key]) is type(getattr(fresh, key)):
                setattr(self.state, key, saved[key])
        if isinstance(saved.get("model"), str):
            self.state.model = saved["model"]
        self._bound_loaded_expressions()

    def _bound_loaded_expressions(self) -> None:
        """Keep of a saved state only what commands could have left: a file written before
        the limit (or by hand) must not bring the bloat back. A trimmed file is rewritten."""
        loaded = self.state.expressions
        self.state.expressions = {}
        for name, value in loaded.items():
            try:
                self.command("set_expression", {"name": name, "value": value})
            except CommandError:
                continue  # an invalid entry, or one past the limit
        self.dirty = self.state.expressions != loaded
        self.save()


def last_state(raw: bytes) -> dict[str, Any] | None:
    """The last line of a state file that is a JSON map.

    A line cut by a kill is a strict prefix of a JSON map, which never parses, so it is
    skipped in favour of the line before it. (A file of the single-document format that
    came before also parses, as one line.)
    """
    for line in reversed(raw.split(b"\n")):
        try:
            saved = json.loads(line)
        except ValueError:
            continue
        if isinstance(saved, dict):
            return saved
    return None


def _read_tail(path: Path, limit: int) -> bytes:
    """The last `limit` bytes of a file (all of it when smaller): bounded work at start."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return f.read(limit)


def _write_all(fd: int, data: bytes) -> None:
    """One write; a short one (a full disk) is an error, as the line is not whole."""
    if os.write(fd, data) != len(data):
        raise OSError(f"short write to the avatar state file ({len(data)} bytes)")
