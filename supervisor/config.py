"""The one config loader: `data/config.json`, checked against a declared schema at start.

A wrong type, an out-of-range value or a missing required key stops the start with a message
naming the key and what it expects; unknown keys are warned about and otherwise ignored.
Workers receive the validated dict from the supervisor and never parse the file themselves.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.messages import AVATAR, CHAT, GPU, PROFILES, ROLES, fits_type

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "data" / "config.json"
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Opt:
    type: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""


@dataclass(frozen=True)
class MapOf:
    """A map with free keys (e.g. worker names) whose values follow one schema."""

    schema: dict[str, Any]
    default: dict[str, Any]


NUM = (int, float)
OPT_STR = (str, type(None))

NUM_OR_NULL = (int, float, type(None))
INT_OR_NULL = (int, type(None))
RESTART_POLICIES = ("permanent", "transient", "temporary")


def _inherited(kind: tuple[type, ...], lo: float, hi: float) -> Opt:
    return Opt(kind, None, min=lo, max=hi, doc="null: the `supervisor` value of this name")


# A worker's spec. Settings left null take the `supervisor` section's value of the same name.
WORKER_SCHEMA: dict[str, Any] = {
    "module": Opt(str, required=True, doc="python module run with `python -m`"),
    "enabled": Opt(bool, True),
    "args": Opt(list, [], doc="extra command-line arguments"),
    "provides": Opt(list, [], doc=f"roles it serves, each by one worker at most: "
                                  f"{', '.join(ROLES)}"),
    "restart": Opt(str, "permanent", choices=RESTART_POLICIES,
                   doc="permanent: after any exit nobody asked for; transient: only after an "
                       "abnormal one (not in exit_codes); temporary: never"),
    "exit_codes": Opt(list, [0], doc="exit codes that are a normal end (for transient)"),
    "warm_spare": Opt(bool, False, doc="keep a process booted ahead (interpreter, imports, bus) "
                                       "that takes over at the next start: faster switches and "
                                       "recoveries, for the memory of one idle process"),
    "ready_timeout_s": _inherited(NUM_OR_NULL, 1, 86_400),
    "heartbeat_interval_s": _inherited(NUM_OR_NULL, 0.05, 60),
    "heartbeat_misses": _inherited(INT_OR_NULL, 2, 100),
    "max_restarts": _inherited(INT_OR_NULL, 1, 10_000),
    "restart_window_s": _inherited(NUM_OR_NULL, 1, 86_400),
    "backoff_initial_s": _inherited(NUM_OR_NULL, 0, 600),
    "backoff_max_s": _inherited(NUM_OR_NULL, 0, 3600),
    "backoff_jitter": _inherited(NUM_OR_NULL, 0, 1),
    "stop_timeout_s": _inherited(NUM_OR_NULL, 0.1, 600),
    "terminate_timeout_s": _inherited(NUM_OR_NULL, 0.1, 600),
}

SCHEMA: dict[str, Any] = {
    "version": Opt(int, required=True, min=1, max=1, doc="config format version"),
    "ai": {
        "gpu_profile": Opt(str, "auto", doc="'auto' or a profile name"),
        "auto_switching_enabled": Opt(bool, True),
        "model_path": Opt(OPT_STR, None, doc="GGUF file; null for the embedded default"),
        "persona": Opt(str, "You are a friendly desktop companion. Answer briefly and warmly."),
        "max_tokens": Opt(int, 256, min=1, max=32768),
        "temperature": Opt(NUM, 0.7, min=0, max=5),
        "top_p": Opt(NUM, 0.9, min=0, max=1),
        "repeat_penalty": Opt(NUM, 1.1, min=0.5, max=5),
        "warmup": Opt(bool, True, doc="evaluate the system prompt at load"),
        "profiles_file": Opt(OPT_STR, None, doc="GPU profiles; null for data/profiles.json"),
        "memory_file": Opt(OPT_STR, None,
                           doc="conversation memory (SQLite); null for <data dir>/memory.sqlite"),
        "vram_margin_mb": Opt(int, 512, min=0, max=65536,
                              doc="VRAM kept free when planning GPU layers"),
        "extra_load_s": Opt(NUM, 0.0, min=0, max=600,
                            doc="benchmarks: each load takes this much longer, busy on one "
                                "core, as a large model's load does"),
    },
    "supervisor": {
        "heartbeat_interval_s": Opt(NUM, 1.0, min=0.05, max=60),
        "heartbeat_misses": Opt(int, 3, min=2, max=100, doc="silent intervals before 'hung'"),
        "ready_timeout_s": Opt(NUM, 60.0, min=1, max=86_400,
                               doc="start to ready; each progress report restarts it; "
                                   "a worker still not ready is killed as a crash"),
        "max_restarts": Opt(int, 5, min=1, max=10_000, doc="crashes allowed in restart_window_s"),
        "restart_window_s": Opt(NUM, 30.0, min=1, max=86_400),
        "backoff_initial_s": Opt(NUM, 0.25, min=0, max=600),
        "backoff_max_s": Opt(NUM, 15.0, min=0, max=3600),
        "backoff_jitter": Opt(NUM, 0.2, min=0, max=1, doc="+/- fraction of each delay"),
        "queue_limit": Opt(int, 64, min=1, max=100_000, doc="held requests per worker"),
        "queue_timeout_s": Opt(NUM, 120.0, min=1, max=3600),
        "stop_timeout_s": Opt(NUM, 5.0, min=0.1, max=600, doc="asked to stop, before terminate"),
        "terminate_timeout_s": Opt(NUM, 2.0, min=0.1, max=600, doc="terminate, before kill"),
        "drain_timeout_s": Opt(NUM, 30.0, min=0, max=3600, doc="reply in flight at a switch"),
        "stats_interval_s": Opt(NUM, 2.0, min=0.1, max=3600),
    },
    "workers": MapOf(WORKER_SCHEMA, {
        # A model load reports progress at each stage, and each report restarts the deadline.
        "inference": {"module": "workers.inference", "provides": [CHAT, PROFILES],
                      "ready_timeout_s": 120, "warm_spare": True},
        "gpu_monitor": {"module": "workers.gpu_monitor", "provides": [GPU]},
        "unity_bridge": {"module": "unity_bridge", "provides": [AVATAR]},
    }),
    "unity_bridge": {
        "host": Opt(str, "127.0.0.1"),
        "port": Opt(int, 5555, min=0, max=65535),
        "token": Opt(OPT_STR, None, doc="required from clients when host is not loopback"),
        "max_frame_bytes": Opt(int, 1_048_576, min=1024, max=64 << 20,
                               doc="largest TCP frame accepted"),
        "handshake_timeout_s": Opt(NUM, 5.0, min=0.1, max=600, doc="connect -> hello"),
        "ping_interval_s": Opt(NUM, 5.0, min=0.05, max=600, doc="bridge -> client pings"),
        "client_timeout_s": Opt(NUM, 15.0, min=0.1, max=3600,
                                doc="a client silent this long is dropped"),
        "max_errors": Opt(int, 10, min=1, max=100_000, doc="bad frames before a close"),
        "max_clients": Opt(int, 16, min=1, max=1024),
        "max_expressions": Opt(int, 64, min=0, max=1024,
                               doc="expression names kept besides the VRM presets; a new one "
                                   "past it is refused"),
    },
    "gpu_monitoring": {
        "interval_s": Opt(NUM, 5.0, min=0.5, max=3600, doc="seconds between readings"),
        "trace_file": Opt(OPT_STR, None, doc="replay this history CSV instead of NVML"),
        "idle_interval_s": Opt(NUM, 30.0, min=0.5, max=3600,
                               doc="seconds between readings while nothing is offloaded and "
                                   "auto-switching waits for the card to free up"),
        "own_vram_every": Opt(int, 12, min=1, max=10_000,
                              doc="read our process's VRAM every N samples (costly in NVML)"),
        "history_file": Opt(OPT_STR, None, doc="null: <data dir>/gpu_history.csv"),
        "history_max_bytes": Opt(int, 1_048_576, min=1024, max=1 << 30),
        "history_backups": Opt(int, 3, min=0, max=100),
        "thresholds": {
            # VRAM states are fit-based (a profile fits next to others' use, with
            # ai.vram_margin_mb to spare); only GPU % has thresholds.
            "stressed_gpu": Opt(NUM, 80.0, min=0, max=100, doc="others' % GPU above: STRESSED"),
            "optimal_gpu": Opt(NUM, 60.0, min=0, max=100,
                               doc="others' % GPU below (and performance fits): OPTIMAL"),
            "hysteresis": Opt(NUM, 15.0, min=0, max=50,
                              doc="points of % a load must fall further to count as better"),
        },
        "dwell_samples": Opt(int, 3, min=1, max=10_000,
                             doc="consecutive samples a new state must hold"),
        "dwell_s": Opt(NUM, 0.0, min=0, max=86_400, doc="and seconds it must hold"),
        "min_switch_interval_s": Opt(NUM, 60.0, min=0, max=86_400,
                                     doc="between switches, except for OVERLOADED"),
        "state_profiles": {
            "OVERLOADED": Opt(str, "cpu_fallback"),
            "STRESSED": Opt(str, "balanced"),
            "MODERATE": Opt(str, "balanced"),
            "OPTIMAL": Opt(str, "performance"),
        },
    },
    "logging": {
        "level": Opt(str, "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        "max_bytes": Opt(int, 1_048_576, min=1024, max=1 << 30),
        "backup_count": Opt(int, 3, min=0, max=100),
    },
}


def load_config(path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """Read and validate a config file; returns (config with defaults, warnings)."""
    path = path or DEFAULT_CONFIG
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (copy the repository's "
                          f"data/config.json or pass --config)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None
    warnings: list[str] = []
    return validate(raw, warnings), warnings


def validate(raw: Any, warnings: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a JSON object")
    cfg = _section(raw, SCHEMA, "", warnings)
    _check_thresholds(cfg["gpu_monitoring"]["thresholds"])
    _check_workers(cfg["workers"])
    return cfg


def _check_workers(workers: dict[str, dict[str, Any]]) -> None:
    """Exit codes are integers; each role is served by one enabled worker at most (a request
    must have one address)."""
    owner: dict[str, str] = {}
    for name, w in workers.items():
        if not all(fits_type(c, int) for c in w["exit_codes"]):
            raise ConfigError(f"config: 'workers.{name}.exit_codes' must be a list of integers, "
                              f"got {json.dumps(w['exit_codes'])}")
        for role in w["provides"]:
            if role not in ROLES:
                raise ConfigError(f"config: 'workers.{name}.provides' names an unknown role "
                                  f"{json.dumps(role)}; roles: {', '.join(ROLES)}")
            if w["enabled"] and role in owner:
                raise ConfigError(f"config: role '{role}' is provided by both "
                                  f"'workers.{owner[role]}' and 'workers.{name}'; disable one "
                                  f"(\"enabled\": false) or remove it from its 'provides'")
            if w["enabled"]:
                owner[role] = name


def role_owners(workers: dict[str, dict[str, Any]]) -> dict[str, str]:
    """role -> the enabled worker that provides it."""
    return {role: name for name, w in workers.items() if w["enabled"] for role in w["provides"]}


def _check_thresholds(t: dict[str, float]) -> None:
    """Thresholds that contradict each other would make states unreachable or overlapping."""
    if t["stressed_gpu"] <= t["optimal_gpu"]:
        raise ConfigError(f"config: 'gpu_monitoring.thresholds.stressed_gpu' "
                          f"({t['stressed_gpu']}) must be above 'optimal_gpu' "
                          f"({t['optimal_gpu']})")


def _section(raw: dict[str, Any], schema: dict[str, Any], prefix: str,
             warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in raw:
        if key not in schema:
            warnings.append(f"config: unknown key '{prefix}{key}' is ignored")
    for key, rule in schema.items():
        name = f"{prefix}{key}"
        if isinstance(rule, dict):
            value = raw.get(key, {})
            if not isinstance(value, dict):
                raise ConfigError(f"config: '{name}' must be an object, got {_kind(value)}")
            out[key] = _section(value, rule, name + ".", warnings)
        elif isinstance(rule, MapOf):
            value = raw.get(key, {})
            if not isinstance(value, dict):
                raise ConfigError(f"config: '{name}' must be an object, got {_kind(value)}")
            merged = copy.deepcopy(rule.default)
            for sub, entry in value.items():
                if entry is None:  # null removes an entry of the defaults (a renamed worker)
                    merged.pop(sub, None)
                    continue
                if not isinstance(entry, dict):
                    raise ConfigError(f"config: '{name}.{sub}' must be an object (or null to "
                                      f"remove it), got {_kind(entry)}")
                merged.setdefault(sub, {}).update(entry)
            out[key] = {sub: _section(entry, rule.schema, f"{name}.{sub}.", warnings)
                        for sub, entry in merged.items()}
        else:
            out[key] = _value(raw, key, rule, name)
    return out


def _value(raw: dict[str, Any], key: str, rule: Opt, name: str) -> Any:
    if key not in raw:
        if rule.required:
            raise ConfigError(f"config: missing required key '{name}' ({_expects(rule)})")
        return copy.deepcopy(rule.default)
    value = raw[key]
    if not fits_type(value, rule.type):
        raise ConfigError(f"config: '{name}' must be {_expects(rule)}, got {_kind(value)} "
                          f"{json.dumps(value)}")
    if rule.choices is not None and value not in rule.choices:
        raise ConfigError(f"config: '{name}' must be one of {list(rule.choices)}, "
                          f"got {json.dumps(value)}")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and ((rule.min is not None and value < rule.min)
                      or (rule.max is not None and value > rule.max)):
        raise ConfigError(f"config: '{name}' = {value} is out of range "
                              f"[{rule.min}, {rule.max}]")
    return value


def _types(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _expects(rule: Opt) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "an object", type(None): "null"}
    kinds = _types(rule.type)
    if set(kinds) >= {int, float}:
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


PROFILE_SCHEMA: dict[str, Any] = {
    "description": Opt(str, ""),
    "n_gpu_layers": Opt((int, type(None)), None, min=-1, max=100_000,
                        doc="layers on the GPU; -1 all; null: as many as vram_fraction allows"),
    "vram_fraction": Opt(NUM, 0.0, min=0, max=1,
                         doc="share of total VRAM this profile may fill (weights+KV+buffers)"),
    "n_ctx": Opt(int, 2048, min=128, max=1 << 20),
    "n_batch": Opt(int, 512, min=1, max=65536),
    "n_threads": Opt((int, type(None)), None, min=1, max=1024,
                     doc="null: the number of physical cores"),
    "use_mlock": Opt(bool, False),
    "flash_attn": Opt(bool, False),
}
AUTO_PROFILE = "auto"
DEFAULT_PROFILES = REPO_ROOT / "data" / "profiles.json"


def load_profiles(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The GPU profiles file (`cpu_fallback` must be there: it is what every fallback uses)."""
    path = path or DEFAULT_PROFILES
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the profiles file {path}: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: must be an object of profile name -> settings")
    warnings: list[str] = []
    out = {}
    for name, entry in raw.items():
        if name == AUTO_PROFILE:
            raise ConfigError(f"{path}: '{AUTO_PROFILE}' is reserved (it picks a profile)")
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: profile '{name}' must be an object")
        out[name] = _section(entry, PROFILE_SCHEMA, f"profiles.{name}.", warnings)
    if warnings:
        raise ConfigError(f"{path}: " + "; ".join(warnings))
    if "cpu_fallback" not in out:
        raise ConfigError(f"{path}: the 'cpu_fallback' profile is required")
    return out


