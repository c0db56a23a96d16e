"""The bridge's avatar state file: replayed after a restart, written only on change, appended
to, and whole whatever point of a save a kill -9 hits."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import REPO_ROOT
from unity_bridge import avatar as avatar_module
from unity_bridge.avatar import MAX_EXPRESSIONS, PERSISTED, Avatar, last_state
from unity_bridge.server import BridgeServer, Limits


def test_state_survives_a_restart_and_a_restart_starts_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "state.json"
    a = Avatar(state_file=path)
    for name in ("joy", "angry", "sorrow", "fun", "surprised"):
        a.command("set_expression", {"name": name, "value": 0.5})
    a.command("load_model", {"path": "/avatars/alice.vrm"})
    a.save()
    a.command("reset_expressions", {})
    a.command("set_auto_blink", {"enabled": False})
    a.save()
    a.close()
    assert len(path.read_bytes().splitlines()) == 2  # appended, not rewritten
    b = Avatar(state_file=path)
    assert (b.state.model, b.state.expressions, b.state.auto_blink) == (
        "/avatars/alice.vrm", {}, False)
    b.command("set_transition_speed", {"speed": 2})
    b.save()
    b.close()
    assert len(path.read_bytes().splitlines()) == 1  # the old lines are gone
    assert not path.with_name(path.name + ".tmp").exists()
    assert Avatar(state_file=path).state.transition_speed == 2.0


def test_a_long_file_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avatar_module, "COMPACT_BYTES", 1000)
    path = tmp_path / "state.json"
    a = Avatar(state_file=path)
    for i in range(50):
        a.command("set_transition_speed", {"speed": 1 + i / 10})
        a.save()
    a.close()
    assert len(path.read_bytes()) <= 1000
    assert Avatar(state_file=path).state.transition_speed == pytest.approx(5.9)


def test_only_a_change_is_written(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    a = Avatar(state_file=path)
    a.command("set_expression", {"name": "happy", "value": 0.7})  # VRM 1.0 name for joy
    assert a.dirty
    a.save()
    written = path.read_bytes()
    a.command("set_expression", {"name": "joy", "value": 0.7})
    a.command("set_auto_head_movement", {"enabled": True})  # the defaults again
    assert not a.dirty
    a.save()
    assert path.read_bytes() == written
    a.command("set_transition_speed", {"speed": 3})
    assert a.dirty
    a.save()
    a.close()
    assert json.loads(path.read_bytes().splitlines()[-1])["transition_speed"] == 3.0


def test_an_unreadable_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"expressions": {"joy": 1}, "model": 42, "auto_blink": "no"')  # torn
    assert Avatar(state_file=path).state.expressions == {}
    path.write_text('{"expressions": {"joy": 1.0}, "model": 42, "auto_blink": "no"}')
    s = Avatar(state_file=path).state
    assert (s.expressions, s.model, s.auto_blink) == ({"joy": 1.0}, None, True)  # bad types


def test_loaded_expressions_are_what_commands_could_have_left(tmp_path: Path) -> None:
    """A file from before the limit (or edited by hand): names and values as a command makes
    them, the presets and the first `max_expressions` others; the file is rewritten so."""
    path = tmp_path / "state.json"
    others = {f"n{i}": 0.1 for i in range(100)}
    path.write_text(json.dumps({"expressions": {"Happy": 2, "x" * 65: 0.5, "bad": "no",
                                                **others, "sorrow": 0.5}}) + "\n")
    a = Avatar(state_file=path, max_expressions=3)
    expected = {"joy": 1.0, "n0": 0.1, "n1": 0.1, "n2": 0.1, "sorrow": 0.5}
    assert a.state.expressions == expected
    a.close()
    saved = last_state(path.read_bytes())
    assert saved is not None and saved["expressions"] == expected


def test_only_the_end_of_a_huge_file_is_read(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    last = json.dumps({"model": "/avatars/new.vrm"}).encode() + b"\n"
    path.write_bytes(json.dumps({"model": "/avatars/old.vrm", "pad": "p" * 10_000}).encode()
                     + b"\n" + last)
    monkeypatch.setattr(avatar_module, "MAX_STATE_READ", len(last) + 10)
    assert Avatar(state_file=path).state.model == "/avatars/new.vrm"


def full_state(model: str, prefix: str, count: int, value: float,
               blink: bool) -> list[list[Any]]:
    """Commands that set every persisted field, so a step's state does not depend on the last."""
    return [["load_model", {"path": model}], ["reset_expressions", {}],
            *[["set_expression", {"name": f"{prefix}{i:03}", "value": value}]
              for i in range(count)],
            ["set_transition_speed", {"speed": 1.0 + value}],
            ["set_auto_blink", {"enabled": blink}],
            ["set_auto_head_movement", {"enabled": blink, "max_angle": 20 * value}]]


