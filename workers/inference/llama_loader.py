"""Opening a GGUF with llama-cpp-python, with the workarounds its builds need.

llama.cpp's CPU backend repacks weights into "extra buffer types" for AMX when the build
machine's CPU has AMX; on such CPUs (Intel Xeon Sapphire Rapids and later) decoding a prompt of
more than one token then segfaults in 0.3.36. `Llama()` does not expose the switch, nor
llama.cpp's load progress callback, so the default model params it starts from are swapped for
the duration of the load only.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("inference.loader")


_NOT_GPU = ("base", "cpu", "blas", "rpc")  # ggml backends that are no GPU


def build_gpu_backends() -> list[str]:
    """GPU backends this llama-cpp-python build ships (cuda, vulkan, hip, metal, sycl...),
    read from its library files: asking llama.cpp (llama_supports_gpu_offload) starts CUDA in
    this process, which a process meant to stay off the GPU must not do. Metal is built into
    libggml on macOS wheels, so there it asks llama.cpp, which costs nothing on a Mac."""
    try:
        import llama_cpp
    except (ImportError, OSError):
        return []
    lib = Path(llama_cpp.__file__).parent / "lib"
    found = set()
    for f in lib.glob("*ggml-*"):
        name = f.name.split("ggml-", 1)[1].split(".", 1)[0].lower()
        if name and name not in _NOT_GPU:
            found.add(name)
    if not found and sys.platform == "darwin":
        return ["metal"] if llama_cpp.llama_supports_gpu_offload() else []
    return sorted(found)


def cpu_has_amx() -> bool:
    if not sys.platform.startswith("linux"):
        return False  # AMX exists only on server Xeons; their users run Linux
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _c_progress(lib: Any, on_progress: Callable[[float], None]) -> Any:
    """llama.cpp's progress callback: it aborts the load when the callback returns false, and
    ctypes returns false when Python raises, so a failed report must never escape."""
    def report(fraction: float, _user_data: Any) -> bool:
        try:
            on_progress(fraction)
        except Exception:
            log.exception("reporting load progress failed; the load goes on")
        return True

    return lib.llama_progress_callback(report)


@contextlib.contextmanager
def _load_params(repack: bool, on_progress: Callable[[float], None] | None) -> Iterator[Any]:
    """Patch the params Llama() starts from; yields the C callback, to keep it alive."""
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp
    original = lib.llama_model_default_params
    callback = _c_progress(lib, on_progress) if on_progress is not None else None

    def params() -> Any:
        p = original()
        p.use_extra_bufts = repack
        if callback is not None:
            p.progress_callback = callback
        return p

    lib.llama_model_default_params = params
    try:
        yield callback
    finally:
        lib.llama_model_default_params = original


def open_model(path: Path, on_progress: Callable[[float], None] | None = None,
               **params: Any) -> Any:
    """Load `path` with Llama(**params); raises ValueError/RuntimeError on a bad file.

    `on_progress` gets llama.cpp's own fraction of the weights loaded (0..1), on the loading
    thread, as often as llama.cpp reports it (once per tensor): throttle it.
    """
    from llama_cpp import Llama

    repack = not cpu_has_amx()
    if not repack:
        log.info("CPU has AMX: weight repacking off (llama.cpp crashes with it on AMX)")
    with _load_params(repack, on_progress) as callback:
        llm = Llama(model_path=str(path), **params)
    llm._load_progress_callback = callback  # its params still point at it
    return llm
