"""The one message registry: every message type on the bus (and on the Unity wire) is declared here.

Validation, routing, the protocol document, the benchmarks' list of types and the C# constants
all derive from this table, so a type cannot exist in one place and be missing in another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

PROTOCOL_VERSION = 1
# A worker exits with this code when retrying cannot help (missing model, bad setting): the
# supervisor marks it FATAL at once instead of burning its restart budget.
EXIT_CONFIG_ERROR = 78


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
    PROTOCOL_VERSION = 106
    HANDSHAKE_REQUIRED = 107
    TOO_MANY_ERRORS = 108
    TOO_MANY_CLIENTS = 109
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


ERROR_DOCS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_FRAME: "not msgpack, not a map, or no string 'type'",
    ErrorCode.FRAME_TOO_LARGE: "the frame (or a TCP length prefix) exceeds the size limit",
    ErrorCode.UNKNOWN_TYPE: "the type is not in the registry, or the receiver does not handle it",
    ErrorCode.INVALID_FIELD: "a field is missing, of the wrong type, or out of range",
    ErrorCode.WRONG_DIRECTION: "this sender may not send this type on this channel",
    ErrorCode.UNAUTHORIZED: "missing or wrong token (Unity wire)",
    ErrorCode.PROTOCOL_VERSION: "the client's protocol version is not the bridge's",
    ErrorCode.HANDSHAKE_REQUIRED: "the first message on the Unity wire must be hello (only once)",
    ErrorCode.TOO_MANY_ERRORS: "too many bad frames on one connection; it is closed",
    ErrorCode.TOO_MANY_CLIENTS: "the bridge already serves unity_bridge.max_clients clients",
    ErrorCode.UNKNOWN_WORKER: "no worker of that name, or none provides the role",
    ErrorCode.WORKER_UNAVAILABLE: "the worker is stopped or FATAL",
    ErrorCode.QUEUE_FULL: "the worker is not ready and its request queue is full",
    ErrorCode.WORKER_CRASHED: "the worker stopped while running the request",
    ErrorCode.TIMEOUT: "no answer, no ready worker, or a silent peer, within the time limit",
    ErrorCode.SHUTTING_DOWN: "the stack is shutting down",
    ErrorCode.INVALID_REQUEST: "the request is well-formed but cannot be carried out",
    ErrorCode.INTERNAL: "a handler failed unexpectedly",
    ErrorCode.CANCELLED: "the request was cancelled",
    ErrorCode.MODEL_ERROR: "the language model failed",
}


class Wire(str, Enum):
    """Which way a type travels on the Unity TCP wire (a spec with wire=None is bus only)."""

    TO_CLIENT = "to_client"  # bridge -> TCP client
    FROM_CLIENT = "from_client"  # TCP client -> bridge
    BOTH = "both"


# Who may send a message. "client" is any bus client (CLI, GUI, tests); "worker" any worker.
SUPERVISOR = "supervisor"
CLIENT = "client"
WORKER = "worker"
UNITY = "unity_client"  # a TCP client of the bridge (the Unity avatar, tools, tests)

# Roles: what a worker does for the stack, declared in its spec (`provides` in the config).
# A request names the role that handles it, never a worker, so a worker may be called anything.
CHAT = "chat"  # answers chat with the language model
PROFILES = "profiles"  # runs with a GPU profile; switch_profile restarts it with another one
AVATAR = "avatar"  # drives the Unity avatar (the bridge)
GPU = "gpu"  # reads the GPU and asks for profile switches
ROLES = (CHAT, PROFILES, AVATAR, GPU)
# VRM 0.x expression presets an emotion maps to; "neutral" is all of them at 0.
EMOTIONS = ("joy", "angry", "sorrow", "fun", "surprised")


# -- Expression names: the ONE table from a wire name to UniVRM's presets ----------------------
@dataclass(frozen=True)
class ExpressionName:
    """A wire expression name, the `UniVRM10.ExpressionPreset` member it sets on a VRM 1.0
    model, and the `VRM.BlendShapePreset` member on a VRM 0.x model ("" when 0.x has no preset:
    the model's custom clip of that name, in any case, e.g. VRoid's "Surprised")."""

    wire: str
    vrm10: str
    vrm0: str


EXPRESSIONS = (
    ExpressionName("neutral", "neutral", "Neutral"), ExpressionName("joy", "happy", "Joy"),
    ExpressionName("angry", "angry", "Angry"), ExpressionName("sorrow", "sad", "Sorrow"),
    ExpressionName("fun", "relaxed", "Fun"), ExpressionName("surprised", "surprised", ""),
    ExpressionName("aa", "aa", "A"), ExpressionName("ih", "ih", "I"),
    ExpressionName("ou", "ou", "U"), ExpressionName("ee", "ee", "E"),
    ExpressionName("oh", "oh", "O"), ExpressionName("blink", "blink", "Blink"),
    ExpressionName("blink_l", "blinkLeft", "Blink_L"),
    ExpressionName("blink_r", "blinkRight", "Blink_R"),
    ExpressionName("lookup", "lookUp", "LookUp"),
    ExpressionName("lookdown", "lookDown", "LookDown"),
    ExpressionName("lookleft", "lookLeft", "LookLeft"),
    ExpressionName("lookright", "lookRight", "LookRight"),
)
# Mouth shapes of the `viseme` stream (the vowel expressions above) and "sil", mouth closed.
VISEMES = ("aa", "ih", "ou", "ee", "oh")
VISEME_SILENCE = "sil"


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
    # Requests only: who handles it ("supervisor", "worker" for any worker, or a role that a
    # worker provides) and the reply types that end it (any other reply with the same reply_to
    # is progress, e.g. streamed tokens).
    handler: str | None = None
    final: tuple[str, ...] = ()
    # Requests only: safe to run again on a fresh worker if the one running it crashed.
    rerun_on_crash: bool = False
    # Requests only: a data field holding the id of another request of the same client; the
    # supervisor translates it to the id the worker knows.
    refers_to: str | None = None
    # The Unity TCP wire: None = bus only, else the direction it travels there. `bus` False:
    # the type exists only on the wire (the handshake, per-client streams).
    wire: Wire | None = None
    bus: bool = True


NUM = (int, float)
WORKER_ARG = {"worker": Field(str, doc="worker name, e.g. inference")}


# -- Unity bridge and its TCP wire (see docs/PROTOCOL.md) --------------------------------------
def _avatar_command(name: str, doc: str, fields: dict[str, Field]) -> MessageSpec:
    """A command for the avatar: from any bus or TCP client, forwarded to every avatar client."""
    return MessageSpec(name, Kind.REQUEST, CLIENT, doc, fields, handler=AVATAR, final=("ok",),
                       wire=Wire.BOTH)


_FROM_AVATAR = "set by the bridge: the name the sending client gave in hello"
_AVATAR_SPECS: list[MessageSpec] = [
    MessageSpec("hello", Kind.REQUEST, UNITY,
                "First message of a TCP client; answered by welcome, or error and close.",
                {"protocol": Field(int, doc="the client's protocol version"),
                 "client": Field(str, doc="a name for logs and events, e.g. unity-avatar"),
                 "token": Field(str, False, "unity_bridge.token, when the bridge has one")},
                handler=AVATAR, final=("welcome",), wire=Wire.FROM_CLIENT, bus=False),
    MessageSpec("welcome", Kind.REPLY, AVATAR, "Handshake accepted: what the bridge speaks and "
                "the current avatar state, so a reconnecting client picks up where it was.",
                {"protocol": Field(int), "server": Field(str),
                 "session": Field(int, doc="this connection's number, for logs"),
                 "capabilities": Field(dict, doc="accepts / emits: lists of message types"),
                 "state": Field(dict, doc="avatar_state, expressions, profile, model, "
                                          "transition_speed, auto_blink, auto_head_movement"),
                 "ping_interval_s": Field(NUM), "timeout_s": Field(NUM, doc="silence limit"),
                 "clients": Field(list, False, "the other clients connected now: client, "
                                               "session, since (Unix time)")},
                wire=Wire.TO_CLIENT, bus=False),
    _avatar_command("load_model", "Load a VRM model from a file path on the avatar's machine.",
                    {"path": Field(str)}),
    _avatar_command("set_expression", "Set one expression (VRM preset or custom name); value "
                    "is clamped to 0..1. VRM 1.0 names (happy, sad, relaxed) map to joy, "
                    "sorrow, fun. Besides the VRM presets, at most 64 names are kept "
                    "(unity_bridge.max_expressions): a new one past that is refused with "
                    "INVALID_FIELD until reset_expressions.",
                    {"name": Field(str), "value": Field(NUM)}),
    _avatar_command("reset_expressions", "Set every expression back to 0.", {}),
    _avatar_command("set_transition_speed", "How fast expressions blend (clamped to 0.1..10).",
                    {"speed": Field(NUM)}),
    _avatar_command("set_auto_blink", "Turn automatic blinking on or off.",
                    {"enabled": Field(bool)}),
    _avatar_command("set_auto_head_movement", "Idle head movement: random turns every "
                    "min..max seconds, up to max_angle degrees.",
                    {"enabled": Field(bool), "min_interval": Field(NUM, False),
                     "max_interval": Field(NUM, False), "max_angle": Field(NUM, False)}),
    MessageSpec("avatar_state", Kind.EVENT, AVATAR,
                "What the avatar should look like it is doing: idle, thinking, speaking, loading.",
                {"state": Field(str), "profile": Field(str, False),
                 "reason": Field(str, False)}, wire=Wire.TO_CLIENT),
    MessageSpec("speech", Kind.EVENT, AVATAR, "Reply text for a speech bubble: the new piece "
                "and the whole text so far; done on the last one.",
                {"request_id": Field(int), "delta": Field(str), "text": Field(str),
                 "done": Field(bool)}, wire=Wire.TO_CLIENT, bus=False),
    MessageSpec("mouth", Kind.EVENT, AVATAR,
                "Mouth opening 0..1 that follows the streamed text, for simple lip movement.",
                {"value": Field(NUM)}, wire=Wire.TO_CLIENT, bus=False),
    MessageSpec("viseme", Kind.EVENT, AVATAR, "Lip sync from the streamed reply text: the next "
                "mouth shapes, in order (aa, ih, ou, ee, oh; sil closes the mouth), one per "
                "syllable. A word still being spelled at the end of a piece waits for the next "
                "one, so the stream equals the shapes of the whole reply. A client plays them "
                "at its own pace; mouth stays for a client that only opens and closes.",
                {"request_id": Field(int), "visemes": Field(list, doc="aa, ih, ou, ee, oh or sil")},
                wire=Wire.TO_CLIENT, bus=False),
    MessageSpec("model_loaded", Kind.EVENT, UNITY, "The avatar client loaded a model.",
                {"path": Field(str), "expressions": Field(list, False, "names it supports"),
                 "client": Field(str, False, _FROM_AVATAR)}, wire=Wire.FROM_CLIENT),
    MessageSpec("clicked", Kind.EVENT, UNITY, "The user clicked the avatar.",
                {"target": Field(str, False, "e.g. head, body"), "x": Field(NUM, False),
                 "y": Field(NUM, False), "client": Field(str, False, _FROM_AVATAR)},
                wire=Wire.FROM_CLIENT),
    MessageSpec("avatar_error", Kind.EVENT, UNITY,
                "Something failed on the avatar side (a model that does not load, ...).",
                {"message": Field(str), "command": Field(str, False, "the command that failed"),
                 "client": Field(str, False, _FROM_AVATAR)}, wire=Wire.FROM_CLIENT),
    MessageSpec("client_connected", Kind.EVENT, AVATAR, "A TCP client finished its handshake.",
                {"client": Field(str), "session": Field(int), "peer": Field(str)}),
    MessageSpec("client_disconnected", Kind.EVENT, AVATAR, "A TCP client is gone, and why.",
                {"client": Field(str), "session": Field(int), "reason": Field(str)}),
]

_SPECS: list[MessageSpec] = [
    # -- errors and liveness -------------------------------------------------------------
    MessageSpec("error", Kind.REPLY, "any", "A request failed or a frame was rejected.",
                {"code": Field(int), "message": Field(str)}, wire=Wire.BOTH),
    MessageSpec("ping", Kind.REQUEST, CLIENT, "Round trip to the supervisor.",
                {"target": Field(str, False, "worker to ping instead of the supervisor")},
                handler=SUPERVISOR, final=("pong",), wire=Wire.BOTH),
    MessageSpec("pong", Kind.REPLY, "any", "Answer to ping.", {"from": Field(str, False)},
                wire=Wire.BOTH),
    MessageSpec("heartbeat", Kind.EVENT, WORKER,
                "Sent by each worker's bus thread every heartbeat interval; "
                "sent to the supervisor, which republishes nothing.",
                {"worker": Field(str), "pid": Field(int), "seq": Field(int)}),
    MessageSpec("ready", Kind.EVENT, WORKER,
                "The worker finished loading and accepts requests (alive is not ready).",
                {"worker": Field(str), "pid": Field(int),
                 "info": Field(dict, False, "load figures, e.g. load_s, warmup_s, profile; a "
                               "profiles worker adds equivalent_profiles, the profiles that "
                               "would run exactly as this one")}),
    MessageSpec("progress", Kind.EVENT, WORKER,
                "A worker that is still loading got further; sent to the supervisor, which "
                "pushes its ready deadline forward by ready_timeout_s and republishes it.",
                {"worker": Field(str), "pid": Field(int),
                 "stage": Field(str, doc="what it is doing now, e.g. loading weights"),
                 "fraction": Field(NUM, False, "0..1 of this stage, when known")}),
    # -- supervisor control (clients -> supervisor) ---------------------------------------
    MessageSpec("status", Kind.REQUEST, CLIENT, "Snapshot of every worker.",
                handler=SUPERVISOR, final=("status_reply",)),
    MessageSpec("status_reply", Kind.REPLY, SUPERVISOR, "Answer to status.",
                {"workers": Field(dict, doc="name -> worker_stats entry, with its spec: "
                                            "roles, restart policy, deadlines"),
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
                "Restart only the worker that provides 'profiles' with another GPU profile; "
                "answered at once, with no restart, when that profile is already in effect.",
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
                {"detail": Field(str, False)}, wire=Wire.BOTH),
    # -- supervisor -> worker -------------------------------------------------------------
    MessageSpec("worker_stop", Kind.REQUEST, SUPERVISOR,
                "Asks a worker to finish and exit; terminate and kill follow if it does not.",
                {"drain_s": Field(NUM, False, "how long the reply in flight may take")},
                handler=WORKER, final=("ok",)),
    MessageSpec("activate", Kind.REQUEST, SUPERVISOR,
                "Turns a warm spare (a worker process booted ahead, waiting) into the worker: "
                "it takes these start options and goes on to load.",
                {"options": Field(dict, doc="the start options of this start, e.g. profile")},
                handler=WORKER, final=("ok",)),
    # -- inference ------------------------------------------------------------------------
    MessageSpec("chat", Kind.REQUEST, CLIENT, "Ask the companion; replies stream as chat_token.",
                {"text": Field(str),
                 "user": Field(str, False, "whose memory to use (default 'local')"),
                 "conversation": Field(str, False, "conversation name (default 'default')"),
                 "max_tokens": Field(int, False)},
                handler=CHAT, final=("chat_done",), rerun_on_crash=True),
    MessageSpec("chat_cancel", Kind.REQUEST, CLIENT,
                "Stop a chat of the same client between tokens; it ends with cancelled=true.",
                {"request_id": Field(int, doc="the id the client gave the chat request")},
                handler=CHAT, final=("ok",), refers_to="request_id"),
    MessageSpec("chat_token", Kind.REPLY, CHAT, "One streamed piece of a reply.",
                {"text": Field(str), "index": Field(int)}),
    MessageSpec("chat_done", Kind.REPLY, CHAT, "The whole reply and its figures.",
                {"text": Field(str), "tokens": Field(int), "prompt_tokens": Field(int, False),
                 "ttft_ms": Field(NUM), "tokens_per_s": Field(NUM),
                 "cancelled": Field(bool, False), "emotion": Field(str, False),
                 "intensity": Field(NUM, False)}),
    MessageSpec("request_retry", Kind.REPLY, SUPERVISOR,
                "The worker running this request died; it is being run again.",
                {"reason": Field(str), "attempt": Field(int)}),
    # -- events ---------------------------------------------------------------------------
    MessageSpec("worker_state", Kind.EVENT, SUPERVISOR, "A worker changed state.",
                {"worker": Field(str), "state": Field(str), "previous": Field(str),
                 "reason": Field(str, False), "pid": Field((int, type(None)), False),
                 "roles": Field(list, False, "the roles the worker provides")}),
    MessageSpec("worker_stats", Kind.EVENT, SUPERVISOR,
                "Per-worker pid, state, cpu %, rss, uptime, restarts, last exit reason.",
                {"workers": Field(dict)}),
    MessageSpec("profile_status", Kind.EVENT, SUPERVISOR,
                "Profile switch progress: switching, then ready with the new profile.",
                {"state": Field(str), "profile": Field(str), "reason": Field(str, False)}),
    MessageSpec("chat_started", Kind.EVENT, CHAT,
                "A reply is being prepared (the avatar can look thoughtful).",
                {"request_id": Field(int, doc="stack-wide id of the chat")}),
    MessageSpec("chat_delta", Kind.EVENT, CHAT,
                "A streamed piece of the reply, for speech bubbles and lip movement.",
                {"request_id": Field(int), "text": Field(str), "index": Field(int)}),
    MessageSpec("chat_ended", Kind.EVENT, CHAT, "The reply is complete or was cancelled.",
                {"request_id": Field(int), "text": Field(str), "cancelled": Field(bool)}),
    MessageSpec("emotion", Kind.EVENT, CHAT,
                f"Emotion of a reply as a VRM preset name ({', '.join(EMOTIONS)}, neutral) with "
                "an intensity 0..1.",
                {"name": Field(str), "intensity": Field(NUM), "request_id": Field(int, False)}),
    MessageSpec("gpu_stats", Kind.EVENT, GPU, "One GPU reading, or why there is none.",
                {"available": Field(bool), "reason": Field(str, False, "why there is no reading"),
                 "vram_used": Field(int, False, "bytes, whole card"),
                 "vram_total": Field(int, False), "vram_percent": Field(NUM, False),
                 "gpu_percent": Field((int, float, type(None)), False, "None: unsupported"),
                 "temperature_c": Field((int, float, type(None)), False),
                 "power_w": Field((int, float, type(None)), False),
                 "own_vram": Field((int, type(None)), False, "bytes used by our inference"),
                 "state": Field(str, False, "OPTIMAL, MODERATE, STRESSED or OVERLOADED"),
                 "profile": Field(str, False, "profile the monitor considers in use"),
                 "pressure": Field(dict, False, "VRAM % by others, and with each profile"),
                 "auto_switching": Field(bool, False),
                 "own_vram_source": Field(str, False, "nvml, measured at load, or planner "
                                                      "estimate"),
                 "gpu_percent_others": Field(NUM, False, "GPU % without our own replies"),
                 "sim_t": Field(NUM, False, "scenario seconds (--gpu-sim only)")}),
    MessageSpec("auto_switch", Kind.EVENT, GPU,
                "The GPU monitor asks for a profile switch, with its reason.",
                {"profile": Field(str), "state": Field(str), "emergency": Field(bool),
                 "reason": Field(str)}),
    # -- control panel: model and auto-switching at run time -------------------------------
    MessageSpec("switch_model", Kind.REQUEST, CLIENT,
                "Restart only the worker that provides 'chat' with another GGUF file, through "
                "the profile switch's machinery (the reply in flight drains, queued requests "
                "wait). The file is checked first: one that is not a usable GGUF is refused "
                "with INVALID_REQUEST before anything stops. For this session only; the "
                "default is ai.model_path in the config.",
                {"path": Field(str, doc="the GGUF file, on the stack's machine"),
                 "reason": Field(str, False)},
                handler=SUPERVISOR, final=("ok",)),
    MessageSpec("set_auto_switching", Kind.REQUEST, CLIENT,
                "Turn the GPU monitor's automatic profile switching on or off until the next "
                "start (the config's ai.auto_switching_enabled is the start value).",
                {"enabled": Field(bool)}, handler=GPU, final=("ok",)),
    *_AVATAR_SPECS,
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
        if not fits_type(value, f.type):
            return (f"{ms.name}: field '{fname}' must be {_type_name(f.type)}, "
                    f"got {type(value).__name__}")
    return None


def with_role(workers: dict[str, dict[str, Any]], role: str) -> dict[str, Any]:
    """The entry of a status_reply's `workers` map for the worker that provides `role` ({} when
    none does): how a client finds, say, the language model whatever the config calls it."""
    return next((w for w in workers.values() if role in w.get("roles", ())), {})


def fits_type(value: Any, types: type | tuple[type, ...]) -> bool:
    """isinstance, except that a bool is not a number (in Python, True is an int)."""
    allowed = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__
