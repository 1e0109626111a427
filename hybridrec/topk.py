"""The one top-k of hybridrec, and exact blockwise top-k over item embeddings.

:func:`select_top_k` is the only top-k selection: a recommender's ranking (through
:func:`ranked_top_k`), the training validation, the tuning searches and the similarity export all
call it. Its tie rule is a parameter:

* ``ties="lower_column"`` (the default): tied scores are ordered by the lower column, or by the
  lower key of ``tie_keys`` (e.g. :func:`seeded_tie_keys`, a pseudo-random item order per user);
  NaN counts as ``-inf`` and columns scored ``-inf`` come back as ``-1``. Results never depend on
  the block size, the shard or ``torch.topk``'s unspecified tie order.
* ``ties="backend"``: whatever the backend's own selection picks (``torch.topk`` for a tensor,
  ``numpy.argpartition`` for an array), values as they are; kept only for the validation loops
  whose past results (early stopping, tuned hyper-parameters) were decided by it.

Blockwise search: a block of queries scored against every column, then :func:`select_top_k`.
Memory stays at ``O(block x n_columns)`` scores (plus the ``[n_items, dim]`` embeddings), never
``n_items x n_items``: the block size is chosen from a memory budget. Works on CPU (all torch
threads) and on a GPU when one is given. On the CPU, wide rows are reduced in two stages (the
maxima of column groups, then ``topk`` over the best groups only), with a check that hands any row
where the shortcut could miss a result to the exact path.

Tensor layer only: internal indices in, internal indices out (see ``similarity_export`` for ids).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hybridrec.device import resolve_device
from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

METRICS = ("cosine", "dot")
#: Default ceiling for one block of float32 scores.
DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20
#: Never use more than this share of the memory that is free right now.
AVAILABLE_MEMORY_SHARE = 0.5
_FALLBACK_ROWS = 64  # rows per step of the exact tie path (ties across the k-th place: rare)


def available_memory_bytes(device: torch.device | str = "cpu") -> int:
    """Memory free for new tensors on ``device`` (the container's cgroup limit counts on Linux)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        free = int(psutil.virtual_memory().available)
    except ImportError:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError, ValueError):
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    return max(int(free), 0)


