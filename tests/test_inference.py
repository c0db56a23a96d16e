"""The inference worker in a real stack with the real embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import llama_cpp
import psutil
import pytest

from protocol.bus import BusClient, BusError
from protocol.messages import ErrorCode
from supervisor.config import load_profiles
from supervisor.harness import ROOT, reloading_profile
from workers.gpu.sources import NvmlSource

LONG = "Tell me a long story about a cat who travels the world, with many details."
PROFILES = load_profiles()


def collect(c: BusClient, msg_id: int, timeout: float = 120) -> list:
    """Every reply to msg_id up to its final one."""
    out = []
    while True:
        env = c.recv_for(msg_id, timeout)
        out.append(env)
        if env.type in ("chat_done", "error"):
            return out


def first_token(c: BusClient, msg_id: int) -> None:
    env = c.recv_for(msg_id, 60)
    assert env.type == "chat_token", env


def until_inference_events_reach(c: BusClient) -> None:
    """Wait until the subscriptions made so far (with chat_ended among them) are live at the
    inference worker's publisher: they reach it asynchronously, in the order they were made.
    Short chats until one's chat_ended arrives; it is a chat's last event, so none of the
    probe's events are left behind."""
    deadline = time.monotonic() + 30
    while True:
        c.request("chat", {"text": "Hi", "max_tokens": 1, "conversation": "probe"}, timeout=60)
        try:
            c.wait_event("chat_ended", timeout=1.0)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def until_supervisor_events_reach(c: BusClient) -> None:
    """The same for the supervisor's publisher: its worker_stats come every stats interval."""
    c.subscribe(["worker_stats"])
    c.wait_event("worker_stats", timeout=30)


def test_cancel_between_tokens(stack) -> None:
    c = stack.new_client()
    msg_id = c.send("chat", {"text": LONG, "max_tokens": 200, "conversation": "cancel"})
    first_token(c, msg_id)
    assert c.request("chat_cancel", {"request_id": msg_id}).type == "ok"
    done = collect(c, msg_id)[-1]
    assert done.type == "chat_done" and done.data["cancelled"] is True
    assert done.data["tokens"] < 199
    with pytest.raises(BusError) as info:
        c.request("chat_cancel", {"request_id": 99999})
    assert info.value.code == ErrorCode.INVALID_REQUEST
    c.close()


def test_cancel_a_request_waiting_behind_another(stack) -> None:
    c = stack.new_client()
    a = c.send("chat", {"text": LONG, "max_tokens": 40, "conversation": "cq"})
    b = c.send("chat", {"text": "And another?", "max_tokens": 40, "conversation": "cq"})
    first_token(c, a)
    c.request("chat_cancel", {"request_id": b})
    done_b = collect(c, b)[-1]
    assert done_b.data["cancelled"] is True and done_b.data["tokens"] == 0
    assert collect(c, a)[-1].data["cancelled"] is False
    c.close()


def test_events_for_the_avatar(stack) -> None:
    c = stack.new_client()
    c.subscribe(["chat_started", "chat_delta", "chat_ended", "emotion"])
    until_inference_events_reach(c)
    replies = list(c.stream("chat", {"text": "Say something happy!", "max_tokens": 16,
                                     "conversation": "events"}, timeout=60))
    done = replies[-1]
    seen: dict[str, list] = {}
    while not seen.get("chat_ended"):
        ev = c.recv_event(10)
        seen.setdefault(ev.type, []).append(ev)
    rid = seen["chat_started"][0].data["request_id"]
    assert all(ev.data["request_id"] == rid for evs in seen.values() for ev in evs)
    assert "".join(e.data["text"] for e in seen["chat_delta"]) == done.data["text"]
    assert seen["chat_ended"][0].data["text"] == done.data["text"]
    assert seen["emotion"][0].data["name"] == done.data["emotion"]
    c.close()


