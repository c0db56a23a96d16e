"""A closed-loop simulated NVIDIA card: a GPU source that reacts to what the stack does.

Open-loop traces cannot show a feedback loop: their rows never change when the companion loads
a bigger profile. This card does. It is shared by the processes of one stack through a folder:

- the scenario (a JSON file next to the traces in data/traces/) gives the card's size, its
  driver model (``linux``: per-process memory known; ``wddm``: NVML's per-process memory is
  NOT_AVAILABLE, as on Windows), the model whose footprint the card charges, and what other
  programs use over time (a game starting, a stream), on a clock that may run faster than real
  time (``time_scale``);
- each inference process that loads on the card writes what it holds there (its planned
  footprint, or the CUDA context a ``cpu_fallback`` on a CUDA build still creates unless it runs
  with no device visible) and whether it is generating, which adds GPU %;
- whole-card ``used`` = others at the scenario's current time + what live processes hold; a
  process's memory is released when it is gone;
- injected errors, each for a window of scenario time: ``unsupported`` (utilization reads as
  NVML's NotSupported does on a MIG parent: None) and ``lost`` (no reading at all, as after
  GpuIsLost, until the window ends).

Only stdlib and psutil: the gpu_monitor and inference workers both use it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from workers.gpu.gguf_info import ModelInfo
from workers.gpu.planner import CUDA_CONTEXT_BYTES, GpuMemory

MiB = 1 << 20
DRIVERS = ("linux", "wddm")
CLOCK_FILE = "clock.json"


class ScenarioError(ValueError):
    pass


@dataclass
class Step:
    t: float  # scenario seconds
    vram: int  # bytes other programs use from t on
    gpu_percent: float


ERROR_KINDS = ("unsupported", "lost")


@dataclass
class Fault:
    kind: str
    t_from: float
    t_to: float


@dataclass
class Scenario:
    name: str
    description: str
    vram_total: int
    driver: str
    time_scale: float
    others: list[Step]
    model: ModelInfo | None  # the model whose footprint the card charges (None: the real one)
    cuda_build: bool = True  # the simulated llama build can offload (planning sees GPU support)
    own_gpu_percent: float = 70.0  # GPU % a generation adds with every layer on the GPU
    fallback_gpu_percent: float = 15.0  # a cpu_fallback still on the GPU (op offload)
    duration_s: float = 0.0  # how long the story lasts, scenario seconds (0: open-ended)
    start_profile: str | None = None
    errors: list[Fault] = field(default_factory=list)

    def fault_at(self, t: float) -> set[str]:
        return {f.kind for f in self.errors if f.t_from <= t < f.t_to}

    def others_at(self, t: float) -> Step:
        current = self.others[0]
        for step in self.others:
            if step.t <= t:
                current = step
        return current

    def changes(self, until: float) -> int:
        """Real changes of others' load up to `until` (scenario s): each may cost one switch."""
        return sum(1 for a, b in zip(self.others, self.others[1:], strict=False)
                   if b.t <= until and (a.vram, a.gpu_percent) != (b.vram, b.gpu_percent))


