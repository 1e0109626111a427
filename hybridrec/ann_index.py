"""Approximate nearest items with faiss (optional extra ``hybridrec[ann]``): HNSW or IVF-Flat on
inner product (cosine = inner product of L2-normalised vectors), and its recall against exact.

Two-stage search for a model whose similarity is its own (not the vectors' cosine): faiss
proposes ``RERANK_CANDIDATES_PER_RESULT x k`` candidates per query from the model's vectors, the
model may add its own (:func:`merged_candidate_blocks`), and :func:`reranked_top_k_blocks` keeps the
``k`` best by the model's exact similarity: gathered from full rows ``[b, n_items]``, or, where the
model scores pairs, computed on the ``[b, c]`` candidates alone (never a full catalog row).

Everything here raises a clear :class:`HybridRecError` when faiss is not installed; nothing else
in hybridrec imports faiss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from hybridrec.errors import HybridRecError
from hybridrec.topk import METRICS, EmbeddingScorer, FunctionScorer, TopKBlock, iter_top_k, select_top_k

logger = logging.getLogger(__name__)

ANN_KINDS = ("hnsw", "ivf")


def faiss_available() -> bool:
    """Whether ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise HybridRecError("approximate search needs faiss: pip install 'hybridrec[ann]' (faiss-cpu)") from None
    return faiss


