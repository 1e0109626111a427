"""Checkpoints: atomic writes, loaded with ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path

import torch

from data_builders.errors import HybridRecError
from hybridrec.atomic import atomic_path


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickled code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise HybridRecError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # a truncated or foreign file
        raise HybridRecError(f"{path}: not a readable checkpoint ({err})") from None
