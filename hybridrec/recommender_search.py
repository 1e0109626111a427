"""Free-text query search of the fitted hybrid: ``model.search("red running shoes", k=20, user_id=None)``.

A mixin of :class:`hybridrec.recommender.HybridRecommender`. At ``fit`` (cooperatively: the
estimator's ``fit`` reaches :meth:`HybridSearch.fit` through ``super()``) the item text columns and
photos are read again from the feature cache the fit filled, and a
:class:`~hybridrec.features.query_search.QuerySearchIndex` is built: the items' text embeddings,
their photos in the text–image CCA space and their colour histograms. ``save`` writes it to the
``search_index/`` folder of the model directory and ``HybridRecommender.load`` reads it back, so a
loaded model searches offline with the encoder it was fitted with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hybridrec.errors import HybridRecError
from hybridrec.features.query_search import QuerySearchIndex, build_search_index
from hybridrec.recommender_base import _as_array, top_k_frame
from hybridrec.topk import ranked_top_k

logger = logging.getLogger(__name__)

#: Folder of the search index inside a saved model directory.
SEARCH_INDEX_DIR = "search_index"


def ranked_search_frame(index: QuerySearchIndex, query: str, k: int, extra: dict[str, torch.Tensor] | None = None
                        ) -> pd.DataFrame:
    """Top-``k`` items of ``index`` for ``query``: DataFrame with columns query, item_id, score, rank.

    Raises:
        HybridRecError: an empty query, or ``k`` outside ``1 .. n_items``.
    """
    if not isinstance(query, str) or not query.strip():
        raise HybridRecError(f"query must be a non-empty text, got {query!r}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(index):
        raise HybridRecError(f"k must be an integer in 1..{len(index)} (the number of items), got {k!r}")
    values, indices = ranked_top_k(index.score(query, extra=extra)[None], int(k))
    return top_k_frame(values, indices, np.array([query], dtype=object), index.item_ids, "query", "item_id")


class HybridSearch:
    """Query search methods of :class:`~hybridrec.recommender.HybridRecommender` (see the module docstring)."""

    #: Weight of the user's fused score in a personalised search, as a share of one content channel.
    search_user_weight = 1.0

    def fit(self, interactions, items=None, users=None):
        """Fit (the estimator's own ``fit`` calls this through ``super()``), then build the search index."""
        super().fit(interactions, items, users)
        self.search_index_ = None
        options = getattr(self, "_fit_options", {})
        text_cols = list(options.get("text_cols") or [])
        if items is not None and text_cols:
            from hybridrec.item_content import default_feature_cache

            self.search_index_ = build_search_index(
                items, text_columns=text_cols, image_column=options.get("image_col"), item_ids=self.item_ids_,
                cache_dir=self.feature_cache_dir or default_feature_cache(), text_encoder=self.text_encoder,
                image_encoder=self.image_encoder, seed=self.seed, device=self.device, progress=self.progress)
        return self

    def search(self, query: str, k: int = 20, user_id=None) -> pd.DataFrame:
        """Rank items for a free-text query, optionally personalised for a user.

        Args:
            query: what a shopper typed, e.g. ``"red running shoes"``.
            k: results wanted, ``1 .. n_items``.
            user_id: a known user: their fused recommendation score joins the query's channels
                (weight :attr:`search_user_weight`), so among matching items theirs come first.

        Returns:
            DataFrame with columns query, item_id, score, rank (1-based), best first.

        Raises:
            HybridRecError: model not fitted, fitted without item text, empty query, ``k`` out of
                range, unknown ``user_id``.
        """
        self._check_fitted()
        index = getattr(self, "search_index_", None)
        if index is None:
            raise HybridRecError("this model has no search index: it was fitted without item text columns "
                                 "(fit with items and item_text_cols) or loaded from a folder without "
                                 f"{SEARCH_INDEX_DIR}/")
        extra = None
        if user_id is not None:
            user_index = self.user_ids_.to_index(_as_array(user_id))
            extra = {"user": self.search_user_weight * self.score_users(user_index)[0].float()}
        return ranked_search_frame(index, query, k, extra)

    def save(self, path, *, overwrite: bool = True, extra_files=None):
        """Save the model (see ``RecommenderBase.save``), with its search index in ``search_index/``.

        The index is written inside the model's scratch folder before that folder is moved into
        place, so model and index appear together.
        """
        index = getattr(self, "search_index_", None)
        if index is None:
            return super().save(path, overwrite=overwrite, extra_files=extra_files)
        from hybridrec.atomic import atomic_path
        from hybridrec.recommender_base import MODEL_FOLDER

        self._check_fitted()
        with atomic_path(path, kind=MODEL_FOLDER, overwrite=overwrite) as tmp:
            super().save(tmp, overwrite=False, extra_files=extra_files)
            index.save(tmp / SEARCH_INDEX_DIR, overwrite=False)
        return Path(path)

    @classmethod
    def load(cls, path):
        """Load a saved model (see ``RecommenderBase.load``) and its search index when it has one."""
        model = super().load(path)
        folder = Path(path) / SEARCH_INDEX_DIR
        model.search_index_ = QuerySearchIndex.load(folder) if folder.is_dir() else None
        return model
