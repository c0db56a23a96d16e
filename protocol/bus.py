"""Bus endpoints, the per-launch secret, and the client side of the bus.

The supervisor binds three sockets: a ROUTER for requests, and an XSUB/XPUB pair that relays
events (workers publish into XSUB, subscribers read from XPUB, and subscriptions flow back so a
publisher sends nothing that nobody wants). Every socket uses ZeroMQ's PLAIN mechanism checked
by a ZAP handler against the per-launch secret, so nothing connects without it. Endpoints are
Linux abstract ipc sockets (nothing on disk, so a kill -9 leaves nothing behind), else ipc sockets
in a private (0700) directory where libzmq has ipc, else tcp on 127.0.0.1 only (Windows).

The run file (bus.json, in the folder protocol/runfiles.py names: the data dir's run/, or the
user's local app-data on Windows) names the supervisor by pid and process start time, for people
and messages. Whether the stack runs is decided by the stack's OS lock (protocol/runfiles.py): a
pid is reused by the OS, so a live process with that pid is not proof that our supervisor runs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import zmq

from protocol.codec import DEFAULT_MAX_FRAME, Envelope, ProtocolError, decode, make
from protocol.messages import REGISTRY, ErrorCode, Kind
from protocol.runfiles import run_files_dir, stack_running

PLAIN_USER = b"companion"
RUN_FILE = "bus.json"
IPC_PREFIX = "aic-"
IPC_MARKER = "owner.json"  # in an ipc folder: the pid and start time of the supervisor that made it
# Start times are compared with some slack: on Linux psutil adds the boot time from /proc/stat,
# which can move by a second over the uptime. A reused pid started that close is not credible.
START_SLACK_S = 1.5


def event_topic(type_: str) -> bytes:
    """Topic frame for an event: the type plus a terminator, so 'a' never matches 'ab'."""
    return type_.encode() + b"\0"


@dataclass
class BusInfo:
    router: str
    xsub: str
    xpub: str
    secret: str
    supervisor_pid: int
    ipc_dir: str | None = None
    supervisor_started: float | None = None  # psutil create_time of supervisor_pid

    def save(self, run_dir: Path) -> Path:
        path = run_file(run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh)
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, run_dir: Path) -> BusInfo | None:
        """What the run file says, whether or not its supervisor still runs."""
        try:
            return cls(**json.loads(run_file(run_dir).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def load(cls, run_dir: Path) -> BusInfo | None:
        """The running stack's bus, or None when no supervisor is alive for this data dir: the
        stack's lock is held, and the run file's writer is still that process."""
        info = cls.read(run_dir)
        return info if info is not None and info.is_live() and stack_running(run_dir) else None

    def is_live(self) -> bool:
        """Whether the process that wrote this still runs (the pid check only: the stack lock
        decides; a file of an older version, with no start time, has its pid alone)."""
        return same_process(self.supervisor_pid, self.supervisor_started)


def run_file(run_dir: Path) -> Path:
    """The run file of the stack whose run folder is `run_dir` (see protocol/runfiles.py)."""
    return run_files_dir(run_dir) / RUN_FILE


def process_started(pid: int) -> float | None:
    """Start time of a running (not zombie) process, None when there is none with this pid."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.Error:
        return None


def same_process(pid: int, started: float | None) -> bool:
    """Whether `pid` still is the process that started at `started` (pids are reused)."""
    now = process_started(pid)
    if now is None:
        return False
    return started is None or abs(now - started) < START_SLACK_S


def remove_stale_run_file(run_dir: Path) -> BusInfo | None:
    """Remove the run file of a stack that is gone (a kill -9, a logoff leaves one); returns
    what it said.

    A launch calls this holding the stack lock: then no stack runs, and any run file is stale,
    whatever process now has the pid it names.
    """
    info = BusInfo.read(run_dir)
    if info is None:
        return None
    with contextlib.suppress(OSError):
        run_file(run_dir).unlink()
    return info


