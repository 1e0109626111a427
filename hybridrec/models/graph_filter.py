"""The sparse CF head for large catalogs: a pruned linear graph filter plus an ideal low-pass filter.

Shen et al., "How Powerful is Graph Convolution for Recommendation?" (GF-CF, CIKM 2021) score a
user's history ``r`` ``[n_items]`` with two filters of the normalised interaction matrix
``R̃ = D_u^-½ R D_i^-½`` ``[n_users, n_items]``:

* the linear filter ``r P̃`` with ``P̃ = R̃ᵀR̃`` (normalised co-occurrence), kept here as a sparse
  matrix with the ``neighbors`` strongest entries of each column (then symmetrised), so its memory
  grows with the catalog times ``neighbors``, never with items²;
* the ideal low-pass filter ``α r D_i^-½ V Vᵀ D_i^½`` with ``V`` ``[n_items, rank]`` the top right
  singular vectors of ``R̃`` (a seeded randomized SVD, Halko et al. 2011).

Both parts are one form, ``s = r P̃ + (r L) Q`` with ``L = D_i^-½ V`` ``[n_items, rank]``
and ``Q`` ``[rank, n_items]``: warm columns of ``Q`` are ``α Vᵀ D_i^½``; the columns of items
without interactions are predicted from their content (:meth:`GraphFilterHead.fill_cold_columns`),
so cold items take part in the same scores. Fitting costs a few sparse products and one
randomized SVD: seconds on Gowalla (41k items), minutes at 10^6 items.

Optionally the blurred scores are sharpened, ``s (I - β P̃)``: one explicit Euler step of the
sharpening process of Choi et al., "Blurring-Sharpening Process Models for Collaborative
Filtering" (BSPM, SIGIR 2023), which takes back part of what the low-pass smoothing spread to
items close to everything. It is computed as ``(r P̃) - β (r P̃) P̃ + (r L) (Q - β Q P̃)``: two
sparse products per history and a ``[rank, n_items]`` matrix cached once, never a dense
``[b, n_items] x P̃`` product.

Optionally the scores of item ``j`` are tilted by its popularity, ``s_j max(d_j, 1)^γ``
(``tilt`` γ; 0: none): the symmetric normalisation ``D_i^-½`` scores a popular item below what its
co-occurrences alone would give, and a small ``γ`` chosen on validation data gives part of that
back (:func:`hybridrec.tuning.select_filter_shape`). Items without interactions are scaled by 1.
The tilt applies to a user's scores only; item–item similarities are untilted.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from hybridrec.errors import HybridRecError
from hybridrec.item_content import ItemContent
from hybridrec.models.content_map import blocks_times, ridge_map_blocks
from hybridrec.models.cooccurrence import (normalized_interactions, pruned_cooccurrence, randomized_right_singular,
                                            torch_csr)

logger = logging.getLogger(__name__)


def popularity_tilt(item_degree: np.ndarray, tilt: float) -> np.ndarray:
    """``[n_items]`` float32 ``max(d_j, 1)^γ``: the factor the tilt ``γ`` puts on each item's score."""
    return np.power(np.maximum(np.asarray(item_degree, dtype=np.float64), 1.0), float(tilt)).astype(np.float32)


