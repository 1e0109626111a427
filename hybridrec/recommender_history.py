"""Recommendations for an anonymous or brand-new user from a few item ids: ``model.recommend_for_history(item_ids)``.

A mixin of :class:`hybridrec.recommender.HybridRecommender`: the history is scored by the same
fused score as a known user's (:meth:`HybridRecommender._fused`), with the GNN user embedding
rebuilt from the stored per-layer item embeddings, so nothing is retrained.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from hybridrec.recommender_base import top_k_frame
from hybridrec.topk import ranked_top_k


class HybridHistory:
    """:meth:`recommend_for_history` of :class:`~hybridrec.recommender.HybridRecommender`."""

    def recommend_for_history(self, item_ids: Iterable, k: int = 20, filter_seen: bool = True,
                              candidates: Iterable | None = None, exclude: Iterable | None = None) -> pd.DataFrame:
        """Recommend for an anonymous or brand-new user from a few item ids, without retraining.

        The CF head scores the history directly; the GNN user embedding is rebuilt by LightGCN's
        propagation rule from the stored per-layer item embeddings.

        Returns:
            DataFrame with columns item_id, score, rank.
        """
        self._check_fitted()
        item_index = self.item_ids_.to_index(list(item_ids))
        history = torch.zeros(1, len(self.item_ids_))
        history[0, torch.from_numpy(item_index)] = 1.0
        user_embedding = None
        if self.item_embeddings_ is not None:
            norm = history[0] / (history[0].sum().clamp(min=1).sqrt() * self.item_degree_.clamp(min=1).sqrt())
            layers = [torch.zeros(self.item_embeddings_.shape[1])]
            for layer in range(1, self.item_layers_.shape[0]):
                layers.append(norm @ self.item_layers_[layer - 1])
            user_embedding = torch.stack(layers).mean(dim=0, keepdim=True)
        scores = self._fused(history, user_embedding)
        if filter_seen:
            scores[history > 0] = -torch.inf
        allowed = self.item_mask(candidates, exclude)
        if allowed is not None:
            scores[:, ~allowed] = -torch.inf
        values, indices = ranked_top_k(scores, k)
        frame = top_k_frame(values, indices, np.array(["history"], dtype=object), self.item_ids_, "user_id", "item_id")
        return frame.drop(columns=["user_id"])
