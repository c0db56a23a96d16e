"""What a GGUF file says about the model's shape and size, read without loading it.

The `gguf` package builds numpy views of every field (about 2 s for a tokenizer of 50k
entries); planning a profile needs only a few numbers, so this reads the header directly from a
memory map: metadata key/values (the tokenizer's arrays skipped), then tensor infos, whose
offsets give each tensor's size.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_LAYER = re.compile(r"^blk\.(\d+)\.")


class GGUFError(ValueError):
    pass


@dataclass
class ModelInfo:
    path: Path
    arch: str
    name: str
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_ctx_train: int
    file_bytes: int
    layer_bytes: list[int] = field(default_factory=list)  # weights of each repeating block
    other_bytes: int = 0  # embeddings, output head, norms
    embd_bytes: int = 0  # token_embd: llama.cpp keeps the input embedding on the CPU
    output_bytes: int = 0  # output head + output_norm (the tied embedding when no output.weight)
    key_length: int = 0  # {arch}.attention.key_length; 0: n_embd / n_head
    value_length: int = 0
    head_kv_per_layer: list[int] = field(default_factory=list)  # when the GGUF gives an array
    n_ff: int = 0  # feed-forward width (the largest, when per layer)

    @property
    def head_dim(self) -> int:
        return self.n_embd // max(self.n_head, 1)

    @property
    def head_dim_k(self) -> int:
        return self.key_length or self.head_dim

    @property
    def head_dim_v(self) -> int:
        return self.value_length or self.head_dim

    def kv_heads(self, layer: int) -> int:
        """KV heads of one block (some models vary them per layer, e.g. OpenELM)."""
        if self.head_kv_per_layer and layer < len(self.head_kv_per_layer):
            return self.head_kv_per_layer[layer]
        return self.n_head_kv

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "layers": self.n_layers,
                "n_embd": self.n_embd, "n_ctx_train": self.n_ctx_train,
                "file_mb": round(self.file_bytes / 2**20, 1),
                "layer_mb": round(sum(self.layer_bytes) / max(len(self.layer_bytes), 1) / 2**20,
                                  2)}


class _Cursor:
    """Reads little-endian values from a memory map; much faster than file reads per field."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def read(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError("file ends inside the header")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        n = self.read("<Q")
        if n > 1 << 24 or self.pos + n > len(self.buf):
            raise GGUFError("implausible string length in the header")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos]).decode("utf-8", "replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, unpack = self.buf, self.pos, struct.unpack_from
        for _ in range(count):
            pos += 8 + unpack("<Q", buf, pos)[0]
        if pos > len(buf):
            raise GGUFError("file ends inside the header")
        self.pos = pos

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.read(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, n = self.read("<I"), self.read("<Q")
            # An array not kept (the tokenizer's) is skipped and stands for its length.
            if not keep and itype in _SCALARS:
                self.pos += n * struct.calcsize(_SCALARS[itype])
                return n
            if not keep and itype == _STRING:
                self.skip_strings(n)
                return n
            items = [self.value(itype, keep) for _ in range(n)]
            return items if keep else n
        raise GGUFError(f"unknown metadata value type {vtype}")


def read_model_info(path: Path) -> ModelInfo:
    """Parse the header; GGUFError (a ValueError) when it is not a GGUF file."""
    file_bytes = path.stat().st_size
    if file_bytes < 24:
        raise GGUFError(f"{path} is not a GGUF file (too short)")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        c = _Cursor(buf)
        if buf[:4] != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (bad magic)")
        c.pos = 4
        version = c.read("<I")
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is too old")
        n_tensors, n_kv = c.read("<Q"), c.read("<Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = c.string()
            meta[key] = c.value(c.read("<I"), keep=not key.startswith("tokenizer."))
        tensors: list[tuple[str, int]] = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.read("<I")
            c.pos += 8 * n_dims + 4  # dims, type
            tensors.append((name, c.read("<Q")))
        align = int(meta.get("general.alignment", 32))
        data_start = (c.pos + align - 1) // align * align
    arch = meta.get("general.architecture", "")

    def arch_list(suffix: str, default: int = 0) -> list[int]:
        """A key that may be one number or one per layer (an array), as ints."""
        raw = meta.get(f"{arch}.{suffix}", default)
        values = raw if isinstance(raw, list) else [raw]
        try:
            return [int(v) for v in values] or [default]
        except (TypeError, ValueError):
            raise GGUFError(f"{path}: {arch}.{suffix} is {raw!r}, not a number or an array of "
                            f"numbers") from None

    def arch_key(suffix: str, default: int = 0) -> int:
        return max(arch_list(suffix, default))

    n_layers = arch_key("block_count")
    if not n_layers:
        raise GGUFError(f"{path}: no {arch}.block_count in the metadata")
    n_vocab = arch_key("vocab_size") or int(meta.get("tokenizer.ggml.tokens") or 0)
    offsets = sorted(tensors, key=lambda t: t[1])
    layer_bytes = [0] * n_layers
    other = 0
    named: dict[str, int] = {}
    for i, (name, off) in enumerate(offsets):
        end = offsets[i + 1][1] if i + 1 < len(offsets) else file_bytes - data_start
        size = end - off
        m = _LAYER.match(name)
        if m and int(m.group(1)) < n_layers:
            layer_bytes[int(m.group(1))] += size
        else:
            other += size
            named[name] = size
    embd = named.get("token_embd.weight", 0)
    # No output.weight: llama.cpp duplicates the (tied) input embedding as the output head.
    output = named.get("output.weight", embd) + named.get("output_norm.weight", 0)
    n_head = arch_key("attention.head_count", 1)
    kv_list = arch_list("attention.head_count_kv", n_head)
    return ModelInfo(path=path, arch=arch, name=str(meta.get("general.name", path.stem)),
                     n_layers=n_layers, n_embd=arch_key("embedding_length"), n_head=n_head,
                     n_head_kv=max(kv_list), n_vocab=n_vocab,
                     n_ctx_train=arch_key("context_length", 2048), file_bytes=file_bytes,
                     layer_bytes=layer_bytes, other_bytes=other, embd_bytes=embd,
                     output_bytes=output, key_length=arch_key("attention.key_length"),
                     value_length=arch_key("attention.value_length"),
                     head_kv_per_layer=kv_list if len(kv_list) > 1 else [],
                     n_ff=arch_key("feed_forward_length"))


def gguf_problem(path: Path) -> str:
    """Why `path` cannot be loaded as a model, or "": its header read as the worker will, so a
    bad pick is refused before anything stops (the supervisor and the panel both ask)."""
    if not path.is_file():
        return f"{path}: no such file"
    try:
        info = read_model_info(path)
    except (OSError, ValueError) as exc:  # GGUFError is a ValueError
        return f"{path.name} is not a usable GGUF file ({exc})"
    if not info.n_layers:
        return f"{path.name}: a GGUF file without transformer layers"
    return ""
