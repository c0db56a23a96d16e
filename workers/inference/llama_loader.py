"""Opening a GGUF with llama-cpp-python, with the workarounds its builds need.

llama.cpp's CPU backend repacks weights into "extra buffer types" for AMX when the build
machine's CPU has AMX; on such CPUs (Intel Xeon Sapphire Rapids and later) decoding a prompt of
more than one token then segfaults in 0.3.36. `Llama()` does not expose the switch, so the
default model params are swapped for the duration of the load only.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("inference.loader")


def cpu_has_amx() -> bool:
    if not sys.platform.startswith("linux"):
        return False  # AMX exists only on server Xeons; their users run Linux
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@contextlib.contextmanager
def _extra_buffers(enabled: bool) -> Iterator[None]:
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp
    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = enabled
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def open_model(path: Path, **params: Any) -> Any:
    """Load `path` with Llama(**params); raises ValueError/RuntimeError on a bad file."""
    from llama_cpp import Llama

    repack = not cpu_has_amx()
    if not repack:
        log.info("CPU has AMX: weight repacking off (llama.cpp crashes with it on AMX)")
    with _extra_buffers(repack):
        return Llama(model_path=str(path), **params)
