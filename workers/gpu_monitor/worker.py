"""GPU monitor worker: readings every interval, history, and auto-switching of profiles.

Without an NVIDIA driver it stays up, says once why the GPU is unavailable, and idles: the rest
of the stack must not notice the difference.

Our own footprint: NVML's per-process memory where the platform gives it (Linux; never under
Windows WDDM), else what the inference worker measured as the free-memory drop around its load,
else the planner's estimate; fresh after every switch, since nothing is decided while a switch
is under way and the new worker's numbers arrive with its ready info. GPU % while one of our
own replies runs is ours, not load: the last reading taken outside a reply stands for others'.

Polling (an Optimus laptop's NVIDIA GPU stays awake, ~20 W, while NVML is polled): every
interval_s while layers are offloaded; every idle_interval_s while nothing is offloaded and
auto-switching waits for the card to free up (a game closing); not at all, NVML shut down, while
nothing is offloaded and auto-switching is off.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from protocol.codec import Envelope
from protocol.messages import PROFILES, ErrorCode, with_role
from supervisor.config import DEFAULT_MODEL, load_profiles, profiles_path
from workers.gpu.gguf_info import ModelInfo, read_model_info
from workers.gpu.planner import CUDA_CONTEXT_BYTES, profile_need
from workers.gpu.simcard import ScenarioError, SimCard, load_scenario, sim_folder
from workers.gpu.sources import GpuSource, NvmlSource, ReplaySource
from workers.gpu_monitor.decision import Decider, Sample
from workers.gpu_monitor.history import History
from workers.runtime import WorkerRuntime

log = logging.getLogger("gpu_monitor")


class GpuMonitor:
    def __init__(self, rt: WorkerRuntime) -> None:
        self.rt = rt
        self.cfg = rt.config["gpu_monitoring"]
        trace = rt.options.get("trace") or self.cfg["trace_file"]
        sim = rt.options.get("gpu_sim")
        self.replay = bool(trace or sim)
        self.time_scale = 1.0
        self.sim_model: ModelInfo | None = None
        try:
            if sim:
                scenario = load_scenario(Path(sim))
                self.source: GpuSource = SimCard(scenario, sim_folder(rt.data_dir))
                self.time_scale = scenario.time_scale
                self.sim_model = scenario.model
            else:
                self.source = ReplaySource(Path(trace)) if trace else NvmlSource()
        except (ValueError, ScenarioError) as exc:
            rt.fail_config(f"{exc} (gpu_monitoring.trace_file, --gpu-trace or --gpu-sim)")
        history = self.cfg["history_file"]
        self.history = History(Path(history) if history else rt.data_dir / "gpu_history.csv",
                               self.cfg["history_max_bytes"], self.cfg["history_backups"])
        ai = rt.config["ai"]
        self.auto_wanted = ai["auto_switching_enabled"] and ai["gpu_profile"] == "auto"
        self.profiles = load_profiles(profiles_path(rt.config))
        self.model: ModelInfo | None = None
        self.model_path: Path | None = None
        self.profiles_pid: int | None = None  # the worker providing PROFILES: its VRAM is ours
        self.offload_supported: bool | None = None
        self.decider = Decider(self.cfg, self._need, margin_bytes=ai["vram_margin_mb"] << 20)
        self.samples = 0
        self.own_vram = 0  # bytes our inference holds, from the freshest source
        self.own_source = "none"
        self.own_due = True  # read NVML's per-process memory at the next reading
        self.offloaded = False  # our inference has layers on the GPU
        self.switching = False  # a switch we asked for is under way: no decisions
        self.switch_done = False  # ... and its profile_status 'ready' came
        self.chats: set[int] = set()  # our replies in flight: GPU % is then ours
        self.chat_ended_at = 0.0
        self.others_gpu = 0.0  # GPU % of the last reading outside our replies
        self.history_failed = False
        self.polling_stopped = False
        self.next_read = 0.0
        self.off_reason = ""
        if self.sim_model is not None:
            self.model = self.sim_model
            self.model_path = Path("<simulated>")
        else:
            self._load_model(Path(ai["model_path"]) if ai["model_path"] else DEFAULT_MODEL)

    # -- what each profile would need ----------------------------------------------------
    def _load_model(self, path: Path) -> None:
        if path == self.model_path or self.sim_model is not None:
            return
        try:
            self.model, self.model_path = read_model_info(path), path
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s): VRAM needs unknown, counted as 0", path, exc)

    def _need(self, profile: str, total: int) -> int:
        return profile_need(profile, self.profiles, self.model, total) if self.model else 0

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        rt = self.rt
        rt.on_request("set_auto_switching", self._on_set_auto_switching)
        if not self.source.available:
            log.warning("%s", self.source.reason)
            rt.ready({"gpu": False, "reason": self.source.reason, "auto_switching": False})
            rt.publish("gpu_stats", {"available": False, "reason": self.source.reason})
            return
        rt.on_event("worker_state", self._on_worker_state)
        rt.on_event("profile_status", self._on_profile_status)
        rt.on_event("chat_started", self._on_chat_started)
        rt.on_event("chat_ended", self._on_chat_ended)
        rt.request("status", {}, self._on_status)
        rt.every(self.cfg["interval_s"] / self.time_scale, self.tick)
        rt.ready({"gpu": True, "name": self.source.name, "replay": self.replay,
                  "auto_switching": self.auto_wanted})

    def _on_set_auto_switching(self, env: Envelope) -> None:
        """The control panel's toggle: on or off until the next start (no GPU: refused)."""
        if not self.source.available:
            self.rt.error(env, ErrorCode.INVALID_REQUEST,
                          f"no GPU readings, so no auto-switching: {self.source.reason}")
            return
        self.auto_wanted = bool(env.data["enabled"])
        self.rt.reply(env, "ok", {"detail": f"auto-switching {'on' if self.auto_wanted else 'off'}"
                                            f" until the next start"})

    def _on_worker_state(self, env: Envelope) -> None:
        if PROFILES not in env.data.get("roles", ()):
            return
        if env.data["state"] == "RUNNING":
            self.rt.request("status", {}, self._on_status)
        else:  # stopping, restarting, crashed: our footprint is unknown until it runs again
            self.switching, self.switch_done = True, True

    def _on_status(self, env: Envelope) -> None:
        worker = with_role(env.data.get("workers", {}), PROFILES)
        info = worker.get("ready_info") or {}
        self.profiles_pid = worker.get("pid")
        if not info or worker.get("state") != "RUNNING":
            return
        self.offload_supported = bool(info.get("gpu_offload_supported"))
        self._own_from_ready(info)
        if self.switching and self.switch_done:
            self.switching = False
            self.decider.restart_dwell()
        if info.get("model_path"):
            self._load_model(Path(info["model_path"]))
        if self.decider.profile is None:
            requested = info.get("requested_profile")
            self.decider.profile = info.get("profile") if requested == "auto" else requested

    def _on_profile_status(self, env: Envelope) -> None:
        if env.data["state"] == "ready" and env.data.get("requested"):
            self.decider.profile = env.data["requested"]
        if env.data["state"] == "ready":
            self.switch_done = True
            self.rt.request("status", {}, self._on_status)  # the new worker's footprint

    def _on_chat_started(self, env: Envelope) -> None:
        self.chats.add(int(env.data.get("request_id") or 0))

    def _on_chat_ended(self, env: Envelope) -> None:
        self.chats.discard(int(env.data.get("request_id") or 0))
        self.chat_ended_at = time.monotonic()

    def _own_from_ready(self, info: dict[str, Any]) -> None:
        """Our footprint as the worker that just loaded saw it: the free-memory drop it measured
        around its load when plausible, else the planner's estimate. NVML's per-process figure,
        where it exists, replaces it at the next reading."""
        est = int(info.get("est_vram_mb") or 0) << 20
        measured = info.get("vram_measured_mb")
        self.offloaded = bool(info.get("n_gpu_layers"))
        self.own_due = True
        # A drop far from the estimate means others changed during the load; with nothing
        # offloaded, at most a CUDA context can be ours.
        low, high = (est / 2, est * 2) if est else (0, 2 * CUDA_CONTEXT_BYTES)
        if measured is not None and low <= int(measured) << 20 <= high:
            self.own_vram, self.own_source = int(measured) << 20, "measured at load"
        else:
            self.own_vram, self.own_source = est, "planner estimate"

    # -- each reading --------------------------------------------------------------------
    def _auto_active(self) -> bool:
        if not self.auto_wanted:
            reason = "off in config (ai.auto_switching_enabled false or ai.gpu_profile not auto)"
        elif self.offload_supported is None:
            reason = f"waiting for the worker that provides '{PROFILES}'"
        elif not self.offload_supported and not self.replay:
            reason = "off: this llama-cpp-python build cannot use the GPU (see doctor)"
        else:
            reason = ""
        if reason != self.off_reason and reason:
            log.info("auto-switching %s", reason)
        self.off_reason = reason
        return not reason

    def _poll_interval(self) -> float | None:
        """Seconds between NVML readings; None: do not poll (see the module doc). A CSV replay
        goes row by row; the simulated card stands for NVML and follows the rule."""
        if self.offloaded or isinstance(self.source, ReplaySource):
            return self.cfg["interval_s"]
        if self.auto_wanted and self.offload_supported:
            return self.cfg["idle_interval_s"]
        return None if self.offload_supported is not None else self.cfg["interval_s"]

    def tick(self) -> None:
        active = self._auto_active()
        if self.replay and self.offload_supported is None:
            return  # a replayed scenario starts when the companion is up, not before
        interval = self._poll_interval()
        if interval is None:
            if not self.polling_stopped:
                log.info("nothing offloaded and auto-switching off: GPU polling stops (an "
                         "Optimus laptop's NVIDIA GPU can sleep)")
                self.source.close()
                self.polling_stopped = True
            return
        self.polling_stopped = False
        now = time.monotonic()
        if now < self.next_read:
            return
        self.next_read = now + interval / self.time_scale - 1e-3
        self.samples += 1
        want_own = self.own_due or self.samples % self.cfg["own_vram_every"] == 1
        reading = self.source.read(self.profiles_pid if want_own else None)
        if not reading.get("available"):
            self.rt.publish("gpu_stats", {"available": False,
                                          "reason": reading.get("reason", "")})
            return
        if want_own and reading.get("own_vram") is not None:
            self.own_vram, self.own_source, self.own_due = reading["own_vram"], "nvml", False
        gpu = self._others_gpu(reading.get("gpu_percent"), now)
        t = reading.get("sim_t") if reading.get("sim_t") is not None else \
            self.samples * self.cfg["interval_s"]
        sample = Sample(t, reading["vram_used"], reading["vram_total"], gpu, self.own_vram)
        decision = self.decider.update(sample) if active and not self.switching else None
        state = self.decider.state.value if self.decider.state else ""
        if decision is not None:  # before anything that can fail (the history file)
            self._switch(decision)
        self.rt.publish("gpu_stats", {**reading, "state": state,
                                      "profile": self.decider.profile or "",
                                      "pressure": self.decider.last_pressure,
                                      "own_vram_source": self.own_source,
                                      "gpu_percent_others": gpu,
                                      "auto_switching": not self.off_reason})
        self._write_history(reading, state)

    def _others_gpu(self, gpu: float | None, now: float) -> float:
        """GPU % that is not our own generation: while a reply runs (and one interval after,
        as the utilization counter averages), the last reading outside replies stands."""
        ours = self.chats or now - self.chat_ended_at < self.cfg["interval_s"] / self.time_scale
        if gpu is not None and not ours:
            self.others_gpu = float(gpu)
        return self.others_gpu

    def _switch(self, decision: Any) -> None:
        log.warning("auto-switch%s: %s", " (emergency)" if decision.emergency else "",
                    decision.reason)
        self.switching, self.switch_done = True, False
        self.rt.request("switch_profile", {"profile": decision.profile,
                                           "emergency": decision.emergency,
                                           "reason": decision.reason}, self._on_switch_reply)
        self.rt.publish("auto_switch", {"profile": decision.profile,
                                        "state": decision.state.value,
                                        "emergency": decision.emergency,
                                        "reason": decision.reason})

    def _write_history(self, reading: dict[str, Any], state: str) -> None:
        """A history file held open elsewhere (Excel locks it on Windows) must not stop the
        monitor: say so once, and go on."""
        try:
            self.history.append(reading, state, self.decider.profile or "")
        except OSError as exc:
            if not self.history_failed:
                log.warning("cannot write the GPU history %s (%s: %s); readings and switches go "
                            "on without it until it can be written again", self.history.path,
                            type(exc).__name__, exc)
            self.history_failed = True
        else:
            if self.history_failed:
                log.info("GPU history %s is writable again", self.history.path)
            self.history_failed = False

    def _on_switch_reply(self, env: Envelope) -> None:
        data: dict[str, Any] = env.data
        if env.type == "error":
            self.switching = False
            log.error("profile switch refused: %s", data.get("message"))
        else:
            log.info("%s", data.get("detail"))


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    GpuMonitor(rt).start()
    rt.run()
