"""The bridge's avatar state file: replayed after a restart, written only on change, in place."""

from __future__ import annotations

import json
from pathlib import Path

from unity_bridge.avatar import Avatar


def test_state_survives_a_restart_and_shrinks_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "run" / "state.json"
    a = Avatar(state_file=path)
    for name in ("joy", "angry", "sorrow", "fun", "surprised"):
        a.command("set_expression", {"name": name, "value": 0.5})
    a.command("load_model", {"path": "/avatars/alice.vrm"})
    a.save()
    long = path.read_bytes()
    a.command("reset_expressions", {})
    a.command("set_auto_blink", {"enabled": False})
    a.save()
    assert len(path.read_bytes()) < len(long)  # rewritten in place, and cut to its new size
    b = Avatar(state_file=path)
    assert (b.state.model, b.state.expressions, b.state.auto_blink) == (
        "/avatars/alice.vrm", {}, False)


def test_only_a_change_is_written(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    a = Avatar(state_file=path)
    a.command("set_expression", {"name": "happy", "value": 0.7})  # VRM 1.0 name for joy
    assert a.dirty
    a.save()
    path.write_text("marker")  # so a second write would show
    a.command("set_expression", {"name": "joy", "value": 0.7})
    a.command("set_auto_head_movement", {"enabled": True})  # the defaults again
    assert not a.dirty
    a.save()
    assert path.read_text() == "marker"
    a.command("set_transition_speed", {"speed": 3})
    assert a.dirty
    a.save()
    assert json.loads(path.read_text())["transition_speed"] == 3.0


def test_an_unreadable_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"expressions": {"joy": 1}, "model": 42, "auto_blink": "no"')  # torn
    assert Avatar(state_file=path).state.expressions == {}
    path.write_text('{"expressions": {"joy": 1.0}, "model": 42, "auto_blink": "no"}')
    s = Avatar(state_file=path).state
    assert (s.expressions, s.model, s.auto_blink) == ({"joy": 1.0}, None, True)  # bad types