@functools.cache
def _abstract_ipc() -> bool:
    """Linux abstract-namespace ipc works here: probed, since the libzmq build decides."""
    if not (sys.platform.startswith("linux") and zmq.has("ipc")):
        return False
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    try:
        sock.bind(f"ipc://@{IPC_PREFIX}probe-{secrets.token_hex(16)}")
        return True
    except zmq.ZMQError:
        return False
    finally:
        sock.close(0)
        ctx.term()


def new_bus_info() -> BusInfo:
    """Fresh endpoints and secret for one launch (called in the supervisor's process)."""
    secret = secrets.token_hex(24)
    pid, started = os.getpid(), process_started(os.getpid())
    if _abstract_ipc():
        # Abstract sockets are never files: nothing to clean up, even after a kill -9. They have
        # no file permissions either, so any local user could connect: what keeps them out is
        # the per-launch secret, required by ZeroMQ PLAIN + ZAP on every socket (see
        # supervisor/core.py). The name is random (128 bits), so nobody can guess it to bind it
        # first and collect the secret from our clients.
        name = f"ipc://@{IPC_PREFIX}{secrets.token_hex(16)}"
        return BusInfo(f"{name}-router", f"{name}-xsub", f"{name}-xpub", secret, pid,
                       supervisor_started=started)
    if zmq.has("ipc") and sys.platform != "win32":
        d = tempfile.mkdtemp(prefix=IPC_PREFIX)  # mode 0700: only this user reaches the sockets
        write_ipc_marker(Path(d), pid, started)
        return BusInfo(f"ipc://{d}/router", f"ipc://{d}/xsub", f"ipc://{d}/xpub", secret, pid,
                       d, started)
    return BusInfo("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", secret, pid,
                   supervisor_started=started)


def write_ipc_marker(folder: Path, pid: int, started: float | None) -> None:
    """Name the folder's owner, so a later launch can prove the folder stale after a kill -9."""
    tmp = folder / f"{IPC_MARKER}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "started": started}))
    os.replace(tmp, folder / IPC_MARKER)  # whole or absent: a half-written marker proves nothing


def clean_stale_ipc_dirs(tmp_dir: Path | None = None) -> list[Path]:
    """Remove the ipc folders of supervisors that died without cleaning up (kill -9).

    Only folders it can prove stale: ours (same user), with a marker whose pid is gone or is
    now another process (another start time). No marker (being made, or an older version):
    kept. Returns the folders removed.
    """
    removed: list[Path] = []
    if sys.platform == "win32":  # tcp there: no folders of ours
        return removed
    for folder in Path(tmp_dir or tempfile.gettempdir()).glob(f"{IPC_PREFIX}*"):
        if _ipc_dir_is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed


def _ipc_dir_is_stale(folder: Path) -> bool:
    try:
        if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
            return False
        owner = json.loads((folder / IPC_MARKER).read_text())
        pid, started = int(owner["pid"]), float(owner["started"])
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return not same_process(pid, started)


def secure_server(sock: zmq.Socket) -> None:
    sock.plain_server = True
    sock.linger = 0


def secure_client(sock: zmq.Socket, secret: str) -> None:
    sock.plain_username = PLAIN_USER
    sock.plain_password = secret.encode()
    sock.linger = 0


