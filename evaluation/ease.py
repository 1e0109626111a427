"""EASE baseline: the plain closed-form item–item model (Steck 2019), the strongest warm peer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hybridrec.models.ease import fit_ease
from hybridrec.recommender_base import RecommenderBase


class EASERecommender(RecommenderBase):
    """Scores ``x_u B`` with ``B`` the EASE weights of the binarised training matrix.

    Args:
        l2: ridge strength λ.

    Learned attributes:
        item_weights_ (torch.Tensor): ``[n_items, n_items]`` (zero columns for cold items).
    """

    def __init__(self, *, l2: float = 250.0) -> None:
        self.l2 = l2

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
        binary = (self.user_items_ > 0).astype(np.float32)
        self.item_weights_ = torch.from_numpy(fit_ease(binary, self.l2, item_power=0.0, user_power=0.0))

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        history = torch.from_numpy((self.user_items_[np.asarray(user_index)].toarray() > 0).astype(np.float32))
        return history @ self.item_weights_

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(np.asarray(item_index))
        return (self.item_weights_[index] + self.item_weights_[:, index].T) / 2

    def _state(self) -> dict[str, torch.Tensor]:
        return {"item_weights": self.item_weights_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_state(state, {"item_weights": ("items", "items")})
        self.item_weights_ = state["item_weights"]