def _model(raw: dict[str, Any], where: str) -> ModelInfo:
    try:
        n = int(raw["n_layers"])
        return ModelInfo(path=Path(raw.get("name", "simulated")), arch=raw.get("arch", "llama"),
                         name=raw.get("name", "simulated"), n_layers=n,
                         n_embd=int(raw["n_embd"]), n_head=int(raw["n_head"]),
                         n_head_kv=int(raw["n_head_kv"]), n_vocab=int(raw["n_vocab"]),
                         n_ctx_train=int(raw["n_ctx_train"]),
                         file_bytes=int(float(raw["file_mb"]) * MiB),
                         layer_bytes=[int(float(raw["layer_mb"]) * MiB)] * n,
                         other_bytes=int((float(raw["embd_mb"]) + float(raw["output_mb"])) * MiB),
                         embd_bytes=int(float(raw["embd_mb"]) * MiB),
                         output_bytes=int(float(raw["output_mb"]) * MiB),
                         key_length=int(raw.get("key_length", 0)),
                         value_length=int(raw.get("value_length", 0)),
                         n_ff=int(raw.get("n_ff", 4 * int(raw["n_embd"]))))
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: model: {exc!r}; expected n_layers, n_embd, n_head, "
                            f"n_head_kv, n_vocab, n_ctx_train, file_mb, layer_mb, embd_mb, "
                            f"output_mb[, n_ff, key_length, value_length]") from None


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; ScenarioError names the problem and the expected shape."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"cannot read GPU scenario {path}: {exc}") from None
    where = f"GPU scenario {path}"
    try:
        card = raw["card"]
        driver = str(card.get("driver", "linux"))
        if driver not in DRIVERS:
            raise ScenarioError(f"{where}: card.driver must be one of {', '.join(DRIVERS)}, "
                                f"got {driver!r}")
        others = [Step(float(s["t"]), int(float(s["vram_mb"]) * MiB), float(s["gpu_percent"]))
                  for s in raw["others"]]
        if not others or others[0].t != 0:
            raise ScenarioError(f"{where}: 'others' must start with a step at t 0")
        if any(b.t < a.t for a, b in zip(others, others[1:], strict=False)):
            raise ScenarioError(f"{where}: 'others' steps must be in time order")
        errors = [Fault(str(e["kind"]), float(e["from"]), float(e["to"]))
                  for e in raw.get("errors", [])]
        if any(e.kind not in ERROR_KINDS for e in errors):
            raise ScenarioError(f"{where}: errors[].kind must be one of "
                                f"{', '.join(ERROR_KINDS)}")
        scale = float(raw.get("time_scale", 1.0))
        if scale <= 0:
            raise ScenarioError(f"{where}: time_scale must be above 0")
        return Scenario(
            name=Path(path).stem, description=str(raw.get("description", "")),
            vram_total=int(float(card["vram_mb"]) * MiB), driver=driver, time_scale=scale,
            others=others, model=_model(raw["model"], where) if raw.get("model") else None,
            cuda_build=bool(raw.get("cuda_build", True)),
            own_gpu_percent=float(raw.get("own_gpu_percent", 70.0)),
            fallback_gpu_percent=float(raw.get("fallback_gpu_percent", 15.0)),
            duration_s=float(raw.get("duration_s", 0.0)),
            start_profile=raw.get("start_profile"), errors=errors)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{where}: {exc!r}; expected card {{vram_mb, driver}}, others "
                            f"[{{t, vram_mb, gpu_percent}}, ...][, model, time_scale, "
                            f"duration_s]") from None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def truly_off_gpu() -> bool:
    """A process started with no CUDA device visible never creates a CUDA context."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", None) == ""


class SimCard:
    """The card as seen from one process: readings for the monitor, claims for inference."""

    available = True
    reason = ""

    def __init__(self, scenario: Scenario, folder: Path) -> None:
        self.scenario = scenario
        self.folder = folder
        self.name = f"simulated {scenario.vram_total // MiB} MiB card ({scenario.driver}), " \
                    f"scenario {scenario.name}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / CLOCK_FILE).exists():
            start(folder)
        self.t0: float | None = None
        self.pid = os.getpid()
        self._claim: dict[str, Any] = {"vram": 0, "busy": False, "gpu_fraction": 0.0}

    # -- the clock ------------------------------------------------------------------------
    def now(self) -> float:
        """Scenario seconds since the companion first loaded on the card (0 until then)."""
        if self.t0 is None:
            try:
                self.t0 = json.loads((self.folder / CLOCK_FILE).read_text("utf-8"))["t0"]
            except (OSError, ValueError, KeyError):
                return 0.0
            if self.t0 is None:
                return 0.0
        return (time.time() - self.t0) * self.scenario.time_scale

    # -- what processes hold --------------------------------------------------------------
    def _holders(self) -> dict[int, dict[str, Any]]:
        held: dict[int, dict[str, Any]] = {}
        for f in self.folder.glob("pid-*.json"):
            try:
                pid = int(f.stem[4:])
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being written; the next reading sees it
            if _alive(pid):
                held[pid] = data
            else:
                f.unlink(missing_ok=True)  # the driver frees a dead process's memory
        return held

    def _write(self) -> None:
        path = self.folder / f"pid-{self.pid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._claim), encoding="utf-8")
        for attempt in range(20):  # Windows refuses to replace a file another process reads
            try:
                os.replace(tmp, path)
                return
            except PermissionError:
                time.sleep(0.005 * (attempt + 1))
        os.replace(tmp, path)

    def claim(self, vram_bytes: int, gpu_layers_fraction: float) -> None:
        """This process loaded a model: it holds `vram_bytes` on the card (a CPU-only process
        on a CUDA build still holds a CUDA context, unless no device is visible to it)."""
        if vram_bytes == 0 and self.scenario.cuda_build and not truly_off_gpu():
            vram_bytes = CUDA_CONTEXT_BYTES
            gpu_layers_fraction = -1.0  # op offload: prompts still run partly on the GPU
        self._claim.update(vram=int(vram_bytes), gpu_fraction=gpu_layers_fraction)
        self._write()
        if self.now() == 0.0 and self.t0 is None:  # the first load starts the story
            _write_clock(self.folder, time.time())

    def busy(self, generating: bool) -> None:
        if self._claim["vram"] or self._claim["gpu_fraction"]:
            self._claim["busy"] = generating
            self._write()

    def close(self) -> None:
        """Nothing to let go of (NVML's close lets an Optimus GPU sleep)."""

    # -- readings ---------------------------------------------------------------------------
    def memory(self) -> GpuMemory:
        used = self.others_now().vram + sum(h["vram"] for h in self._holders().values())
        total = self.scenario.vram_total
        return GpuMemory(total=total, free=max(total - used, 0), name=self.name)

    def others_now(self) -> Step:
        return self.scenario.others_at(self.now())

    def read(self, own_pid: int | None = None) -> dict[str, Any]:
        s = self.scenario
        faults = s.fault_at(self.now())
        if "lost" in faults:
            return {"available": False, "reason": "GPU lost (simulated NVMLError_GpuIsLost); "
                                                  "NVML restarts at the next reading"}
        step = self.others_now()
        held = self._holders()
        used = min(step.vram + sum(h["vram"] for h in held.values()), s.vram_total)
        gpu = step.gpu_percent
        for h in held.values():
            if h.get("busy"):
                frac = h.get("gpu_fraction", 0.0)
                gpu += s.fallback_gpu_percent if frac < 0 else s.own_gpu_percent * frac
        own: int | None = None
        if own_pid is not None and s.driver == "linux":
            own = int(held.get(own_pid, {}).get("vram", 0))
        return {"available": True, "name": self.name, "vram_used": used,
                "vram_total": s.vram_total, "vram_percent": round(100.0 * used / s.vram_total, 2),
                "gpu_percent": None if "unsupported" in faults else min(round(gpu, 1), 100.0),
                "temperature_c": 55.0,
                "power_w": None, "own_vram": own, "sim_t": round(self.now(), 1)}


def _write_clock(folder: Path, t0: float | None) -> None:
    tmp = folder / (CLOCK_FILE + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"t0": t0}), encoding="utf-8")
    os.replace(tmp, folder / CLOCK_FILE)


def start(folder: Path) -> None:
    """A fresh card (launch.py, once per stack): nothing held, and the scenario's clock starts
    when the companion first loads on it."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.glob("pid-*.json"):
        f.unlink(missing_ok=True)
    _write_clock(folder, None)


def sim_folder(data_dir: Path) -> Path:
    return data_dir / "run" / "gpu_sim"
