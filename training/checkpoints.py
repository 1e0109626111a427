"""Checkpoints: atomic writes, loaded with ``torch.load(weights_only=True)``, and the check that a
checkpoint belongs to the run about to resume from it (same training config, same training data)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from hybridrec.atomic import atomic_path
from hybridrec.errors import HybridRecError, located


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickled code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise HybridRecError(f"{path}: checkpoint not found")
    return _torch_load(path, path)


def read_checkpoint_bytes(payload: bytes, path: str | Path) -> dict:
    """A checkpoint from the bytes of the file at ``path`` (read elsewhere, e.g. by rank 0 of a
    torch.distributed group and broadcast); ``path`` names it in errors."""
    return _torch_load(io.BytesIO(payload), Path(path))


def _torch_load(source: Path | io.BytesIO, path: Path):
    try:
        return torch.load(source, weights_only=True, map_location="cpu")
    except Exception as err:  # a truncated or foreign file
        raise HybridRecError(f"{path}: not a readable checkpoint ({err})") from None


#: What to do about a checkpoint that does not belong to this run, for every refusal.
FRESH_HINT = "remove it, or pass --fresh-checkpoint (fresh_checkpoint=True) to start afresh and replace it"

#: Fingerprint fields, in the order a difference is reported, with their names for people.
_FINGERPRINT_FIELDS = {
    "format": "fingerprint format", "num_users": "users", "num_items": "items",
    "num_attribute_nodes": "attribute nodes",
    "train_interactions": "training interactions", "valid_interactions": "validation interactions",
    "edges": "graph edges", "content_dims": "content blocks/dims",
    "interactions_sha256": "interaction and edge contents", "content_sha256": "content feature values",
}

#: Entries :func:`check_resumable` needs before a trainer may read the checkpoint.
_REQUIRED = ("config", "epoch", "stale", "model", "optimizer", "best_state", "best_score", "best_epoch",
             "history", "generator", "torch_rng")


def describe_fingerprint(fingerprint: dict) -> str:
    """One line for people: ``"55,375 training interactions over 943 users x 1,682 items (...)"``."""
    dims = fingerprint.get("content_dims") or {}
    content = ", ".join(f"{name} {dim}" for name, dim in sorted(dims.items())) or "none"
    return (f"{fingerprint.get('train_interactions', 0):,} training interactions over "
            f"{fingerprint.get('num_users', 0):,} users x {fingerprint.get('num_items', 0):,} items "
            f"({fingerprint.get('valid_interactions', 0):,} validation interactions, "
            f"{fingerprint.get('num_attribute_nodes', 0):,} attribute nodes, {fingerprint.get('edges', 0):,} "
            f"graph edges; content dims: {content})")


def check_resumable(path: str | Path, state: object, *, config: dict, fingerprint: dict) -> None:
    """Raise :class:`HybridRecError` unless checkpoint ``state`` read from ``path`` was written by a
    run with this training ``config`` and this training data ``fingerprint``.

    Args:
        path: the checkpoint file (named in every message).
        state: what :func:`load_checkpoint` returned.
        config: ``TrainConfig.to_dict()`` of this run.
        fingerprint: ``GraphTrainingData.fingerprint()`` of this run's data.
    """
    if not isinstance(state, dict):
        raise HybridRecError(located(f"not a training checkpoint (holds a {type(state).__name__}); {FRESH_HINT}",
                                     file=path))
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise HybridRecError(located(f"not a complete training checkpoint (no {', '.join(missing)}); {FRESH_HINT}",
                                     file=path))
    written = state["config"]
    if written != config:
        written = written if isinstance(written, dict) else {}
        changed = [f"{key} {written.get(key, '<unset>')!r} -> {config.get(key, '<unset>')!r}"
                   for key in sorted(set(written) | set(config)) if written.get(key) != config.get(key)]
        raise HybridRecError(located(f"checkpoint was written with another training config ({', '.join(changed)}); "
                                     f"{FRESH_HINT}", file=path))
    recorded = state.get("data_fingerprint")
    if not isinstance(recorded, dict):
        raise HybridRecError(located("checkpoint records no training-data fingerprint (written by an older "
                                     "hybridrec), so it cannot be checked against this run's data; " + FRESH_HINT,
                                     file=path))
    if recorded != fingerprint:
        differs = [label for key, label in _FINGERPRINT_FIELDS.items() if recorded.get(key) != fingerprint.get(key)]
        differs += sorted(set(recorded) ^ set(fingerprint))
        raise HybridRecError(located(
            f"checkpoint was written for {describe_fingerprint(recorded)}; this run has "
            f"{describe_fingerprint(fingerprint)}; they differ in {', '.join(differs)}: {FRESH_HINT}", file=path))
