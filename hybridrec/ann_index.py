"""Approximate nearest items with faiss (optional extra ``hybridrec[ann]``): HNSW or IVF-Flat on
inner product (cosine = inner product of L2-normalised vectors), and its recall against exact.

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


def reranked_top_k_blocks(candidate_blocks: Iterator[TopKBlock], score_block, k: int, *,
                          min_score: float | None = None) -> Iterator[TopKBlock]:
    """Second stage of a two-stage search: re-rank each query's approximate candidates by exact scores.

    Args:
        candidate_blocks: :class:`TopKBlock` s of candidates (``-1`` = none), e.g. from
            :func:`approximate_top_k_blocks` with more than ``k`` results per query.
        score_block: ``item_index [b] -> scores [b, n_items]``, the model's exact similarity.
        k: results kept per query.
        min_score: drop results whose exact score is below it.

    Yields:
        :class:`TopKBlock` s of the ``k`` best candidates by exact score (ties to the lower column).
    """
    for block in candidate_blocks:
        scores = torch.as_tensor(score_block(block.query_index), dtype=torch.float32).cpu()
        columns = torch.from_numpy(block.result_index)
        exact = torch.gather(scores, 1, columns.clamp(min=0))
        exact[columns < 0] = -torch.inf
        if min_score is not None:
            exact[exact < min_score] = -torch.inf
        values, order = select_top_k(exact, min(k, exact.shape[1]))
        chosen = np.where(order >= 0, np.take_along_axis(block.result_index, np.maximum(order, 0), axis=1), -1)
        yield TopKBlock(query_index=block.query_index, result_index=chosen, scores=values)


def measure_reranked_recall(index: FaissIndex, score_block, n_items: int, query_index: np.ndarray, k: int, *,
                            candidate_index: np.ndarray | None = None, exclude_self: bool = True,
                            sample_size: int = 1000, seed: int = 0,
                            device: str | torch.device | None = "auto") -> float:
    """Recall@``k`` of the two-stage search (:func:`reranked_top_k_blocks` over ``index``'s
    candidates) against exact search by ``score_block`` on a seeded sample of ``query_index``."""
    query_index = np.asarray(query_index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(query_index, size=min(sample_size, len(query_index)), replace=False))
    scorer = FunctionScorer(score_block, n_items, columns=candidate_index, device=device)
    exact = np.concatenate([block.result_index for block in iter_top_k(scorer, sample, k, exclude_self=exclude_self)])
    scores, items = index.search(sample, k * RERANK_CANDIDATES_PER_RESULT, exclude_self=exclude_self)
    reranked = next(reranked_top_k_blocks(iter([TopKBlock(sample, items, scores)]), score_block, k))
    return recall_at_k(reranked.result_index, exact)