def profiles_path(cfg: dict[str, Any]) -> Path:
    chosen = cfg["ai"]["profiles_file"]
    return Path(chosen) if chosen else DEFAULT_PROFILES


def check_profile(name: str, cfg: dict[str, Any]) -> None:
    """ConfigError naming the choices when `name` is neither a profile nor 'auto'."""
    known = [*load_profiles(profiles_path(cfg)), AUTO_PROFILE]
    if name not in known:
        raise ConfigError(f"unknown profile '{name}'; profiles: {', '.join(known)}")


# The control panel as a worker: launch.py adds it unless --headless (a config that names a
# worker "panel" keeps its own entry). Its own restart policy: a crash (kill -9, a Qt abort)
# brings it back, its normal end (exit 0: the user quit, and the stack shuts down) does not.
PANEL_WORKER = "panel"
PANEL_SPEC: dict[str, Any] = {"module": "panel.worker", "restart": "transient", "exit_codes": [0],
                              "max_restarts": 5, "restart_window_s": 60}


def with_panel(cfg: dict[str, Any]) -> dict[str, Any]:
    """The validated config plus the panel worker (checked like any worker entry)."""
    out = copy.deepcopy(cfg)
    if PANEL_WORKER not in out["workers"]:
        out["workers"][PANEL_WORKER] = _section(PANEL_SPEC, WORKER_SCHEMA,
                                                f"workers.{PANEL_WORKER}.", [])
    return out


def write_model_default(path: Path, model: str | None) -> None:
    """Set ai.model_path in a config file, keeping every other key as written; the result is
    validated before it replaces the file (a panel's "set as default")."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw.setdefault("ai", {})["model_path"] = model
    validate(copy.deepcopy(raw), [])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def default_config() -> dict[str, Any]:
    return validate({"version": 1}, [])
