"""Most-popular baseline: every user gets the items with the most training users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hybridrec.recommender_base import RecommenderBase


class PopularityRecommender(RecommenderBase):
    """Scores each item by its number of distinct training users (or summed weights).

    Args:
        use_weights: sum interaction weights instead of counting users.

    Learned attributes:
        item_popularity_ (torch.Tensor): ``[n_items]`` float32 scores (0 for cold items).
    """

    def __init__(self, *, use_weights: bool = False) -> None:
        self.use_weights = use_weights

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
        matrix = self.user_items_ if self.use_weights else (self.user_items_ > 0)
        self.item_popularity_ = torch.from_numpy(np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel())

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        """The same popularity row for every user: ``[b]`` -> ``[b, n_items]``."""
        return self.item_popularity_.expand(len(user_index), -1)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"item_popularity": self.item_popularity_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_state(state, {"item_popularity": ("items",)})
        self.item_popularity_ = state["item_popularity"]
