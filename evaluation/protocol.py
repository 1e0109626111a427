"""Fit a recommender on a split and evaluate it by segment with full ranking.

Segments of the test set (``split.train`` decides what is warm and what is cold):

* ``warm``: users and items both with training interactions; each user ranks the whole catalog.
* ``cold_item``: the same users' test items that have no training interaction; each user ranks
  only the cold items: the items a cold-item split held out (``split.cold_item_ids``), or, for
  other splits, every catalog item without training interactions.
* ``cold_user``: users without training interactions; each ranks the whole catalog and all their
  test items count.

Every ranking leaves out the user's training items (the model's ``filter_seen``) and, when the
test set is evaluated, their validation items. Test pairs that also occur in training are dropped
from the ground truth (they could never be recommended). Users are scored in batches, so memory
stays at ``batch_size x n_items`` scores.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

import hybridrec
from evaluation.metrics import RankingMetrics
from evaluation.splitters import Split
from hybridrec.errors import HybridRecError
from hybridrec.recommender_base import RecommenderBase
from hybridrec.tables import RecDataset

logger = logging.getLogger(__name__)

SEGMENTS = ("warm", "cold_item", "cold_user")


@dataclass(frozen=True)
class EvaluationConfig:
    """How to evaluate.

    Attributes:
        ks: cut-offs for every ``metric@K``.
        batch_size: users scored at once.
        segments: which of :data:`SEGMENTS` to evaluate (a segment with no user is left out).
        on: ``"test"`` or ``"valid"``.
        tie_seed: tied scores are ordered by a per-user pseudo-random item order from this seed, so a
            model that scores many items alike (popularity on cold items, say) gets no signal from
            the catalog's id order; None keeps the lower-index rule.
    """

    ks: tuple[int, ...] = (10, 20)
    batch_size: int = 1024
    segments: tuple[str, ...] = SEGMENTS
    on: str = "test"
    tie_seed: int | None = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(sorted(set(int(k) for k in self.ks))))
        if not self.ks or self.ks[0] < 1:
            raise HybridRecError(f"EvaluationConfig.ks must be positive integers, got {list(self.ks)}")
        if self.batch_size < 1:
            raise HybridRecError(f"EvaluationConfig.batch_size must be >= 1, got {self.batch_size}")
        unknown = [s for s in self.segments if s not in SEGMENTS]
        if unknown:
            raise HybridRecError(f"EvaluationConfig.segments: unknown {unknown}; choose from {list(SEGMENTS)}")
        if self.on not in ("test", "valid"):
            raise HybridRecError(f"EvaluationConfig.on must be 'test' or 'valid', got {self.on!r}")


@dataclass
class EvaluationResult:
    """Metrics by segment plus everything needed to compare two results honestly.

    Attributes:
        model: class name; ``params``: its constructor arguments.
        segments: ``{segment: {"recall@20": ..., "n_users": ...}}``.
        split: the split's ``spec`` (kind, ratios, seed, filter, sizes).
        dataset: name, fingerprint (hash of the interaction table), sizes.
        ks, fit_seconds (None when the model came fitted), evaluate_seconds, version.
        leaked_test_pairs: test pairs the model saw in training (should be 0).
    """

    model: str
    params: dict
    segments: dict[str, dict[str, float]]
    split: dict
    dataset: dict
    ks: tuple[int, ...]
    evaluate_seconds: float
    fit_seconds: float | None = None
    leaked_test_pairs: int = 0
    version: str = field(default_factory=lambda: hybridrec.__version__)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        out = asdict(self)
        out["ks"] = list(self.ks)
        out["params"] = {k: (v if isinstance(v, (bool, int, float, str, type(None))) else repr(v))
                         for k, v in self.params.items()}
        return out


def dataset_fingerprint(interactions: pd.DataFrame) -> str:
    """SHA-256 (hex) of the interaction table's user/item/weight/rating/timestamp columns, row order included."""
    columns = [c for c in ("user_id", "item_id", "weight", "rating", "timestamp") if c in interactions.columns]
    digest = hashlib.sha256(",".join(columns).encode())
    digest.update(pd.util.hash_pandas_object(interactions[columns], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def catalog_tables(split: Split, items: pd.DataFrame | None = None,
                   users: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Item and user tables covering every id of the split, so held-out items and users stay in
    the model's catalog. Given tables are kept whole; ids missing from them are appended."""
    parts = (split.train, split.valid, split.test)
    out = []
    for table, column in ((items, "item_id"), (users, "user_id")):
        seen = pd.Index(pd.unique(np.concatenate([p[column].to_numpy() for p in parts])))
        if table is None:
            out.append(pd.DataFrame({column: seen}))
            continue
        missing = seen.difference(pd.Index(table[column]))
        if len(missing):
            logger.warning("%d %s(s) in the interactions are not in the %s table; added without attributes",
                           len(missing), column, column.removesuffix("_id") + "s")
            table = pd.concat([table, pd.DataFrame({column: missing})], ignore_index=True)
        out.append(table)
    return out[0], out[1]


def _pair_matrix(pairs: pd.DataFrame, model: RecommenderBase) -> sp.csr_matrix:
    """``[n_users, n_items]`` 0/1 matrix of the pairs known to ``model`` (others dropped)."""
    rows = model.user_ids_.to_index(pairs["user_id"].to_numpy(), allow_missing=True)
    cols = model.item_ids_.to_index(pairs["item_id"].to_numpy(), allow_missing=True)
    known = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (rows[known], cols[known])),
                           shape=(len(model.user_ids_), len(model.item_ids_)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def evaluate_ranking(model: RecommenderBase, truth: pd.DataFrame, *, ks: tuple[int, ...] = (10, 20),
                     candidate_item_ids: np.ndarray | None = None, exclude: sp.csr_matrix | None = None,
                     item_popularity: torch.Tensor | None = None, n_train_users: int | None = None,
                     batch_size: int = 1024, description: str = "evaluate",
                     tie_seed: int | None = 0) -> dict[str, float]:
    """Full-ranking metrics of ``model`` against ``truth`` (user_id, item_id pairs).

    Args:
        candidate_item_ids: rank only these items (default: the whole catalog).
        exclude: ``[n_users, n_items]`` pairs never ranked, besides the model's training items.
        item_popularity: ``[n_items]`` training users per item (model index order) for novelty.
        tie_seed: seed of the random item order that breaks ties (None: lower item index).

    Returns:
        ``{"precision@10": ..., "n_users": ..., "n_candidates": ..., "n_test_pairs": ...,
        "skipped_users": ..., "tied_at_cutoff@10": ...}``. Users unknown to the model are skipped
        (counted); test items unknown to it count as misses. ``tied_at_cutoff@K`` is the share of
        users whose K-th and (K+1)-th scores are equal: their list was completed by the tie-break
        (a seeded random item order by default; the lower item index with ``tie_seed=None``, which can
        carry signal of its own: MovieLens ids follow popularity).
    """
    truth = truth[["user_id", "item_id"]].drop_duplicates()
    user_ids = pd.unique(truth["user_id"].to_numpy())
    user_index = model.user_ids_.to_index(user_ids, allow_missing=True)
    skipped_users = int((user_index < 0).sum())
    if skipped_users:
        logger.warning("%s: %d test user(s) unknown to the model are skipped", description, skipped_users)
    user_ids, user_index = user_ids[user_index >= 0], user_index[user_index >= 0]
    truth = truth.loc[truth["user_id"].isin(user_ids)]
    rows = pd.Index(user_ids).get_indexer(truth["user_id"].to_numpy())
    cols = model.item_ids_.to_index(truth["item_id"].to_numpy(), allow_missing=True)
    n_items = len(model.item_ids_)
    n_relevant_all = np.bincount(rows, minlength=len(user_ids))
    known = cols >= 0
    truth_matrix = sp.csr_matrix((np.ones(int(known.sum()), dtype=bool), (rows[known], cols[known])),
                                 shape=(len(user_ids), n_items))
    candidate_mask = None
    n_candidates = n_items
    if candidate_item_ids is not None:
        candidate_index = model.item_ids_.to_index(candidate_item_ids, allow_missing=True)
        candidate_mask = torch.zeros(n_items, dtype=torch.bool)
        candidate_mask[torch.from_numpy(candidate_index[candidate_index >= 0])] = True
        n_candidates = int(candidate_mask.sum())
    too_large = [k for k in sorted(set(ks)) if k > n_candidates]
    if too_large:
        logger.warning("%s: k=%s larger than the catalog of %d rankable item(s): precision@k still divides by k, "
                       "so it cannot reach 1 there", description, ", ".join(map(str, too_large)), n_candidates)
    metrics = RankingMetrics(ks, n_items, n_candidates=n_candidates, item_popularity=item_popularity,
                             n_train_users=n_train_users)
    tied_users = {k: 0 for k in metrics.ks}
    starts = range(0, len(user_index), batch_size)
    for start in tqdm(starts, desc=description, leave=False, disable=len(starts) < 10):
        stop = start + batch_size
        # One extra place, to see whether the cut-off fell inside a run of tied scores.
        top_scores, top_items = model.rank_users(user_index[start:stop], metrics.k_max + 1, filter_seen=True,
                                                 candidate_mask=candidate_mask, exclude=exclude,
                                                 tie_seed=tie_seed)
        n_relevant = torch.from_numpy(n_relevant_all[start:stop])
        metrics.update(top_items[:, :metrics.k_max], torch.from_numpy(truth_matrix[start:stop].toarray()), n_relevant)
        for k in metrics.ks:
            if k < top_scores.shape[1]:
                tied = (top_scores[:, k - 1] == top_scores[:, k]) & torch.isfinite(top_scores[:, k])
                tied_users[k] += int((tied & (n_relevant > 0)).sum())
    result = metrics.compute()
    for k in metrics.ks:
        result[f"tied_at_cutoff@{k}"] = tied_users[k] / metrics.n_users if metrics.n_users else 0.0
    result.update(n_candidates=n_candidates, n_test_pairs=len(truth), skipped_users=skipped_users)
    return result


def segment_truths(split: Split, on: str = "test") -> dict[str, pd.DataFrame]:
    """The ground-truth pairs of each segment (see the module docstring); pairs seen in training dropped."""
    held_out = (split.test if on == "test" else split.valid)[["user_id", "item_id"]].drop_duplicates()
    train_pairs = pd.MultiIndex.from_frame(split.train[["user_id", "item_id"]])
    seen = pd.MultiIndex.from_frame(held_out).isin(train_pairs)
    if seen.any():
        logger.info("%d %s pair(s) also occur in training and are dropped from the ground truth", int(seen.sum()), on)
    held_out = held_out.loc[~seen]
    warm_user = held_out["user_id"].isin(pd.unique(split.train["user_id"]))
    warm_item = held_out["item_id"].isin(pd.unique(split.train["item_id"]))
    return {"warm": held_out.loc[warm_user & warm_item], "cold_item": held_out.loc[warm_user & ~warm_item],
            "cold_user": held_out.loc[~warm_user]}


def evaluate_split(model: RecommenderBase, split: Split,
                   config: EvaluationConfig = EvaluationConfig()) -> tuple[dict[str, dict[str, float]], int]:
    """Evaluate a fitted ``model`` on ``split`` by segment.

    Returns:
        ``({segment: metrics}, leaked_test_pairs)``; segments without users are left out.
        ``leaked_test_pairs`` counts ground-truth pairs found in the model's own training matrix.
    """
    model._check_fitted()
    truths = segment_truths(split, config.on)
    exclude = _pair_matrix(split.valid, model) if config.on == "test" and len(split.valid) else None
    train_items = model.item_ids_.to_index(split.train["item_id"].to_numpy(), allow_missing=True)
    train_users = model.user_ids_.to_index(split.train["user_id"].to_numpy(), allow_missing=True)
    known = (train_items >= 0) & (train_users >= 0)
    distinct = np.unique(np.stack([train_users[known], train_items[known]]), axis=1)
    popularity = torch.from_numpy(np.bincount(distinct[1], minlength=len(model.item_ids_)))
    n_train_users = max(1, int(split.train["user_id"].nunique()))
    if split.cold_item_ids is not None and len(split.cold_item_ids):
        # The items the split hid, not catalog items that merely have no positive interaction.
        cold_items = np.asarray(split.cold_item_ids)
    else:
        cold_items = pd.Index(model.item_ids_.ids).difference(pd.Index(pd.unique(split.train["item_id"]))).to_numpy()

    all_truth = pd.concat(list(truths.values()), ignore_index=True)
    leaked = int(_pair_matrix(all_truth, model).multiply(model.user_items_ > 0).sum())
    if leaked:
        logger.warning("the model was trained on %d of the %s pairs: its %s metrics are not honest",
                       leaked, config.on, config.on)
    results = {}
    for segment in config.segments:
        truth = truths[segment]
        if len(truth) == 0:
            logger.info("segment %s: no %s pairs, skipped", segment, config.on)
            continue
        started = time.perf_counter()
        metrics = evaluate_ranking(
            model, truth, ks=config.ks, candidate_item_ids=cold_items if segment == "cold_item" else None,
            exclude=exclude, item_popularity=popularity, n_train_users=n_train_users,
            batch_size=config.batch_size, description=f"evaluate {segment}", tie_seed=config.tie_seed)
        metrics["evaluate_seconds"] = time.perf_counter() - started
        if metrics["n_users"]:
            results[segment] = metrics
            logger.info("segment %s: %d users, recall@%d %.4f, ndcg@%d %.4f (%.2f s)", segment, metrics["n_users"],
                        config.ks[-1], metrics[f"recall@{config.ks[-1]}"], config.ks[-1],
                        metrics[f"ndcg@{config.ks[-1]}"], metrics["evaluate_seconds"])
    return results, leaked


def dataset_summary(interactions: pd.DataFrame, name: str = "custom") -> dict:
    """Name, fingerprint and sizes of the full (unsplit, unfiltered) interaction table."""
    return {"name": name, "fingerprint": dataset_fingerprint(interactions), "n_interactions": len(interactions),
            "n_users": int(interactions["user_id"].nunique()), "n_items": int(interactions["item_id"].nunique())}


def evaluate_model(model: RecommenderBase, split: Split, *, dataset: dict,
                   config: EvaluationConfig = EvaluationConfig(), fit_seconds: float | None = None) -> EvaluationResult:
    """Evaluate an already fitted ``model`` as-is and wrap the metrics with their provenance."""
    started = time.perf_counter()
    segments, leaked = evaluate_split(model, split, config)
    return EvaluationResult(model=type(model).__name__, params=model.get_params(), segments=segments,
                            split=split.spec, dataset=dataset, ks=config.ks,
                            evaluate_seconds=time.perf_counter() - started, fit_seconds=fit_seconds,
                            leaked_test_pairs=leaked)


def fit_and_evaluate(model: RecommenderBase, split: Split, *, dataset: dict, items: pd.DataFrame | None = None,
                     users: pd.DataFrame | None = None, catalog: RecDataset | None = None,
                     config: EvaluationConfig = EvaluationConfig()) -> EvaluationResult:
    """Fit ``model`` on ``split.train`` (with the full item and user tables, so held-out ones stay
    in the catalog) and evaluate it by segment.

    Args:
        dataset: provenance for the report (:func:`dataset_summary`).
        items, users: the catalog tables, for a model fitted on plain tables.
        catalog: instead, a dataset whose item and user tables and column roles the model is
            fitted with (its interactions replaced by ``split.train``): every model, the hybrid
            included, then reads the same declared roles.
    """
    if catalog is not None:
        if items is not None or users is not None:
            raise HybridRecError("fit_and_evaluate got catalog= and items/users: give one or the other")
        items, users = catalog_tables(split, catalog.items, catalog.users)
        fit_on = replace(catalog, interactions=split.train, items=items, users=users)
        started = time.perf_counter()
        model.fit(fit_on)
    else:
        items, users = catalog_tables(split, items, users)
        started = time.perf_counter()
        model.fit(split.train, items=items, users=users)
    fit_seconds = time.perf_counter() - started
    logger.info("%s fitted in %.2f s", type(model).__name__, fit_seconds)
    return evaluate_model(model, split, dataset=dataset, config=config, fit_seconds=fit_seconds)
