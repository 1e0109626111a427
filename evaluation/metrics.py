"""Full-ranking metrics: one place for the definitions.

Each user's ranked list is a row of ``top_items`` ``[b, k_max]`` (item indices, best first, ``-1``
where fewer items were eligible; see :func:`hybridrec.topk.select_top_k`, the one top-k, which
breaks ties by the lower item index). ``hits`` ``[b, k]`` marks the listed items that are among the
user's test items, and ``n_relevant`` ``[b]`` counts those test items. Relevance is binary.

Per user, with ``rel_i`` the hit at rank ``i`` (1-based) and ``R = n_relevant``:

* ``precision@K = sum_{i<=K} rel_i / K`` (``K`` even when fewer than ``K`` items were eligible);
* ``recall@K = sum_{i<=K} rel_i / R`` (denominator ``|test|``, not ``min(|test|, K)``); the one
  definition, in :func:`recall_at_k`, which offers ``min(R, K)`` as ``denominator="capped"`` for
  the hybrid model's tuning searches (a list of ``K`` hits then scores 1 even when ``R > K``);
* ``f1@K = 2 P R / (P + R)``, 0 when both are 0;
* ``ndcg@K = DCG / IDCG`` with ``DCG = sum_{i<=K} rel_i / log2(i + 1)`` and ``IDCG`` the DCG of
  ``min(R, K)`` hits at the top;
* ``map@K = sum_{i<=K} precision@i * rel_i / min(R, K)``;
* ``hit_rate@K = 1`` if any ``rel_i`` with ``i <= K``, else 0;
* ``mrr@K = 1 / (rank of the first hit)`` if within ``K``, else 0.

These are averaged over users with ``R >= 1`` (others are skipped; ``n_users`` counts the rest).
Two list-level metrics complete them:

* ``coverage@K``: distinct items in the evaluated users' top-``K`` lists / number of candidate items;
* ``novelty@K``: mean self-information ``-log2(pop(i) / n_train_users)`` of the listed items,
  where ``pop(i)`` is the number of training users of item ``i``, counted as 1 when it has none
  (so cold items score as the rarest warm item would).

The same definitions as ``torch_geometric.metrics.LinkPred*`` (precision, recall, F1, NDCG, MAP,
MRR, hit ratio), which the tests check them against.

A leaf of the package: it imports only the core (errors, the top-k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from hybridrec.errors import HybridRecError
from hybridrec.topk import select_top_k

#: Metric names computed per K, in report order.
METRICS_AT_K = ("precision", "recall", "f1", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty")
#: What recall@K divides by: ``"relevant"`` (``R``, the reported metric) or ``"capped"`` (``min(R, K)``).
RECALL_DENOMINATORS = ("relevant", "capped")


def hits_at_k(top_items: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Which listed items are relevant: ``top_items`` ``[b, k]`` (``-1`` = empty slot) and
    ``truth`` ``[b, n_items]`` bool -> ``[b, k]`` bool."""
    valid = top_items >= 0
    return truth.gather(1, top_items.clamp(min=0)) & valid


def _ideal_dcg(n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """``IDCG@k`` for ``n_relevant`` ``[b]`` binary-relevant items -> ``[b]`` float64."""
    gains = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), gains.cumsum(0)])
    return cumulative[n_relevant.clamp(max=k)]


def _first_k(hits: torch.Tensor, k: int) -> torch.Tensor:
    """``hits[:, :k]`` as float64; lists shorter than ``k`` count their missing slots as misses."""
    return hits[:, :k].to(torch.float64)


def precision_at_k(hits: torch.Tensor, k: int) -> torch.Tensor:
    """``[b, >=k]`` hits -> ``[b]`` precision@k."""
    return _first_k(hits, k).sum(1) / k


def recall_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int, *,
                denominator: str = "relevant") -> torch.Tensor:
    """``[b, >=k]`` hits, ``[b]`` relevant counts -> ``[b]`` float64 recall@k (0 when nothing is relevant).

    Args:
        denominator: ``"relevant"`` divides the hits by ``R = n_relevant`` (the metric every report
            shows); ``"capped"`` by ``min(R, k)``, so ``k`` hits score 1 even when ``R > k`` (what
            the hybrid model's validation searches maximise).
    """
    if denominator not in RECALL_DENOMINATORS:
        raise HybridRecError(f"denominator must be one of {RECALL_DENOMINATORS}, got {denominator!r}")
    counts = n_relevant.clamp(min=1) if denominator == "relevant" else n_relevant.clamp(min=1, max=k)
    return _first_k(hits, k).sum(1) / counts.to(torch.float64)


