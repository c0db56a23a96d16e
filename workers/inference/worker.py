"""Inference worker: plans the profile, loads the GGUF once, warms up, streams chat replies.

Generation runs on its own thread, one reply at a time in arrival order, so the main thread
stays free for stop requests and the bus thread for cancels. Tokens go to the asker as replies
and to everyone else (the avatar) as `chat_delta` events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from protocol.codec import Envelope
from protocol.messages import ErrorCode
from supervisor.config import DEFAULT_MODEL, ConfigError, load_profiles, profiles_path
from workers.gpu.gguf_info import GGUFError, ModelInfo, read_model_info
from workers.gpu.planner import GpuMemory, MiB, Plan, equivalent_profiles, plan_profile
from workers.gpu.simcard import ScenarioError, SimCard, load_scenario, sim_folder
from workers.gpu.sources import GpuSource, NvmlSource
from workers.inference import emotion
from workers.inference.llama_loader import build_gpu_backends, open_model
from workers.inference.memory import Memory
from workers.priority import keep_this_thread_responsive, lower_this_thread_for_compute
from workers.runtime import WorkerRuntime

log = logging.getLogger("inference")

TEMPLATE_TOKENS_PER_MESSAGE = 8  # role markers the chat template adds around each message
VRAM_WAIT_S = 5.0
VRAM_STEADY_S = 0.3  # free VRAM unchanged this long: what the old process held is back
VRAM_STEADY_BYTES = 16 * MiB


def model_path(options: dict[str, Any], config: dict[str, Any]) -> Path:
    chosen = options.get("model") or config["ai"]["model_path"]
    return Path(chosen).expanduser() if chosen else DEFAULT_MODEL


class PromptTooLong(ValueError):
    pass


class InferenceWorker:
    def __init__(self, rt: WorkerRuntime, prepared: Prepared | None = None) -> None:
        self.rt = rt
        self.prepared = prepared or Prepared()
        self.ai = rt.config["ai"]
        self.jobs: queue.Queue[Envelope] = queue.Queue()
        self.abandon = threading.Event()
        self.cancelled: set[int] = set()

    # -- loading -------------------------------------------------------------------------
    def start(self) -> None:
        """Take requests now (they queue until the model is ready) and load on the llama
        thread."""
        self.rt.on_request("chat", self.jobs.put, inline=True)
        self.rt.on_request("chat_cancel", self._on_cancel, inline=True)
        self.rt.on_stop(self._drain)
        threading.Thread(target=self._llama_thread, daemon=True, name="llama").start()

    def _llama_thread(self) -> None:
        # Before the first llama call: ggml's compute threads, created from this thread, inherit
        # the lower priority, so bus messages and the user's foreground apps preempt them.
        if lower_this_thread_for_compute() == "process":  # Windows, macOS: lift the bus back
            self.rt.call_on_bus(keep_this_thread_responsive)
        self.rt.ready(self._load())
        self._generate_loop()

    @contextlib.contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """A load stage: the supervisor hears it started (the load got further), and an
        exception nobody planned for says where it came from before the runtime's excepthook
        ends the process. Known failures leave earlier, through rt.fail_config."""
        self.rt.progress(name)
        try:
            yield
        except Exception as exc:
            log.error("loading failed while %s: %s: %s", name, type(exc).__name__, exc)
            if hasattr(exc, "add_note"):  # Python 3.11+: the traceback's last line says it
                exc.add_note(f"(inference worker: loading failed while {name})")
            raise

    def _load(self) -> dict[str, Any]:
        with self._stage("checking model"):
            path, model, profiles = self._check_model()
        with self._stage("opening memory"):  # before the slow part: a bad setting fails fast
            self.memory = self._open_memory()
        source, plan_model, supports_gpu = self._card(model)
        if supports_gpu and source.available and self._may_offload(profiles):
            with self._stage("waiting for VRAM"):  # before planning, which reads free VRAM
                self._wait_for_vram(source)
        with self._stage("planning"):
            gpu = source.memory()
            plan = self._plan(profiles, plan_model, gpu, supports_gpu)
            equivalent = equivalent_profiles(plan, profiles, plan_model, gpu, supports_gpu,
                                             _cores(), self.ai["vram_margin_mb"] * MiB)
        if plan.n_gpu_layers == 0:
            # Truly off the GPU: a CUDA build would otherwise still create a CUDA context and
            # run prompt batches over 32 tokens there (op offload). Before any llama call, as
            # CUDA reads this once, at its first use in this process.
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        with self._stage("loading weights"):
            t0 = time.perf_counter()
            before = source.memory()
            self.llm = self._open(path, plan)
            source.claim(plan.est_vram_bytes, min(plan.n_gpu_layers / plan_model.n_layers, 1.0))
            after = source.memory()
            _busy_for(self.ai["extra_load_s"])
            load_s = time.perf_counter() - t0
        self.plan, self.model, self.card = plan, model, source
        self.n_ctx = self.llm.n_ctx()
        with self._stage("warming up"):
            self.persona_tokens = self.count(self.ai["persona"]) + TEMPLATE_TOKENS_PER_MESSAGE
            warmup_s = self._warm_up() if self.ai["warmup"] else 0.0
        measured = (None if before is None or after is None
                    else max(before.free - after.free, 0) // MiB)
        info = {"profile": plan.profile, "requested_profile": plan.requested,
                "equivalent_profiles": equivalent,
                "gpu_offload_supported": supports_gpu, "gpu_fallback": plan.gpu_fallback,
                "gpu_visible": gpu is not None,
                "n_gpu_layers": plan.n_gpu_layers, "n_ctx": self.n_ctx,
                "n_threads": plan.n_threads, "est_vram_mb": round(plan.est_vram_bytes / MiB),
                "vram_measured_mb": measured,
                "model": path.name, "model_path": str(path), "model_layers": plan_model.n_layers,
                "load_s": round(load_s, 3), "warmup_s": round(warmup_s, 3),
                "notes": plan.notes}
        log.info("model loaded: %s", info)
        return info

    def _card(self, model: ModelInfo) -> tuple[GpuSource, ModelInfo, bool]:
        """The card to plan on, the model shape to plan for, and whether the build offloads.

        With --gpu-sim, the simulated card (and the scenario's model shape, whose footprint the
        card charges) stands in for NVML, and the scenario says whether the build has CUDA; the
        real embedded model still loads and answers."""
        sim = self.rt.options.get("gpu_sim")
        if sim:
            try:
                scenario = load_scenario(Path(sim))
            except ScenarioError as exc:
                self.rt.fail_config(f"{exc} (--gpu-sim)")
            card = SimCard(scenario, sim_folder(self.rt.data_dir))
            return card, scenario.model or model, scenario.cuda_build
        return self.prepared.source or NvmlSource(), model, self._llama_supports_gpu()

    def _check_model(self) -> tuple[Path, ModelInfo, dict[str, dict[str, Any]]]:
        rt = self.rt
        path = model_path(rt.options, rt.config)
        if not path.is_file():
            rt.fail_config(f"model file not found: {path}. Run `python3 bootstrap.py setup` to "
                           f"extract the embedded default model, or pass --model PATH to a GGUF "
                           f"file (see models/README.md)")
        try:
            model = self.prepared.model if self.prepared.model_path == path else None
            return (path, model or read_model_info(path),
                    load_profiles(profiles_path(rt.config)))
        except (GGUFError, OSError, ConfigError) as exc:
            rt.fail_config(f"cannot use {path}: {exc}")

    def _open_memory(self) -> Memory:
        """The configured file's folder must exist: a typo there would otherwise start a new,
        empty memory without a word, and the companion would forget everyone."""
        configured = self.ai["memory_file"]
        if not configured:
            path = self.rt.data_dir / "memory.sqlite"
        else:
            path = Path(configured).expanduser()
            if not path.parent.is_dir():
                self.rt.fail_config(f"ai.memory_file: the folder of {path} does not exist (or is "
                                    f"not a folder); create it, or fix ai.memory_file (null: "
                                    f"<data dir>/memory.sqlite)")
        try:
            return Memory(path)
        except (OSError, sqlite3.Error) as exc:
            self.rt.fail_config(f"ai.memory_file: cannot use {path} as the conversation memory "
                                f"({type(exc).__name__}: {exc}); point ai.memory_file at a "
                                f"SQLite file in a writable folder (null: <data dir>/"
                                f"memory.sqlite)")

    def _llama_supports_gpu(self) -> bool:
        """Whether the build has a GPU backend, read from its files: asking llama.cpp would
        start CUDA in this process before we know whether it should stay off the GPU."""
        try:
            import llama_cpp  # noqa: F401
        except (ImportError, OSError) as exc:  # not installed, or its native library broken
            self.rt.fail_config(f"llama-cpp-python cannot be imported ({exc}); fix: python3 "
                                f"bootstrap.py setup")
        return bool(build_gpu_backends())

    def _requested_profile(self) -> str:
        return str(self.rt.options.get("profile") or self.ai["gpu_profile"])

    def _may_offload(self, profiles: dict[str, dict[str, Any]]) -> bool:
        """False for a profile that fixes 0 GPU layers (the emergency step down): its start
        waits for no VRAM, while a game is still filling the card."""
        return profiles.get(self._requested_profile(), {}).get("n_gpu_layers") != 0

    def _plan(self, profiles: dict[str, dict[str, Any]], model: ModelInfo,
              gpu: GpuMemory | None, supports_gpu: bool) -> Plan:
        requested = self._requested_profile()
        try:
            plan = plan_profile(requested, profiles, model, gpu, supports_gpu, _cores(),
                                self.ai["vram_margin_mb"] * MiB)
        except KeyError as exc:
            self.rt.fail_config(f"{exc.args[0]} (set ai.gpu_profile or --profile; profiles live "
                                f"in {profiles_path(self.rt.config)})")
        for note in plan.notes:
            (log.warning if plan.gpu_fallback else log.info)("%s", note)
        return plan

    def _open(self, path: Path, plan: Plan) -> Any:
        """Load the weights, passing on llama.cpp's own progress (throttled)."""
        report = Throttle(lambda fraction: self.rt.progress("loading weights", fraction))
        try:
            return open_model(path, on_progress=report, **plan.llama_params(), verbose=False)
        except (ValueError, RuntimeError) as exc:
            self.rt.fail_config(f"could not load model {path}: {exc} (see models/README.md)")

    def _wait_for_vram(self, source: GpuSource) -> None:
        """After a switch the old process's VRAM comes back a moment after it exits: planning
        from free VRAM before that would offload too few layers. Wait until free VRAM holds
        still for VRAM_STEADY_S (at most VRAM_WAIT_S)."""
        deadline = time.monotonic() + VRAM_WAIT_S
        last = source.memory()
        steady_since = time.monotonic()
        while last is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            mem = source.memory()
            if mem is None:
                return
            if abs(mem.free - last.free) > VRAM_STEADY_BYTES:
                steady_since = time.monotonic()
            elif time.monotonic() - steady_since >= VRAM_STEADY_S:
                return
            last = mem
        if last is not None:
            log.warning("free VRAM still changing after %.0f s; planning with %d MiB free",
                        VRAM_WAIT_S, last.free // MiB)

    def _warm_up(self) -> float:
        """Evaluate the persona once: its KV stays cached, so the first reply is not slower."""
        t0 = time.perf_counter()
        self.llm.create_chat_completion(messages=self._messages([], "Hello"), max_tokens=1)
        return time.perf_counter() - t0

    # -- chat ----------------------------------------------------------------------------
    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _messages(self, history: list, text: str) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.ai["persona"]}]
                + [{"role": m.role, "content": m.content} for m in history]
                + [{"role": "user", "content": text}])

    def _on_cancel(self, env: Envelope) -> None:
        self.cancelled.add(env.data["request_id"])
        self.rt.reply(env, "ok", {"detail": f"cancelling request {env.data['request_id']}"})

    def _generate_loop(self) -> None:
        while True:
            env = self.jobs.get()
            try:
                self._generate(env)
            except PromptTooLong as exc:
                self.rt.error(env, ErrorCode.INVALID_REQUEST, str(exc))
            except Exception as exc:
                log.exception("generation failed")
                self.rt.error(env, ErrorCode.MODEL_ERROR, f"generation failed: {exc}")
            finally:
                self.cancelled.discard(env.id)
                self.jobs.task_done()

    def _plan_prompt(self, env: Envelope) -> tuple[list[dict[str, str]], int, int]:
        """Messages that fit n_ctx with room for the reply: the newest history that fits."""
        text = env.data["text"]
        max_tokens = min(int(env.data.get("max_tokens") or self.ai["max_tokens"]),
                         self.n_ctx // 2)
        user_tokens = self.count(text) + TEMPLATE_TOKENS_PER_MESSAGE
        budget = self.n_ctx - max_tokens - self.persona_tokens - user_tokens
        if budget < 0:
            room = self.n_ctx - max_tokens - self.persona_tokens - TEMPLATE_TOKENS_PER_MESSAGE
            raise PromptTooLong(
                f"message too long: {user_tokens - TEMPLATE_TOKENS_PER_MESSAGE} tokens, but the "
                f"context window (n_ctx {self.n_ctx}) leaves room for {max(room, 0)} after the "
                f"persona and {max_tokens} reply tokens; shorten it or use a profile with a "
                f"larger n_ctx")
        history = self.memory.window(self._user(env), self._conversation(env), budget)
        prompt_tokens = self.persona_tokens + user_tokens + sum(m.tokens for m in history)
        return self._messages(history, text), max_tokens, prompt_tokens

    @staticmethod
    def _user(env: Envelope) -> str:
        return str(env.data.get("user") or "local")

    @staticmethod
    def _conversation(env: Envelope) -> str:
        return str(env.data.get("conversation") or "default")

    def _generate(self, env: Envelope) -> None:
        rid = env.id
        assert rid is not None
        if rid in self.cancelled:  # cancelled while waiting behind another reply
            self.rt.reply(env, "chat_done", {"text": "", "tokens": 0, "ttft_ms": 0.0,
                                             "tokens_per_s": 0.0, "cancelled": True})
            return
        messages, max_tokens, prompt_tokens = self._plan_prompt(env)
        self.rt.publish("chat_started", {"request_id": rid})
        self.card.busy(True)
        try:
            self._stream(env, rid, messages, max_tokens, prompt_tokens)
        finally:
            self.card.busy(False)

    def _stream(self, env: Envelope, rid: int, messages: list[dict[str, str]], max_tokens: int,
                prompt_tokens: int) -> None:
        t0 = time.perf_counter()
        ttft = 0.0
        pieces: list[str] = []
        cancelled = False
        stream = self.llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, stream=True,
            temperature=self.ai["temperature"], top_p=self.ai["top_p"],
            repeat_penalty=self.ai["repeat_penalty"])
        for chunk in stream:
            if self.abandon.is_set():
                return  # emergency stop: the supervisor runs this request again elsewhere
            if rid in self.cancelled:
                cancelled = True
                break
            piece = chunk["choices"][0]["delta"].get("content")
            if not piece:
                continue
            if not pieces:
                ttft = time.perf_counter() - t0
            index = len(pieces)
            self.rt.reply(env, "chat_token", {"text": piece, "index": index})
            self.rt.publish("chat_delta", {"request_id": rid, "text": piece, "index": index})
            pieces.append(piece)
        total = time.perf_counter() - t0
        text = "".join(pieces)
        if text:
            self.memory.add(self._user(env), self._conversation(env), "user", env.data["text"],
                            self.count(env.data["text"]) + TEMPLATE_TOKENS_PER_MESSAGE)
            self.memory.add(self._user(env), self._conversation(env), "assistant", text,
                            self.count(text) + TEMPLATE_TOKENS_PER_MESSAGE)
        mood, intensity = emotion.detect(text)
        self.rt.publish("emotion", {"name": mood, "intensity": intensity, "request_id": rid})
        self.rt.publish("chat_ended", {"request_id": rid, "text": text, "cancelled": cancelled})
        gen_s = max(total - ttft, 1e-9)
        self.rt.reply(env, "chat_done", {
            "text": text, "tokens": len(pieces), "prompt_tokens": prompt_tokens,
            "ttft_ms": round(ttft * 1000, 3), "cancelled": cancelled,
            "tokens_per_s": round((len(pieces) - 1) / gen_s, 2) if len(pieces) > 1 else 0.0,
            "emotion": mood, "intensity": intensity})

    def _drain(self, drain_s: float) -> None:
        """Let the reply in flight (and those already handed to us) finish, up to drain_s.

        The queue counts a job until task_done, so one taken but not yet started counts too.
        """
        with self.jobs.all_tasks_done:
            self.jobs.all_tasks_done.wait_for(lambda: not self.jobs.unfinished_tasks, drain_s)
        self.abandon.set()