@dataclass(frozen=True)
class AnnConfig:
    """Settings of the approximate index.

    Attributes:
        kind: ``"hnsw"`` (graph; no training) or ``"ivf"`` (inverted lists over k-means cells).
        hnsw_neighbors: HNSW links per node (``M``).
        ef_construction: HNSW candidate list while building.
        ef_search: HNSW candidate list while searching; default ``max(2 * k, 128)``.
        ivf_lists: IVF cells; default ``4 * sqrt(n_items)``.
        ivf_probe: IVF cells visited per query.
        batch_size: queries per search call.
    """

    kind: str = "hnsw"
    hnsw_neighbors: int = 32
    ef_construction: int = 200
    ef_search: int | None = None
    ivf_lists: int | None = None
    ivf_probe: int = 32
    batch_size: int = 16384

    def __post_init__(self) -> None:
        if self.kind not in ANN_KINDS:
            raise HybridRecError(f"AnnConfig.kind must be one of {ANN_KINDS}, got {self.kind!r}")
        for name in ("hnsw_neighbors", "ef_construction", "ivf_probe", "batch_size"):
            if getattr(self, name) < 1:
                raise HybridRecError(f"AnnConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("ef_search", "ivf_lists"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise HybridRecError(f"AnnConfig.{name} must be >= 1 or None, got {getattr(self, name)}")


class FaissIndex:
    """Approximate inner-product index over (a subset of) item vectors.

    Args:
        embeddings: ``[n_items, dim]`` item vectors.
        metric: ``"cosine"`` (vectors L2-normalised first) or ``"dot"``.
        columns: sorted item indices to index (the only possible results); ``None`` = all.
        config: :class:`AnnConfig`.
    """

    def __init__(self, embeddings: torch.Tensor | np.ndarray, *, metric: str = "cosine",
                 columns: np.ndarray | None = None, config: AnnConfig | None = None) -> None:
        faiss = _faiss()
        if metric not in METRICS:
            raise HybridRecError(f"metric must be one of {METRICS}, got {metric!r}")
        self.config = config or AnnConfig()
        self.metric = metric
        vectors = torch.as_tensor(embeddings).detach().float()
        if metric == "cosine":
            vectors = torch.nn.functional.normalize(vectors, dim=1)
        self.vectors = np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)
        self.n_items, dim = self.vectors.shape
        self.columns = None if columns is None else np.unique(np.asarray(columns, dtype=np.int64))
        indexed = self.vectors if self.columns is None else self.vectors[self.columns]
        if self.config.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, self.config.hnsw_neighbors, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.config.ef_construction
        else:
            n_lists = self.config.ivf_lists or max(1, int(4 * math.sqrt(len(indexed))))
            n_lists = min(n_lists, max(1, len(indexed) // 39))  # faiss wants ~39 training points per cell
            self._quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).permutation(len(indexed))[:256 * n_lists]
            self.index.train(indexed[np.sort(sample)])
            self.index.nprobe = min(self.config.ivf_probe, n_lists)
        self.index.add(indexed)
        self.n_indexed = len(indexed)
        logger.info("faiss %s index over %d items (dim %d)", self.config.kind, self.n_indexed, dim)

    def search(self, query_index: np.ndarray, k: int, *, exclude_self: bool = True,
               min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` items of queries ``query_index`` ``[b]``.

        Returns:
            ``(scores, item_index)``, both ``[b, min(k, n_indexed)]``, best first; index ``-1``
            where fewer results were found or kept.
        """
        query_index = np.asarray(query_index, dtype=np.int64)
        width = min(k, self.n_indexed)
        depth = min(width + int(exclude_self), self.n_indexed)
        if self.config.kind == "hnsw":
            self.index.hnsw.efSearch = self.config.ef_search or max(2 * depth, 128)
        scores, positions = self.index.search(self.vectors[query_index], depth)
        items = positions if self.columns is None else np.where(positions >= 0, self.columns[np.maximum(positions, 0)], -1)
        drop = items < 0
        if exclude_self:
            drop |= items == query_index[:, None]
        if min_score is not None:
            drop |= scores < min_score
        keep_first = np.argsort(drop, axis=1, kind="stable")[:, :width]  # kept results, in faiss order
        items = np.take_along_axis(np.where(drop, -1, items), keep_first, axis=1)
        scores = np.take_along_axis(scores, keep_first, axis=1).astype(np.float32)
        return scores, items


def approximate_top_k_blocks(embeddings: torch.Tensor | np.ndarray, query_index: np.ndarray, k: int, *,
                             metric: str = "cosine", candidate_index: np.ndarray | None = None,
                             exclude_self: bool = True, min_score: float | None = None,
                             config: AnnConfig | None = None) -> tuple[Iterator[TopKBlock], FaissIndex]:
    """Build a :class:`FaissIndex` and return ``(blocks, index)``, blocks like :func:`iter_top_k`'s."""
    index = FaissIndex(embeddings, metric=metric, columns=candidate_index, config=config)
    query_index = np.asarray(query_index, dtype=np.int64)

    def blocks() -> Iterator[TopKBlock]:
        for start in range(0, len(query_index), index.config.batch_size):
            batch = query_index[start:start + index.config.batch_size]
            scores, items = index.search(batch, k, exclude_self=exclude_self, min_score=min_score)
            yield TopKBlock(query_index=batch, result_index=items, scores=scores)

    return blocks(), index


def recall_at_k(approx_index: np.ndarray, exact_index: np.ndarray) -> float:
    """Mean over queries of ``|approx ∩ exact| / |exact|`` for ``[n_queries, k]`` results (``-1`` = none).

    Queries with no exact result are left out; ``nan`` when none has one.
    """
    approx_index, exact_index = np.asarray(approx_index), np.asarray(exact_index)
    exact_count = (exact_index >= 0).sum(axis=1)
    found = ((approx_index[:, :, None] == exact_index[:, None, :]) & (exact_index[:, None, :] >= 0)).any(axis=1)
    hits = found.sum(axis=1)
    rows = exact_count > 0
    return float(np.mean(hits[rows] / exact_count[rows])) if rows.any() else float("nan")


def measure_recall(index: FaissIndex, embeddings: torch.Tensor | np.ndarray, query_index: np.ndarray, k: int, *,
                   metric: str = "cosine", candidate_index: np.ndarray | None = None, exclude_self: bool = True,
                   sample_size: int = 1000, seed: int = 0, device: str | torch.device | None = "auto") -> float:
    """Recall@``k`` of ``index`` against exact search on a seeded sample of ``query_index``."""
    query_index = np.asarray(query_index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(query_index, size=min(sample_size, len(query_index)), replace=False))
    scorer = EmbeddingScorer(embeddings, metric=metric, columns=candidate_index, device=device)
    exact = np.concatenate([block.result_index for block in iter_top_k(scorer, sample, k, exclude_self=exclude_self)])
    _, approx = index.search(sample, k, exclude_self=exclude_self)
    return recall_at_k(approx, exact)


#: Candidates the approximate stage hands to the exact re-rank, per result kept.
RERANK_CANDIDATES_PER_RESULT = 10
#: Most (query, candidate) pairs per call of a model's ``item_similarity_pairs``: bounds the
#: re-rank's working memory whatever the faiss batch size.
RERANK_PAIRS_PER_CALL = 1 << 20


def _proposed_candidates(propose_candidates, query_index: np.ndarray, n_items: int) -> np.ndarray:
    """``propose_candidates(query_index)`` checked: int64 ``[b, m]``, every value in ``-1..n_items-1``."""
    proposed = propose_candidates(query_index)
    proposed = proposed.detach().cpu().numpy() if isinstance(proposed, torch.Tensor) else np.asarray(proposed)
    if proposed.ndim != 2 or proposed.shape[0] != len(query_index):
        raise HybridRecError(f"similar_item_candidates returned shape {proposed.shape}, "
                             f"expected ({len(query_index)}, m)")
    if proposed.size and not np.issubdtype(proposed.dtype, np.integer):
        raise HybridRecError(f"similar_item_candidates returned {proposed.dtype} values, expected int64 item indices")
    proposed = proposed.astype(np.int64, copy=False)
    if proposed.size and (proposed.min() < -1 or proposed.max() >= n_items):
        raise HybridRecError(f"similar_item_candidates returned item indices outside -1..{n_items - 1}")
    return proposed


def distinct_candidates(candidates: np.ndarray, query_index: np.ndarray, *, allowed: np.ndarray | None = None,
                        exclude_self: bool = True) -> np.ndarray:
    """Each row's distinct candidates in ascending item order, ``-1`` padded.

    Args:
        candidates: ``[b, w]`` int64 item indices, ``-1`` = none (repeats allowed).
        query_index: ``[b]`` the query of each row.
        allowed: ``[n_items]`` bool, the only items that may stay; ``None`` = all.
        exclude_self: drop a row's own query item.

    Returns:
        ``[b, c]`` int64, ``c`` the most distinct candidates any row keeps.
    """
    dropped = candidates < 0
    if exclude_self:
        dropped |= candidates == np.asarray(query_index, dtype=np.int64)[:, None]
    if allowed is not None:
        dropped |= ~allowed[np.maximum(candidates, 0)]
    missing = np.iinfo(np.int64).max  # sorts after every item index
    ordered = np.sort(np.where(dropped, missing, candidates), axis=1)
    repeated = np.zeros(ordered.shape, dtype=bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    ordered = np.sort(np.where(repeated, missing, ordered), axis=1)
    width = int((ordered != missing).sum(axis=1).max(initial=0))
    ordered = ordered[:, :width]
    ordered[ordered == missing] = -1
    return ordered


def merged_candidate_blocks(candidate_blocks: Iterator[TopKBlock], propose_candidates, n_items: int, *,
                            candidate_index: np.ndarray | None = None,
                            exclude_self: bool = True) -> Iterator[TopKBlock]:
    """Add a model's own candidates to each query's approximate ones (deduplicated per query).

    Args:
        candidate_blocks: :class:`TopKBlock` s of approximate candidates (``-1`` = none).
        propose_candidates: ``query_index [b] -> item_index [b, m]`` int64, ``-1`` padded (a model's
            ``similar_item_candidates``), called once per block.
        n_items: catalog size.
        candidate_index: sorted item indices of the only items that may be results; ``None`` = all.
        exclude_self: drop the query item itself.

    Yields:
        :class:`TopKBlock` s whose ``result_index`` ``[b, c]`` holds each query's distinct candidates
        from both sources in ascending item order (``-1`` padded); ``scores`` are NaN (not scored yet).
    """
    allowed = None
    if candidate_index is not None:
        allowed = np.zeros(n_items, dtype=bool)
        allowed[np.asarray(candidate_index, dtype=np.int64)] = True
    for block in candidate_blocks:
        proposed = _proposed_candidates(propose_candidates, block.query_index, n_items)
        merged = distinct_candidates(np.concatenate([block.result_index, proposed], axis=1), block.query_index,
                                     allowed=allowed, exclude_self=exclude_self)
        yield TopKBlock(query_index=block.query_index, result_index=merged,
                        scores=np.full(merged.shape, np.nan, dtype=np.float32))


def _pair_scores(score_pairs, query_index: np.ndarray, columns: np.ndarray) -> torch.Tensor:
    """``score_pairs(query_index, columns)`` ``[b, c]`` float32 on the CPU, in calls of at most
    :data:`RERANK_PAIRS_PER_CALL` pairs."""
    rows_per_call = max(1, RERANK_PAIRS_PER_CALL // max(columns.shape[1], 1))
    pieces = []
    for start in range(0, len(query_index), rows_per_call):
        part = columns[start:start + rows_per_call]
        scores = torch.as_tensor(score_pairs(query_index[start:start + rows_per_call], part)).detach()
        if tuple(scores.shape) != part.shape:
            raise HybridRecError(f"item_similarity_pairs returned shape {tuple(scores.shape)}, expected {part.shape}")
        pieces.append(scores.to("cpu", torch.float32))
    if not pieces:
        return torch.zeros(columns.shape, dtype=torch.float32)
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def reranked_top_k_blocks(candidate_blocks: Iterator[TopKBlock], score_block, k: int, *,
                          min_score: float | None = None, score_pairs=None) -> Iterator[TopKBlock]:
    """Second stage of a two-stage search: re-rank each query's approximate candidates by exact scores.

    Args:
        candidate_blocks: :class:`TopKBlock` s of candidates (``-1`` = none), e.g. from
            :func:`approximate_top_k_blocks` with more than ``k`` results per query.
        score_block: ``item_index [b] -> scores [b, n_items]``, the model's exact similarity; the
            candidates' scores are gathered from those full rows unless ``score_pairs`` is given.
        k: results kept per query.
        min_score: drop results whose exact score is below it.
        score_pairs: ``(query_index [b], columns [b, c] int64, -1 = none) -> scores [b, c]``, the same
            similarity on the candidate pairs only (a model's ``item_similarity_pairs``); then
            ``score_block`` is never called.

    Yields:
        :class:`TopKBlock` s of the ``k`` best candidates by exact score (ties to the earlier
        candidate in the block's order).
    """
    for block in candidate_blocks:
        columns = torch.from_numpy(block.result_index)
        if block.result_index.shape[1] == 0:
            yield TopKBlock(query_index=block.query_index, result_index=block.result_index,
                            scores=np.zeros(block.result_index.shape, dtype=np.float32))
            continue
        if score_pairs is not None:
            exact = _pair_scores(score_pairs, block.query_index, block.result_index)
        else:
            scores = torch.as_tensor(score_block(block.query_index), dtype=torch.float32).cpu()
            exact = torch.gather(scores, 1, columns.clamp(min=0))
        exact = exact.masked_fill(columns < 0, -torch.inf)
        if min_score is not None:
            exact = exact.masked_fill(exact < min_score, -torch.inf)
        values, order = select_top_k(exact, min(k, exact.shape[1]))
        chosen = np.where(order >= 0, np.take_along_axis(block.result_index, np.maximum(order, 0), axis=1), -1)
        yield TopKBlock(query_index=block.query_index, result_index=chosen, scores=values)


def two_stage_top_k_blocks(candidate_blocks: Iterator[TopKBlock], score_block, k: int, n_items: int, *,
                           score_pairs=None, propose_candidates=None, candidate_index: np.ndarray | None = None,
                           exclude_self: bool = True, min_score: float | None = None) -> Iterator[TopKBlock]:
    """Approximate candidates (plus ``propose_candidates``' own, through
    :func:`merged_candidate_blocks`) re-ranked by :func:`reranked_top_k_blocks`: the one two-stage
    path, shared by the export and :func:`measure_reranked_recall`."""
    if propose_candidates is not None:
        candidate_blocks = merged_candidate_blocks(candidate_blocks, propose_candidates, n_items,
                                                   candidate_index=candidate_index, exclude_self=exclude_self)
    return reranked_top_k_blocks(candidate_blocks, score_block, k, min_score=min_score, score_pairs=score_pairs)


def measure_reranked_recall(index: FaissIndex, score_block, n_items: int, query_index: np.ndarray, k: int, *,
                            candidate_index: np.ndarray | None = None, exclude_self: bool = True,
                            sample_size: int = 1000, seed: int = 0, device: str | torch.device | None = "auto",
                            score_pairs=None, propose_candidates=None) -> float:
    """Recall@``k`` of the two-stage search (:func:`two_stage_top_k_blocks` over ``index``'s
    candidates, with the same ``score_pairs`` and ``propose_candidates`` as the export) against
    exact full-row search by ``score_block`` on a seeded sample of ``query_index``."""
    query_index = np.asarray(query_index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(query_index, size=min(sample_size, len(query_index)), replace=False))
    scorer = FunctionScorer(score_block, n_items, columns=candidate_index, device=device)
    exact = np.concatenate([block.result_index for block in iter_top_k(scorer, sample, k, exclude_self=exclude_self)])
    scores, items = index.search(sample, k * RERANK_CANDIDATES_PER_RESULT, exclude_self=exclude_self)
    reranked = next(two_stage_top_k_blocks(iter([TopKBlock(sample, items, scores)]), score_block, k, n_items,
                                           score_pairs=score_pairs, propose_candidates=propose_candidates,
                                           candidate_index=candidate_index, exclude_self=exclude_self))
    return recall_at_k(reranked.result_index, exact)