def choose_block_size(n_columns: int, n_queries: int, *, bytes_per_row: int | None = None,
                      memory_budget_bytes: int | None = None, device: torch.device | str = "cpu") -> int:
    """Queries per block so that one block of scores fits the budget.

    Args:
        n_columns: scores per query (items that may be neighbours).
        n_queries: total queries (the block never exceeds it).
        bytes_per_row: working memory per query; default ``4 * n_columns`` (float32 scores).
        memory_budget_bytes: ceiling for one block; default 256 MiB, and never more than half of
            the memory free on ``device``.
    """
    budget = DEFAULT_MEMORY_BUDGET_BYTES if memory_budget_bytes is None else int(memory_budget_bytes)
    if budget <= 0:
        raise HybridRecError(f"memory budget must be positive, got {budget} bytes")
    budget = min(budget, int(available_memory_bytes(device) * AVAILABLE_MEMORY_SHARE))
    row_bytes = bytes_per_row if bytes_per_row is not None else 4 * max(n_columns, 1)
    return int(max(1, min(max(n_queries, 1), budget // max(row_bytes, 1))))


def _order_by_score_then_column(values: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row of ``[b, k]`` by score descending, ties by column ascending (NumPy: no thread sync)."""
    by_column = np.argsort(columns, axis=1, kind="stable")
    values, columns = np.take_along_axis(values, by_column, 1), np.take_along_axis(columns, by_column, 1)
    by_score = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(values, by_score, 1), np.take_along_axis(columns, by_score, 1)


def _tied_top_k(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact path for the rows :func:`select_top_k` hands over (a tie across the k-th place, a NaN,
    an unsure two-stage result, or ``k == n``): ``[b, n]`` -> ``[b, k]``, NaN as ``-inf``.

    The columns scoring above the k-th value are taken, then the lowest-indexed columns tied with
    it that still fit (a second ``topk`` over a key that is larger for lower columns), so no row is
    fully sorted.
    """
    values, columns = [], []
    for start in range(0, scores.shape[0], _FALLBACK_ROWS):
        rows = scores[start:start + _FALLBACK_ROWS]
        rows = rows.masked_fill(torch.isnan(rows), -torch.inf)
        n_rows, n_columns = rows.shape
        kth_value = torch.topk(rows, k, dim=1).values[:, -1:]
        above = rows > kth_value
        room = k - above.sum(dim=1, keepdim=True)
        max_room = int(room.max())
        key_dtype = torch.float32 if n_columns <= 2**24 else torch.float64  # exact column numbers
        reversed_column = torch.arange(n_columns, 0, -1, dtype=key_dtype, device=rows.device)
        tie_key = torch.where(rows == kth_value, reversed_column, torch.tensor(-1.0, dtype=key_dtype,
                                                                               device=rows.device))
        tie_columns = torch.topk(tie_key, max_room, dim=1).indices
        take = torch.arange(max_room, device=rows.device).unsqueeze(0) < room
        chosen = above | torch.zeros_like(above).scatter(1, tie_columns, take)
        chosen_columns = chosen.nonzero()[:, 1].view(n_rows, k)  # ascending column order
        values.append(rows.gather(1, chosen_columns).cpu().numpy())
        columns.append(chosen_columns.cpu().numpy())
    return _order_by_score_then_column(np.concatenate(values), np.concatenate(columns))


def _grouped_top_k(scores: torch.Tensor, k: int, group_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top ``k + 1`` of each row, reading only the ``k + 2`` groups of ``group_length`` columns with
    the highest maxima (``[b, n]`` with ``n`` a multiple of ``group_length``).

    Every other column scores at most the lowest of those maxima, so where the (k+1)-th value
    found is above it the result is exact; ``exact`` ``[b]`` says where.
    """
    n_rows, n_columns = scores.shape
    groups = scores.view(n_rows, n_columns // group_length, group_length)
    best_maxima, best_groups = torch.topk(groups.amax(dim=2), k + 2, dim=1, sorted=False)
    rows = torch.arange(n_rows, device=scores.device).unsqueeze(1)
    candidates = groups[rows, best_groups].reshape(n_rows, -1)
    values, positions = torch.topk(candidates, k + 1, dim=1, sorted=True)
    columns = best_groups.gather(1, positions // group_length) * group_length + positions % group_length
    return values, columns, values[:, k] > best_maxima.amin(dim=1)


def group_length_for(n_columns: int, k: int, device: torch.device | str = "cpu") -> int | None:
    """Column group length for :func:`select_top_k`'s two-stage path (CPU, wide rows), else None."""
    if torch.device(device).type != "cpu" or n_columns < 64 * (k + 2):
        return None
    # A multiple of 16, so the padded score rows stay 64-byte aligned: an odd row width measured
    # 1.75x slower in the BLAS matrix multiply (200,079 vs 200,064 columns, 64 dims).
    return 16 * max(1, int(round(1.6 * (n_columns / (k + 2)) ** 0.5 / 16)))


#: How :func:`select_top_k` orders tied scores (see the module docstring).
TIE_RULES = ("lower_column", "backend")


def _backend_top_k(scores: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``ties="backend"``: ``torch.topk`` of a tensor or ``numpy.argpartition`` of an array, as they are."""
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if n_rows == 0 or k == 0:
        return np.zeros((n_rows, k), np.float32), np.zeros((n_rows, k), np.int64)
    if isinstance(scores, np.ndarray):
        columns = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(scores, columns, axis=1)
    else:
        top = torch.topk(scores, k, dim=1)
        values, columns = top.values.cpu().numpy(), top.indices.cpu().numpy()
    return values.astype(np.float32, copy=False), columns.astype(np.int64, copy=False)


def select_top_k(scores: torch.Tensor | np.ndarray, k: int, *, ties: str = "lower_column",
                 tie_keys: torch.Tensor | None = None,
                 group_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores`` ``[b, n]`` (any device), best first.

    With ``ties="lower_column"`` (the default), ties are ordered by the lower column, or by the lower
    key where ``tie_keys`` ``[b, n]`` (distinct int64 keys per row, e.g. :func:`seeded_tie_keys`) is
    given; NaN counts as ``-inf``. One ``torch.topk`` of ``k + 1`` finds every row whose k-th and
    (k+1)-th scores differ, where that order is already decided; only rows with a tie across the
    k-th place (or a NaN) take the exact tie path. The small ``[b, k]`` results are ordered on the
    CPU in NumPy. With ``group_length`` (dividing ``n``; see :func:`group_length_for`) the top
    ``k + 1`` are found in two stages (group maxima first), which reads far fewer values through
    ``topk`` on wide rows.

    With ``ties="backend"``, the backend's own unordered-tie selection is returned unchanged
    (``torch.topk`` for a tensor, ``numpy.argpartition(-scores)`` for an array: then not sorted),
    ``-inf`` and NaN columns included; ``tie_keys`` and ``group_length`` do not apply.

    Returns:
        ``(values, columns)``, both ``[b, min(k, n)]`` arrays (float32, int64); with
        ``"lower_column"``, column ``-1`` where the score is ``-inf`` (filtered out).

    Raises:
        HybridRecError: ``k < 1``, an unknown tie rule, or ``tie_keys`` of another shape.
    """
    if k < 1:
        raise HybridRecError(f"k must be >= 1, got {k}")
    if ties not in TIE_RULES:
        raise HybridRecError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    if ties == "backend":
        if tie_keys is not None or group_length:
            raise HybridRecError("tie_keys and group_length apply only to ties='lower_column'")
        return _backend_top_k(scores, k)
    scores = torch.as_tensor(scores)
    if tie_keys is not None:
        if tuple(tie_keys.shape) != tuple(scores.shape):
            raise HybridRecError(f"tie_keys has shape {tuple(tie_keys.shape)}, scores {tuple(scores.shape)}")
        order = tie_keys.argsort(dim=1)
        values, positions = select_top_k(scores.gather(1, order.to(scores.device)), k)
        order = order.cpu().numpy()
        columns = np.where(positions >= 0, np.take_along_axis(order, np.maximum(positions, 0), axis=1), positions)
        return values, columns
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if n_rows == 0 or k == 0:
        return np.zeros((n_rows, k), np.float32), np.zeros((n_rows, k), np.int64)
    if k == n_columns:
        values, columns = _tied_top_k(scores, k)
    else:
        if group_length and n_columns % group_length == 0 and n_columns // group_length > k + 2:
            top_values, top_columns, exact = _grouped_top_k(scores, k, group_length)
            exact = exact.cpu().numpy()
        else:
            top_values, top_columns = torch.topk(scores, k + 1, dim=1, sorted=True)
            exact = np.ones(n_rows, dtype=bool)
        values, columns = top_values.cpu().numpy(), top_columns.cpu().numpy()
        # topk ranks NaN above everything, so a NaN anywhere in a row shows up in its first place.
        undecided = np.flatnonzero((values[:, k - 1] == values[:, k]) | np.isnan(values[:, 0]) | ~exact)
        values, columns = _order_by_score_then_column(values[:, :k], columns[:, :k])
        if len(undecided):
            rows = torch.from_numpy(undecided).to(scores.device)
            values[undecided], columns[undecided] = _tied_top_k(scores[rows], k)
    columns[np.isneginf(values)] = -1
    return values.astype(np.float32, copy=False), columns.astype(np.int64, copy=False)


def ranked_top_k(scores: torch.Tensor, k: int, *,
                 tie_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`select_top_k` (``ties="lower_column"``) of ``scores`` ``[b, n]`` taken as float32, as
    CPU tensors: the form the estimators rank with.

    Returns:
        ``(values, indices)``, both ``[b, min(k, n)]`` (float32, int64); index ``-1`` and value
        ``-inf`` where a column was filtered out.
    """
    values, columns = select_top_k(torch.as_tensor(scores).float(), k, tie_keys=tie_keys)
    return torch.from_numpy(values), torch.from_numpy(columns)


def seeded_tie_keys(row_index: np.ndarray, n_columns: int, seed: int) -> torch.Tensor:
    """Pseudo-random int64 keys ``[len(row_index), n_columns]`` from (seed, row, column) alone.

    A splitmix64-style mix: each row (user) gets its own random column (item) order, independent of
    batching; pass it as :func:`select_top_k`'s ``tie_keys``.
    """
    rows = torch.from_numpy(np.asarray(row_index, dtype=np.int64)).unsqueeze(1)
    columns = torch.arange(n_columns, dtype=torch.int64).unsqueeze(0)
    mixed = rows * 0x9E3779B1 + columns * 0x85EBCA77 + seed * 0xC2B2AE3D
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        mixed = (mixed ^ (mixed >> shift)) * (multiplier - (1 << 64) if multiplier >= 1 << 63 else multiplier)
    return mixed ^ (mixed >> 31)


class EmbeddingScorer:
    """Scores queries against (a subset of) items by the dot product or cosine of their embeddings.

    Args:
        embeddings: ``[n_items, dim]`` float tensor or array, finite.
        metric: ``"cosine"`` (rows L2-normalised; a zero vector scores 0 with everything) or ``"dot"``.
        columns: sorted item indices that may be neighbours ``[n_columns]``; ``None`` = all items.
        device: where to compute (``"auto"``: the GPU when present).
    """

    def __init__(self, embeddings: torch.Tensor | np.ndarray, *, metric: str = "cosine",
                 columns: np.ndarray | None = None, device: str | torch.device | None = "auto") -> None:
        if metric not in METRICS:
            raise HybridRecError(f"metric must be one of {METRICS}, got {metric!r}")
        embeddings = torch.as_tensor(embeddings).detach()
        if embeddings.ndim != 2:
            raise HybridRecError(f"item embeddings must be [n_items, dim], got shape {tuple(embeddings.shape)}")
        if not embeddings.is_floating_point():
            embeddings = embeddings.float()
        bad_rows = (~torch.isfinite(embeddings).all(dim=1)).nonzero().squeeze(1)
        if len(bad_rows):
            raise HybridRecError(f"item embeddings have NaN/inf values in {len(bad_rows)} row(s), "
                                 f"e.g. index {bad_rows[:10].tolist()}")
        self.device = resolve_device(device)
        self.metric = metric
        self.n_items = int(embeddings.shape[0])
        vectors = embeddings.to(self.device, torch.float32)
        if metric == "cosine":
            vectors = F.normalize(vectors, dim=1)
        self.query_vectors = vectors.contiguous()
        self.columns = _check_columns(columns, self.n_items)
        self.column_vectors = (vectors if self.columns is None
                               else vectors[torch.from_numpy(self.columns).to(self.device)]).contiguous()
        self.n_columns = int(self.column_vectors.shape[0])
        self._padded_columns = self.column_vectors
        self.bytes_per_row = 4 * self.n_columns

    def __call__(self, query_index: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[b, n_columns]`` of queries ``query_index`` ``[b]``.

        With ``out`` (``[b, width >= n_columns]``) they are written there and columns past
        ``n_columns`` are set to ``-inf``.
        """
        queries = self.query_vectors[torch.from_numpy(np.asarray(query_index, dtype=np.int64)).to(self.device)]
        if out is None:
            return queries @ self.column_vectors.T
        width = out.shape[1]
        torch.mm(queries, self._columns_padded_to(width).T, out=out)
        if width > self.n_columns:
            out[:, self.n_columns:] = -torch.inf
        return out

    def _columns_padded_to(self, width: int) -> torch.Tensor:
        """Column vectors with zero rows appended up to ``width`` ``[width, dim]`` (kept for reuse)."""
        if self._padded_columns.shape[0] != width:
            padding = self.column_vectors.new_zeros(width - self.n_columns, self.column_vectors.shape[1])
            self._padded_columns = torch.cat([self.column_vectors, padding])
            self.column_vectors = self._padded_columns[:self.n_columns]
        return self._padded_columns


class FunctionScorer:
    """Scores from a function ``item_index [b] -> [b, n_items]`` (e.g. a model's ``item_similarity``).

    Args:
        score_block: the function; its result is copied, never modified.
        n_items: width of its result.
        columns: sorted item indices that may be neighbours; ``None`` = all items.
        device: where to run the top-k.
    """

    def __init__(self, score_block: Callable[[np.ndarray], torch.Tensor], n_items: int, *,
                 columns: np.ndarray | None = None, device: str | torch.device | None = "auto") -> None:
        self.score_block = score_block
        self.n_items = int(n_items)
        self.device = resolve_device(device)
        self.columns = _check_columns(columns, self.n_items)
        self._column_tensor = None if self.columns is None else torch.from_numpy(self.columns).to(self.device)
        self.n_columns = self.n_items if self.columns is None else len(self.columns)
        self.bytes_per_row = 4 * (self.n_items + self.n_columns)  # the function's result and our copy

    def __call__(self, query_index: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        scores = torch.as_tensor(self.score_block(np.asarray(query_index, dtype=np.int64))).detach()
        if scores.shape != (len(query_index), self.n_items):
            raise HybridRecError(f"score function returned shape {tuple(scores.shape)}, "
                                 f"expected {(len(query_index), self.n_items)}")
        scores = scores.to(self.device, torch.float32)
        scores = scores.clone() if self._column_tensor is None else scores.index_select(1, self._column_tensor)
        return scores.masked_fill_(torch.isnan(scores), -torch.inf)


Scorer = EmbeddingScorer | FunctionScorer


def _check_columns(columns: np.ndarray | None, n_items: int) -> np.ndarray | None:
    if columns is None:
        return None
    columns = np.unique(np.asarray(columns, dtype=np.int64))
    if len(columns) and (columns[0] < 0 or columns[-1] >= n_items):
        raise HybridRecError(f"candidate item indices must lie in 0..{n_items - 1}")
    return columns


@dataclass
class TopKBlock:
    """Top-k of one block of queries (internal indices).

    Attributes:
        query_index: ``[b]`` int64.
        result_index: ``[b, k]`` int64, best first; ``-1`` where fewer than ``k`` results qualified.
        scores: ``[b, k]`` float32 (meaningless where ``result_index`` is ``-1``).
    """

    query_index: np.ndarray
    result_index: np.ndarray
    scores: np.ndarray


def iter_top_k(scorer: Scorer, query_index: np.ndarray, k: int, *, exclude_self: bool = True,
               min_score: float | None = None, block_size: int | None = None,
               memory_budget_bytes: int | None = None) -> Iterator[TopKBlock]:
    """Exact top-``k`` results of each query, one block of queries at a time.

    Args:
        scorer: an :class:`EmbeddingScorer` or :class:`FunctionScorer` (its ``columns`` are the
            only possible results).
        query_index: item indices to find neighbours for ``[n_queries]``.
        exclude_self: a query item is never its own neighbour.
        min_score: results scoring below it are dropped (index ``-1``).
        block_size: queries per block; default from ``memory_budget_bytes`` (:func:`choose_block_size`).

    Yields:
        :class:`TopKBlock` in query order.
    """
    if k < 1:
        raise HybridRecError(f"k must be >= 1, got {k}")
    query_index = np.asarray(query_index, dtype=np.int64)
    if len(query_index) and (query_index.min() < 0 or query_index.max() >= scorer.n_items):
        raise HybridRecError(f"query item indices must lie in 0..{scorer.n_items - 1}")
    if block_size is None:
        block_size = choose_block_size(scorer.n_columns, len(query_index), bytes_per_row=scorer.bytes_per_row,
                                       memory_budget_bytes=memory_budget_bytes, device=scorer.device)
    logger.info("top-%d of %d queries over %d columns in blocks of %d on %s (%d threads)", k, len(query_index),
                scorer.n_columns, block_size, scorer.device, torch.get_num_threads())
    if scorer.columns is None:
        self_column = np.arange(scorer.n_items, dtype=np.int64)
        column_items = None
    else:
        self_column = np.full(scorer.n_items, -1, dtype=np.int64)
        self_column[scorer.columns] = np.arange(len(scorer.columns))
        column_items = scorer.columns
    buffer, group_length = None, None
    if isinstance(scorer, EmbeddingScorer) and len(query_index):
        group_length = group_length_for(scorer.n_columns, k, scorer.device)
        width = scorer.n_columns if group_length is None else -(-scorer.n_columns // group_length) * group_length
        buffer = torch.empty(min(block_size, len(query_index)), width, device=scorer.device)
    for start in range(0, len(query_index), block_size):
        block = query_index[start:start + block_size]
        with torch.no_grad():
            scores = scorer(block, out=None if buffer is None else buffer[:len(block)])
        if exclude_self:
            own = self_column[block]
            rows = np.flatnonzero(own >= 0)
            scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(own[rows]).to(scores.device)] = -torch.inf
        values, columns = select_top_k(scores, k, group_length=group_length)
        if min_score is not None:
            columns[values < min_score] = -1
        if column_items is not None:
            columns = np.where(columns >= 0, column_items[np.maximum(columns, 0)], -1)
        yield TopKBlock(query_index=block, result_index=columns, scores=values)


def exact_top_k(embeddings: torch.Tensor | np.ndarray, k: int, *, metric: str = "cosine",
                query_index: np.ndarray | None = None, candidate_index: np.ndarray | None = None,
                exclude_self: bool = True, min_score: float | None = None,
                memory_budget_bytes: int | None = None,
                device: str | torch.device | None = "auto") -> tuple[np.ndarray, np.ndarray]:
    """All results of :func:`iter_top_k` over embeddings, gathered (``[n_queries, k]`` in memory).

    Returns:
        ``(scores, result_index)``, both ``[n_queries, min(k, n_columns)]``.
    """
    scorer = EmbeddingScorer(embeddings, metric=metric, columns=candidate_index, device=device)
    if query_index is None:
        query_index = np.arange(scorer.n_items)
    blocks = list(iter_top_k(scorer, query_index, k, exclude_self=exclude_self, min_score=min_score,
                             memory_budget_bytes=memory_budget_bytes))
    width = min(k, scorer.n_columns)
    if not blocks:
        return np.zeros((0, width), np.float32), np.zeros((0, width), np.int64)
    return (np.concatenate([b.scores for b in blocks]), np.concatenate([b.result_index for b in blocks]))
