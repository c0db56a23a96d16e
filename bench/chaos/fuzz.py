"""Hostile Unity-wire clients: `python -m bench.chaos.fuzz --port P --frames N`.

Many connections at once, each a session of one kind: random bytes, random msgpack, wrong
envelopes, an oversized length, a truncated frame, an abrupt reset, a half-open or silent
connection, a slowloris dribbling a frame byte by byte, or a flood of distinct expression
names. A session ends with an RST, a FIN, or a half-close after which every answer of the
bridge is read and checked (a registry message; an error's code registered). It runs in its
own process at a lower priority (nice 10), so its CPU and its GIL are not taken from the
bridge or the good client it is measured against. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack

from bench.chaos.wire import hello_frame, reset
from protocol.codec import ProtocolError, decode
from protocol.framing import HEADER, FrameDecoder, frame, message
from protocol.messages import EMOTIONS, REGISTRY, ErrorCode

KINDS = {"bytes": 10, "msgpack": 15, "envelope": 20, "oversized": 8, "truncated": 10,
         "reset": 12, "half_open": 5, "silent": 2, "slowloris": 4, "names": 14}
NAME_LEN = 64  # the bridge's longest name: the most memory per name
CODES = {int(c) for c in ErrorCode}


def random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 2 or r < 0.5:
        return rng.choice([None, True, False, rng.randint(-(2**63), 2**64 - 1),
                           rng.random() * 10 ** rng.randint(-5, 300), float("nan"),
                           "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 12))),
                           rng.randbytes(rng.randint(0, 12))])
    if r < 0.75:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_value(rng, 3) if rng.random() < 0.2 else str(rng.randint(0, 99)):
            random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_msgpack(rng: random.Random) -> bytes:
    return frame(msgpack.packb(random_value(rng), use_bin_type=True))


def wrong_envelope(rng: random.Random) -> bytes:
    n = rng.randint(1, 2**31)
    types = sorted(REGISTRY)
    m: Any = rng.choice([
        {"type": f"no_such_{n}", "id": n, "data": {}},
        {"type": rng.choice(types), "id": str(n), "data": {}},
        {"type": rng.choice(types), "id": n, "data": random_value(rng)},
        {"type": "set_expression", "id": n, "data": {"name": n, "value": "x"}},
        {"type": "set_expression", "id": n, "data": {"name": "joy", "value": float("nan")}},
        {"type": "set_expression", "data": {"name": "joy", "value": 0.5}},  # no id
        {"type": "hello", "id": n, "data": {"protocol": 1, "client": "again"}},
        {"type": rng.choice(["welcome", "speech", "status", "shutdown", "kill", "chat",
                             "worker_stop", "avatar_state"]), "id": n, "data": {}},
        {"type": "ok", "reply_to": n, "data": {}},
        {"type": "error", "reply_to": n, "data": {"code": "x", "message": None}},
        {"type": n, "id": n},
        {"type": "set_auto_head_movement", "id": n,
         "data": {"enabled": True, "min_interval": 1e308, "max_interval": -1}},
        {"type": "load_model", "id": n, "data": {"path": "p" * rng.randint(0, 9000)}},
        {"type": "set_transition_speed", "id": n, "data": {"speed": rng.choice([True, -1e9])}},
        {"id": n, "data": {}},
        {"type": "ping", "id": n, "reply_to": "x", "ts": "yesterday"},
    ])
    return frame(msgpack.packb(m, use_bin_type=True))


def good_command(rng: random.Random, n: int) -> bytes:
    return message("set_expression", {"name": rng.choice(EMOTIONS), "value": rng.random()},
                   id=n)


class Names:
    """Distinct expression names, shared by all sessions, up to a budget."""

    def __init__(self, budget: int) -> None:
        self.budget, self.sent = budget, 0
        self._lock = threading.Lock()

    def take(self) -> str | None:
        with self._lock:
            if self.sent >= self.budget:
                return None
            self.sent += 1
            return f"chaos-name-{self.sent:07d}-".ljust(NAME_LEN, "x")


class Fuzz:
    def __init__(self, port: int, frames: int, names: int, connections: int, seed: int,
                 max_s: float, max_frame: int) -> None:
        self.port, self.target, self.connections = port, frames, connections
        self.max_frame = max_frame
        self.names = Names(names)
        self.seed = seed
        self.deadline = time.monotonic() + max_s
        self._lock = threading.Lock()
        self.frames = 0  # hostile frames sent (hello not counted)
        self.by_kind: Counter[str] = Counter()
        self.sessions: Counter[str] = Counter()
        self.endings: Counter[str] = Counter()
        self.refused = 0
        self.cut_by_bridge = 0  # sends that failed: the bridge had closed on us
        self.answers = 0
        self.bad_answers: list[str] = []
        self.codes: Counter[int] = Counter()
        self.silent = [0, 0]  # silent connections: dropped by the bridge, seen

    # -- bookkeeping ------------------------------------------------------------------
    def _more(self) -> bool:
        return self.frames < self.target and time.monotonic() < self.deadline

    def _count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.frames += n
            self.by_kind[kind] += n

    # -- running ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True)
                   for i in range(self.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, self.deadline - time.monotonic() + 10))
        return {"frames": self.frames, "target_frames": self.target,
                "elapsed_s": round(time.monotonic() - t0, 3),
                "deadline_hit": self.frames < self.target, "connections": self.connections,
                "sessions": dict(self.sessions), "frames_by_kind": dict(self.by_kind),
                "endings": dict(self.endings), "refused": self.refused,
                "cut_by_bridge": self.cut_by_bridge, "distinct_names": self.names.sent,
                "answers": self.answers, "bad_answers": len(self.bad_answers),
                "bad_answer_examples": self.bad_answers[:5],
                "error_codes": {str(k): v for k, v in sorted(self.codes.items())},
                "silent_dropped_by_bridge": self.silent[0], "silent_seen": self.silent[1]}

    def _worker(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + i)
        kinds, weights = list(KINDS), list(KINDS.values())
        n = 0
        while self._more():
            n += 1
            kind = rng.choices(kinds, weights)[0]
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=3)
            except OSError:
                with self._lock:
                    self.refused += 1
                time.sleep(0.05)
                continue
            with self._lock:
                self.sessions[kind] += 1
            try:
                getattr(self, f"_s_{kind}")(sock, rng)
            except OSError:  # the bridge closed on us first: a fine answer to garbage
                with self._lock:
                    self.cut_by_bridge += 1
                reset(sock)

    def _send(self, sock: socket.socket, kind: str, frames: list[bytes]) -> None:
        for f in frames:
            sock.sendall(f)
            self._count(kind)

    def _end(self, sock: socket.socket, rng: random.Random, how: str = "") -> None:
        how = how or rng.choice(("reset", "reset", "close", "read"))
        with self._lock:
            self.endings[how] += 1
        if how == "reset":
            reset(sock)
        elif how == "close":
            sock.close()
        else:
            sock.shutdown(socket.SHUT_WR)
            self._check_answers(sock)
            sock.close()

    def _check_answers(self, sock: socket.socket) -> None:
        """Everything the bridge sends must be a registry message; errors, registered."""
        decoder = FrameDecoder(1 << 26)
        sock.settimeout(2)
        end = time.monotonic() + 3
        try:
            while time.monotonic() < end:
                data = sock.recv(1 << 16)
                if not data:
                    break
                for raw in decoder.feed(data):
                    self._judge(raw)
        except OSError:
            pass  # RST after our unread bytes, or slow: what came is judged

    def _judge(self, raw: bytes) -> None:
        with self._lock:
            self.answers += 1
        try:
            env = decode(raw, 1 << 26)
        except ProtocolError as exc:
            with self._lock:
                self.bad_answers.append(f"undecodable: {exc.message}")
            return
        if env.type == "error":
            code = env.data.get("code")
            with self._lock:
                self.codes[code] += 1
                if code not in CODES:
                    self.bad_answers.append(f"unregistered error code {code!r}")

    # -- session kinds ----------------------------------------------------------------
    def _s_bytes(self, sock: socket.socket, rng: random.Random) -> None:
        self._send(sock, "bytes", [rng.randbytes(rng.randint(1, 2048))
                                   for _ in range(rng.randint(1, 4))])
        self._end(sock, rng)

    def _greeted(self, sock: socket.socket, kind: str, rng: random.Random,
                 make: Callable[[random.Random], bytes], most: int = 12) -> None:
        sock.sendall(hello_frame(f"fuzz-{kind}"))
        self._send(sock, kind, [make(rng) for _ in range(rng.randint(1, most))])
        self._end(sock, rng)

    def _s_msgpack(self, sock: socket.socket, rng: random.Random) -> None:
        self._greeted(sock, "msgpack", rng, random_msgpack)

    def _s_envelope(self, sock: socket.socket, rng: random.Random) -> None:
        self._greeted(sock, "envelope", rng, wrong_envelope)

    def _s_oversized(self, sock: socket.socket, rng: random.Random) -> None:
        sock.sendall(hello_frame("fuzz-oversized"))
        size = rng.randint(self.max_frame + 1, 2**32 - 1)
        self._send(sock, "oversized", [HEADER.pack(size) + rng.randbytes(rng.randint(0, 512))])
        self._end(sock, rng)

    def _s_truncated(self, sock: socket.socket, rng: random.Random) -> None:
        sock.sendall(hello_frame("fuzz-truncated"))
        whole = [good_command(rng, i) for i in range(rng.randint(0, 3))]
        cut = good_command(rng, 99)
        self._send(sock, "truncated", [*whole, cut[:rng.randint(1, len(cut) - 1)]])
        self._end(sock, rng)

    def _s_reset(self, sock: socket.socket, rng: random.Random) -> None:
        sock.sendall(hello_frame("fuzz-reset"))
        self._send(sock, "reset", [good_command(rng, i) for i in range(rng.randint(1, 20))])
        reset(sock)  # with the answers unread: RST while the bridge is writing to us
        with self._lock:
            self.endings["reset"] += 1

    def _s_half_open(self, sock: socket.socket, rng: random.Random) -> None:
        """Said hello, then closed its side and never reads: the bridge sees EOF at once."""
        sock.sendall(hello_frame("fuzz-half-open"))
        self._count("half_open", 0)
        sock.shutdown(socket.SHUT_WR)
        time.sleep(rng.uniform(0.1, 0.5))
        reset(sock)
        with self._lock:
            self.endings["reset"] += 1

    def _s_silent(self, sock: socket.socket, rng: random.Random) -> None:
        """Never says hello: the bridge must drop it after its handshake timeout."""
        sock.settimeout(10)
        try:
            sock.recv(1 << 16)  # an error frame, or EOF: dropped
            dropped = True
        except TimeoutError:
            dropped = False
        except OSError:  # reset by the bridge: dropped too
            dropped = True
        with self._lock:
            self.silent[1] += 1
            self.silent[0] += dropped
        sock.close()

    def _s_slowloris(self, sock: socket.socket, rng: random.Random) -> None:
        """A frame dribbled one byte at a time, never finished, then an RST."""
        sock.sendall(hello_frame("fuzz-slowloris"))
        body = good_command(rng, 7)
        for b in body[:rng.randint(1, len(body) - 1)]:
            sock.sendall(bytes([b]))
            time.sleep(rng.uniform(0.002, 0.02))
        self._count("slowloris")
        reset(sock)
        with self._lock:
            self.endings["reset"] += 1

    def _s_names(self, sock: socket.socket, rng: random.Random) -> None:
        """A flood of distinct expression names (valid commands), while the budget lasts."""
        sock.sendall(hello_frame("fuzz-names"))
        frames = []
        for i in range(rng.randint(20, 200)):
            name = self.names.take()
            if name is None:
                break
            frames.append(message("set_expression", {"name": name, "value": 0.5}, id=i + 1))
        self._send(sock, "names", frames or [good_command(rng, 1)])
        self._end(sock, rng, "read")  # not a reset: the bridge gets to read every name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos.fuzz")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--names", type=int, default=5_000, help="distinct expression names")
    ap.add_argument("--connections", type=int, default=8, help="sessions at once")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-s", type=float, default=300.0, help="stop by then, however far")
    ap.add_argument("--max-frame", type=int, default=1 << 20, help="the bridge's frame limit")
    ap.add_argument("--nice", type=int, default=10,
                    help="lower our priority: on a small machine the fuzzer's own CPU would "
                         "otherwise be taken from the bridge it measures (0: as is)")
    args = ap.parse_args(argv)
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)
    fuzz = Fuzz(args.port, args.frames, args.names, args.connections, args.seed, args.max_s,
                args.max_frame)
    print(json.dumps(fuzz.run()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