class GraphFilterHead:
    """Pruned linear filter plus ideal low-pass filter (see the module docstring), with
    content-predicted columns for cold items.

    Args:
        neighbors: entries kept per column of the co-occurrence matrix.
        rank: singular vectors of the ideal low-pass filter.
        alpha: weight of the low-pass filter against the linear one (GF-CF's 0.3).
        sharpen: ``β`` of the sharpening step ``s (I - β P̃)`` (0: none, GF-CF's scores).
        tilt: ``γ`` of the popularity tilt ``s_j max(d_j, 1)^γ`` of users' scores (0: none).
        content_l2: ridge strength of the content -> low-rank column map for cold items.
        seed: seeds the randomized SVD.
        progress: show a progress bar over co-occurrence blocks.

    Attributes:
        cooccurrence_ (sp.csr_matrix): ``P̃`` ``[n_items, n_items]``, pruned and symmetric.
        left_ (np.ndarray): ``L = D_i^-½ V`` ``[n_items, rank]``.
        right_ (np.ndarray): ``Q`` ``[rank, n_items]`` (cold columns zero until :meth:`fill_cold_columns`).
        singular_values_ (np.ndarray): ``[rank]``.
    """

    name = "sparse_graph_filter"

    def __init__(self, *, neighbors: int = 256, rank: int = 256, alpha: float = 0.3, sharpen: float = 0.0,
                 tilt: float = 0.0, content_l2: float = 10.0, seed: int = 0, progress: bool = False) -> None:
        if neighbors < 1 or rank < 1:
            raise HybridRecError(f"GraphFilterHead needs neighbors >= 1 and rank >= 1, got {neighbors}, {rank}")
        if not sharpen >= 0:
            raise HybridRecError(f"GraphFilterHead needs sharpen >= 0, got {sharpen}")
        if not np.isfinite(tilt):
            raise HybridRecError(f"GraphFilterHead needs a finite tilt, got {tilt}")
        self.neighbors, self.rank, self.alpha, self.content_l2 = neighbors, rank, alpha, content_l2
        self.sharpen, self.tilt = sharpen, tilt
        self.seed, self.progress = seed, progress

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, user_items: sp.spmatrix) -> "GraphFilterHead":
        """Fit on interactions ``[n_users, n_items]`` (binarised); return ``self``."""
        normalized, item_degree = normalized_interactions(user_items)
        self.cooccurrence_ = pruned_cooccurrence(normalized, self.neighbors, self.progress)
        self.singular_values_, basis = randomized_right_singular(normalized, self.rank, self.seed)
        root_degree = np.sqrt(np.maximum(item_degree, 1.0)).astype(np.float32)
        warm = item_degree > 0
        self.left_ = (basis / root_degree[:, None]).astype(np.float32)
        self.right_ = (self.alpha * basis.T * (root_degree * warm)[None, :]).astype(np.float32)
        self.item_degree_ = item_degree
        self.clear_caches()
        return self

    def clear_caches(self) -> None:
        """Forget what is derived from ``cooccurrence_`` / ``right_``; call after changing either."""
        self._coordinates = self._coordinate_moments = self._row_moments = self._sharpened_right = None
        self._column_scale = None

    def _check_fitted(self) -> None:
        if not hasattr(self, "cooccurrence_"):
            raise HybridRecError("GraphFilterHead is not fitted: call fit() first")

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, history: Tensor | sp.spmatrix, items: np.ndarray | None = None) -> Tensor:
        """Scores ``[b, n_items]`` of binary histories ``[b, n_items]`` (a dense tensor or a sparse
        matrix); with ``items`` ``[m]``, those columns only, ``[b, m]``, never the whole catalog's
        (``P̃`` is symmetric, so its columns are the rows ``P̃[items]``)."""
        self._check_fitted()
        rows = sp.csr_matrix(history.numpy() if isinstance(history, Tensor) else history, dtype=np.float32)
        columns = self.cooccurrence_ if items is None else self.cooccurrence_[np.asarray(items, dtype=np.int64)].T
        scores = (rows @ columns).toarray()                                            # [b, m]
        if self.sharpen:
            scores -= self.sharpen * ((rows @ self.cooccurrence_) @ columns).toarray()
        right = self.sharpened_right() if items is None else self.sharpened_right()[:, items]
        scores += np.asarray(rows @ self.left_) @ right
        if self.tilt:
            scores *= self.column_scale() if items is None else self.column_scale()[items]
        return torch.from_numpy(scores)

    def column_scale(self) -> np.ndarray:
        """``[n_items]`` float32 ``max(d_j, 1)^γ``, the popularity tilt of each item's score, cached."""
        self._check_fitted()
        cached = getattr(self, "_column_scale", None)
        if cached is None or len(cached) != len(self.item_degree_):
            cached = self._column_scale = popularity_tilt(self.item_degree_, self.tilt)
        return cached

    def sharpened_right(self) -> np.ndarray:
        """``Q (I - β P̃)`` ``[rank, n_items]`` (``right_`` itself when ``sharpen`` is 0), cached."""
        self._check_fitted()
        if not self.sharpen:
            return self.right_
        cached = getattr(self, "_sharpened_right", None)
        if cached is None:
            cached = self._sharpened_right = self.right_ - self.sharpen * self.filtered_right()
        return cached

    def filtered_right(self) -> np.ndarray:
        """``Q P̃`` ``[rank, n_items]`` (``P̃`` is symmetric: computed as ``(P̃ Qᵀ)ᵀ`` on torch's threads)."""
        self._check_fitted()
        return (torch_csr(self.cooccurrence_) @ torch.from_numpy(np.ascontiguousarray(self.right_.T))).numpy().T

    def contributions(self, history_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """``[n_history, n_items_asked]``: history item ``h``'s share of the score of each asked item,
        ``(P̃[h, i] - β (P̃ P̃)[h, i] + L[h] · Q(I - β P̃)[:, i]) max(d_i, 1)^γ``; each column sums
        to :meth:`score`."""
        self._check_fitted()
        rows = self.cooccurrence_[np.asarray(history_index)]
        linear = np.asarray(rows[:, item_index].todense(), dtype=np.float32)
        if self.sharpen:
            linear -= self.sharpen * np.asarray((rows @ self.cooccurrence_[:, item_index]).todense(), dtype=np.float32)
        shares = linear + self.left_[history_index] @ self.sharpened_right()[:, item_index]
        return shares * self.column_scale()[item_index] if self.tilt else shares

    def coordinates(self) -> np.ndarray:
        """``Z`` ``[n_items, rank]``: each item's place in the low-pass subspace (its right singular
        vector; a cold item's predicted column rescaled as an item of mean degree), cached."""
        self._check_fitted()
        cached = getattr(self, "_coordinates", None)
        if cached is None:
            degree = np.asarray(self.item_degree_, dtype=np.float64)
            warm = degree > 0
            mean_degree = float(degree[warm].mean()) if warm.any() else 1.0
            scale = np.where(warm, np.sqrt(np.maximum(degree, 1.0)), np.sqrt(mean_degree)) * max(self.alpha, 1e-12)
            cached = self._coordinates = np.ascontiguousarray(self.right_.T / scale[:, None], dtype=np.float32)
        return cached

    def item_similarity(self, item_index: np.ndarray) -> Tensor:
        """Item–item similarity ``[len(item_index), n_items]``: the row of ``P̃`` plus ``alpha`` times
        the low-pass coordinates' inner product ``Z_q · Z_j`` (symmetric, degree-free)."""
        self._check_fitted()
        index = np.asarray(item_index)
        rows = torch.from_numpy(self.cooccurrence_[index].toarray())
        coordinates = torch.from_numpy(self.coordinates())
        return rows + self.alpha * (coordinates[index] @ coordinates.T)

    def similarity_pairs(self, item_index: np.ndarray, columns: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`item_similarity` at ``columns`` only, with the full rows' mean and standard deviation.

        Args:
            item_index: ``[b]`` query items.
            columns: ``[b, c]`` item indices per query (``-1``: none; its value is 0).

        Returns:
            ``(values [b, c], row_mean [b], row_std [b])``, the std unbiased like ``torch.std``,
            in ``O(b * (c * rank + rank²))`` without forming a ``[b, n_items]`` row.
        """
        self._check_fitted()
        index = np.asarray(item_index, dtype=np.int64)
        safe = np.maximum(columns, 0)
        n_items = len(self.item_degree_)
        coordinates = torch.from_numpy(self.coordinates())
        if getattr(self, "_coordinate_moments", None) is None:
            z = coordinates.double()
            self._coordinate_moments = (z.sum(0), z.T @ z)
        total, gram = self._coordinate_moments
        query = coordinates[index]                                                      # [b, rank]
        low_pass = self.alpha * torch.bmm(coordinates[torch.from_numpy(safe)], query[:, :, None])[..., 0]
        sparse_rows = np.repeat(index, columns.shape[1])
        linear = torch.from_numpy(np.asarray(self.cooccurrence_[sparse_rows, safe.ravel()], dtype=np.float32)
                                  .reshape(columns.shape))
        values = torch.where(torch.from_numpy(columns >= 0), linear + low_pass, torch.zeros(()))
        # Moments of the full row z_j = s_j + y_j (s: the sparse row of P̃, y: the low-pass row):
        # the sparse row's own sums and its cross term with y are per-item constants.
        sparse_sum, sparse_square, cross = (torch.from_numpy(part[index]) for part in self.row_moments())
        query64 = query.double()
        low_sum = self.alpha * (query64 @ total)
        low_square = self.alpha ** 2 * ((query64 @ gram) * query64).sum(1)
        mean = (sparse_sum + low_sum) / n_items
        square = sparse_square + low_square + 2 * cross
        variance = ((square - n_items * mean ** 2) / max(n_items - 1, 1)).clamp(min=0.0)
        return values, mean.float(), variance.sqrt().float()

    #: Items per block when :meth:`row_moments` multiplies ``P̃`` by the coordinates (bounds a
    #: ``[block, rank]`` product).
    ROW_MOMENT_BLOCK = 16384

    def row_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per item ``q`` (each ``[n_items]`` float64, cached): the sum and the sum of squares of its
        sparse row ``s = P̃[q]``, and its cross term with the low-pass row,
        ``sum_j s_j * alpha * Z_q · Z_j = alpha * Z_q · (P̃ Z)_q``, computed once in blocks of rows so
        :meth:`similarity_pairs` never gathers a query's whole sparse row, and no temporary spans all
        of ``P̃``'s entries (a float64 copy of them was 8 bytes per entry: 2-4 GB each at 10^6 items)."""
        self._check_fitted()
        cached = getattr(self, "_row_moments", None)
        if cached is None:
            matrix = self.cooccurrence_
            coordinates = self.coordinates()
            sparse_sum, sparse_square, cross = (np.empty(matrix.shape[0]) for _ in range(3))
            for start in range(0, matrix.shape[0], self.ROW_MOMENT_BLOCK):
                stop = min(start + self.ROW_MOMENT_BLOCK, matrix.shape[0])
                block = matrix[start:stop]                                                     # [block, n_items]
                entries = block.data.astype(np.float64)
                rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
                sparse_sum[start:stop] = np.bincount(rows, weights=entries, minlength=stop - start)
                sparse_square[start:stop] = np.bincount(rows, weights=entries ** 2, minlength=stop - start)
                product = np.asarray(block @ coordinates, dtype=np.float64)                    # [block, rank]
                cross[start:stop] = self.alpha * np.einsum("ij,ij->i", product,
                                                           coordinates[start:stop].astype(np.float64))
            cached = self._row_moments = (sparse_sum, sparse_square, cross)
        return cached

    #: Sparse-row entries :meth:`neighbors_of` sorts at once, at most (a popular item's symmetrised
    #: row can hold a large share of the catalog).
    NEIGHBOR_ENTRIES_PER_CHUNK = 1 << 24

    def neighbors_of(self, item_index: np.ndarray, limit: int | None = None) -> np.ndarray:
        """``[b, m]`` the items each query co-occurs with in ``P̃`` (``-1`` padded), strongest first;
        at most ``limit`` per query (``None``: all; symmetrising makes a popular item's row far
        longer than ``neighbors``). The rows are gathered and sorted in chunks of queries holding
        at most :data:`NEIGHBOR_ENTRIES_PER_CHUNK` entries together (a single longer row alone)."""
        self._check_fitted()
        item_index = np.asarray(item_index, dtype=np.int64)
        lengths = np.diff(self.cooccurrence_.indptr)[item_index]
        longest = int(lengths.max(initial=0))
        out = np.full((len(item_index), max(longest if limit is None else min(longest, int(limit)), 1)), -1,
                      dtype=np.int64)
        cumulative = np.concatenate([[0], np.cumsum(lengths)])
        start = 0
        while start < len(item_index):
            stop = int(np.searchsorted(cumulative, cumulative[start] + self.NEIGHBOR_ENTRIES_PER_CHUNK, side="right")) - 1
            stop = max(stop, start + 1)
            rows = self.cooccurrence_[item_index[start:stop]]
            counts = np.diff(rows.indptr)
            entry_row = np.repeat(np.arange(len(counts)), counts)
            order = np.lexsort((-rows.data, entry_row))
            rank = np.arange(len(order)) - np.repeat(rows.indptr[:-1], counts)
            kept = rank < out.shape[1]
            out[start + entry_row[order][kept], rank[kept]] = rows.indices[order][kept]
            start = stop
        return out

    def item_vectors(self) -> Tensor:
        """``[n_items, rank]`` low-pass coordinates :meth:`coordinates`, for candidate search."""
        return torch.from_numpy(self.coordinates())

    # -- cold items ------------------------------------------------------------------------------
    #: Items per block when :meth:`column_coordinates` solves for the columns (bounds a
    #: ``[rank, block]`` float64 temporary).
    COLUMN_BLOCK = 16384

    def column_coordinates(self) -> np.ndarray:
        """``[rank, n_items]`` least-squares coordinates of each item's full column ``P̃ e_j + L Q e_j``
        in the basis ``L``: the targets the content map learns for cold items."""
        left = self.left_.astype(np.float64)
        projected = (self.cooccurrence_.T @ left).T                    # Lᵀ P̃  [rank, n_items]
        gram = left.T @ left
        del left
        gram[np.diag_indices_from(gram)] += 1e-8 * max(float(np.trace(gram)) / len(gram), 1e-12)
        # In blocks of columns, so no [rank, n_items] temporary beyond the result and Lᵀ P̃.
        coordinates = np.empty(projected.shape)
        for start in range(0, projected.shape[1], self.COLUMN_BLOCK):
            block = slice(start, start + self.COLUMN_BLOCK)
            coordinates[:, block] = np.linalg.solve(gram, projected[:, block]) + self.right_[:, block]
        return coordinates

    def predict_cold_columns(self, user_items: sp.spmatrix, content: ItemContent, warm: np.ndarray,
                             cold: np.ndarray, block_weights: dict, targets: np.ndarray | None = None) -> np.ndarray:
        """Predicted ``Q`` columns ``[rank, n_cold]`` for ``cold`` items from their content, scaled so
        their scores match warm items' score spread.

        Args:
            user_items: ``[n_users, n_items]`` the head was fitted on.
            content: item content blocks; ``block_weights`` scale them into one vector per item.
            warm, cold: item indices with and without interactions.
            targets: :meth:`column_coordinates` when already computed.
        """
        targets = self.column_coordinates() if targets is None else targets
        mapping = ridge_map_blocks(content.weighted_blocks(block_weights, warm), targets[:, warm].T,
                                   self.content_l2)                                      # [F, rank]
        predicted, _ = self.mapped_columns(mapping, content.weighted_blocks(block_weights, cold), user_items, warm)
        return predicted

    def mapped_columns(self, mapping: np.ndarray, features: np.ndarray, user_items: sp.spmatrix,
                       warm: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
        """``Q`` columns ``[rank, n_new]`` for content vectors ``features`` ``[n_new, F]`` (an array, or
        its column blocks as :meth:`ItemContent.weighted_blocks` gives them) through the ridge
        ``mapping`` ``[F, rank]``, and the score scale used (None: computed from these columns so that
        training users' scores on them spread like their scores on warm items, as the dense head
        does, so cold items compete fairly in a mixed ranking; given: reused)."""
        blocks = features if isinstance(features, list) else [features]
        predicted = blocks_times(blocks, mapping).T.astype(np.float32)                  # [rank, n_new]
        if scale is None:
            sample = np.random.default_rng(self.seed).choice(user_items.shape[0], min(2048, user_items.shape[0]),
                                                             replace=False)
            history = sp.csr_matrix(user_items[np.sort(sample)], dtype=np.float32)
            projected = np.asarray(history @ self.left_)                                # [s, rank]
            warm_sample = warm[np.random.default_rng(self.seed + 1).choice(len(warm), min(4096, len(warm)),
                                                                           replace=False)]
            warm_scores = self.score(history, items=warm_sample).numpy()
            cold_scores = projected @ predicted
            scale = float(np.std(warm_scores)) / max(float(np.std(cold_scores)), 1e-12)
        return predicted * scale, scale

    def validation_fold(self, visible: sp.csr_matrix) -> tuple:
        """A head with these settings refitted on ``visible`` ``[n_users, n_items]``, with its column
        coordinates: what a pseudo-cold fold reuses across content weightings."""
        head = GraphFilterHead(neighbors=self.neighbors, rank=self.rank, alpha=self.alpha, sharpen=self.sharpen,
                               tilt=self.tilt, content_l2=self.content_l2, seed=self.seed).fit(visible)
        return visible, head, head.column_coordinates()

    def hidden_scores(self, fold: tuple, history: sp.csr_matrix, content: ItemContent, kept: np.ndarray,
                      hidden: np.ndarray, block_weights: dict) -> np.ndarray:
        """Scores ``[b, n_hidden]`` of histories ``[b, n_items]`` on the fold's ``hidden`` items, whose
        columns are predicted from content weighted by ``block_weights``."""
        visible, head, targets = fold
        predicted = head.predict_cold_columns(visible, content, kept, hidden, block_weights, targets)
        return np.asarray(sp.csr_matrix(history, dtype=np.float32) @ head.left_) @ predicted

    def fill_cold_columns(self, user_items: sp.spmatrix, content: ItemContent, warm: np.ndarray,
                          cold: np.ndarray, block_weights: dict) -> None:
        """Learn the content map (:meth:`fit_content_map`) and write the predicted columns of ``cold``
        items into ``right_``."""
        self._check_fitted()
        self.fit_content_map(user_items, content, warm, block_weights)
        self.right_[:, cold], self.content_scale_ = self.mapped_columns(
            self.content_mapping_, content.weighted_blocks(block_weights, cold), user_items, warm)
        self.clear_caches()

    def fit_content_map(self, user_items: sp.spmatrix, content: ItemContent, warm: np.ndarray,
                        block_weights: dict) -> None:
        """Learn the ridge map content -> :meth:`column_coordinates` on the ``warm`` items, kept as
        ``content_mapping_`` ``[F, rank]`` (float64), so columns of items added later come from it."""
        self._check_fitted()
        targets = self.column_coordinates()
        self.content_mapping_ = ridge_map_blocks(content.weighted_blocks(block_weights, warm), targets[:, warm].T,
                                                 self.content_l2)
        self.content_scale_ = None

    # -- persistence -----------------------------------------------------------------------------
    def state(self) -> dict[str, Tensor]:
        """Tensors that restore the fitted head with :meth:`from_state`."""
        self._check_fitted()
        matrix = self.cooccurrence_
        return {"filter_indptr": torch.from_numpy(matrix.indptr.astype(np.int64)),
                "filter_indices": torch.from_numpy(matrix.indices.astype(np.int64)),
                "filter_values": torch.from_numpy(matrix.data.astype(np.float32)),
                "filter_left": torch.from_numpy(self.left_), "filter_right": torch.from_numpy(self.right_),
                "filter_singular_values": torch.from_numpy(np.asarray(self.singular_values_, dtype=np.float32)),
                "filter_item_degree": torch.from_numpy(np.asarray(self.item_degree_, dtype=np.float32)),
                "filter_alpha": torch.tensor([float(self.alpha)], dtype=torch.float64),
                "filter_sharpen": torch.tensor([float(self.sharpen)], dtype=torch.float64),
                "filter_tilt": torch.tensor([float(self.tilt)], dtype=torch.float64)}

    def load_state(self, state: dict[str, Tensor], n_items: int) -> "GraphFilterHead":
        """Restore from :meth:`state`, checking that the shapes agree with ``n_items``."""
        indptr, indices = state["filter_indptr"].numpy(), state["filter_indices"].numpy()
        values = state["filter_values"].numpy()
        if (indptr.shape != (n_items + 1,) or indices.shape != values.shape or int(indptr[-1]) != len(values)
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))
                or np.any(np.diff(indptr) < 0)):
            raise HybridRecError("the saved co-occurrence matrix of the graph-filter head is inconsistent")
        self.cooccurrence_ = sp.csr_matrix((values, indices, indptr), shape=(n_items, n_items))
        self.left_, self.right_ = state["filter_left"].numpy(), state["filter_right"].numpy()
        self.singular_values_ = state["filter_singular_values"].numpy()
        self.item_degree_ = state["filter_item_degree"].numpy().astype(np.float64)
        # The low-pass weight the head was fitted with (a head saved without it used the configured one).
        if "filter_alpha" in state:
            self.alpha = float(state["filter_alpha"].reshape(-1)[0])
        # Likewise the sharpening step (a head saved before it had none).
        self.sharpen = float(state["filter_sharpen"].reshape(-1)[0]) if "filter_sharpen" in state else 0.0
        self.tilt = float(state["filter_tilt"].reshape(-1)[0]) if "filter_tilt" in state else 0.0
        self.rank = int(self.left_.shape[1])
        self.clear_caches()
        if self.item_degree_.shape != (n_items,):
            raise HybridRecError("the saved item degrees of the graph-filter head do not match the catalog")
        if self.left_.shape[0] != n_items or self.right_.shape != self.left_.shape[::-1]:
            raise HybridRecError("the saved low-pass factors of the graph-filter head do not match the catalog")
        return self