# Longer and shorter states in turn, some over a page (4 KiB), where a killed write can be cut.
# As many names as the bridge keeps, long ones, so the third state is over a page on its own.
STEPS = [full_state("/avatars/" + "a" * 3000 + ".vrm", "custom_" + "c" * 40, MAX_EXPRESSIONS,
                    0.25, False),
         full_state("/avatars/b.vrm", "joy", 1, 0.5, True),
         full_state("/avatars/c.vrm", "other_" + "o" * 50, MAX_EXPRESSIONS, 0.75, False),
         full_state("/avatars/d.vrm", "sorrow", 1, 1.0, True)]


def persisted(avatar: Avatar) -> dict[str, Any]:
    return {k: getattr(avatar.state, k) for k in PERSISTED}


def step_states() -> list[dict[str, Any]]:
    """What each step of STEPS leaves, computed without any file."""
    avatar, out = Avatar(), []
    for step in STEPS:
        for type_, data in step:
            avatar.command(type_, data)
        out.append(persisted(avatar))
    return out


def save_and_die(path: Path, mode: str, target: int, compact: int | None) -> tuple[int, int]:
    """Run the STEPS in a child killed by SIGKILL at one point of its saves (see the helper).

    Returns its exit code and the step whose save was under way when it ended.
    """
    cmd = [sys.executable, "-m", "tests.helpers.kill_during_save", str(path),
           json.dumps(STEPS), mode, str(target), *([str(compact)] if compact else [])]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode, int(done.stdout.split()[-1])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fcntl are POSIX")
@pytest.mark.parametrize("compact", [None, 1], ids=["default", "compact-every-save"])
@pytest.mark.parametrize("mode", ["after", "torn"])
def test_a_kill_at_any_point_of_a_save_leaves_the_old_or_the_new_state(
        tmp_path: Path, mode: str, compact: int | None) -> None:
    """A bridge killed mid-save must restart with the last state or the one being saved.

    Each run of the child starts on the file the previous kill left, as a restarted bridge
    does, so saving over a file cut by a kill is tested too.
    """
    path = tmp_path / "run" / "state.json"
    expected = step_states()
    before = persisted(Avatar())
    for target in itertools.count():
        code, step = save_and_die(path, mode, target, compact)
        loaded = persisted(Avatar(state_file=path))
        if code == 0:
            assert loaded == expected[-1]
            break
        allowed = [before if step == 0 else expected[step - 1], expected[step]]
        assert loaded in allowed, f"{mode}: killed at {target} (step {step})"
        before = loaded
    assert target >= len(STEPS)  # the kills really fell inside the saves


def test_a_command_is_saved_before_anyone_hears_of_it(tmp_path: Path) -> None:
    """A command a client saw, or got "ok" for, survives a kill -9 of the bridge at the next
    instant: it is on disk before it is forwarded (no save left for after the batch)."""

    class NoLoop:  # the bus thread's queue: nothing queued here ever runs
        def call_on_bus(self, fn: object) -> None:
            pass

    state_file = tmp_path / "state.json"
    server = BridgeServer(Limits(), Avatar(state_file=state_file), lambda *a: None, NoLoop())
    server.command("set_expression", {"name": "relaxed", "value": 0.7})
    saved = last_state(state_file.read_bytes())
    assert saved is not None and saved["expressions"] == {"fun": 0.7}
