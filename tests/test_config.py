"""Config validation: bad values stop the start with a message naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config import ConfigError, load_config, validate
from supervisor.harness import ROOT


def test_repository_config_is_valid() -> None:
    cfg, warnings = load_config(ROOT / "data" / "config.json")
    assert warnings == []
    assert cfg["supervisor"]["max_restarts"] == 5
    assert set(cfg["workers"]) == {"inference", "gpu_monitor", "unity_bridge"}


def test_defaults_fill_missing_sections() -> None:
    cfg = validate({"version": 1}, [])
    assert cfg["supervisor"]["heartbeat_interval_s"] == 1.0
    assert cfg["unity_bridge"]["port"] == 5555
    assert cfg["workers"]["inference"]["module"] == "workers.inference"


@pytest.mark.parametrize(("raw", "needle"), [
    ({}, "missing required key 'version'"),
    ({"version": 1, "supervisor": {"heartbeat_interval_s": "fast"}},
     "'supervisor.heartbeat_interval_s' must be a number, got string"),
    ({"version": 1, "supervisor": {"max_restarts": 0}},
     "'supervisor.max_restarts' = 0 is out of range"),
    ({"version": 1, "unity_bridge": {"port": 70000}}, "'unity_bridge.port' = 70000"),
    ({"version": 1, "ai": {"auto_switching_enabled": "yes"}},
     "'ai.auto_switching_enabled' must be true or false"),
    ({"version": 1, "supervisor": {"queue_limit": True}}, "'supervisor.queue_limit' must be"),
    ({"version": 1, "logging": {"level": "LOUD"}}, "'logging.level' must be one of"),
    ({"version": 1, "workers": {"extra": {"enabled": True}}},
     "missing required key 'workers.extra.module'"),
    ({"version": 1, "ai": []}, "'ai' must be an object"),
])
def test_bad_values_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(raw, [])
    assert needle in str(info.value)


def test_unknown_keys_are_warned_not_fatal() -> None:
    warnings: list[str] = []
    cfg = validate({"version": 1, "colour": "blue", "ai": {"gpu_profil": "fast"}}, warnings)
    assert cfg["ai"]["gpu_profile"] == "auto"
    assert any("'colour'" in w for w in warnings)
    assert any("'ai.gpu_profil'" in w for w in warnings)


def _launch(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", "--headless", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_launch_refuses_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"version": 1, "supervisor": {"heartbeat_misses": "three"}}))
    result = _launch(cfg)
    assert result.returncode == 2
    assert "'supervisor.heartbeat_misses' must be an integer" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


def test_launch_reports_broken_json_and_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text('{"version": 1,}')
    result = _launch(cfg)
    assert result.returncode == 2 and "not valid JSON at line 1" in result.stderr
    result = _launch(tmp_path / "absent.json")
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_launch_refuses_unknown_profile_and_missing_files(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text('{"version": 1}')
    for extra, needle in ((["--profile", "turbo"], "unknown profile 'turbo'; profiles: fast"),
                          (["--model", str(tmp_path / "x.gguf")], "model file not found"),
                          (["--gpu-trace", str(tmp_path / "t.csv")], "GPU trace not found")):
        result = subprocess.run([sys.executable, "launch.py", "--headless", "--config",
                                 str(cfg), *extra], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
