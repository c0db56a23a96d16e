"""The results as people read them: targets judged, ipc.md (table + targets), plots, ipc.json.

Speed goals live here, as verdicts in the report; nothing is asserted about speed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

TARGET_RATIO, TARGET_P99_MS, TARGET_TPUT = 1.25, 1.0, 20_000
P99_MIN_SAMPLES = 50  # a p99 of fewer samples is its max
HEARTBEAT_LATE_MS, SWITCH_SLOWDOWN = 50, 2
NOTICE_MS, RSS_MB, IDLE_CPU_PERCENT = 50, 40, 0.5
CODEC_SHOWN = ("set_expression", "chat_delta", "gpu_stats", "status_reply", "heartbeat")


class Target(NamedTuple):
    """One line of the targets table (a list of three in ipc.json)."""

    target: str
    measured: str
    met: bool | None  # None: a diagnostic, no target


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(res: dict[str, Any]) -> str:
    """The per-type table of ipc.md (aliases left out: they point at a row)."""
    lines = ["| type | path | n | p50 ms | p95 ms | p99 ms | max ms | per s | floor p50 ms | "
             "p50/floor | 1 core: p50 ms | floor p50 ms | p50/floor | note |",
             "|" + "---|" * 14]
    for key, r in res["types"].items():
        if r.get("alias_of"):
            continue
        s, f, one = r["real"], r.get("floor", {}), r.get("one_core", {})
        lines.append(
            f"| {key} | {r['path']} | {s['n']} | {fmt(s.get('p50_ms'))} | "
            f"{fmt(s.get('p95_ms'))} | {fmt(s.get('p99_ms'))} | {fmt(s.get('max_ms'))} | "
            f"{fmt(s.get('per_s'), 0)} | {fmt(f.get('p50_ms'))} | "
            f"{fmt(r.get('ratio_p50'), 2)} | {fmt(one.get('real', {}).get('p50_ms'))} | "
            f"{fmt(one.get('floor', {}).get('p50_ms'))} | {fmt(one.get('ratio_p50'), 2)} | "
            f"{r.get('note', '')} |")
    return "\n".join(lines)


def _ratio_target(types: dict[str, Any], label: str, get: Callable[[dict[str, Any]], Any],
                  judged: bool) -> Target:
    rows = [(k, get(r)) for k, r in types.items() if get(r)]
    worst = max(rows, key=lambda kr: kr[1])
    over = [f"{k} {v:.2f}" for k, v in rows if v > TARGET_RATIO]
    return Target(f"p50 <= 1.25x floor, every type ({label})",
                  f"{len(rows) - len(over)}/{len(rows)} types within; worst {worst[0]} "
                  f"{worst[1]:.2f}x; over: " + (", ".join(over) or "none"),
                  not over if judged else None)


def _switch_targets(sw: dict[str, Any]) -> list[Target]:
    case = f"switch ({sw['label']}; {sw['switch_s']:.1f} s)"
    late = max(sw["heartbeat_late_ms"].values())
    idle, dur = sw["set_expression_tcp_idle"]["p99_ms"], sw["set_expression_tcp_during"]
    dp99 = dur.get("p99_ms", float("nan"))
    st = sw["status_during"]
    return [
        Target(f"heartbeat gap <= 50 ms over the interval, {case}",
               f"largest gap {max(sw['heartbeat_gap_max_s'].values()) * 1e3:.1f} ms with a "
               f"{sw['heartbeat_interval_s'] * 1e3:.0f} ms interval: {late:.1f} ms late",
               late <= HEARTBEAT_LATE_MS),
        Target(f"set_expression p99 <= 2x idle, {case}",
               f"{dp99:.2f} ms vs {idle:.2f} ms idle ({dp99 / idle:.2f}x, n={dur['n']})",
               dp99 <= SWITCH_SLOWDOWN * idle),
        Target(f"status latency, {case} (no target)",
               f"p50 {st['p50_ms']:.2f} ms, p99 {st['p99_ms']:.2f} ms (idle p99 "
               f"{sw['status_idle']['p99_ms']:.2f} ms)", None)]


def targets(res: dict[str, Any]) -> list[Target]:
    """Every target of the issue, with the figure it is judged on and whether it is met."""
    types = res["types"]
    out = [_ratio_target(types, "as it runs", lambda r: r.get("ratio_p50"), True),
           _ratio_target(types, "diagnostic: all on one core, our software's share",
                         lambda r: r.get("one_core", {}).get("ratio_p50"), False)]
    p99 = [(k, r["real"]["p99_ms"]) for k, r in types.items()
           if r["real"].get("n", 0) >= P99_MIN_SAMPLES]
    bad = [f"{k} {v:.2f}" for k, v in p99 if v > TARGET_P99_MS]
    out.append(Target("p99 <= 1 ms (types with >= 50 samples)",
                      f"{len(p99) - len(bad)}/{len(p99)} within; over: "
                      + (", ".join(bad) or "none"), not bad))
    th = res["chat_delta_throughput"]
    tp, lost = th["per_s"], th["sent"] - th["received"]
    out.append(Target("chat_delta -> TCP client >= 20 000/s, none lost",
                      f"{tp:.0f}/s received; {lost} of {th['sent']} lost; "
                      f"{th['speech_frames']} speech frames (floor {th['floor_per_s']:.0f}/s)",
                      tp >= TARGET_TPUT and not lost))
    for sw in (res["switch"], res["switch_slow_load"]):
        out += _switch_targets(sw)
    rec = res["recovery"]
    worst_n = max(r["noticed_ms"] for r in rec.values())
    out.append(Target("kill -9 noticed <= 50 ms", ", ".join(
        f"{k} {r['noticed_ms']:.1f} ms" for k, r in rec.items()), worst_n <= NOTICE_MS))
    fp = res["footprint"]
    out.append(Target("supervisor RSS <= 40 MB", f"{fp['supervisor_rss_mb']:.1f} MB",
                      fp["supervisor_rss_mb"] <= RSS_MB))
    out.append(Target(f"supervisor idle CPU <= 0.5 % ({fp['seconds']} s)",
                      f"{fp['supervisor_cpu_percent']:.2f} %",
                      fp["supervisor_cpu_percent"] <= IDLE_CPU_PERCENT))
    return out


def markdown(res: dict[str, Any]) -> str:
    """ipc.md: the table, the targets, the ancestor baseline and the codec in a line each."""
    anc = res["ancestor_json_tcp_rt"]
    flo = res["types"].get("set_expression(TCP client)", {})
    parts = [
        f"IPC benchmark ({'--quick' if res['quick'] else 'full'}, {res['elapsed_s']:.0f} s, "
        f"{os.cpu_count()} cores). Latencies in ms; n = samples after warm-up "
        f"({res['types']['ping']['warmup']} per type excluded); real and floor taken in "
        "alternating blocks. per s = closed-loop rate (one at a time).", "",
        table(res), "",
        "**Targets**", "", "| target | measured | met |", "|---|---|---|",
        *[f"| {t} | {v} | {'-' if ok is None else ('yes' if ok else '**no**')} |"
          for t, v, ok in res["targets"]], "",
        f"Ancestor newline-JSON over TCP round trip (1 hop each way): p50 {anc['p50_ms']:.3f} ms,"
        f" p99 {anc['p99_ms']:.3f} ms; the bridge's msgpack TCP round trip p50 "
        f"{flo.get('real', {}).get('p50_ms', 0):.3f} ms (floor "
        f"{flo.get('floor', {}).get('p50_ms', 0):.3f} ms).", "",
        "Codec, encode + decode per message (µs): "
        + ", ".join(f"{k} {v['msgpack_codec_us']:.1f} (bare msgpack {v['msgpack_bare_us']:.1f},"
                    f" json {v['json_us']:.1f})" for k, v in res["codec"].items()
                    if k in CODEC_SHOWN) + " — all types in ipc.json.",
    ]
    return "\n".join(parts) + "\n"


def plots(res: dict[str, Any], out_dir: Path) -> list[str]:
    """ipc_latency.png (real vs floor per type) and ipc_codec.png (codec vs json)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(k, r) for k, r in res["types"].items() if r["real"].get("n", 0) >= 20]
    fig, ax = plt.subplots(figsize=(12, 6))
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [r["real"]["p50_ms"] for _, r in rows], 0.4, label="p50 real")
    ax.barh([i - 0.2 for i in y], [r.get("floor", {}).get("p50_ms", 0) for _, r in rows], 0.4,
            label="p50 floor (bare pyzmq + msgpack)")
    ax.scatter([r["real"]["p99_ms"] for _, r in rows], [i + 0.2 for i in y], marker="|",
               color="k", s=200, label="p99 real")
    ax.axvline(TARGET_P99_MS, color="r", ls="--", lw=1, label="1 ms")
    ax.set_yticks(list(y), [k for k, _ in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log)")
    ax.legend(fontsize=8)
    ax.set_title("IPC latency per message type: real stack vs floor")
    fig.tight_layout()
    out = [out_dir / "ipc_latency.png", out_dir / "ipc_codec.png"]
    fig.savefig(out[0], dpi=100)
    plt.close(fig)
    codec = res["codec"]
    fig, ax = plt.subplots(figsize=(12, 5))
    ks = list(codec)
    x = range(len(ks))
    ax.bar([i - 0.2 for i in x], [codec[k]["msgpack_codec_us"] for k in ks], 0.4,
           label="codec.encode + decode (msgpack, validated)")
    ax.bar([i + 0.2 for i in x], [codec[k]["json_us"] for k in ks], 0.4, label="json dumps+loads")
    ax.set_xticks(list(x), ks, rotation=70, fontsize=7)
    ax.set_ylabel("µs per message")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out[1], dpi=100)
    plt.close(fig)
    return [str(p) for p in out]


def write(res: dict[str, Any], out_dir: Path) -> str:
    """Judge the targets and write ipc.md, the plots and ipc.json; returns the markdown."""
    res["targets"] = targets(res)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    (out_dir / "ipc.md").write_text(md)
    res["plots"] = plots(res, out_dir)
    (out_dir / "ipc.json").write_text(json.dumps(res, indent=2, default=str))
    return md
