"""Content -> collaborative space maps, the cold-item path of the CF head.

A cold item has no column in the EASE matrix ``B``. Two linear maps predict one from the item's
content vector ``c`` (block-weighted genre flags, text and image embeddings):

* ``ridge``: regress warm items' EASE columns on their content, ``min ||B_w - W C_wᵀ||² + λ||W||²``
  (the strongest cold-start peer we measured);
* ``direct``: fit the map on the reconstruction objective itself,
  ``min ||X_w - X W C_wᵀ||² + μ||W||²``, solved exactly in the eigenbases of ``XᵀX`` and ``C_wᵀC_w``.

Their z-scored blend measured about +5% recall@20 over ``ridge`` alone on MovieLens-100K cold items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def ridge_map(content: np.ndarray, targets: np.ndarray, l2: float) -> np.ndarray:
    """``W`` ``[n_features, n_outputs]`` minimising ``||targets - content W||² + l2 ||W||²``.

    Args:
        content: ``[n_rows, n_features]``.
        targets: ``[n_rows, n_outputs]``.
    """
    content = content.astype(np.float64)
    gram = content.T @ content
    gram[np.diag_indices_from(gram)] += l2
    return np.linalg.solve(gram, content.T @ targets.astype(np.float64))


#: Rows per step when :func:`ridge_map_blocks` assembles its normal equations (bounds the float64 copies).
RIDGE_ROW_CHUNK = 65536


def _cross(left, right) -> np.ndarray:
    """``leftᵀ right`` (each dense or scipy sparse, same rows) as a dense float64 array."""
    if sp.issparse(left):
        product = left.T.astype(np.float64) @ (right.astype(np.float64) if sp.issparse(right) else
                                               np.asarray(right, dtype=np.float64))
    elif sp.issparse(right):
        product = (right.T.astype(np.float64) @ np.asarray(left, dtype=np.float64)).T
    else:
        product = np.asarray(left, dtype=np.float64).T @ np.asarray(right, dtype=np.float64)
    return product.toarray() if sp.issparse(product) else np.asarray(product)


def ridge_map_blocks(blocks: list, targets: np.ndarray, l2: float) -> np.ndarray:
    """:func:`ridge_map` of the column concatenation of ``blocks`` (each ``[n_rows, d_b]``, dense or
    scipy sparse) without forming it: the normal equations are assembled block pair by block pair
    over chunks of :data:`RIDGE_ROW_CHUNK` rows, sparse blocks kept sparse, so memory is
    ``O(F² + chunk x F)`` rather than ``n_rows x F`` in float64.

    Returns:
        ``W`` ``[Σ d_b, n_outputs]`` float64.
    """
    widths = [block.shape[1] for block in blocks]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    n_rows, n_features = targets.shape[0], int(offsets[-1])
    gram = np.zeros((n_features, n_features))
    rhs = np.zeros((n_features, targets.shape[1]))
    for start in range(0, n_rows, RIDGE_ROW_CHUNK):
        stop = min(start + RIDGE_ROW_CHUNK, n_rows)
        chunk = [block[start:stop] for block in blocks]
        for i, left in enumerate(chunk):
            rows = slice(offsets[i], offsets[i + 1])
            rhs[rows] += _cross(left, targets[start:stop])
            for j in range(i, len(chunk)):
                cross = _cross(left, chunk[j])
                gram[rows, offsets[j]:offsets[j + 1]] += cross
                if j != i:
                    gram[offsets[j]:offsets[j + 1], rows] += cross.T
    gram[np.diag_indices_from(gram)] += l2
    return np.linalg.solve(gram, rhs)


def blocks_times(blocks: list, mapping: np.ndarray) -> np.ndarray:
    """``[b_1 | b_2 | ...] @ mapping`` (blocks ``[n_rows, d_b]``, dense or sparse; ``mapping``
    ``[Σ d_b, n_outputs]``) without forming the concatenation: ``[n_rows, n_outputs]``."""
    out, start = None, 0
    for block in blocks:
        part = block @ mapping[start:start + block.shape[1]]
        part = np.asarray(part)
        out = part if out is None else out + part
        start += block.shape[1]
    return out


def item_gram_eigen(user_items: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gram, eigenvalues, eigenvectors)`` of ``XᵀX`` ``[n_items, n_items]``, computed once and
    reused by :func:`reconstruction_map` calls that differ only in the content."""
    matrix = sp.csr_matrix(user_items, dtype=np.float64)
    gram = (matrix.T @ matrix).toarray()
    item_eig, item_basis = np.linalg.eigh(gram)
    return gram, item_eig, item_basis


def reconstruction_map(user_items: sp.spmatrix, warm_index: np.ndarray, content_warm: np.ndarray,
                       l2: float, item_eigen: tuple | None = None) -> np.ndarray:
    """``W`` ``[n_items, n_features]`` minimising ``||X_w - X W C_wᵀ||² + l2 ||W||²``.

    With ``XᵀX = U diag(a) Uᵀ`` and ``C_wᵀC_w = V diag(s) Vᵀ`` the normal equations
    ``XᵀX W C_wᵀC_w + l2 W = XᵀX_w C_w`` decouple: ``(UᵀWV)_ij = (UᵀXᵀX_wC_wV)_ij / (a_i s_j + l2)``.

    Args:
        user_items: ``[n_users, n_items]`` training interactions.
        warm_index: ``[n_warm]`` columns with interactions.
        content_warm: ``[n_warm, n_features]`` their content vectors.
        item_eigen: :func:`item_gram_eigen` of ``user_items`` when already computed.
    """
    gram, item_eig, item_basis = item_eigen if item_eigen is not None else item_gram_eigen(user_items)
    content_warm = content_warm.astype(np.float64)
    feature_eig, feature_basis = np.linalg.eigh(content_warm.T @ content_warm)
    rotated = item_basis.T @ (gram[:, warm_index] @ content_warm) @ feature_basis
    rotated /= np.outer(np.maximum(item_eig, 0.0), np.maximum(feature_eig, 0.0)) + l2
    return item_basis @ rotated @ feature_basis.T

