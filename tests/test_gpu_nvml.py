"""NvmlSource against the failures NVML really raises, through a stand-in pynvml module.

No GPU here: the stand-in raises what nvidia-ml-py raises (NVMLError_NotSupported on a MIG
parent, NVMLError_GpuIsLost after a driver reset, NVMLLibraryMismatchError, which is not an
NVMLError, from the unversioned process call on old drivers) and gives None for per-process
memory as pynvml does under Windows WDDM.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from workers.gpu.sources import NvmlSource

GiB = 1 << 30


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's names)
    pass


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    pass


class NVMLLibraryMismatchError(Exception):
    pass


class FakeNvml(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("pynvml")
        self.NVMLError = NVMLError
        self.NVML_TEMPERATURE_GPU = 0
        self.inits = 0
        self.lost_reads = 0  # memory reads that raise GpuIsLost
        self.per_process: int | None = 3 * GiB  # None: WDDM
        self.by: list[str] = []

    def nvmlInit(self) -> None:  # noqa: N802
        self.inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:  # noqa: N802
        self.by.append(f"index {i}")
        return f"h{i}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:  # noqa: N802
        self.by.append(uuid)
        return uuid

    def nvmlDeviceGetName(self, h: str) -> bytes:  # noqa: N802
        return b"Fake RTX"

    def nvmlDeviceGetUUID(self, h: str) -> str:  # noqa: N802
        return "GPU-1234"

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:  # noqa: N802
        if self.lost_reads:
            self.lost_reads -= 1
            raise NVMLError_GpuIsLost("GPU is lost")
        return SimpleNamespace(total=8 * GiB, free=3 * GiB, used=5 * GiB)

    def nvmlDeviceGetUtilizationRates(self, h: str) -> SimpleNamespace:  # noqa: N802
        raise NVMLError_NotSupported("Not Supported")  # a MIG parent

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:  # noqa: N802
        return 42_000

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:  # noqa: N802
        return 61

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list:  # noqa: N802
        raise NVMLLibraryMismatchError("Unversioned function called and the pyNVML version "
                                       "does not match the NVML lib version")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h: str) -> list:  # noqa: N802
        return [SimpleNamespace(pid=77, usedGpuMemory=self.per_process),
                SimpleNamespace(pid=5, usedGpuMemory=GiB)]


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield fake


def test_an_unsupported_metric_is_none_and_the_rest_still_reads(nvml: FakeNvml) -> None:
    r = NvmlSource().read(own_pid=77)
    assert r["available"] and r["vram_used"] == 5 * GiB and r["power_w"] == 42.0
    assert r["gpu_percent"] is None and r["temperature_c"] == 61
    assert r["own_vram"] == 3 * GiB  # through _v2 after the unversioned call's mismatch


def test_wddm_per_process_memory_is_unknown_not_zero(nvml: FakeNvml) -> None:
    nvml.per_process = None
    assert NvmlSource().own_vram(77) is None


def test_a_lost_gpu_is_started_again(nvml: FakeNvml) -> None:
    src = NvmlSource()
    nvml.lost_reads = 1
    first = src.read()
    assert first["available"] is False and "lost" in first["reason"]
    again = src.read()
    assert again["available"] and again["vram_total"] == 8 * GiB and nvml.inits == 2


def test_the_device_is_the_one_cuda_uses(nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abcd,GPU-ef01")
    NvmlSource()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    NvmlSource()
    assert nvml.by == ["GPU-abcd", "index 1"]
