"""Which torch device to run on: one rule for encoders, top-k search and training."""

from __future__ import annotations

import torch

from hybridrec.errors import HybridRecError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> the GPU when present, else the CPU; anything else is checked and returned.

    Raises:
        HybridRecError: a CUDA device was asked for on a machine without one, or an unknown name.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise HybridRecError(f"unknown device {device!r}: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise HybridRecError(f"device {device!r} asked for, but no CUDA GPU is available; use 'cpu' or 'auto'")
    return resolved
