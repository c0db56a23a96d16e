"""Per-message latency on the main stack, each type on its real path: control requests,
avatar commands, the Unity wire, the supervisor's own messages, and the events only observed
(streamed replies are in streaming.py).

Each function measures one family of paths and records its rows; what it needs comes in as
arguments (the `Rig` of live connections, a `Sampler` for rows beside a floor).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.ipc.probes import Collector, Probe
from bench.ipc.sampling import Real, Rows, Sampler
from bench.ipc.stats import summary
from bench.recovery import WORKERS
from protocol.bus import BusClient
from protocol.messages import REGISTRY
from supervisor.harness import Stack, reloading_profile

AVATAR_COMMANDS: dict[str, dict[str, Any]] = {
    "load_model": {"path": "/tmp/avatar.vrm"}, "set_expression": {"name": "joy", "value": 0.5},
    "reset_expressions": {}, "set_transition_speed": {"speed": 2.0},
    "set_auto_blink": {"enabled": True}, "set_auto_head_movement": {"enabled": True}}
CLIENT_EVENTS: dict[str, dict[str, Any]] = {
    "clicked": {"target": "head", "x": 0.1, "y": 0.2}, "model_loaded": {"path": "/tmp/a.vrm"},
    "avatar_error": {"message": "bench"}}


@dataclass
class Rig:
    """The main stack and the bench's connections to it.

    `probe` is replaced when the bridge drops it as a slow consumer (the throughput flood)."""

    stack: Stack
    port: int  # the bridge's TCP port
    bus: BusClient
    probe: Probe
    collector: Collector

    def pids(self) -> list[int]:
        """The supervisor's and every running worker's."""
        st = self.stack.status()
        return [st["supervisor"]["pid"],
                *[w["pid"] for w in st["workers"].values() if w.get("pid")]]


def round_trip(bus: BusClient, type_: str, data: dict[str, Any] | None = None) -> Real:
    """A request over the bus, timed to its final reply (or error)."""
    def one() -> float:
        t0 = time.time()
        msg_id = bus.send(type_, data)
        env = bus.recv_for(msg_id, 10)
        while env.type not in REGISTRY[type_].final and env.type != "error":
            env = bus.recv_for(msg_id, 10)
        return time.time() - t0
    return one


# -- control requests: client -> supervisor (-> worker) -> client -----------------------------
def control(rig: Rig, s: Sampler) -> None:
    print("control requests ...", flush=True)
    bus = rig.bus
    s.interleaved("ping", round_trip(bus, "ping"), "rt_ipc_2", "ping",
                  "client -> supervisor -> client (pong)")
    for w in WORKERS:
        s.interleaved(f"ping(target={w})", round_trip(bus, "ping", {"target": w}), "rt_ipc_4",
                      "ping", f"client -> supervisor -> {w} -> supervisor -> client")
    s.interleaved("status", round_trip(bus, "status"), "rt_ipc_2", "status_reply",
                  "client -> supervisor -> client (status_reply)",
                  payload_data=bus.request("status").data)
    logs = {"worker": "gpu_monitor", "lines": 5}
    s.interleaved("logs", round_trip(bus, "logs", logs), "rt_ipc_2", "logs_reply",
                  "client -> supervisor -> client (logs_reply, 5 lines read from the log file)",
                  payload_data=bus.request("logs", logs).data)
    s.interleaved("error", round_trip(bus, "logs", {"worker": "nobody"}), "rt_ipc_2", "error",
                  "client -> supervisor -> client (logs of an unknown worker -> error)")
    for reply, req in (("pong", "ping"), ("status_reply", "status"), ("logs_reply", "logs")):
        s.rows.alias(reply, req, f"reply of {req}; see {req}")


# -- avatar commands: bus client -> supervisor -> bridge -> TCP client -------------------------
def avatar(rig: Rig, s: Sampler) -> None:
    print("avatar commands ...", flush=True)
    bus, p = rig.bus, rig.probe
    for type_, data in AVATAR_COMMANDS.items():
        oks: list[float] = []

        def one(type_: str = type_, data: dict[str, Any] = data,
                oks: list[float] = oks) -> float:
            p.drain()
            t0 = time.time()
            msg_id = bus.send(type_, data)
            t_tcp, _ = p.wait(lambda e: e.type == type_)
            bus.recv_for(msg_id, 10)
            oks.append(time.time() - t0)  # after the TCP receipt: never shorter than it
            return t_tcp - t0
        s.interleaved(type_, one, "ow_ipc_ipc_tcp", type_,
                      "bus client -> supervisor -> unity_bridge -> TCP client (one way)")
        if not s.one_core:
            s.rows.set(type_, ok_round_trip=summary(oks[s.plan.warmup:]))
    s.interleaved("ok", round_trip(bus, "set_expression", AVATAR_COMMANDS["set_expression"]),
                  "rt_ipc_4", "ok", "reply of set_expression over the bus: client -> "
                  "supervisor -> bridge -> supervisor -> client")
    p.drain()


# -- the Unity wire itself ----------------------------------------------------------------------
def wire(rig: Rig, s: Sampler) -> None:
    print("Unity wire ...", flush=True)
    p, col = rig.probe, rig.collector

    def tcp_rt() -> float:
        t0 = time.time()
        t, _ = p.request_timed("set_expression", {"name": "fun", "value": 0.3})
        return t - t0
    s.interleaved("set_expression(TCP client)", tcp_rt, "rt_tcp", "set_expression",
                  "TCP client -> bridge -> TCP client (ok)")

    def hello() -> float:
        fresh = Probe(rig.port, "hello-bench")
        fresh.close()
        time.sleep(0.01)  # let the bridge see the close (max_clients)
        return fresh.hello_s
    s.interleaved("hello", hello, "rt_tcp", "hello",
                  "TCP client -> bridge -> TCP client (welcome), fresh connection; the floor "
                  "is a round trip on an open one (no accept)", n=max(50, s.plan.n // 10))
    s.rows.alias("welcome", "hello", "reply of hello; see hello")
    for type_, data in CLIENT_EVENTS.items():  # TCP client -> bridge -> bus subscriber
        def one(type_: str = type_, data: dict[str, Any] = data) -> float | None:
            k = len(col.seen)
            t0 = time.time()
            p.send(type_, data)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                t = col.first_after(k, type_)
                if t is not None:
                    return t - t0
                time.sleep(0.00005)
            return None
        s.interleaved(type_, one, "ow_tcp_ipc_ipc", type_,
                      "TCP client -> bridge -> XSUB/XPUB proxy -> bus SUB (one way)",
                      n=max(100, s.plan.n // 4))


# -- the supervisor's own messages ---------------------------------------------------------------
def retry(stack: Stack, rows: Rows, quick: bool) -> None:
    """request_retry: an emergency switch in the middle of a reply; the supervisor tells
    the asker it runs again on the new process (supervisor -> client, one way)."""
    rounds = 2 if quick else 4
    print(f"emergency switches mid-reply ({rounds}) ...", flush=True)
    asker, ctl = stack.new_client(), stack.new_client()
    lat = []
    for i in range(rounds):
        w = stack.worker("inference")
        old, target = w["pid"], reloading_profile(w["ready_info"])
        mid = asker.send("chat", {"text": "Tell me a story about a cat.", "max_tokens": 48,
                                  "conversation": f"retry{i}"})
        asker.recv_for(mid, 60)  # the first token: the reply is in flight
        ctl.request("switch_profile", {"profile": target, "emergency": True,
                                       "reason": "ipc bench"})
        while True:
            env = asker.recv_for(mid, 120)
            if env.type == "request_retry":
                lat.append(time.time() - env.ts)
            if env.type in ("chat_done", "error"):
                break
        stack.wait_state("inference", "RUNNING", 60, lambda w, old=old: w["pid"] != old)
    asker.close()
    ctl.close()
    rows.set("request_retry", path="supervisor -> client (one way), sent when an emergency "
             "switch cuts a reply", real=summary(lat), warmup=0,
             note=f"{rounds} emergency switches; no floor: one hop")


def auto_switching(rig: Rig, rows: Rows) -> None:
    """set_auto_switching: the panel's toggle, a round trip to the GPU role (off, then on)."""
    lat = []
    for enabled in (False, True) * 5:
        t0 = time.time()
        rig.bus.request("set_auto_switching", {"enabled": enabled})
        lat.append(time.time() - t0)
    rows.set("set_auto_switching", path="client -> supervisor -> gpu_monitor -> client (ok)",
             real=summary(lat), warmup=0, note=f"{len(lat)} samples, off and on in turn")


