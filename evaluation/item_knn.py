"""Item-kNN baseline: cosine similarity between items' user columns, with optional shrinkage
and top-neighbour pruning; a user's score for item ``j`` is ``sum_i x_ui * sim(i, j)``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from hybridrec.errors import HybridRecError
from hybridrec.model_loading import coo_from_state
from hybridrec.recommender_base import RecommenderBase
from hybridrec.topk import ranked_top_k

logger = logging.getLogger(__name__)


class ItemKNNRecommender(RecommenderBase):
    """Cosine item-item neighbourhood model.

    ``sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrinkage)`` over the items' columns of the
    training matrix (binary by default), the diagonal set to 0.

    Args:
        n_neighbors: keep each item's ``n_neighbors`` most similar items (None: keep all).
        shrinkage: added to the cosine denominator; damps similarities built on few users.
        binary: use 1 for every interaction instead of its weight.

    Learned attributes:
        similarity_ (scipy.sparse.csr_matrix): ``[n_items, n_items]``, row ``i`` = ``i``'s neighbours.
    """

    #: Items per block when computing similarities; bounds memory at ``block x n_items`` floats.
    similarity_block_size = 2048

    def __init__(self, *, n_neighbors: int | None = 100, shrinkage: float = 0.0, binary: bool = True) -> None:
        self.n_neighbors = n_neighbors
        self.shrinkage = shrinkage
        self.binary = binary

    def _check_params(self) -> None:
        """``n_neighbors`` >= 1 or None, ``shrinkage`` >= 0."""
        if self.n_neighbors is not None and self.n_neighbors < 1:
            raise HybridRecError(f"ItemKNNRecommender.n_neighbors must be >= 1 or None, got {self.n_neighbors}")
        if self.shrinkage < 0:
            raise HybridRecError(f"ItemKNNRecommender.shrinkage must be >= 0, got {self.shrinkage}")

    def _user_rows(self, user_index: np.ndarray | None = None) -> sp.csr_matrix:
        """Training rows ``[b, n_items]`` (all users when ``user_index`` is None), binarised if asked."""
        matrix = self.user_items_ if user_index is None else self.user_items_[np.asarray(user_index, dtype=np.int64)]
        matrix = (matrix > 0) if self.binary else matrix
        return matrix.astype(np.float32).tocsr()

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
        user_items = self._user_rows()
        item_users = user_items.T.tocsr()
        norms = np.sqrt(np.asarray(user_items.multiply(user_items).sum(axis=0), dtype=np.float64).ravel())
        n_items = user_items.shape[1]
        keep = n_items if self.n_neighbors is None else min(self.n_neighbors, n_items)
        rows, cols, values = [], [], []
        blocks = range(0, n_items, self.similarity_block_size)
        for start in tqdm(blocks, desc="item-kNN similarities", disable=len(blocks) < 4, leave=False):
            stop = min(start + self.similarity_block_size, n_items)
            overlap = torch.from_numpy((item_users[start:stop] @ user_items).toarray().astype(np.float64))
            denominator = torch.from_numpy(np.outer(norms[start:stop], norms)) + self.shrinkage
            similarity = torch.where(denominator > 0, overlap / denominator.clamp(min=1e-12), 0.0)
            similarity[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
            top_values, top_index = ranked_top_k(similarity, keep)
            kept = (top_index >= 0) & (top_values > 0)
            rows.append(np.nonzero(kept.numpy())[0] + start)
            cols.append(top_index[kept].numpy())
            values.append(top_values[kept].numpy().astype(np.float32))
        self.similarity_ = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                         shape=(n_items, n_items), dtype=np.float32)
        logger.info("item-kNN: %d items, %d similarities kept", n_items, self.similarity_.nnz)

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        """``[b]`` -> ``[b, n_items]``: the users' training rows times the similarity matrix."""
        return torch.from_numpy((self._user_rows(user_index) @ self.similarity_).toarray().astype(np.float32))

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """``[b]`` -> ``[b, n_items]`` rows of the (pruned) similarity matrix."""
        return torch.from_numpy(self.similarity_[np.asarray(item_index, dtype=np.int64)].toarray())

    def _state(self) -> dict[str, torch.Tensor]:
        coo = self.similarity_.tocoo()
        return {"similarity_row": torch.from_numpy(coo.row.astype(np.int64)),
                "similarity_col": torch.from_numpy(coo.col.astype(np.int64)),
                "similarity_value": torch.from_numpy(coo.data.astype(np.float32))}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_state(state, {"similarity_row": (None,), "similarity_col": (None,), "similarity_value": (None,)},
                          integer=("similarity_row", "similarity_col"))
        self.similarity_ = coo_from_state(state, "similarity", ("items", "items"), n_users=len(self.user_ids_),
                                          n_items=len(self.item_ids_))