class BusError(Exception):
    """A bus request failed; `code` is an ErrorCode when the other side answered with one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BusClient:
    """A DEALER for requests plus a SUB for events. One thread at a time."""

    def __init__(self, info: BusInfo, *, ctx: zmq.Context | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.info = info
        self.max_frame = max_frame
        self.dealer = self.ctx.socket(zmq.DEALER)
        secure_client(self.dealer, info.secret)
        self.dealer.connect(info.router)
        self.sub = self.ctx.socket(zmq.SUB)
        secure_client(self.sub, info.secret)
        self.sub.connect(info.xpub)
        self._next_id = 1
        self._early: list[Envelope] = []  # replies that arrived for another request id

    def close(self) -> None:
        self.dealer.close(0)
        self.sub.close(0)

    def __enter__(self) -> BusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------
    def send(self, type_: str, data: dict | None = None) -> int:
        msg_id = self._next_id
        self._next_id += 1
        self.dealer.send(make(type_, data, id=msg_id))
        return msg_id

    def send_raw(self, frame: bytes) -> None:
        self.dealer.send(frame)

    def recv_reply(self, timeout: float) -> Envelope:
        """Next reply of any request; raises TimeoutError."""
        if self._early:
            return self._early.pop(0)
        if not self.dealer.poll(int(timeout * 1000)):
            raise TimeoutError(
                f"no answer from the supervisor at {self.info.router} within {timeout:.1f} s")
        return decode(self.dealer.recv(), self.max_frame, validate=False)

    def stream(self, type_: str, data: dict | None = None, timeout: float = 10.0
               ) -> Iterator[Envelope]:
        """Send a request and yield every reply to it, ending with the final one.

        `timeout` bounds the wait for each reply, not the whole exchange.
        """
        ms = REGISTRY[type_]
        msg_id = self.send(type_, data)
        while True:
            env = self.recv_for(msg_id, timeout)
            if env.type == "error":
                raise BusError(env.data.get("message", "error"), env.data.get("code"))
            yield env
            if env.type in ms.final:
                return

    def request(self, type_: str, data: dict | None = None, timeout: float = 10.0) -> Envelope:
        """Send a request and return its final reply (progress replies are dropped)."""
        *_, final = self.stream(type_, data, timeout)
        return final

    def recv_for(self, msg_id: int, timeout: float) -> Envelope:
        """Next reply to request `msg_id`; replies to other requests are kept for later."""
        deadline = time.monotonic() + timeout
        for i, env in enumerate(self._early):
            if env.reply_to == msg_id:
                return self._early.pop(i)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.dealer.poll(int(left * 1000) + 1):
                raise TimeoutError(f"no answer from the supervisor at {self.info.router} "
                                   f"within {timeout:.1f} s")
            try:
                env = decode(self.dealer.recv(), self.max_frame, validate=False)
            except ProtocolError:
                continue
            if env.reply_to == msg_id:
                return env
            self._early.append(env)

    # -- events ----------------------------------------------------------------------------
    def subscribe(self, types: Iterable[str]) -> None:
        for t in types:
            ms = REGISTRY.get(t)
            if ms is None or ms.kind is not Kind.EVENT:
                raise ValueError(f"'{t}' is not an event type of the registry")
            self.sub.setsockopt(zmq.SUBSCRIBE, event_topic(t))

    def recv_event(self, timeout: float) -> Envelope:
        if not self.sub.poll(int(timeout * 1000)):
            raise TimeoutError(f"no event within {timeout:.1f} s")
        _topic, frame = self.sub.recv_multipart()
        return decode(frame, self.max_frame, validate=False)

    def wait_event(self, type_: str, pred=lambda env: True, timeout: float = 10.0) -> Envelope:
        """First event of `type_` (already subscribed) that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no '{type_}' event matching within {timeout:.1f} s")
            env = self.recv_event(left)
            if env.type == type_ and pred(env):
                return env


def connect(run_dir: Path, **kw) -> BusClient:
    """A client of the stack whose run files are in `run_dir`; BusError when none is running."""
    info = BusInfo.read(run_dir)
    if info is None:
        raise BusError(f"no companion stack is running for {run_dir.parent} "
                       f"(start one with: python launch.py)", ErrorCode.WORKER_UNAVAILABLE)
    if not (info.is_live() and stack_running(run_dir)):
        raise BusError(f"stale run file: the stack that wrote {run_file(run_dir)} (supervisor "
                       f"pid {info.supervisor_pid}) is no longer running; start one with: "
                       f"python launch.py", ErrorCode.WORKER_UNAVAILABLE)
    return BusClient(info, **kw)