def test_memory_persists_across_a_restart(stack) -> None:
    c = stack.client
    fresh = c.request("chat", {"text": "Hi, I'm Ana.", "max_tokens": 8,
                               "conversation": "persist"}, timeout=60).data
    c.request("restart", {"worker": "inference"})
    stack.wait_state("inference", "RUNNING", 60,
                     lambda w: w["last_exit"].startswith("stopped (restart)"))
    again = c.request("chat", {"text": "Hi, I'm Ana.", "max_tokens": 8,
                               "conversation": "persist"}, timeout=60).data
    # The second prompt carries the first exchange, which survived the restart in SQLite.
    assert again["prompt_tokens"] > fresh["prompt_tokens"] + 8
    other = c.request("chat", {"text": "Hi, I'm Ana.", "max_tokens": 8,
                               "conversation": "elsewhere"}, timeout=60).data
    assert other["prompt_tokens"] == fresh["prompt_tokens"]
    assert (stack.data_dir / "memory.sqlite").is_file()


def test_switch_to_performance_runs_as_this_machine_allows(stack) -> None:
    """Every build checks what llama.cpp really got: the profile it runs as, its layers on the
    GPU, the context it allocated, and which profiles would load the same."""
    offload = llama_cpp.llama_supports_gpu_offload()
    runs_as = "performance" if offload and NvmlSource().available else "cpu_fallback"
    before = stack.worker("inference")
    result = stack.cli("switch-profile", "performance")
    assert result.returncode == 0, result.stderr
    if "performance" in before["ready_info"]["equivalent_profiles"]:
        # It would load exactly as it runs now: answered at once, and nothing reloads...
        assert "already in effect" in result.stdout, result.stdout
        w = stack.worker("inference")
        assert (w["pid"], w["restarts"]) == (before["pid"], before["restarts"])
        # ...but the profile asked for is what the next start runs.
        assert stack.cli("restart", "inference").returncode == 0
    w = stack.wait_state("inference", "RUNNING", 60,
                         lambda w: w["ready_info"].get("requested_profile") == "performance")
    info = w["ready_info"]
    assert (info["profile"], info["gpu_fallback"]) == (runs_as, runs_as != "performance")
    assert info["n_ctx"] == PROFILES[runs_as]["n_ctx"]  # from the loaded model, not the plan
    assert "performance" in info["equivalent_profiles"]
    if runs_as == "performance":  # this 135M model fits any card whole
        assert info["n_gpu_layers"] == info["model_layers"] == 30
        assert "cpu_fallback" not in info["equivalent_profiles"]
        return
    assert info["n_gpu_layers"] == 0 and "cpu_fallback" in info["equivalent_profiles"]
    if offload:  # a CUDA build on a machine without a visible NVIDIA GPU
        why = "no NVIDIA GPU visible"
        assert why in info["notes"][0] and "running as cpu_fallback" in info["notes"][-1]
    else:
        why = "CPU-only"
        assert why in info["notes"][-1] and "GGML_CUDA=on" in info["notes"][-1]
        assert info["equivalent_profiles"] == sorted([*PROFILES, "auto"])
    status = stack.cli("status")
    assert "runs as 'cpu_fallback'" in status.stdout
    log = stack.client.request("logs", {"worker": "inference", "lines": 200}).data["lines"]
    since_start = log[max(i for i, line in enumerate(log) if "started" in line or
                          "model loaded" in line) - 3:]
    assert sum(why in line and "WARNING" in line for line in since_start) == 1


def test_unknown_profile_is_refused(stack) -> None:
    with pytest.raises(BusError) as info:
        stack.client.request("switch_profile", {"profile": "turbo"})
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert "unknown profile 'turbo'" in str(info.value) and "balanced" in str(info.value)


