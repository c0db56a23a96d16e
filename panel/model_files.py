"""GGUF files for the model picker: those in models/."""

from __future__ import annotations

from pathlib import Path

from supervisor.config import REPO_ROOT

MODELS_DIR = REPO_ROOT / "models"


def found_models(folder: Path = MODELS_DIR) -> list[Path]:
    """The .gguf files in `folder` (links included: the embedded model is one)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.gguf") if p.is_file())
