"""GPU monitor worker: readings every interval, history, and auto-switching of profiles.

Without an NVIDIA driver it stays up, says once why the GPU is unavailable, and idles: the rest
of the stack must not notice the difference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from protocol.codec import Envelope
from protocol.messages import PROFILES, ErrorCode, with_role
from supervisor.config import DEFAULT_MODEL, load_profiles, profiles_path
from workers.gpu.gguf_info import ModelInfo, read_model_info
from workers.gpu.planner import profile_need
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
        self.replay = bool(trace)
        try:
            self.source: GpuSource = ReplaySource(Path(trace)) if trace else NvmlSource()
        except ValueError as exc:
            rt.fail_config(f"{exc} (gpu_monitoring.trace_file or --gpu-trace)")
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
        self.decider = Decider(self.cfg, self._need)
        self.samples = 0
        self.own_vram = 0
        self.off_reason = ""
        self._load_model(Path(ai["model_path"]) if ai["model_path"] else DEFAULT_MODEL)

    # -- what each profile would need ----------------------------------------------------
    def _load_model(self, path: Path) -> None:
        if path == self.model_path:
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
        rt.request("status", {}, self._on_status)
        rt.every(self.cfg["interval_s"], self.tick)
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
        if PROFILES in env.data.get("roles", ()) and env.data["state"] == "RUNNING":
            self.rt.request("status", {}, self._on_status)

    def _on_status(self, env: Envelope) -> None:
        worker = with_role(env.data.get("workers", {}), PROFILES)
        info = worker.get("ready_info") or {}
        self.profiles_pid = worker.get("pid")
        if not info:
            return
        self.offload_supported = bool(info.get("gpu_offload_supported"))
        if info.get("model_path"):
            self._load_model(Path(info["model_path"]))
        if self.decider.profile is None:
            requested = info.get("requested_profile")
            self.decider.profile = info.get("profile") if requested == "auto" else requested

    def _on_profile_status(self, env: Envelope) -> None:
        if env.data["state"] == "ready" and env.data.get("requested"):
            self.decider.profile = env.data["requested"]

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

    def tick(self) -> None:
        active = self._auto_active()
        if self.replay and self.offload_supported is None:
            return  # a replayed scenario starts when the companion is up, not before
        self.samples += 1
        want_own = self.samples % self.cfg["own_vram_every"] == 1
        reading = self.source.read(self.profiles_pid if want_own else None)
        if reading.get("own_vram") is not None:
            self.own_vram = reading["own_vram"]
        sample = Sample(self.samples * self.cfg["interval_s"], reading["vram_used"],
                        reading["vram_total"], reading["gpu_percent"], self.own_vram)
        decision = self.decider.update(sample) if active else None
        state = self.decider.state.value if self.decider.state else ""
        self.rt.publish("gpu_stats", {**reading, "state": state,
                                      "profile": self.decider.profile or "",
                                      "pressure": self.decider.last_pressure,
                                      "auto_switching": not self.off_reason})
        self.history.append(reading, state, self.decider.profile or "")
        if decision is not None:
            log.warning("auto-switch%s: %s", " (emergency)" if decision.emergency else "",
                        decision.reason)
            self.rt.publish("auto_switch", {"profile": decision.profile,
                                            "state": decision.state.value,
                                            "emergency": decision.emergency,
                                            "reason": decision.reason})
            self.rt.request("switch_profile", {"profile": decision.profile,
                                               "emergency": decision.emergency,
                                               "reason": decision.reason}, self._on_switch_reply)

    @staticmethod
    def _on_switch_reply(env: Envelope) -> None:
        data: dict[str, Any] = env.data
        if env.type == "error":
            log.error("profile switch refused: %s", data.get("message"))
        else:
            log.info("%s", data.get("detail"))


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    GpuMonitor(rt).start()
    rt.run()