def test_drain_switch_finishes_the_reply_and_serves_requests_sent_meanwhile(stack) -> None:
    c = stack.new_client()
    c.subscribe(["profile_status"])
    until_supervisor_events_reach(c)
    w = stack.worker("inference")
    old, target = w["pid"], reloading_profile(w["ready_info"])
    msg_id = c.send("chat", {"text": LONG, "max_tokens": 40, "conversation": "drain"})
    first_token(c, msg_id)
    c.request("switch_profile", {"profile": target})
    during = [c.send("chat", {"text": f"Question {i}?", "max_tokens": 6,
                              "conversation": f"during{i}"}) for i in range(3)]
    first = collect(c, msg_id)
    assert "request_retry" not in [e.type for e in first]  # drained, not cut off
    assert first[-1].type == "chat_done" and not first[-1].data["cancelled"]
    tokens = [e for e in first if e.type == "chat_token"]
    assert [t.data["index"] for t in tokens] == list(range(1, len(tokens) + 1))  # 0 was read
    for d in during:
        assert collect(c, d)[-1].type == "chat_done"
    ev = c.wait_event("profile_status", lambda e: e.data["state"] == "ready", timeout=60)
    assert ev.data["requested"] == target
    assert stack.worker("inference")["pid"] != old
    c.close()


def test_emergency_switch_reruns_the_reply_on_the_new_process(stack) -> None:
    c = stack.new_client()
    target = reloading_profile(stack.worker("inference")["ready_info"])
    msg_id = c.send("chat", {"text": LONG, "max_tokens": 120, "conversation": "emergency"})
    first_token(c, msg_id)
    c.request("switch_profile", {"profile": target, "emergency": True,
                                 "reason": "VRAM overload"})
    replies = collect(c, msg_id)
    retry = [e for e in replies if e.type == "request_retry"]
    assert len(retry) == 1 and "emergency switch" in retry[0].data["reason"]
    assert replies[-1].type == "chat_done"
    c.close()


def test_context_overflow_is_handled(make_stack, tmp_path: Path) -> None:
    profiles = json.loads((ROOT / "data" / "profiles.json").read_text())
    profiles["cpu_fallback"]["n_ctx"] = 256
    pfile = tmp_path / "profiles.json"
    pfile.write_text(json.dumps(profiles))
    stack = make_stack(ai={"profiles_file": str(pfile), "gpu_profile": "cpu_fallback"}).start()
    c = stack.client
    with pytest.raises(BusError) as info:
        c.request("chat", {"text": "word " * 400, "max_tokens": 16}, timeout=60)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert "message too long" in str(info.value) and "n_ctx 256" in str(info.value)
    # A conversation far longer than the window keeps working: the oldest turns roll off.
    for i in range(8):
        d = c.request("chat", {"text": f"Turn {i}: tell me about the number {i} in a few "
                                       f"words, please, with some detail.",
                               "max_tokens": 24, "conversation": "long"}, timeout=60).data
        assert d["prompt_tokens"] + 24 <= 256
    assert stack.worker("inference")["restarts"] == 0


def test_extra_load_time_stands_in_for_a_large_model(make_stack) -> None:
    """bench.ipc's slow-load switch relies on it: the load is longer, the worker the same."""
    stack = make_stack(ai={"extra_load_s": 0.6},
                       workers={"gpu_monitor": {"enabled": False},
                                "unity_bridge": {"enabled": False}}).start()
    assert stack.worker("inference")["ready_info"]["load_s"] >= 0.6
    done = stack.client.request("chat", {"text": "Hi!", "max_tokens": 8}, timeout=60)
    assert done.type == "chat_done" and done.data["tokens"] > 0


