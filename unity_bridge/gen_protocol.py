"""Generate docs/PROTOCOL.md and the C# message constants from the one message registry.

    python -m unity_bridge.gen_protocol           # rewrite what is out of date
    python -m unity_bridge.gen_protocol --check   # exit 1 if anything is out of date

tests/test_protocol_doc.py runs the check, so the document and the Unity package can never
disagree with protocol/messages.py. It also writes the Unity package's missing .meta files:
Unity ignores a file without one in a package installed from git (an immutable folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from protocol.codec import DEFAULT_MAX_FRAME, Envelope, encode
from protocol.framing import frame
from protocol.messages import (
    AVATAR,
    CLIENT,
    ERROR_DOCS,
    EXPRESSIONS,
    NUM,
    PROTOCOL_VERSION,
    REGISTRY,
    ROLES,
    SUPERVISOR,
    UNITY,
    VISEME_SILENCE,
    VISEMES,
    WORKER,
    ErrorCode,
    Field,
    Kind,
    MessageSpec,
    Wire,
    validate_data,
)
from supervisor.config import REPO_ROOT, SCHEMA

DOC_PATH = REPO_ROOT / "docs" / "PROTOCOL.md"
CS_PATH = REPO_ROOT / "unity_bridge" / "unity" / "Runtime" / "Protocol" / "MessageTypes.g.cs"
GENERATOR = "python -m unity_bridge.gen_protocol"
TS = 1767225600.0  # a fixed timestamp keeps the examples stable

# Examples for the types a client author reads most; the rest are built from field types.
EXAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"protocol": PROTOCOL_VERSION, "client": "unity-avatar", "token": "optional"},
    "welcome": {"protocol": PROTOCOL_VERSION, "server": "unity_bridge", "session": 3,
                "capabilities": {"accepts": ["hello", "ping", "..."],
                                 "emits": ["set_expression", "speech", "..."]},
                "state": {"avatar_state": "idle", "reason": "", "profile": "auto",
                          "model": "C:/avatars/alice.vrm", "expressions": {"joy": 0.8},
                          "transition_speed": 1.0, "auto_blink": True,
                          "auto_head_movement": {"enabled": True, "min_interval": 2.0,
                                                 "max_interval": 6.0, "max_angle": 10.0}},
                "ping_interval_s": 5.0, "timeout_s": 15.0},
    "error": {"code": int(ErrorCode.INVALID_FIELD),
              "message": "set_expression: field 'value' must be int or float, got str"},
    "ping": {}, "pong": {"from": "unity_bridge"}, "ok": {"detail": "sent to 1 client(s)"},
    "load_model": {"path": "C:/avatars/alice.vrm"},
    "set_expression": {"name": "joy", "value": 0.8},
    "set_transition_speed": {"speed": 2.0},
    "set_auto_blink": {"enabled": True},
    "set_auto_head_movement": {"enabled": True, "min_interval": 2.0, "max_interval": 6.0,
                               "max_angle": 10.0},
    "avatar_state": {"state": "speaking", "profile": "balanced"},
    "speech": {"request_id": 41, "delta": " there", "text": "Hello there", "done": False},
    "mouth": {"value": 0.72},
    "model_loaded": {"path": "C:/avatars/alice.vrm", "expressions": ["joy", "angry", "blink"]},
    "clicked": {"target": "head", "x": 0.52, "y": 0.81},
    "viseme": {"request_id": 42, "visemes": ["ee", "oh", "ee", "sil"]},
    "avatar_error": {"message": "file not found", "command": "load_model"},
    "progress": {"worker": "inference", "pid": 4242, "stage": "loading weights",
                 "fraction": 0.4},
}
DIRECTION = {Wire.TO_CLIENT: "bridge → client", Wire.FROM_CLIENT: "client → bridge",
             Wire.BOTH: "both ways"}


# Senders and handlers other than roles, in words.
PARTIES = {SUPERVISOR: "the supervisor", WORKER: "any worker", UNITY: "a TCP client",
           "any": "whoever answers the request"}


def party(who: str, on_wire: bool = False) -> str:
    """A sender or handler in words: a role is whichever worker provides it."""
    if who in ROLES:  # the avatar's worker is the bridge that a TCP client talks to
        return f"the worker that provides '{who}'" + (" (the bridge)" if who == AVATAR else "")
    if who == CLIENT:
        return "a bus or TCP client" if on_wire else "a bus client"
    return PARTIES[who]


def handled_by(who: str) -> str:
    """worker_stop and the like go to one worker by name: that one handles it."""
    return "the worker it is sent to" if who == WORKER else party(who)


def default_providers() -> dict[str, str]:
    """role -> the worker of the default config that provides it."""
    workers = SCHEMA["workers"].default
    return {role: name for name, w in workers.items() for role in w["provides"]}


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {str: "str", int: "int", float: "float", bool: "bool", dict: "map", list: "array",
             type(None): "nil"}
    if t == NUM:
        return "number"
    if isinstance(t, tuple):
        return " or ".join(names.get(x, x.__name__) for x in t)
    return names.get(t, t.__name__)


def _sample(f: Field) -> Any:
    t = f.type[0] if isinstance(f.type, tuple) and f.type != NUM else f.type
    return {str: "text", int: 1, bool: True, dict: {}, list: []}.get(t, 0.5)  # type: ignore


def example(ms: MessageSpec) -> dict[str, Any]:
    data = EXAMPLES.get(ms.name)
    if data is None:
        data = {n: _sample(f) for n, f in ms.fields.items() if f.required}
    problem = validate_data(ms, data)
    assert problem is None, f"example of {ms.name}: {problem}"
    env: dict[str, Any] = {"type": ms.name}
    if ms.kind is Kind.REQUEST:
        env["id"] = 7
    elif ms.kind is Kind.REPLY:
        env["reply_to"] = 7
    env["ts"] = TS
    env["data"] = data
    return env


def _section(ms: MessageSpec, wire: bool) -> list[str]:
    out = [f"### `{ms.name}`", "", ms.doc, ""]
    facts = [f"kind: {ms.kind.value}"]
    if wire:
        assert ms.wire is not None
        facts.append(f"wire: {DIRECTION[ms.wire]}")
        facts.append("also on the bus" if ms.bus else "wire only")
    facts.append(f"sent by: {party(ms.sender, ms.wire is not None)}")
    if ms.handler:
        facts.append(f"handled by: {handled_by(ms.handler)}")
    if ms.final:
        facts.append("answered by: " + ", ".join(f"`{f}`" for f in ms.final))
    out += ["- " + "; ".join(facts), ""]
    if ms.fields:
        out += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for name, f in ms.fields.items():
            out.append(f"| `{name}` | {_type_name(f.type)} | {'yes' if f.required else 'no'} "
                       f"| {f.doc} |")
    else:
        out.append("No fields.")
    out += ["", "```json", json.dumps(example(ms), ensure_ascii=False), "```", ""]
    return out


def render_doc() -> str:
    wire = [s for s in REGISTRY.values() if s.wire is not None]
    bus = [s for s in REGISTRY.values() if s.wire is None]
    framed = frame(encode(Envelope("hello", {"protocol": PROTOCOL_VERSION, "client": "unity"},
                                   id=1, ts=TS)))
    lines = [
        "# Protocol",
        "",
        f"<!-- Generated by `{GENERATOR}` from protocol/messages.py. Do not edit: "
        "tests/test_protocol_doc.py fails when this file and the registry disagree. -->",
        "",
        f"Protocol version **{PROTOCOL_VERSION}**. Every message type of the stack is declared "
        "once, in `protocol/messages.py`; this document, the validation on both sides and the "
        "C# constants of the Unity package (`MessageTypes.g.cs`) are derived from it.",
        "",
        "## Roles",
        "",
        "A request names the role that handles it, never a worker: the supervisor routes it to "
        "the enabled worker whose `provides` (in the config) lists that role, so a worker may "
        "be called anything. Events are sent by a role too. In the default config:",
        "",
        "| role | provided by |",
        "|---|---|",
        *[f"| `{role}` | `{worker}` |" for role, worker in default_providers().items()],
        "",
        "## Envelope",
        "",
        "One msgpack map per message, on the bus and on the Unity wire alike:",
        "",
        "| key | type | on | meaning |",
        "|---|---|---|---|",
        "| `type` | str | all | the message type (below) |",
        "| `id` | int | requests | chosen by the sender, unique among its open requests |",
        "| `reply_to` | int | replies, errors | the `id` of the request answered |",
        "| `ts` | float | all | seconds since the Unix epoch, when sent |",
        "| `data` | map | all | the fields of the type |",
        "",
        "Unknown fields are ignored. An unknown type, a missing field or a field of the wrong "
        "type is answered with an `error` (below); nothing a peer sends crashes a process.",
        "",
        "## The Unity wire (TCP)",
        "",
        "The bridge listens on `unity_bridge.host`:`unity_bridge.port` (default "
        "`127.0.0.1:5555`; port 0 picks a free one, reported in the worker's ready info).",
        "",
        f"- **Framing.** A 4-byte big-endian unsigned length N, then N bytes holding one "
        f"envelope. N may not exceed `unity_bridge.max_frame_bytes` (default "
        f"{DEFAULT_MAX_FRAME} bytes); a larger length gets error "
        f"{int(ErrorCode.FRAME_TOO_LARGE)} and the connection is closed, since the stream "
        f"cannot be resynchronised.",
        "- **Handshake.** The client speaks first: `hello` with the protocol version, a "
        "client name and, when the bridge has one, the token. The bridge answers `welcome` "
        "(capabilities and the current avatar state, so a reconnecting client picks up where "
        "it was) or an `error` and closes: "
        f"{int(ErrorCode.PROTOCOL_VERSION)} for another protocol version, "
        f"{int(ErrorCode.UNAUTHORIZED)} for a missing or wrong token, "
        f"{int(ErrorCode.HANDSHAKE_REQUIRED)} for anything but `hello` first, "
        f"{int(ErrorCode.TIMEOUT)} when no `hello` comes within "
        "`unity_bridge.handshake_timeout_s`.",
        "- **Token.** Binding anything but a loopback address requires `unity_bridge.token`; "
        "the bridge refuses to start without one. Clients then send it in `hello`; it is "
        "compared in constant time.",
        "- **Heartbeat.** The bridge sends `ping` every `ping_interval_s`; the client answers "
        "`pong` with `reply_to`. A client may ping too. A client silent for `timeout_s` (no "
        f"frame at all) gets error {int(ErrorCode.TIMEOUT)} and is closed.",
        "- **Commands** (`load_model`, `set_expression`, ...) come from any bus client or any "
        "TCP client. The bridge normalises them (clamps values, maps VRM 1.0 names), keeps "
        "them in its state, and forwards them to every other connected client as requests "
        "with an `id` of the bridge. A client may answer `ok`, or `error` when it could not "
        "apply one: that error is published on the bus as `avatar_error`. The sender gets "
        "`ok` (or an `error`).",
        "- **Stream to the avatar.** `avatar_state` (idle, thinking, speaking, loading), "
        "`speech` (reply text for a bubble), `viseme` (vowel mouth shapes of each piece, "
        "for lip sync), `mouth` (0..1 for simple lip movement) and `set_expression` from the "
        "reply's emotion.",
        "- **Expression names** on the wire are lowercase; the table below is the one mapping "
        "to UniVRM's presets (the Unity package's `ExpressionMap` is generated from it).",
        "- **Events from clients** (`model_loaded`, `clicked`, `avatar_error`) are published "
        "on the bus with the client's name added as `client`.",
        "- **Errors.** A bad frame is answered with an `error` (with `reply_to` when its id "
        "could be read) and counted; after `unity_bridge.max_errors` the connection is closed "
        f"with error {int(ErrorCode.TOO_MANY_ERRORS)}. A client that does not read what it "
        "is sent is dropped. None of this affects other connections.",
        "",
        f"The `hello` of a client named `unity` (id 1, ts {TS}), as bytes on the wire:",
        "",
        "```",
        *[framed[i:i + 24].hex(" ") for i in range(0, len(framed), 24)],
        "```",
        "",
        "### Wire message types",
        "",
        "| type | kind | direction | bus too |",
        "|---|---|---|---|",
        *[f"| [`{s.name}`](#{s.name}) | {s.kind.value} | {DIRECTION[s.wire]} | "  # type: ignore
          f"{'yes' if s.bus else 'no'} |" for s in wire],
        "",
    ]
    for s in wire:
        lines += _section(s, wire=True)
    lines += expression_table()
    lines += ["## Bus-only message types", "",
              "Between the supervisor, the workers and bus clients (ZeroMQ; see README).", ""]
    for s in bus:
        lines += _section(s, wire=False)
    lines += ["## Error codes", "", "1xx protocol, 2xx routing, 3xx worker.", "",
              "| code | name | meaning |", "|---|---|---|"]
    for code in ErrorCode:
        lines.append(f"| {int(code)} | `{code.name}` | {ERROR_DOCS[code]} |")
    return "\n".join(lines) + "\n"


def expression_table() -> list[str]:
    """The wire -> UniVRM mapping, for PROTOCOL.md and the package README (kept equal by a test)."""
    return [
        "### Expression names", "",
        "`set_expression` names (any case; the bridge lowercases them and also takes the "
        "VRM 1.0 and VRM 0.x spellings in the last two columns: `happy` and `Joy` both become "
        "`joy`). A name not in this table is a custom expression: the model's own of that "
        "name, matched in any case.", "",
        "| wire | VRM 1.0 `ExpressionPreset` | VRM 0.x `BlendShapePreset` |",
        "|---|---|---|",
        *[f"| `{e.wire}` | `{e.vrm10}` | " + (f"`{e.vrm0}` |" if e.vrm0 else
                                            f"none: the custom clip `{e.wire.capitalize()}` |")
          for e in EXPRESSIONS],
        "",
        f"`viseme` shapes are the vowels {', '.join(f'`{v}`' for v in VISEMES)} and "
        f"`{VISEME_SILENCE}` (mouth closed).",
        "",
    ]


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.lower().split("_"))


def _cs_string(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_cs() -> str:
    wire = [s for s in REGISTRY.values() if s.wire is not None]
    accepts = [s.name for s in wire if s.wire in (Wire.FROM_CLIENT, Wire.BOTH)]
    emits = [s.name for s in wire if s.wire in (Wire.TO_CLIENT, Wire.BOTH)]
    out = [
        "// <auto-generated>",
        f"// Generated by `{GENERATOR}` from protocol/messages.py. Do not edit:",
        "// tests/test_protocol_doc.py fails when this file and the registry disagree.",
        "// </auto-generated>",
        "",
        "namespace AICompanion.Bridge.Protocol",
        "{",
        "    /// <summary>Version and limits of the Unity wire.</summary>",
        "    public static class ProtocolInfo",
        "    {",
        f"        public const int Version = {PROTOCOL_VERSION};",
        f"        public const int DefaultMaxFrame = {DEFAULT_MAX_FRAME};",
        "    }",
        "",
        "    /// <summary>Every message type of the Unity wire.</summary>",
        "    public static class MessageTypes",
        "    {",
    ]
    for s in wire:
        out += [f"        /// <summary>{_cs_string(s.doc)}</summary>",
                f"        public const string {_pascal(s.name)} = \"{s.name}\";"]
    out += [
        "",
        "        /// <summary>Types a client may send to the bridge.</summary>",
        "        public static readonly string[] ClientSends = { "
        + ", ".join(f'"{n}"' for n in accepts) + " };",
        "",
        "        /// <summary>Types the bridge may send to a client.</summary>",
        "        public static readonly string[] BridgeSends = { "
        + ", ".join(f'"{n}"' for n in emits) + " };",
        "",
        "        /// <summary>Types that are requests: they carry an id and want a reply."
        "</summary>",
        "        public static readonly string[] Requests = { "
        + ", ".join(f'"{s.name}"' for s in wire if s.kind is Kind.REQUEST) + " };",
        "    }",
        "",
        "    /// <summary>Numbered error codes carried by error messages.</summary>",
        "    public static class ErrorCodes",
        "    {",
    ]
    for code in ErrorCode:
        out += [f"        /// <summary>{_cs_string(ERROR_DOCS[code])}</summary>",
                f"        public const int {_pascal(code.name)} = {int(code)};"]
    out += ["    }", ""]
    out += [
        "    /// <summary>The one table of expression names: the wire's, "
        "UniVRM10.ExpressionPreset's and VRM.BlendShapePreset's (empty: no 0.x preset, a "
        "custom clip of that name).</summary>",
        "    public static partial class ExpressionMap",
        "    {",
        "        public static readonly string[] Wire = { "
        + ", ".join(f'"{e.wire}"' for e in EXPRESSIONS) + " };",
        "        public static readonly string[] Vrm10 = { "
        + ", ".join(f'"{e.vrm10}"' for e in EXPRESSIONS) + " };",
        "        public static readonly string[] Vrm0 = { "
        + ", ".join(f'"{e.vrm0}"' for e in EXPRESSIONS) + " };",
        "        /// <summary>Mouth shapes of the viseme stream; Silence closes the mouth."
        "</summary>",
        "        public static readonly string[] Visemes = { "
        + ", ".join(f'"{v}"' for v in VISEMES) + " };",
        f'        public static readonly string Silence = "{VISEME_SILENCE}";',
        "    }",
        "}",
    ]
    return "\n".join(out) + "\n"


PACKAGE = REPO_ROOT / "unity_bridge" / "unity"
META_IMPORTERS = {".cs": "MonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n"
                         "  defaultReferences: []\n  executionOrder: 0\n  icon: {instanceID: 0}\n",
                  ".asmdef": "AssemblyDefinitionImporter:\n  externalObjects: {}\n",
                  ".json": "PackageManifestImporter:\n  externalObjects: {}\n",
                  ".md": "TextScriptImporter:\n  externalObjects: {}\n"}


def render_meta(path: Path) -> str:
    """A .meta with a GUID derived from the path, so it is stable and unique per file."""
    rel = path.relative_to(PACKAGE).as_posix()
    guid = hashlib.md5(f"com.aicompanion.bridge/{rel}".encode()).hexdigest()
    if path.is_dir():
        body = "folderAsset: yes\nDefaultImporter:\n  externalObjects: {}\n"
    else:
        body = META_IMPORTERS.get(path.suffix, "DefaultImporter:\n  externalObjects: {}\n")
    return (f"fileFormatVersion: 2\nguid: {guid}\n{body}"
            "  userData: \n  assetBundleName: \n  assetBundleVariant: \n")


def package_assets() -> list[Path]:
    """Files and folders of the package that Unity imports (not Samples~, not metas)."""
    return sorted(p for p in PACKAGE.rglob("*")
                  if p.suffix != ".meta" and "Samples~" not in p.relative_to(PACKAGE).parts)


def outputs() -> dict[Path, Any]:
    out: dict[Path, Any] = {DOC_PATH: render_doc, CS_PATH: render_cs}
    for asset in package_assets():
        out[asset.with_name(asset.name + ".meta")] = lambda a=asset: render_meta(a)
    return out


def stale() -> list[Path]:
    """Generated files whose content differs from what the registry gives now."""
    out = []
    for path, render in outputs().items():
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != render():
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=GENERATOR, description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report files out of date")
    args = p.parse_args(argv)
    old = stale()
    if args.check:
        for path in old:
            print(f"{path.relative_to(REPO_ROOT)} is out of date: run {GENERATOR}",
                  file=sys.stderr)
        return 1 if old else 0
    renders = outputs()
    for path in old:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(renders[path](), encoding="utf-8", newline="\n")
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
