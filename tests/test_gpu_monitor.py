"""GPU monitor: decisions over the shipped traces, the replay driving real switches, no driver."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from supervisor.config import ConfigError, default_config, validate
from supervisor.harness import RELOAD_PROFILE, ROOT
from workers.gpu.sources import NvmlSource, ReplaySource
from workers.gpu_monitor.decision import Decider, GpuState, Sample
from workers.gpu_monitor.simulate import simulate

TRACES = ROOT / "data" / "traces"
GiB = 1 << 30


def sequence(trace: str, **gm) -> list[tuple[int, str, bool]]:
    cfg = default_config()
    cfg["gpu_monitoring"].update(gm)
    return [(s.row, s.profile, s.emergency) for s in simulate(TRACES / trace, cfg)]


def test_game_started_overloads_then_recovers() -> None:
    assert sequence("game_started.csv") == [
        (2, "performance", False), (10, "cpu_fallback", True), (25, "performance", False)]


def test_4k_stream_is_stressed_to_balanced() -> None:
    assert sequence("stream_4k.csv") == [(2, "performance", False), (14, "balanced", False)]


def test_companion_alone_stays_on_performance_despite_a_spike() -> None:
    assert sequence("companion_alone.csv") == [(2, "performance", False)]


def _hover(**gm) -> list[str]:
    """The hovering trace against a model whose `performance` fits exactly while others use
    less than 4300 MiB of the 8 GiB: others' use hovers on both sides of that line."""
    cfg = {**default_config()["gpu_monitoring"], **gm}
    mib = 1 << 20
    needs = {"performance": (8192 - 512 - 4300) * mib, "balanced": 1000 * mib}
    d = Decider(cfg, lambda profile, total: needs.get(profile, 0), margin_bytes=512 * mib)
    out = []
    for i, r in enumerate(ReplaySource(TRACES / "hovering.csv").rows):
        decision = d.update(Sample(i * cfg["interval_s"], r["vram_used"], r["vram_total"],
                                   r["gpu_percent"], r["own_vram"]))
        if decision is not None:
            out.append(decision.profile)
    return out


def test_hovering_around_a_threshold_does_not_oscillate() -> None:
    assert sequence("hovering.csv") == [(2, "performance", False)]  # far from any line here
    assert _hover() == ["balanced"]
    # The guard rails are what prevent it: without hysteresis and dwell it flaps.
    flapping = _hover(dwell_samples=1, min_switch_interval_s=0,
                      thresholds={**default_config()["gpu_monitoring"]["thresholds"],
                                  "hysteresis": 0})
    assert len(flapping) > 4, flapping


