"""The one message registry: every message type on the bus (and on the Unity wire) is declared here.

Validation, routing, the protocol document, the benchmarks' list of types and the C# constants
all derive from this table, so a type cannot exist in one place and be missing in another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

PROTOCOL_VERSION = 1


class Kind(str, Enum):
    REQUEST = "request"  # carries `id`, wants replies routed back by `reply_to`
    REPLY = "reply"  # carries `reply_to`
    EVENT = "event"  # published on PUB/SUB with the type as topic


class ErrorCode(IntEnum):
    """Numbered error codes (VTube Studio style): 1xx protocol, 2xx routing, 3xx worker."""

    MALFORMED_FRAME = 100
    FRAME_TOO_LARGE = 101
    UNKNOWN_TYPE = 102
    INVALID_FIELD = 103
    WRONG_DIRECTION = 104
    UNAUTHORIZED = 105
    UNKNOWN_WORKER = 200
    WORKER_UNAVAILABLE = 201
    QUEUE_FULL = 202
    WORKER_CRASHED = 203
    TIMEOUT = 204
    SHUTTING_DOWN = 205
    INVALID_REQUEST = 300
    INTERNAL = 301
    CANCELLED = 302
    MODEL_ERROR = 303


# Who may send a message. "client" is any bus client (CLI, GUI, tests); "worker" any worker.
SUPERVISOR = "supervisor"
CLIENT = "client"
WORKER = "worker"


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class MessageSpec:
    name: str
    kind: Kind
    sender: str
    doc: str
    fields: dict[str, Field] = field(default_factory=dict)
    # Requests only: who handles it ("supervisor" or a worker name) and the reply types that
    # end it (any other reply with the same reply_to is progress, e.g. streamed tokens).
    handler: str | None = None
    final: tuple[str, ...] = ()
    # Requests only: safe to run again on a fresh worker if the one running it crashed.
    rerun_on_crash: bool = False


NUM = (int, float)
WORKER_ARG = {"worker": Field(str, doc="worker name, e.g. inference")}

_SPECS: list[MessageSpec] = [
    # -- errors and liveness -------------------------------------------------------------
    MessageSpec("error", Kind.REPLY, "any", "A request failed or a frame was rejected.",
                {"code": Field(int), "message": Field(str)}),
    MessageSpec("ping", Kind.REQUEST, CLIENT, "Round trip to the supervisor.",
                {"target": Field(str, False, "worker to ping instead of the supervisor")},
                handler=SUPERVISOR, final=("pong",)),
    MessageSpec("pong", Kind.REPLY, "any", "Answer to ping.", {"from": Field(str, False)}),
    MessageSpec("heartbeat", Kind.EVENT, WORKER,
                "Sent by each worker's bus thread every heartbeat interval; "
                "sent to the supervisor, which republishes nothing.",
                {"worker": Field(str), "pid": Field(int), "seq": Field(int)}),
    MessageSpec("ready", Kind.EVENT, WORKER,
                "The worker finished loading and accepts requests (alive is not ready).",
                {"worker": Field(str), "pid": Field(int),
                 "info": Field(dict, False, "load figures, e.g. load_s, warmup_s, profile")}),
    # -- supervisor control (clients -> supervisor) ---------------------------------------
    MessageSpec("status", Kind.REQUEST, CLIENT, "Snapshot of every worker.",
                handler=SUPERVISOR, final=("status_reply",)),
    MessageSpec("status_reply", Kind.REPLY, SUPERVISOR, "Answer to status.",
                {"workers": Field(dict, doc="name -> worker_stats entry"),
                 "profile": Field(str, False), "supervisor": Field(dict, False)}),
    MessageSpec("restart", Kind.REQUEST, CLIENT,
                "Stop (if running) and start a worker; revives a FATAL one.",
                WORKER_ARG, handler=SUPERVISOR, final=("ok",)),
    MessageSpec("stop", Kind.REQUEST, CLIENT, "Stop a worker; it stays EXITED until restart.",
                WORKER_ARG, handler=SUPERVISOR, final=("ok",)),
    MessageSpec("kill", Kind.REQUEST, CLIENT,
                "Hard-kill a worker to test recovery; counted as a crash.",
                WORKER_ARG, handler=SUPERVISOR, final=("ok",)),
    MessageSpec("switch_profile", Kind.REQUEST, CLIENT,
                "Restart only the inference worker with another GPU profile.",
                {"profile": Field(str),
                 "emergency": Field(bool, False, "stop the reply in flight instead of draining"),
                 "reason": Field(str, False)},
                handler=SUPERVISOR, final=("ok",)),
    MessageSpec("logs", Kind.REQUEST, CLIENT, "Last lines of a worker's log file.",
                {"worker": Field(str), "lines": Field(int, False)},
                handler=SUPERVISOR, final=("logs_reply",)),
    MessageSpec("logs_reply", Kind.REPLY, SUPERVISOR, "Answer to logs.",
                {"worker": Field(str), "path": Field(str), "lines": Field(list)}),
    MessageSpec("shutdown", Kind.REQUEST, CLIENT, "Stop every worker and the supervisor.",
                handler=SUPERVISOR, final=("ok",)),
    MessageSpec("ok", Kind.REPLY, "any", "A command was carried out.",
                {"detail": Field(str, False)}),
    # -- supervisor -> worker -------------------------------------------------------------
    MessageSpec("worker_stop", Kind.REQUEST, SUPERVISOR,
                "Asks a worker to finish and exit; terminate and kill follow if it does not.",
                {"drain_s": Field(NUM, False, "how long the reply in flight may take")},
                handler=WORKER, final=("ok",)),
    # -- inference ------------------------------------------------------------------------
    MessageSpec("chat", Kind.REQUEST, CLIENT, "Ask the companion; replies stream as chat_token.",
                {"text": Field(str), "conversation": Field(str, False),
                 "max_tokens": Field(int, False)},
                handler="inference", final=("chat_done",), rerun_on_crash=True),
    MessageSpec("chat_token", Kind.REPLY, "inference", "One streamed piece of a reply.",
                {"text": Field(str), "index": Field(int)}),
    MessageSpec("chat_done", Kind.REPLY, "inference", "The whole reply and its figures.",
                {"text": Field(str), "tokens": Field(int), "prompt_tokens": Field(int, False),
                 "ttft_ms": Field(NUM), "tokens_per_s": Field(NUM),
                 "cancelled": Field(bool, False)}),
    MessageSpec("request_retry", Kind.REPLY, SUPERVISOR,
                "The worker running this request died; it is being run again.",
                {"reason": Field(str), "attempt": Field(int)}),
    # -- events ---------------------------------------------------------------------------
    MessageSpec("worker_state", Kind.EVENT, SUPERVISOR, "A worker changed state.",
                {"worker": Field(str), "state": Field(str), "previous": Field(str),
                 "reason": Field(str, False), "pid": Field((int, type(None)), False)}),
    MessageSpec("worker_stats", Kind.EVENT, SUPERVISOR,
                "Per-worker pid, state, cpu %, rss, uptime, restarts, last exit reason.",
                {"workers": Field(dict)}),
    MessageSpec("profile_status", Kind.EVENT, SUPERVISOR,
                "Profile switch progress: switching, then ready with the new profile.",
                {"state": Field(str), "profile": Field(str), "reason": Field(str, False)}),
    MessageSpec("gpu_stats", Kind.EVENT, "gpu_monitor", "One GPU reading, or why there is none.",
                {"available": Field(bool), "reason": Field(str, False)}),
]

REGISTRY: dict[str, MessageSpec] = {s.name: s for s in _SPECS}
assert len(REGISTRY) == len(_SPECS), "duplicate message type in the registry"


def spec(name: str) -> MessageSpec | None:
    return REGISTRY.get(name)


def validate_data(ms: MessageSpec, data: Any) -> str | None:
    """Return why `data` does not fit the spec, or None. Unknown fields are ignored."""
    if not isinstance(data, dict):
        return f"'data' must be a map, got {type(data).__name__}"
    for fname, f in ms.fields.items():
        if fname not in data:
            if f.required:
                return f"{ms.name}: missing field '{fname}'"
            continue
        value = data[fname]
        if isinstance(value, bool) and f.type in (int, float, NUM):
            return f"{ms.name}: field '{fname}' must be a number, got bool"
        if not isinstance(value, f.type):
            return (f"{ms.name}: field '{fname}' must be {_type_name(f.type)}, "
                    f"got {type(value).__name__}")
    return None


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__