def lifecycle(rig: Rig, rows: Rows) -> None:
    """stop / restart / kill of a worker: the supervisor's ok, one sample each."""
    print("stop / restart / kill (gpu_monitor) ...", flush=True)
    for type_ in ("stop", "restart", "kill"):
        t0 = time.time()
        rig.bus.request(type_, {"worker": "gpu_monitor"})
        rows.set(type_, path="client -> supervisor -> client (ok; the action goes on after)",
                 real=summary([time.time() - t0]), warmup=0, note="1 sample")
        if type_ == "stop":
            rig.stack.wait_state("gpu_monitor", "EXITED", 30)
        else:
            time.sleep(0.3)
            rig.stack.wait_state("gpu_monitor", "RUNNING", 30)


# -- what was only observed, and what is not measured ------------------------------------------
def observed(rows: Rows, lat: dict[str, list[float]], cold: list[float],
             under_load: list[float]) -> None:
    """Rows of the events the Collector saw through the run, and why the rest have none."""
    rows.passive("worker_stats", lat.get("worker_stats", []),
                 "supervisor PUB -> XSUB/XPUB proxy -> bus SUB", cold,
                 "every supervisor.stats_interval_s (0.5 s here); floor sampled as often")
    rows.passive("gpu_stats", lat.get("gpu_stats", []), "gpu_monitor PUB -> proxy -> bus SUB",
                 cold, "every gpu_monitoring.interval_s (0.5 s here, replayed trace); floor "
                 "sampled as often")
    for type_ in ("worker_state", "profile_status", "avatar_state", "client_connected",
                  "client_disconnected"):
        rows.passive(type_, lat.get(type_, []), "publisher PUB -> proxy -> bus SUB", cold,
                     "observed during the run (switch, restarts, connects); floor sampled"
                     " every 0.5 s")
    for type_ in ("chat_started", "chat_delta", "chat_ended", "emotion"):
        rows.passive(type_, lat.get(type_, []), "inference PUB -> proxy -> bus SUB",
                     under_load, "during generation; floor under the same load (see "
                     "chat_token)", floor_name="ow_ipc_2 under load")
    if lat.get("progress"):
        rows.passive("progress", lat["progress"], "worker -> supervisor -> proxy -> bus SUB",
                     cold, "observed while workers loaded; floor sampled every 0.5 s")
    else:
        rows.missing("progress", "none during the run: a worker sends it only while it loads, "
                     "to push its ready deadline forward")
    for type_ in ("speech", "mouth", "viseme"):  # bridge -> TCP client only, from the bridge ts
        rows.alias(type_, "chat_delta→TCP",
                   "made by the bridge from each chat_delta: see chat_delta→TCP")
    rows.missing("heartbeat", "worker -> supervisor only, never republished; the largest gap "
                 "per stats interval is in worker_stats: see the switch targets")
    rows.missing("ready", "worker -> supervisor once per start; see worker_state and recovery "
                 "(ready again)")
    rows.missing("worker_stop", "supervisor -> worker during stop/switch; its effect is in the "
                 "switch figures")
    rows.missing("activate", "supervisor -> warm spare once per start; its effect is in the "
                 "switch figures and bench.recovery (ready again)")
    rows.missing("auto_switch", "needs GPU pressure (NVML or a --gpu-trace replay); this "
                 "machine has no GPU")
    rows.missing("switch_model", "the path of switch_profile (a drain, then inference "
                 "restarts on the other GGUF): see the switch figures")
    rows.missing("shutdown", "ends the stack; timed by harness stop, not as IPC")
