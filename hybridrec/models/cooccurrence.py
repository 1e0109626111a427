"""Sparse building blocks of the graph-filter head (:mod:`hybridrec.models.graph_filter`).

* :func:`normalized_interactions` — ``R̃ = D_u^-½ R D_i^-½`` and the item degrees;
* :func:`pruned_cooccurrence` — ``R̃ᵀR̃`` with the strongest entries of each column, over
  bounded column blocks (:func:`cooccurrence_blocks`), so items² entries never exist at once;
* :func:`randomized_right_singular` — a seeded randomized SVD (Halko et al. 2011);
* :func:`torch_csr` — a SciPy CSR matrix as a torch sparse CSR tensor.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm.auto import tqdm

#: Columns of the co-occurrence matrix computed per block while pruning it, at most.
GRAM_BLOCK_ITEMS = 4096
#: Co-occurrence entries a block may hold before pruning, at most (about 1 GB with its sort), so
#: a block of popular items, whose columns are dense, is narrower than :data:`GRAM_BLOCK_ITEMS`.
GRAM_BLOCK_ENTRIES = 1 << 25
#: Extra columns and power iterations of the randomized SVD.
SVD_OVERSAMPLING, SVD_POWER_ITERATIONS = 16, 4


def normalized_interactions(user_items: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(R̃, item_degree)``: ``D_u^-½ R D_i^-½`` ``[n_users, n_items]`` float32 and the item degrees
    ``[n_items]`` (zero for items without interactions)."""
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    matrix.data[:] = 1.0
    user_degree = np.diff(matrix.indptr).astype(np.float64)
    item_degree = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)
    user_scale = 1.0 / np.sqrt(np.maximum(user_degree, 1.0))
    item_scale = 1.0 / np.sqrt(np.maximum(item_degree, 1.0))
    scaled = matrix.copy()
    scaled.data *= np.repeat(user_scale, np.diff(matrix.indptr)).astype(np.float32)
    scaled.data *= item_scale[matrix.indices].astype(np.float32)
    return scaled, item_degree


def pruned_cooccurrence(normalized: sp.csr_matrix, neighbors: int, progress: bool = False) -> sp.csr_matrix:
    """``R̃ᵀR̃`` ``[n_items, n_items]`` keeping the ``neighbors`` largest entries of each column,
    then symmetrised (an entry kept in either direction is kept in both).

    Computed over blocks of columns (:func:`cooccurrence_blocks`), so the unpruned co-occurrence
    of the whole catalog never exists at once.
    """
    n_items = normalized.shape[1]
    by_item = normalized.T.tocsr()             # [n_items, n_users]
    by_user = normalized.tocsc()
    rows, cols, values = [], [], []
    blocks = cooccurrence_blocks(normalized)
    for start, stop in tqdm(blocks, desc="co-occurrence", unit="block", disable=not progress, leave=False):
        block = (by_item @ by_user[:, start:stop]).tocsc()     # [n_items, block]
        counts = np.diff(block.indptr)
        column = np.repeat(np.arange(stop - start), counts)
        order = np.lexsort((-block.data, column))
        rank = np.arange(len(order)) - np.repeat(block.indptr[:-1], counts)
        keep = order[rank < neighbors]
        rows.append(block.indices[keep])
        cols.append(column[keep] + start)
        values.append(block.data[keep])
    rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
    pruned = sp.csr_matrix((values, (rows, cols)), shape=(n_items, n_items), dtype=np.float32)
    return pruned.maximum(pruned.T).tocsr()


def cooccurrence_blocks(normalized: sp.csr_matrix, max_entries: int | None = None,
                        max_items: int | None = None) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` column ranges of ``normalized`` ``[n_users, n_items]`` whose
    co-occurrence columns hold at most about ``max_entries`` entries together (a column's entries
    are bounded by the summed degrees of its users, and by ``n_items``) and at most ``max_items``
    columns (defaults :data:`GRAM_BLOCK_ENTRIES`, :data:`GRAM_BLOCK_ITEMS`); a single column above
    the bound is a block of its own."""
    max_entries = GRAM_BLOCK_ENTRIES if max_entries is None else max_entries
    max_items = GRAM_BLOCK_ITEMS if max_items is None else max_items
    n_users, n_items = normalized.shape
    user_degree = np.diff(normalized.indptr).astype(np.int64)
    column_of_entry = normalized.indices
    bound = np.bincount(column_of_entry, weights=user_degree[np.repeat(np.arange(n_users), user_degree)],
                        minlength=n_items)
    bound = np.minimum(bound, n_items)
    blocks, start, total = [], 0, 0.0
    for column in range(n_items):
        if column > start and (total + bound[column] > max_entries or column - start >= max_items):
            blocks.append((start, column))
            start, total = column, 0.0
        total += bound[column]
    if n_items:
        blocks.append((start, n_items))
    return blocks


def randomized_right_singular(matrix: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` singular values ``[rank]`` and right singular vectors ``[n_cols, rank]`` of a
    sparse matrix (seeded randomized range finder with power iterations, Halko et al. 2011)."""
    n_rows, n_cols = matrix.shape
    width = min(rank + SVD_OVERSAMPLING, n_rows, n_cols)
    generator = torch.Generator().manual_seed(seed)
    a = torch_csr(matrix)
    a_t = torch_csr(matrix.T.tocsr())
    basis = torch.randn(n_cols, width, generator=generator, dtype=torch.float32)
    basis = torch.linalg.qr(a @ basis).Q                                   # [n_rows, width]
    for _ in range(SVD_POWER_ITERATIONS):
        basis = torch.linalg.qr(a_t @ basis).Q                             # [n_cols, width]
        basis = torch.linalg.qr(a @ basis).Q                               # [n_rows, width]
    small = (a_t @ basis).T                                                # [width, n_cols]
    _, values, right_t = torch.linalg.svd(small, full_matrices=False)
    keep = min(rank, width)
    return values[:keep].numpy(), right_t[:keep].T.contiguous().numpy()


def torch_csr(matrix: sp.csr_matrix) -> Tensor:
    """``matrix`` as a torch sparse CSR tensor (torch's multi-threaded sparse x dense products)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                       torch.from_numpy(matrix.indices.astype(np.int64)),
                                       torch.from_numpy(matrix.data.astype(np.float32)), size=matrix.shape)