class Throttle:
    """Passes a load fraction on when it reached a new tenth, or grew and `every_s` went by.

    llama.cpp reports once per tensor (hundreds of times); the supervisor needs only to know
    the load still moves. Nothing is sent unless the fraction grew, so a stuck load stays quiet
    and still times out.
    """

    def __init__(self, send: Callable[[float], None], every_s: float = 0.25, steps: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.send, self.every_s, self.steps, self.clock = send, every_s, steps, clock
        self.last = 0.0
        self.sent_at = clock()

    def __call__(self, fraction: float) -> None:
        now = self.clock()
        if fraction <= self.last:
            return
        new_step = self._step(fraction) > self._step(self.last)
        if new_step or now - self.sent_at >= self.every_s:
            self.last, self.sent_at = fraction, now
            self.send(fraction)

    def _step(self, fraction: float) -> int:
        return int(fraction * self.steps + 1e-9)


def _cores() -> int:
    return psutil.cpu_count(logical=False) or 1


def _busy_for(seconds: float) -> None:
    """Stand in for a large model's load (bench.ipc's slow-load switch): keep a core busy."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@dataclass
class Prepared:
    """What a start can do before it knows its options: by a warm spare, while the worker it
    replaces still runs. A failure here is left for the load to report, with its fix."""

    source: GpuSource | None = None
    model_path: Path | None = None
    model: ModelInfo | None = None


def prepare(rt: WorkerRuntime) -> Prepared:
    """The slow import (0.1 s), NVML's start (10 ms without a driver) and the GGUF header of
    the model this start would load (10 ms)."""
    with contextlib.suppress(ImportError, OSError):
        import llama_cpp.llama  # noqa: F401
    ready = Prepared(NvmlSource(), model_path(rt.options, rt.config))
    with contextlib.suppress(GGUFError, OSError):
        ready.model = read_model_info(ready.model_path)
    return ready


def main() -> None:
    # CUDA then numbers devices as NVML does, so the monitor watches the card llama uses.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    rt = WorkerRuntime.from_stdin(prepare=prepare)
    InferenceWorker(rt, rt.prepared).start()
    rt.run()