def mean_recall_at_k(scores: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, k: int, *,
                     denominator: str = "relevant", ties: str = "lower_column") -> float:
    """Mean :func:`recall_at_k` of a score matrix: ``scores`` ``[b, n_items]`` (``-inf`` = never
    ranked) against ``truth`` ``[b, n_items]`` bool, over the users with a relevant item.

    The lists are :func:`hybridrec.topk.select_top_k` with ``ties`` (``"backend"``: the backend's
    own tie order, ``numpy.argpartition`` for an array); the mean is NumPy's over the per-user
    float64 values. NaN when no user has a relevant item.
    """
    _, top_items = select_top_k(scores, k, ties=ties)
    truth = torch.as_tensor(truth)
    n_relevant = truth.sum(1)
    hits = hits_at_k(torch.from_numpy(top_items), truth)
    per_user = recall_at_k(hits, n_relevant, k, denominator=denominator)[n_relevant > 0]
    return float(np.mean(per_user.numpy())) if len(per_user) else math.nan


def f1_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Harmonic mean of precision@k and recall@k -> ``[b]`` (0 when both are 0)."""
    precision, recall = precision_at_k(hits, k), recall_at_k(hits, n_relevant, k)
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-300), torch.zeros_like(total))


def ndcg_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Binary-relevance NDCG@k, ideal DCG over ``min(n_relevant, k)`` hits -> ``[b]``."""
    first = _first_k(hits, k)
    discounts = 1.0 / torch.log2(torch.arange(2, first.shape[1] + 2, dtype=torch.float64))
    dcg = (first * discounts).sum(1)
    ideal = _ideal_dcg(n_relevant, k)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-300), torch.zeros_like(dcg))


def average_precision_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """AP@k normalised by ``min(n_relevant, k)`` -> ``[b]`` (MAP@k is its mean)."""
    first = _first_k(hits, k)
    ranks = torch.arange(1, first.shape[1] + 1, dtype=torch.float64)
    precision_at_rank = first.cumsum(1) / ranks
    return (precision_at_rank * first).sum(1) / n_relevant.clamp(min=1, max=k).to(torch.float64)


