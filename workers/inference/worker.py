"""Inference worker: loads the GGUF once, warms it up, then streams chat replies.

Generation runs on its own thread so the main thread stays free for stop requests; one reply
is generated at a time, in arrival order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import psutil

from supervisor.codec import Envelope
from supervisor.config import DEFAULT_MODEL
from supervisor.messages import ErrorCode
from workers.inference.llama_loader import open_model
from workers.runtime import WorkerRuntime

log = logging.getLogger("inference")


def model_path(rt: WorkerRuntime) -> Path:
    chosen = rt.options.get("model") or rt.config["ai"]["model_path"]
    return Path(chosen).expanduser() if chosen else DEFAULT_MODEL


class InferenceWorker:
    def __init__(self, rt: WorkerRuntime) -> None:
        self.rt = rt
        self.jobs: queue.Queue[Envelope] = queue.Queue()
        self.busy = threading.Event()
        self.abandon = threading.Event()
        self.profile = str(rt.options.get("profile") or rt.config["ai"]["gpu_profile"])

    def load(self) -> None:
        path = model_path(self.rt)
        if not path.is_file():
            self.rt.fail_config(
                f"model file not found: {path}. Run `python bootstrap.py setup` to extract the "
                f"embedded default model, or pass --model PATH (see models/README.md)")
        t0 = time.perf_counter()
        try:
            self.llm = open_model(path, n_ctx=2048, n_gpu_layers=0,
                                  n_threads=psutil.cpu_count(logical=False) or 1, verbose=False)
        except (ValueError, RuntimeError) as exc:
            self.rt.fail_config(f"could not load model {path}: {exc}. Is it a GGUF file? "
                                f"(see models/README.md)")
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.llm.create_chat_completion(messages=self._messages("hi"), max_tokens=1)
        warmup_s = time.perf_counter() - t0
        info = {"profile": self.profile, "model": path.name, "load_s": round(load_s, 3),
                "warmup_s": round(warmup_s, 3)}
        log.info("model loaded: %s", info)
        threading.Thread(target=self._generate_loop, daemon=True, name="generate").start()
        self.rt.on_request("chat", self.jobs.put, inline=True)
        self.rt.on_stop(self._drain)
        self.rt.ready(info)

    def _messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.rt.config["ai"]["persona"]},
                {"role": "user", "content": text}]

    def _generate_loop(self) -> None:
        while True:
            env = self.jobs.get()
            self.busy.set()
            try:
                self._generate(env)
            except Exception as exc:
                log.exception("generation failed")
                self.rt.error(env, ErrorCode.MODEL_ERROR, f"generation failed: {exc}")
            finally:
                self.busy.clear()

    def _generate(self, env: Envelope) -> None:
        max_tokens = int(env.data.get("max_tokens") or self.rt.config["ai"]["max_tokens"])
        t0 = time.perf_counter()
        ttft = 0.0
        pieces: list[str] = []
        stream = self.llm.create_chat_completion(
            messages=self._messages(env.data["text"]), max_tokens=max_tokens, stream=True)
        for chunk in stream:
            if self.abandon.is_set():
                return  # stopping without drain: the supervisor runs it again elsewhere
            piece = chunk["choices"][0]["delta"].get("content")
            if not piece:
                continue
            if not pieces:
                ttft = time.perf_counter() - t0
            self.rt.reply(env, "chat_token", {"text": piece, "index": len(pieces)})
            pieces.append(piece)
        total = time.perf_counter() - t0
        gen_s = max(total - ttft, 1e-9)
        self.rt.reply(env, "chat_done", {
            "text": "".join(pieces), "tokens": len(pieces), "ttft_ms": round(ttft * 1000, 3),
            "tokens_per_s": round((len(pieces) - 1) / gen_s, 2) if len(pieces) > 1 else 0.0})

    def _drain(self, drain_s: float) -> None:
        """Let the reply in flight (and those already handed to us) finish, up to drain_s."""
        deadline = time.monotonic() + drain_s
        while (self.busy.is_set() or not self.jobs.empty()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.abandon.set()


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    InferenceWorker(rt).load()
    rt.run()
