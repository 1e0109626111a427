"""A :class:`~hybridrec.recommender.HybridRecommender` from a TOML file (``hybridrec train --config``)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from hybridrec.errors import HybridRecError
from hybridrec.recommender import HybridRecommender
from hybridrec.toml_config import tomllib
from training.config import TrainConfig


def hybrid_from_config(path: str | Path | None = None, **overrides) -> HybridRecommender:
    """A :class:`HybridRecommender` from a TOML file's ``[train]`` (every
    :class:`training.config.TrainConfig` field) and ``[model]`` tables, plus keyword ``overrides``.

    Raises:
        HybridRecError: naming the file and key for a syntax error, an unknown key or a mistyped value.
    """
    params: dict = {}
    if path is not None:
        train = dataclasses.asdict(TrainConfig.from_toml(path))
        with open(path, "rb") as handle:
            model_table = tomllib.load(handle).get("model", {})
        known = set(inspect.signature(HybridRecommender.__init__).parameters) - {"self"}
        unknown = sorted(set(model_table) - known)
        if unknown:
            raise HybridRecError(f"{path}: unknown [model] key(s) {unknown}; known: {sorted(known)}")
        params = {**train, **model_table}
    params.update(overrides)
    return HybridRecommender(**params)