def hit_rate_at_k(hits: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 where any of the first ``k`` items is relevant -> ``[b]``."""
    return hits[:, :k].any(1).to(torch.float64)


def reciprocal_rank_at_k(hits: torch.Tensor, k: int) -> torch.Tensor:
    """``1 / rank`` of the first relevant item within ``k``, else 0 -> ``[b]``."""
    first = _first_k(hits, k)
    ranks = torch.arange(1, first.shape[1] + 1, dtype=torch.float64)
    return (first / ranks).amax(1) if first.shape[1] else torch.zeros(first.shape[0], dtype=torch.float64)


def item_self_information(item_popularity: torch.Tensor, n_train_users: int) -> torch.Tensor:
    """``-log2(max(pop, 1) / n_train_users)`` per item: ``[n_items]`` -> ``[n_items]`` float64."""
    if n_train_users < 1:
        raise HybridRecError(f"n_train_users must be >= 1, got {n_train_users}")
    return -torch.log2(item_popularity.to(torch.float64).clamp(min=1) / n_train_users)


#: The per-user metrics of :data:`METRICS_AT_K`: ``(hits [b, k_max], n_relevant [b], k) -> [b]`` float64.
_PER_USER_METRICS = {
    "precision": lambda hits, n_relevant, k: precision_at_k(hits, k),
    "recall": recall_at_k,
    "f1": f1_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "hit_rate": lambda hits, n_relevant, k: hit_rate_at_k(hits, k),
    "mrr": lambda hits, n_relevant, k: reciprocal_rank_at_k(hits, k),
}


class RankingMetrics:
    """Accumulates the metrics of :data:`METRICS_AT_K` at several K over user batches.

    Use like a torchmetrics metric: :meth:`update` per batch, :meth:`compute` at the end.

    Args:
        ks: cut-offs, e.g. ``(10, 20)``.
        n_items: size of the item index space (``top_items`` values are ``< n_items``).
        n_candidates: number of items that could be recommended (coverage denominator);
            defaults to ``n_items``.
        item_popularity: ``[n_items]`` training users per item, for novelty (omitted: no novelty).
        n_train_users: number of training users, for novelty.
        metrics: the names of :data:`METRICS_AT_K` to compute (default all), e.g. ``("recall",)``
            for the trainer's validation; each is computed the same way whatever the others are.
    """

    def __init__(self, ks: Sequence[int], n_items: int, *, n_candidates: int | None = None,
                 item_popularity: torch.Tensor | None = None, n_train_users: int | None = None,
                 metrics: Sequence[str] = METRICS_AT_K) -> None:
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        if not self.ks or self.ks[0] < 1:
            raise HybridRecError(f"ks must be positive integers, got {list(ks)}")
        unknown = sorted(set(metrics) - set(METRICS_AT_K))
        if unknown or not metrics:
            raise HybridRecError(f"metrics must name some of {METRICS_AT_K}, got {list(metrics)}")
        self.metrics = tuple(name for name in METRICS_AT_K if name in set(metrics))
        self.n_items = n_items
        self.n_candidates = n_items if n_candidates is None else n_candidates
        self.self_information = None
        if item_popularity is not None:
            if n_train_users is None:
                raise HybridRecError("RankingMetrics: item_popularity needs n_train_users")
            self.self_information = item_self_information(item_popularity, n_train_users)
        self.reset()

    @property
    def k_max(self) -> int:
        return self.ks[-1]

    def reset(self) -> None:
        self.n_users = 0
        self.sums = {f"{name}@{k}": 0.0 for k in self.ks for name in self.metrics if name != "coverage"}
        self.recommended = {k: torch.zeros(self.n_items, dtype=torch.bool) for k in self.ks}

    def update(self, top_items: torch.Tensor, truth: torch.Tensor, n_relevant: torch.Tensor | None = None) -> None:
        """Add one batch.

        Args:
            top_items: ``[b, k]`` ranked item indices (``-1`` = empty slot), ``k <= k_max``
                only when fewer items were eligible.
            truth: ``[b, n_items]`` bool, the users' test items.
            n_relevant: ``[b]`` test-item counts when some test items are outside ``truth``
                (e.g. unknown to the model: they count as misses); defaults to ``truth.sum(1)``.
        """
        if top_items.shape[0] != truth.shape[0]:
            raise HybridRecError(f"top_items has {top_items.shape[0]} rows but truth has {truth.shape[0]}")
        if n_relevant is None:
            n_relevant = truth.sum(1)
        evaluated = n_relevant > 0
        if not bool(evaluated.any()):
            return
        top_items, truth, n_relevant = top_items[evaluated], truth[evaluated], n_relevant[evaluated].long()
        hits = hits_at_k(top_items[:, :self.k_max], truth)
        self.n_users += int(top_items.shape[0])
        for k in self.ks:
            for name in self.metrics:
                if name in _PER_USER_METRICS:
                    self.sums[f"{name}@{k}"] += float(_PER_USER_METRICS[name](hits, n_relevant, k).sum())
            listed = top_items[:, :k]
            valid = listed >= 0
            if "coverage" in self.metrics:
                self.recommended[k][listed[valid]] = True
            if "novelty" in self.metrics and self.self_information is not None:
                information = torch.where(valid, self.self_information[listed.clamp(min=0)], 0.0)
                per_list = information.sum(1) / valid.sum(1).clamp(min=1)
                self.sums[f"novelty@{k}"] += float(per_list.sum())

    def compute(self) -> dict[str, float]:
        """Mean of each metric over evaluated users, plus coverage and ``n_users``.

        Metrics are NaN when no user was evaluated; novelty is left out without popularity.
        """
        out: dict[str, float] = {}
        for k in self.ks:
            for name in self.metrics:
                key = f"{name}@{k}"
                if name == "coverage":
                    out[key] = (float(self.recommended[k].sum()) / self.n_candidates
                                if self.n_users and self.n_candidates else math.nan)
                elif name == "novelty" and self.self_information is None:
                    continue
                else:
                    out[key] = self.sums[key] / self.n_users if self.n_users else math.nan
        out["n_users"] = self.n_users
        return out
