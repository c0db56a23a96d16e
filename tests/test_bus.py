"""The bus with a real stack: bad frames get numbered errors, nothing dies, CLI works."""

from __future__ import annotations

import json
import sys

import msgpack
import psutil
import pytest

from protocol.bus import BusError
from protocol.codec import make
from protocol.messages import ErrorCode


def test_bad_frames_get_error_replies_and_nothing_dies(stack) -> None:
    before = {n: w["pid"] for n, w in stack.status()["workers"].items()}
    c = stack.new_client()
    cases = [
        (b"\x00\xff not msgpack", ErrorCode.MALFORMED_FRAME, None),
        (msgpack.packb("a string"), ErrorCode.MALFORMED_FRAME, None),
        (msgpack.packb({"type": "teleport", "id": 11, "data": {}}), ErrorCode.UNKNOWN_TYPE, 11),
        (msgpack.packb({"type": "chat", "id": 12, "data": {"text": 3}}),
         ErrorCode.INVALID_FIELD, 12),
        (msgpack.packb({"type": "status"}), ErrorCode.INVALID_FIELD, None),
        (make("heartbeat", {"worker": "x", "pid": 1, "seq": 1}), ErrorCode.WRONG_DIRECTION,
         None),
        (make("worker_stop", {}, id=13), ErrorCode.WRONG_DIRECTION, 13),
        (make("restart", {"worker": "nobody"}, id=14), ErrorCode.UNKNOWN_WORKER, 14),
        (make("ping", {"target": "nobody"}, id=15), ErrorCode.UNKNOWN_WORKER, 15),
        (b"x" * (2 << 20), ErrorCode.FRAME_TOO_LARGE, None),
    ]
    for frame, code, reply_to in cases:
        c.send_raw(frame)
        reply = c.recv_reply(5)
        assert reply.type == "error", frame[:40]
        assert reply.data["code"] == code, reply.data
        assert reply.reply_to == reply_to
        assert reply.data["message"]
    # Multi-part garbage on the request socket, then the stack still answers normally.
    c.dealer.send_multipart([b"one", b"two", b"\x93\x01\x02\x03"])
    assert c.recv_reply(5).data["code"] == ErrorCode.MALFORMED_FRAME
    assert c.request("ping", {"target": "inference"}).data == {"from": "inference"}
    after = {n: w["pid"] for n, w in stack.status()["workers"].items()}
    assert after == before
    assert all(w["restarts"] == 0 for w in stack.status()["workers"].values())
    c.close()


def test_status_json_and_logs_cli(stack) -> None:
    result = stack.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    for name in ("inference", "gpu_monitor", "unity_bridge"):
        w = status["workers"][name]
        assert w["state"] == "RUNNING" and w["pid"] > 0 and w["restarts"] == 0
        assert w["rss"] > 0
    assert status["workers"]["inference"]["ready_info"]["model"].endswith(".gguf")
    table = stack.cli("status")
    assert table.returncode == 0 and "inference" in table.stdout and "RUNNING" in table.stdout
    logs = stack.cli("logs", "inference", "-n", "20")
    assert logs.returncode == 0 and "model loaded" in logs.stdout
    bad = stack.cli("restart", "nobody")
    assert bad.returncode == 1 and "no worker named 'nobody'" in bad.stderr


def test_cli_without_a_stack_says_so(tmp_path) -> None:
    import subprocess

    from supervisor.harness import ROOT

    (tmp_path / "config.json").write_text('{"version": 1}')
    result = subprocess.run([sys.executable, "-m", "supervisor", "--config",
                             str(tmp_path / "config.json"), "status"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no companion stack is running" in result.stderr


def test_chat_streams_through_the_cli(stack) -> None:
    result = stack.cli("chat", "Say hello.", "--max-tokens", "12")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tokens, first after" in result.stderr


def test_chat_tokens_then_done(stack) -> None:
    replies = list(stack.client.stream("chat", {"text": "Name a colour.", "max_tokens": 8},
                                       timeout=60))
    tokens = [r for r in replies if r.type == "chat_token"]
    done = replies[-1]
    assert done.type == "chat_done" and tokens
    assert "".join(t.data["text"] for t in tokens) == done.data["text"]
    assert [t.data["index"] for t in tokens] == list(range(len(tokens)))
    assert done.data["tokens"] == len(tokens) <= 8


def test_kill_9_during_generation_reruns_the_request(stack) -> None:
    c = stack.new_client()
    pid = stack.worker("inference")["pid"]
    msg_id = c.send("chat", {"text": "Tell me a long story about a cat.", "max_tokens": 200})
    first = c.recv_reply(60)
    assert first.type == "chat_token" and first.reply_to == msg_id
    psutil.Process(pid).kill()
    seen = []
    while True:
        env = c.recv_reply(90)
        assert env.reply_to == msg_id
        seen.append(env.type)
        if env.type in ("chat_done", "error"):
            break
    assert "request_retry" in seen, seen
    assert seen[-1] == "chat_done", seen
    assert stack.worker("inference")["pid"] != pid
    c.close()


def test_only_a_started_reply_spends_its_retry(stack) -> None:
    """Chats queued behind a reply are forwarded to the worker, but have not started: two
    kills in a row re-run them both times, while the reply that had started twice gets one
    re-run, then error 203."""
    c = stack.new_client()
    text = "Tell me a long story about a cat."
    first = c.send("chat", {"text": text, "max_tokens": 200, "conversation": "spent"})
    queued = [c.send("chat", {"text": f"Question {i}?", "max_tokens": 4,
                              "conversation": f"queued{i}"}) for i in range(3)]
    replies: dict[int, list[str]] = {m: [] for m in (first, *queued)}

    def until_first_token() -> None:
        while True:
            env = c.recv_reply(90)
            replies[env.reply_to].append(env.type)
            if env.reply_to == first and env.type == "chat_token":
                return

    for _ in range(2):  # each kill lands while the first reply streams
        until_first_token()
        psutil.Process(stack.worker("inference")["pid"]).kill()
    while any(not r or r[-1] not in ("chat_done", "error") for r in replies.values()):
        env = c.recv_reply(90)
        replies[env.reply_to].append(env.type)
    assert replies[first].count("request_retry") == 1 and replies[first][-1] == "error"
    for m in queued:  # never started: re-run after each kill, and answered in the end
        assert replies[m].count("request_retry") == 2 and replies[m][-1] == "chat_done", \
            replies[m]
    c.close()


def test_unknown_worker_and_stop_restart_cycle(stack) -> None:
    c = stack.client
    c.request("stop", {"worker": "gpu_monitor"})
    stack.wait_state("gpu_monitor", "EXITED", 20)
    with pytest.raises(BusError) as info:
        c.request("ping", {"target": "gpu_monitor"})
    assert info.value.code == ErrorCode.WORKER_UNAVAILABLE
    c.request("restart", {"worker": "gpu_monitor"})
    w = stack.wait_state("gpu_monitor", "RUNNING", 30)
    assert w["last_exit"] == "stopped (stop): exit code 0"  # it exited by itself, cleanly
    assert c.request("ping", {"target": "gpu_monitor"}).data == {"from": "gpu_monitor"}
