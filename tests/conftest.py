"""A real stack for tests: launch.py in a subprocess, with its own data dir and config."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.harness import Stack

FAST_SUPERVISOR = {
    "heartbeat_interval_s": 0.2,
    "heartbeat_misses": 3,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.5,
    "stop_timeout_s": 3.0,
    "terminate_timeout_s": 2.0,
    "stats_interval_s": 0.5,
    "drain_timeout_s": 20.0,
}


def base_config(**sections: dict[str, Any]) -> dict[str, Any]:
    # Port 0: each stack's bridge gets a free port, so stacks never collide.
    cfg: dict[str, Any] = {"version": 1, "supervisor": dict(FAST_SUPERVISOR),
                           "unity_bridge": {"port": 0}, "logging": {"level": "INFO"}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **copy.deepcopy(value)}
    return cfg


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def factory(**sections: dict[str, Any]) -> Stack:
        d = tmp_path / f"stack{len(stacks)}"
        d.mkdir()
        s = Stack(d, base_config(**sections))
        stacks.append(s)
        return s
    yield factory
    for s in stacks:
        s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One full default stack (real model) shared by a module's tests."""
    s = Stack(tmp_path_factory.mktemp("stack"), base_config())
    s.start()
    yield s
    s.stop()