def test_missing_model_is_a_clear_fatal_error(make_stack, tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    stack = make_stack(ai={"model_path": str(missing)})
    stack.start(ready=False)
    w = stack.wait_state("inference", "FATAL", 60)
    assert str(missing) in w["last_exit"] and "models/README.md" in w["last_exit"]
    assert w["restarts"] == 0
    stack.wait_state("unity_bridge", "RUNNING", 60)  # the rest of the stack runs on
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"version": 1}')
    launch = subprocess.run([sys.executable, "launch.py", "--headless", "--model",
                             str(missing), "--config", str(other / "config.json")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert launch.returncode == 2 and "model file not found" in launch.stderr


LEAN = {"gpu_monitor": {"enabled": False}, "unity_bridge": {"enabled": False}}


def _memory_file(tmp_path: Path, case: str) -> Path:
    """A memory_file setting that cannot work, built the way a user gets it wrong."""
    if case == "folder missing":  # a typo in the folder: never a silent fresh memory
        return tmp_path / "no_such_folder" / "memory.sqlite"
    if case == "folder is a file":
        (tmp_path / "notes.txt").write_text("a file, not a folder")
        return tmp_path / "notes.txt" / "memory.sqlite"
    text = tmp_path / "memory.sqlite"  # "not a database"
    text.write_text("this is not SQLite\n" * 200)
    return text


@pytest.mark.parametrize("case", ["folder missing", "folder is a file", "not a database"])
def test_unusable_memory_file_is_a_clear_fatal_error(make_stack, tmp_path: Path,
                                                     case: str) -> None:
    """Regression: the load thread died on it and left the worker STARTING for good."""
    memory_file = _memory_file(tmp_path, case)
    stack = make_stack(ai={"memory_file": str(memory_file)}, workers=LEAN)
    stack.start(ready=False)
    w = stack.wait_state("inference", "FATAL", 60)
    assert "ai.memory_file" in w["last_exit"] and str(memory_file) in w["last_exit"], w
    assert w["restarts"] == 0, w  # a config error: no restart could fix it


def test_unexpected_load_failure_ends_the_process_and_says_where(make_stack) -> None:
    """An exception nobody expected ends the worker (no STARTING forever), and its log
    names the load stage that failed, with the traceback."""
    stack = make_stack(supervisor={"max_restarts": 1},
                       workers={**LEAN, "inference": {
                           "module": "tests.helpers.broken_warmup_inference"}})
    stack.start(ready=False)
    w = stack.wait_state("inference", "FATAL", 90)
    assert "exit code 70" in w["last_exit"], w  # the runtime's excepthook ended it
    log = stack.client.request("logs", {"worker": "inference", "lines": 200}).data["lines"]
    failed = [line for line in log if "failed while warming up" in line]
    assert failed and "warm-up exploded" in failed[0], log
    assert any("Traceback" in line for line in log), log


def test_hundred_message_conversation_memory_is_bounded(make_stack) -> None:
    """50 exchanges = 100 stored messages; RSS may grow by at most 40 MB after warm-up."""
    stack = make_stack().start()
    c = stack.client
    pid = stack.worker("inference")["pid"]
    rss = []
    for i in range(50):
        c.request("chat", {"text": f"Message {i}: how are you?", "max_tokens": 8,
                           "conversation": "hundred"}, timeout=60)
        if i in (9, 49):
            rss.append(psutil.Process(pid).memory_info().rss)
    growth = (rss[1] - rss[0]) / 1e6
    print(f"inference RSS after 10 exchanges {rss[0] / 1e6:.1f} MB, after 50 "
          f"{rss[1] / 1e6:.1f} MB, growth {growth:.1f} MB")
    assert growth < 40, growth
    assert stack.worker("inference")["pid"] == pid
    psutil.Process(pid).kill()  # and the conversation survives a crash, too
    stack.wait_state("inference", "RUNNING", 60, lambda w: w["pid"] != pid)
    d = c.request("chat", {"text": "Still there?", "max_tokens": 4,
                           "conversation": "hundred"}, timeout=60).data
    assert d["prompt_tokens"] > 300  # history filled the window again after the restart


def test_doctor_tells_the_truth_here(stack) -> None:
    result = stack.cli("doctor", "--json")
    report = json.loads(result.stdout)
    assert report["llama_cpp"]["gpu_offload"] == llama_cpp.llama_supports_gpu_offload()
    assert report["model"]["layers"] == 30
    if not report["gpu"]["nvml"]:
        assert "NVML" in report["gpu"]["reason"]
        assert report["auto"]["profile"] == "cpu_fallback"
    text = stack.cli("doctor")
    assert "auto would pick" in text.stdout and "30 layers" in text.stdout
