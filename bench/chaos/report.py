"""The targets judged from the figures, and the files people read: chaos.json, chaos.md.

Every verdict is computed here from a measured figure; a target the run was too small to
judge (fewer kills or frames than it names) is "not judged", and says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KILLS, FRAMES, CHAT_GAP_S = 200, 100_000, 3.0
P99_RATIO, RSS_GROWTH_MB, THREAD_NOTICE_MS = 10.0, 10.0, 50.0


def _row(target: str, goal: str, measured: str, met: bool | None, command: str
         ) -> dict[str, Any]:
    return {"target": target, "goal": goal, "measured": measured, "met": met,
            "command": command}


def _judged(ok: bool, enough: bool) -> bool | None:
    """A failure counts however small the run; a pass only when the run was big enough."""
    return False if not ok else (True if enough else None)


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    cmd = res["run"]["command"]
    req, fl, fz = res["requests"], res["faults"], res["fuzz"]
    rows = []
    rows.append(_row(
        f"requests lost under >= {KILLS} random kill -9 with chat load", "0",
        f"{req['lost']} lost of {req['sent']} requests ({fl['kills']} kill -9, "
        f"{req['chats']} chats)", _judged(req["lost"] == 0, fl["kills"] >= KILLS), cmd))
    gap = fl["min_chat_fault_gap_s"]
    rows.append(_row(
        f"chats that never produced a token yet ended in an error, under a kill every "
        f">= {CHAT_GAP_S:g} s", "0",
        f"{req['chat_errors_without_token']} of {req['chats']} chats ({req['chat_errors']} "
        f"chat errors in all; faults on the chat worker at least "
        f"{'-' if gap is None else f'{gap:.2f}'} s apart)",
        _judged(req["chat_errors_without_token"] == 0, gap is not None and gap >= CHAT_GAP_S),
        cmd))
    frames, crashes = fz["fuzz"].get("frames", 0), fz["bridge_crashes"]
    resets = fz["fuzz"].get("endings", {}).get("reset", 0)
    rows.append(_row(
        f"bridge crashes under {FRAMES:,} hostile frames with abrupt resets".replace(",", " "),
        "0", f"{crashes} crashes under {frames} frames ({resets} sessions ended by RST)",
        _judged(crashes == 0, frames >= FRAMES), cmd))
    gc = fz["good_client"]
    idle, during = gc["idle"].get("p99_ms"), gc["during"].get("p99_ms")
    if idle and during:
        ratio = during / idle
        rows.append(_row(
            "good client's p99 during the fuzz", f"<= {P99_RATIO:g}x its idle p99",
            f"{during:.2f} ms vs {idle:.2f} ms idle ({ratio:.1f}x; after: "
            f"{gc['after'].get('p99_ms', float('nan')):.2f} ms; timeouts "
            f"{sum(fz['good_client_timeouts'].values())})",
            ratio <= P99_RATIO and not fz["good_client_timeouts"], cmd))
    else:
        rows.append(_row("good client's p99 during the fuzz", f"<= {P99_RATIO:g}x its idle p99",
                         f"no samples (idle {gc['idle'].get('n', 0)}, during "
                         f"{gc['during'].get('n', 0)})", False, cmd))
    start, after = fz["rss_start_mb"], fz["rss_after_mb"]
    same = fz["bridge_pid_after"] == fz["bridge_pid_before"]
    if start is not None and after is not None and same:
        rows.append(_row("bridge RSS after the fuzz", f"<= start + {RSS_GROWTH_MB:g} MB",
                         f"{after:.1f} MB after, {start:.1f} MB at start "
                         f"({after - start:+.1f} MB; peak {fz['rss_peak_mb']:.1f} MB)",
                         after - start <= RSS_GROWTH_MB, cmd))
    else:
        rows.append(_row("bridge RSS after the fuzz", f"<= start + {RSS_GROWTH_MB:g} MB",
                         "the bridge did not live through the fuzz: no RSS to compare", False,
                         cmd))
    td = res["thread_death"]
    rows.append(_row(
        "a thread dying in any worker -> the supervisor notices", f"<= {THREAD_NOTICE_MS:g} ms",
        "-" if td["max_ms"] is None else
        f"max {td['max_ms']:.1f} ms over {len(td['samples'])} deaths (a bench worker on the "
        f"workers' runtime; exit 70 each time: {td['all_seen_as_crash']})",
        None if td["max_ms"] is None else
        td["max_ms"] <= THREAD_NOTICE_MS and td["all_seen_as_crash"], cmd))
    rows.append(_sigstop_row(res, cmd))
    rows.append(_supervisor_row(res, cmd))
    return rows


# A hang is declared heartbeat_misses intervals after the last heartbeat, which came before the
# SIGSTOP; what the bench sees on top is the supervisor loop's timer wake-up (its poll rounds
# up to the next ms) and the worker_state event's hop to the bench.
HANG_SLACK_S = 0.005


def _late(stop: dict[str, Any], res: dict[str, Any]) -> bool:
    hb, misses = res["run"]["heartbeat_s"], res["run"]["heartbeat_misses"]
    return stop.get("noticed_s", 0) > misses * hb + HANG_SLACK_S


def _sigstop_row(res: dict[str, Any], cmd: str) -> dict[str, Any]:
    hb, misses = res["run"]["heartbeat_s"], res["run"]["heartbeat_misses"]
    rows = [s for s in res["sigstops"] if "noticed_s" in s]
    unseen = sum("error" in s for s in res["sigstops"])
    goal = f"<= {misses} heartbeats + start"
    if not rows:
        return _row("SIGSTOP'd worker -> replaced", goal,
                    f"no SIGSTOP measured ({unseen} not seen)", False if unseen else None, cmd)
    worst = max(rows, key=lambda s: s["noticed_s"])
    starts = [s["start_s"] for s in rows if s.get("start_s") is not None]
    late = sum(_late(s, res) for s in rows)
    return _row("SIGSTOP'd worker -> replaced", goal,
                f"{len(rows)} SIGSTOPs, {late} noticed after more than {misses} heartbeats "
                f"(+{HANG_SLACK_S * 1000:.0f} ms for the timer and the event's hop); "
                f"at most {worst['noticed_heartbeats']:.2f} heartbeats "
                f"({worst['noticed_s'] * 1000:.0f} ms, {worst['worker']}; heartbeat "
                f"{hb * 1000:.0f} ms); then ready in at most "
                f"{max(starts, default=float('nan')) * 1000:.0f} ms"
                + (f"; {unseen} not seen" if unseen else ""), late == 0 and not unseen, cmd)


def _supervisor_row(res: dict[str, Any], cmd: str) -> dict[str, Any]:
    kills = res["supervisor_kills"]
    left = sum(len(k["left"]) for k in kills)
    folders = sum(k["socket_folder_left"] for k in kills)
    stale = sum(k["cli_says_stale"] for k in kills)
    said = kills[-1]["cli_said"].splitlines()[-1] if kills and kills[-1]["cli_said"] else "-"
    return _row("kill -9 of the supervisor",
                "no process left; no socket folder piles up; the CLI calls a stale run file stale",
                f"{len(kills)} kills: {left} processes left; socket folder left behind "
                f"{folders} of {len(kills)} times; CLI said stale {stale} of {len(kills)} times "
                f"(last: \"{said[:160]}\")",
                left == 0 and folders == 0 and stale == len(kills), cmd)


def invariants(res: dict[str, Any]) -> dict[str, bool]:
    """What must hold in any run, however short (the test suite asserts these)."""
    req, fz = res["requests"], res["fuzz"]
    return {"no_request_lost": req["lost"] == 0,
            "sqlite_consistent": res["memory"]["consistent"],
            "error_codes_registered": not req["unregistered_codes"]
            and fz["fuzz"].get("bad_answers", 1) == 0,
            "bridge_survived_fuzz": fz["bridge_crashes"] == 0,
            "no_process_left_after_supervisor_kill": all(not k["left"]
                                                         for k in res["supervisor_kills"])}


def findings(res: dict[str, Any]) -> list[str]:
    """What a reader must not miss, in words, from the figures."""
    out = []
    req, fz, mem = res["requests"], res["fuzz"], res["memory"]
    if req["lost"]:
        out.append(f"{req['lost']} requests got no final reply within their timeout, e.g. "
                   f"{req['lost_examples'][:2]}")
    for name, ex in res["exits"].items():
        if ex["crashes"]:
            where = sorted({c["during"] for c in ex["crashes"]})
            reasons = sorted({c["reason"] for c in ex["crashes"]})[:3]
            out.append(f"{name} crashed {len(ex['crashes'])} times without being killed by "
                       f"the bench ({', '.join(where)}): {reasons}")
    logs = res["bridge_log"]
    if logs["tracebacks"]:
        out.append(f"unity_bridge log: {logs['tracebacks']} tracebacks; "
                   f"{'; '.join(logs['exceptions'][:3])}")
    if req["chat_errors_without_token"]:
        codes = sorted({str(e["code"]) for e in req["chat_errors_without_token_examples"]})
        out.append(f"{req['chat_errors_without_token']} chats ended in an error (codes "
                   f"{', '.join(codes)}) without ever producing a token, e.g. "
                   f"\"{req['chat_errors_without_token_examples'][0]['message']}\"")
    names = fz["names_check"]
    if names["kept"] >= 0.9 * names["tried"]:
        out.append(f"the bridge keeps every distinct expression name: {names['kept']} of a "
                   f"flood of {names['sent']} kept, welcome now {names['welcome_bytes']} bytes "
                   f"(the flood took {names['took_s']:.1f} s)")
    misses = res["run"]["heartbeat_misses"]
    late = [s for s in res["sigstops"] if _late(s, res)]
    if late:
        out.append(f"{len(late)} of {len(res['sigstops'])} SIGSTOPs were called hung after more "
                   f"than {misses} heartbeats (at most "
                   f"{max(s['noticed_heartbeats'] for s in late):.2f}): the hang is declared "
                   f"{misses} heartbeat intervals after the last heartbeat")
    if "error" in fz["welcome_after"]:
        out.append(f"a client could not connect after the fuzz: {fz['welcome_after']['error']}")
    if not mem["consistent"]:
        out.append(f"conversation memory: {mem['missing']} completed chats missing, "
                   f"{mem['wrong_reply']} with another reply; integrity {mem['integrity']}")
    for k in res["supervisor_kills"]:
        if k["socket_folder_left"]:
            out.append(f"kill -9 of the supervisor left its socket folder {k['socket_folder']}")
            break
    if res["supervisor_kills"] and not res["supervisor_kills"][-1]["cli_says_stale"]:
        out.append("after a kill -9 of the supervisor the CLI does not call the run file "
                   f"stale: \"{res['supervisor_kills'][-1]['cli_said'][:200]}\"")
    busy = res["contention"]["soak"]["mean"]
    if busy is not None and busy > 0.25:
        out.append(f"the machine was shared: other processes used {busy:.2f} of "
                   f"{res['contention']['cores']} cores on average during the soak (at most "
                   f"{res['contention']['soak']['max']:.2f}), "
                   f"{res['contention']['fuzz']['mean']} during the fuzz; timings suffer")
    out += [f"bench problem: {f}" for f in res["soak"]["failures"]]
    return out


def markdown(res: dict[str, Any]) -> str:
    run, req, fl, fz, mem = (res["run"], res["requests"], res["faults"], res["fuzz"],
                             res["memory"])
    yes = {True: "yes", False: "**no**", None: "not judged"}
    lines = [f"# Chaos soak and fuzz ({'short' if run['short'] else 'full'} run)", "",
             f"`{run['command']}` — {run['elapsed_s']:.0f} s on {run['host']}, seed "
             f"{run['seed']}, soak {run['soak_s']:.0f} s.", "",
             "| target | goal | measured | met | command |", "|---|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['goal']} | {t['measured']} | {yes[t['met']]} | "
              f"`{t['command']}` |" for t in res["targets"]]
    lines += ["", "## Findings", ""]
    lines += [f"- {f}" for f in res["findings"]] or ["- none"]
    lines += ["", "## Soak", "",
              f"Faults: {fl['by_kind']} ({fl['missed']} missed: the process was gone); "
              f"TCP resets of Unity clients: {res['soak']['resets']['resets']} (in bursts, "
              f"amid {res['soak']['resets']['commands']} broadcast commands); the avatar "
              f"client reconnected {res['soak']['wire']['reconnects']} times.", "",
              "| request | sent | completed | error | closed | lost | error codes |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {r['sent']} | {r['completed']} | {r['error']} | {r['closed']} | "
              f"{r['lost']} | {r['codes'] or '-'} |" for k, r in sorted(req["by_type"].items())]
    cs = req["chat_s"]
    lines += ["", f"Chats: {req['chats_completed']} of {req['chats']} completed (in "
              f"{_f(cs.get('p50_ms', 0) / 1e3, 1)} s median, {_f(cs.get('max_ms', 0) / 1e3, 1)} s "
              f"at most, queue and re-runs included), "
              f"{req['chats_retried']} re-run after a fault ({req['chats_completed_after_retry']}"
              f" of them completed); the longest a request waited between two replies: "
              f"{req['longest_silence_s']:.1f} s. Conversation memory: "
              f"{mem['completed_with_text']} completed "
              f"chats with a reply checked, {mem['missing']} missing, {mem['wrong_reply']} with "
              f"another reply, {mem['stored_twice']} stored twice, {mem['text_without_reply']} "
              f"texts without their reply, integrity {mem['integrity']}.", "",
              "Exits per worker (ended lives: by the bench / by a requested stop / crashes): "
              + "; ".join(f"{n} {e['ended_by_us']} / {e['requested_stops']} / "
                          f"{len(e['crashes'])}" for n, e in res["exits"].items()) + ".",
              "", "## Fuzz", "", f"`{fz['command']}`", "",
              f"{fz['fuzz'].get('frames', 0)} frames in {fz['fuzz'].get('elapsed_s', 0):.1f} s, "
              f"sessions {fz['fuzz'].get('sessions')}, endings {fz['fuzz'].get('endings')}; "
              f"answers read {fz['fuzz'].get('answers')}, invalid "
              f"{fz['fuzz'].get('bad_answers')}; silent connections dropped by the bridge "
              f"{fz['fuzz'].get('silent_dropped_by_bridge')} of "
              f"{fz['fuzz'].get('silent_seen')}.", "",
              "| good client ping | n | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for phase in ("idle", "during", "after"):
        s = fz["good_client"][phase]
        lines.append(f"| {phase} | {s.get('n', 0)} | {_f(s.get('p50_ms'))} | "
                     f"{_f(s.get('p99_ms'))} | {_f(s.get('max_ms'))} |")
    nc = fz["names_check"]
    lines += ["", "Slowest pings during the fuzz (seconds after it began): "
              + ", ".join(f"{s['ms']:.1f} ms at {s['at_s']:.0f} s"
                          for s in fz["good_client_slowest"][:5]) + ".", "",
              f"Counted name flood after the fuzz: {nc['sent']} of {nc['tried']} distinct names "
              f"sent on one connection, {nc['ok']} accepted, errors {nc['errors'] or '-'}"
              f"{', then closed by the bridge' if nc['closed_by_bridge'] else ''}, "
              f"{nc['kept']} kept in welcome ({nc['welcome_bytes']} bytes), "
              f"{nc['took_s']:.1f} s."]
    lines += ["", f"Bridge RSS: start {_f(fz['rss_start_mb'], 1)} MB, peak "
              f"{_f(fz['rss_peak_mb'], 1)} MB, after {_f(fz['rss_after_mb'], 1)} MB. Welcome "
              f"before: {fz['welcome_before']}; after: {fz['welcome_after']}.", ""]
    return "\n".join(lines)


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def write(res: dict[str, Any], out: Path) -> str:
    res["targets"] = targets(res)
    res["invariants"] = invariants(res)
    res["findings"] = findings(res)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    md = markdown(res)
    (out / "chaos.md").write_text(md, encoding="utf-8")
    return md
