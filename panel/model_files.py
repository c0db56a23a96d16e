"""GGUF files for the model picker: those in models/, and a check before anything is asked."""

from __future__ import annotations

from pathlib import Path

from supervisor.config import REPO_ROOT
from workers.gpu.gguf_info import GGUFError, read_model_info

MODELS_DIR = REPO_ROOT / "models"


def found_models(folder: Path = MODELS_DIR) -> list[Path]:
    """The .gguf files in `folder` (links included: the embedded model is one)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.gguf") if p.is_file())


def gguf_problem(path: Path) -> str:
    """Why `path` is not a model to load, or ""; the supervisor checks again on its side."""
    if not path.is_file():
        return f"{path}: no such file"
    try:
        info = read_model_info(path)
    except (GGUFError, OSError, ValueError) as exc:
        return f"{path.name} is not a usable GGUF file ({exc})"
    if not info.n_layers:
        return f"{path.name}: a GGUF file without transformer layers"
    return ""
