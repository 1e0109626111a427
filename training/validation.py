"""Validation recall for early stopping: exact on small catalogs, bounded on large ones.

Up to ``TrainConfig.full_softmax_max_items`` items every validation user ranks every item (the
validation the trainer always had, bit for bit). Above it a seeded sample of at most
:data:`MAX_VALIDATION_USERS` users (the same at every validation run of a fit) is scored in
blocks whose ``[block, n_items]`` scores fit a memory budget, so one validation run costs
``O(MAX_VALIDATION_USERS x n_items x dim)`` however many users there are.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from evaluation.metrics import RankingMetrics
from hybridrec.topk import choose_block_size, select_top_k

#: Users per block of the exact validation.
VALIDATION_BLOCK_USERS = 1024
#: Validation users sampled on large catalogs.
MAX_VALIDATION_USERS = 4096


def validation_users(valid: sp.csr_matrix, *, exact: bool, seed: int) -> np.ndarray:
    """Rows of ``valid`` ``[n_users, n_items]`` to validate on, ascending: every user with a
    held-out item, or (``exact=False``) a seeded sample of at most :data:`MAX_VALIDATION_USERS`."""
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    if exact or len(users) <= MAX_VALIDATION_USERS:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, MAX_VALIDATION_USERS, replace=False))


@torch.no_grad()
def validation_recall(user_embeddings: torch.Tensor, item_embeddings: torch.Tensor, train: sp.csr_matrix,
                      valid: sp.csr_matrix, users: np.ndarray, k: int, *, exact: bool) -> float:
    """Mean recall@``k`` of ``users`` on ``valid``, ranking every item not in ``train``.

    Args:
        user_embeddings: ``[n_users, dim]``; item_embeddings: ``[n_items, dim]`` (any device).
        train, valid: ``[n_users, n_items]`` CSR, the seen items (excluded) and the held-out ones.
        users: rows to score (:func:`validation_users`).
        k: the cut-off.
        exact: blocks of :data:`VALIDATION_BLOCK_USERS` (the exact validation); otherwise blocks
            sized by :func:`hybridrec.topk.choose_block_size`, at most that many.

    The lists keep ``torch.topk``'s own tie order (``ties="backend"``): early stopping, hence the
    model, was decided by it.
    """
    num_items = item_embeddings.shape[0]
    block = VALIDATION_BLOCK_USERS if exact else min(VALIDATION_BLOCK_USERS,
                                                     choose_block_size(num_items, max(len(users), 1)))
    metrics = RankingMetrics((k,), num_items, metrics=("recall",))
    device = user_embeddings.device
    for start in range(0, len(users), block):
        batch = users[start:start + block]
        scores = (user_embeddings[torch.from_numpy(batch).to(device)] @ item_embeddings.T).float().cpu()
        seen = train[batch].tocoo()
        scores[torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
        _, top = select_top_k(scores, k, ties="backend")
        metrics.update(torch.from_numpy(top), torch.from_numpy(valid[batch].toarray() > 0))
    return metrics.compute()[f"recall@{k}"]