def test_own_vram_is_not_pressure() -> None:
    cfg = default_config()["gpu_monitoring"]
    d = Decider(cfg, lambda profile, total: GiB // 2, "performance")
    # 8 GB card: others 4.7 GB, ours 2.5 GB -> 90 % in total, but performance (0.5 GB) fits
    # next to others with the 0.5 GB margin.
    s = Sample(0, int(7.2 * GiB), 8 * GiB, 30, own_vram=int(2.5 * GiB))
    assert d.classify(s) is GpuState.OPTIMAL
    # Counting our own model as others' (what WDDM's missing per-process memory did) fails it.
    assert d.classify(Sample(0, int(7.2 * GiB), 8 * GiB, 30, own_vram=0)) is not GpuState.OPTIMAL


def test_min_interval_between_switches_but_not_for_overload() -> None:
    cfg = default_config()["gpu_monitoring"]
    cfg = {**cfg, "dwell_samples": 1, "min_switch_interval_s": 100}
    d = Decider(cfg, lambda profile, total: 0, "balanced")
    calm = (int(1 * GiB), 8 * GiB, 10)
    stressed = (int(7 * GiB), 8 * GiB, 95)
    full = (int(7.9 * GiB), 8 * GiB, 99)
    assert d.update(Sample(0, *calm)).profile == "performance"
    assert d.update(Sample(10, *stressed)) is None  # too soon after the last switch
    emergency = d.update(Sample(20, *full))
    assert emergency is not None and emergency.emergency and emergency.profile == "cpu_fallback"


@pytest.mark.parametrize(("thresholds", "needle"), [
    ({"optimal_gpu": 90}, "stressed_gpu' (80.0) must be above 'optimal_gpu' (90)"),
    ({"hysteresis": -1}, "'gpu_monitoring.thresholds.hysteresis' = -1 is out of range"),
    ({"stressed_gpu": "high"}, "'gpu_monitoring.thresholds.stressed_gpu' must be a number"),
])
def test_threshold_config_errors(thresholds: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate({"version": 1, "gpu_monitoring": {"thresholds": thresholds}}, [])
    assert needle in str(info.value)


def test_interval_floor() -> None:
    with pytest.raises(ConfigError, match="'gpu_monitoring.interval_s' = 0.1 is out of range"):
        validate({"version": 1, "gpu_monitoring": {"interval_s": 0.1}}, [])


def test_bad_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,vram_used_mb\n1,abc\n")
    with pytest.raises(ValueError, match="GPU trace line 2") as info:
        ReplaySource(bad)
    assert "vram_total_mb" in str(info.value)


def test_real_nvml_source_degrades_cleanly() -> None:
    source = NvmlSource()
    if source.available:  # on a machine with a driver it must read real numbers
        assert source.memory().total > 0 and source.read()["vram_total"] > 0
    else:
        assert "NVML unavailable" in source.reason and "driver" in source.reason
        assert source.memory() is None and source.own_vram(123) is None


def test_no_driver_path_in_the_stack(make_stack) -> None:
    if NvmlSource().available:
        pytest.skip("this machine has an NVIDIA driver; the no-driver path cannot be shown")
    stack = make_stack()
    stack.start(ready=False)
    c = stack.new_client()
    c.subscribe(["gpu_stats"])
    w = stack.wait_state("gpu_monitor", "RUNNING", 60)
    assert w["ready_info"]["gpu"] is False and "NVML" in w["ready_info"]["reason"]
    stack.wait_state("inference", "RUNNING", 60)
    assert stack.client.request("chat", {"text": "Hi", "max_tokens": 4},
                                timeout=60).type == "chat_done"
    log = stack.client.request("logs", {"worker": "gpu_monitor", "lines": 50}).data["lines"]
    assert sum("NVML unavailable" in line for line in log) == 1  # said once, then quiet
    c.close()


def test_replay_drives_real_profile_switches(make_stack, tmp_path: Path) -> None:
    # The overload's profile reloads on any build (a CPU-only build runs every GPU profile as
    # cpu_fallback, and a switch between those reloads nothing).
    gm = {"interval_s": 0.5, "min_switch_interval_s": 5.0,
          "history_file": str(tmp_path / "history.csv"),
          "state_profiles": {"OVERLOADED": RELOAD_PROFILE}}
    stack = make_stack(gpu_monitoring=gm, ai={"gpu_profile": "auto"})
    stack.start("--gpu-trace", str(TRACES / "game_started.csv"), ready=False)
    c = stack.new_client()
    c.subscribe(["auto_switch", "profile_status"])
    stack.wait_state("unity_bridge", "RUNNING", 60)
    bridge_pid = stack.worker("unity_bridge")["pid"]
    first = stack.wait_state("inference", "RUNNING", 60)["ready_info"]
    # auto ran as cpu_fallback: then `performance` is already in effect, and only the switches
    # to and from the overload's profile reload.
    reloads = 2 if "performance" in first["equivalent_profiles"] else 3
    switches, ready = [], []
    deadline = time.monotonic() + 90
    while len(switches) < 3 or not ready or ready[-1] != "performance":
        ev = c.recv_event(deadline - time.monotonic())
        if ev.type == "auto_switch":
            switches.append((ev.data["profile"], ev.data["emergency"]))
        elif ev.data["state"] == "ready":
            ready.append(ev.data["requested"])
    assert switches == [("performance", False), (RELOAD_PROFILE, True),
                        ("performance", False)]
    # On a slow machine a switch may supersede one whose model was still loading; the
    # switches that completed came in order and the last one is in effect.
    assert ready in (["performance", RELOAD_PROFILE, "performance"],
                     [RELOAD_PROFILE, "performance"], ["performance", "performance"],
                     ["performance"]), ready
    inference = stack.worker("inference")
    log = stack.client.request("logs", {"worker": "inference", "lines": 80}).data["lines"]
    assert inference["restarts"] == reloads, (inference, log)
    assert inference["last_exit"].startswith("stopped (restart)"), inference
    assert stack.worker("unity_bridge")["pid"] == bridge_pid  # only inference restarted
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert rows[0].startswith("timestamp,vram_used_mb") and len(rows) > 20
    assert any(",OVERLOADED," in r for r in rows)
    c.close()


def test_history_rotates(tmp_path: Path) -> None:
    from workers.gpu_monitor.history import History

    h = History(tmp_path / "h.csv", max_bytes=1024, backups=2)
    reading = ReplaySource(TRACES / "stream_4k.csv").read()
    for i in range(200):  # each row told apart by its vram_used
        h.append({**reading, "vram_used": i << 20}, "OPTIMAL", "performance")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["h.csv", "h.csv.1", "h.csv.2"]
    assert all(p.stat().st_size <= 1200 for p in tmp_path.iterdir())
    # Each file reads back as a trace of its own (header first), oldest in .2, and the rows
    # kept are the newest ones, in order, none lost between files.
    kept = [row["vram_used"] >> 20 for name in ("h.csv.2", "h.csv.1", "h.csv")
            for row in ReplaySource(tmp_path / name).rows]
    assert kept == list(range(200 - len(kept), 200)) and len(kept) > 20, kept
