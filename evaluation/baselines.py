"""The baselines by name, as the CLI and the protocol ask for them."""

from __future__ import annotations

from evaluation.ease import EASERecommender
from evaluation.item_knn import ItemKNNRecommender
from evaluation.matrix_factorization import BPRMFRecommender
from evaluation.popularity import PopularityRecommender
from hybridrec.errors import HybridRecError
from hybridrec.recommender_base import RecommenderBase

BASELINES: dict[str, type[RecommenderBase]] = {
    "popularity": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "mf": BPRMFRecommender,
    "ease": EASERecommender,
}


def make_baseline(name: str, **params) -> RecommenderBase:
    """A fresh, unfitted baseline ``name`` (see :data:`BASELINES`) built with ``params``."""
    if name not in BASELINES:
        raise HybridRecError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[name](**params)
