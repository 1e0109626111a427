"""Choices ``HybridRecommender.fit`` makes on validation data, never on a test split.

* :func:`validation_holdout` — a seeded share of each user's interactions held out (early stopping
  of the GNN and the EASE ridge strength both read it);
* :func:`select_ease_l2` — the CF head's ridge strength among ``l2 x {0.5, 1, 2, 4}``;
* :func:`select_filter_shape` — the sparse head's low-pass rank and weight among
  ``rank x {0.5, 1, 2}`` and :data:`FILTER_ALPHAS`, from one fit at the largest rank, then its
  popularity tilt among :data:`FILTER_TILTS`;
* :func:`select_block_weights` — the weight of each content block in the cold-item content vector,
  chosen on pseudo-cold items (warm items hidden from the head), so a modality that does not help
  cold items is turned down;
* :func:`select_gnn_weight` — the GNN's weight in the fused score among ``gnn_weight x``
  :data:`GNN_WEIGHT_FACTORS` (0: the CF head alone), from both parts fitted without the hold-out.

Each search returns its choice and the score of every trial, so the estimator can keep both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from evaluation.metrics import mean_recall_at_k
from hybridrec.errors import HybridRecError
from hybridrec.item_content import ItemContent
from hybridrec.models.cf_head import DenseEASEHead
from hybridrec.models.graph_filter import GraphFilterHead, popularity_tilt

logger = logging.getLogger(__name__)

#: Candidate factors of the configured ridge strength.
EASE_L2_FACTORS = (0.5, 1.0, 2.0, 4.0)
#: Catalogs larger than this keep the configured ridge strength (each trial is a dense inverse).
EASE_L2_MAX_ITEMS = 5000
#: Candidate factors of the sparse head's configured low-pass rank (one fit at the largest serves all).
FILTER_RANK_FACTORS = (0.5, 1.0, 2.0)
#: Candidate weights of the sparse head's low-pass filter (GF-CF's 0.3 among them).
FILTER_ALPHAS = (0.1, 0.3, 0.5, 1.0)
#: Candidate popularity tilts ``γ`` of the sparse head's scores, tried at the chosen rank and weight.
FILTER_TILTS = (0.0, 0.05, 0.1, 0.2)
#: Catalogs larger than this keep the configured rank, weight and tilt (the search's fit at twice the
#: rank holds ``[n_items, 2 x rank]`` bases; the 1M-item fit is near its memory bound already).
FILTER_TUNING_MAX_ITEMS = 200_000
#: Validation users scored per block of the filter search (bounds a ``[block, n_items]`` score array).
FILTER_SCORE_BLOCK = 2000
#: Candidate weights a tunable block is tried at, after 1.
BLOCK_WEIGHT_STEPS = (0.5, 0.25, 0.0)
#: Candidate factors of the configured GNN weight in the fused score (0: the GNN left out).
GNN_WEIGHT_FACTORS = (0.0, 0.25, 0.5, 1.0, 2.0)
#: Catalogs larger than this keep the configured GNN weight (the search refits the CF head on the
#: hold-out's rest, a second head in memory beside the fitted one).
GNN_WEIGHT_TUNING_MAX_ITEMS = FILTER_TUNING_MAX_ITEMS
#: How the validation hold-out is drawn (``HybridRecommender(validation_order=...)``): at random, or
#: each user's latest interactions.
VALIDATION_ORDERS = ("random", "latest")
#: Cut-off of the validation recall the searches maximise.
VALIDATION_K = 20
#: Users scored per pseudo-cold fold at most (a seeded sample above it bounds the cost on large logs).
VALIDATION_MAX_USERS = 10000
#: Items hidden per pseudo-cold fold at most (bounds the fold's ``[users, hidden]`` score block).
VALIDATION_MAX_HIDDEN = 5000


def _recall_at(scores: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, k: int) -> float:
    """Mean recall@k (hits / min(relevant, k)) of ``scores`` ``[users, items]`` against boolean
    ``truth`` of the same shape: :func:`evaluation.metrics.mean_recall_at_k` with the capped
    denominator, so a user with more hidden items than ``k`` can still reach 1."""
    return mean_recall_at_k(scores, truth, k, denominator="capped", ties="backend")


def trial_key(weights: dict) -> str:
    """A readable, order-stable key for a block-weight trial, e.g. ``"attributes=0.25, image=0.5"``."""
    return ", ".join(f"{name}={value:g}" for name, value in sorted(weights.items()))


def validation_holdout(binary: sp.csr_matrix, share: float, seed: int, *,
                       recency: sp.csr_matrix | None = None) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """Split each user's interactions into train / validation (users with >= 5 keep some).

    Without ``recency`` each interaction is held out at random with chance ``share`` (for a test
    split drawn at random). With it, each user's latest ``max(1, round(share x n))`` of their
    ``n`` interactions are held out (meant for a test split drawn by time; what it measured on
    MovieLens-100K is in ``benchmarks/README.md``).

    Args:
        binary: ``[n_users, n_items]`` interactions.
        share: chance of each interaction being held out, or the share of each user's latest ones
            (0: no validation).
        seed: seeds the random draw.
        recency: ``[n_users, n_items]`` with ``binary``'s sparsity, a larger value for a later
            interaction (:func:`hybridrec.recommender_base.interaction_recency`); equal values
            hold out the higher item index.

    Returns:
        ``(train, valid)`` of ``binary``'s shape; ``valid`` is None when ``share <= 0``.
    """
    if share <= 0:
        return binary, None
    shape = binary.shape
    if recency is None:
        rng = np.random.default_rng(seed)
        coo = binary.tocoo()
        counts = np.diff(binary.indptr)
        held = (rng.random(coo.nnz) < share) & (counts[coo.row] >= 5)
        rows, cols, data = coo.row, coo.col, coo.data
    else:
        binary, recency = sp.csr_matrix(binary, copy=True), sp.csr_matrix(recency, copy=True)
        binary.sort_indices()
        recency.sort_indices()
        if recency.shape != shape or not (np.array_equal(recency.indptr, binary.indptr)
                                          and np.array_equal(recency.indices, binary.indices)):
            raise HybridRecError("validation_holdout: recency must have the interactions' shape and sparsity")
        counts = np.diff(binary.indptr)
        rows, cols, data = np.repeat(np.arange(shape[0]), counts), binary.indices, binary.data
        n_held = np.where(counts >= 5, np.maximum(1, np.rint(share * counts)), 0).astype(np.int64)
        order = np.lexsort((cols, recency.data, rows))                  # per user, earliest first
        held = np.zeros(binary.nnz, dtype=bool)
        held[order[np.arange(binary.nnz) >= binary.indptr[rows + 1] - n_held[rows]]] = True
    train = sp.csr_matrix((data[~held], (rows[~held], cols[~held])), shape=shape)
    valid = sp.csr_matrix((data[held], (rows[held], cols[held])), shape=shape)
    return train, valid


def scored_users(history: sp.csr_matrix, hidden: sp.csr_matrix, seed: int) -> np.ndarray:
    """``[u]`` sorted rows of the users with both ``history`` and ``hidden`` interactions, a seeded
    sample of :data:`VALIDATION_MAX_USERS` of them when there are more (what each search scores)."""
    users = np.flatnonzero((np.diff(hidden.indptr) > 0) & (np.diff(history.indptr) > 0))
    if len(users) > VALIDATION_MAX_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, VALIDATION_MAX_USERS, replace=False))
    return users


def select_ease_l2(head: DenseEASEHead, train: sp.csr_matrix,
                   valid: sp.csr_matrix | None) -> tuple[float, dict[float, float] | None]:
    """The head's ``l2`` scaled by the factor in :data:`EASE_L2_FACTORS` with the best validation recall@20.

    Args:
        head: the CF head (its ``l2`` is the centre of the search).
        train, valid: :func:`validation_holdout` of the training interactions.

    Returns:
        ``(l2, trials)``: the chosen strength and ``{l2: recall}``; ``trials`` is None when there
        was no search (no validation users, or more than :data:`EASE_L2_MAX_ITEMS` items).
    """
    if valid is None or valid.nnz == 0 or train.shape[1] > EASE_L2_MAX_ITEMS:
        return float(head.l2), None
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    history, truth = train[users], valid[users].toarray() > 0
    k = min(VALIDATION_K, train.shape[1])
    seen = history.toarray() > 0
    results = {}
    for factor in EASE_L2_FACTORS:
        l2 = float(head.l2) * factor
        scores = np.asarray(history @ head.fit_weights(train, l2))
        scores[seen] = -np.inf
        results[l2] = _recall_at(scores, truth, k)
    best = max(results, key=results.get)
    logger.info("EASE l2 %g (validation recall@%d: %s)", best, k, {l: round(r, 4) for l, r in results.items()})
    return best, results


def select_filter_shape(head: GraphFilterHead, train: sp.csr_matrix, valid: sp.csr_matrix | None, *,
                        seed: int) -> tuple[tuple[int, float, float], dict[str, float] | None]:
    """The sparse head's low-pass ``(rank, alpha)``, then its popularity ``tilt``, with the best
    validation recall@20.

    One :class:`GraphFilterHead` is fitted on ``train`` at the largest candidate rank; a smaller
    rank keeps its leading singular vectors, so every ``(rank, alpha)`` pair is scored from that
    one fit (the pruned co-occurrence part does not depend on either), sharpened by the head's
    configured ``sharpen`` and tilted by its configured ``tilt``. At the chosen pair each tilt in
    :data:`FILTER_TILTS` (and the configured one) is then scored. At most
    :data:`VALIDATION_MAX_USERS` seeded validation users are scored, in blocks of
    :data:`FILTER_SCORE_BLOCK`.

    Args:
        head: the configured head (its ``rank``, ``alpha`` and ``tilt`` are the defaults and the
            search's centre).
        train, valid: :func:`validation_holdout` of the training interactions.
        seed: seeds the user sample.

    Returns:
        ``((rank, alpha, tilt), trials)``: the choice and ``{"rank=R, alpha=A, tilt=T": recall}``;
        ``trials`` is None when there was no search (no validation users, or more than
        :data:`FILTER_TUNING_MAX_ITEMS` items).
    """
    configured = (int(head.rank), float(head.alpha), float(head.tilt))
    if valid is None or valid.nnz == 0 or train.shape[1] > FILTER_TUNING_MAX_ITEMS:
        return configured, None
    users = scored_users(train, valid, seed)
    if len(users) == 0:
        return configured, None
    ranks = sorted({max(1, min(int(round(head.rank * factor)), min(train.shape) - 1)) for factor in FILTER_RANK_FACTORS})
    alphas = sorted({*FILTER_ALPHAS, float(head.alpha)})
    probe = GraphFilterHead(neighbors=head.neighbors, rank=max(ranks), alpha=1.0, seed=head.seed).fit(train)
    ranks = [rank for rank in ranks if rank <= probe.left_.shape[1]]
    k = min(VALIDATION_K, train.shape[1])
    trial = dict(probe=probe, train=train, valid=valid, users=users, sharpen=float(head.sharpen), k=k)
    hits = _filter_trial_hits(ranks=ranks, alphas=alphas, tilts=[configured[2]], **trial)
    rank, alpha, _ = max(hits, key=hits.get)
    tilts = sorted({*FILTER_TILTS} - {configured[2]})           # the configured tilt is scored already
    if tilts:
        hits.update(_filter_trial_hits(ranks=[rank], alphas=[alpha], tilts=tilts, **trial))
    results = {f"rank={r}, alpha={a:g}, tilt={t:g}": total / len(users) for (r, a, t), total in hits.items()}
    best = max(hits, key=hits.get)
    logger.info("sparse head rank %d, alpha %g, tilt %g (validation recall@%d %.4f on %d users; configured %s: %.4f)",
                best[0], best[1], best[2], k, hits[best] / len(users), len(users), configured,
                hits.get(configured, float("nan")) / len(users))
    return (int(best[0]), float(best[1]), float(best[2])), results


def _filter_trial_hits(probe: GraphFilterHead, train: sp.csr_matrix, valid: sp.csr_matrix, users: np.ndarray,
                       ranks: list[int], alphas: list[float], tilts: list[float], sharpen: float,
                       k: int) -> dict[tuple[int, float, float], float]:
    """``{(rank, alpha, tilt): recall@k summed over users}`` of the probe (fitted at alpha 1 and
    the largest rank) at each triple, sharpened by ``sharpen`` (β) and tilted by ``tilt`` (γ):
    ``((r P̃ - β r P̃ P̃) + α (r L_rank)(Q_rank - β Q_rank P̃)) max(d, 1)^γ``."""
    hits = {(rank, alpha, tilt): 0.0 for rank in ranks for alpha in alphas for tilt in tilts}
    right = torch.from_numpy(probe.right_)
    right_by_matrix = torch.from_numpy(np.ascontiguousarray(probe.filtered_right())) if sharpen else None  # Q P̃
    scales = {tilt: torch.from_numpy(popularity_tilt(probe.item_degree_, tilt)) for tilt in tilts}
    for start in range(0, len(users), FILTER_SCORE_BLOCK):
        block = users[start:start + FILTER_SCORE_BLOCK]
        history, truth = train[block], torch.from_numpy(valid[block].toarray() > 0)
        linear_sparse = history @ probe.cooccurrence_
        linear = torch.from_numpy(linear_sparse.toarray())
        projected = torch.from_numpy(np.asarray(history @ probe.left_))                 # [b, max rank]
        if sharpen:
            linear = linear - sharpen * torch.from_numpy((linear_sparse @ probe.cooccurrence_).toarray())
        seen = torch.from_numpy(history.toarray() > 0)
        for rank in ranks:
            low_pass = projected[:, :rank] @ right[:rank]                                 # alpha 1
            if sharpen:
                low_pass = low_pass - sharpen * (projected[:, :rank] @ right_by_matrix[:rank])
            for alpha in alphas:
                for tilt in tilts:
                    scores = (linear + alpha * low_pass) * scales[tilt] if tilt else linear + alpha * low_pass
                    hits[(rank, alpha, tilt)] += _recall_at(scores.masked_fill(seen, -torch.inf), truth, k) * len(block)
    return hits


def select_block_weights(head: DenseEASEHead | GraphFilterHead, binary: sp.csr_matrix, content: ItemContent, warm: np.ndarray, *,
                         fixed: dict, tune: bool, hidden_share: float, folds: int,
                         seed: int) -> tuple[dict, dict[str, float] | None]:
    """Block weights for the cold-item content vector, chosen on a pseudo-cold validation.

    A seeded share of warm items is hidden (their interactions removed), the CF head is refit
    on the rest, and each candidate weighting predicts the hidden items' columns; users rank
    the hidden items and recall@20, averaged over ``folds`` disjoint hidden sets, decides.
    Coordinate search over ``{1, 0.5, 0.25, 0}`` per block not in ``fixed``.

    Args:
        head: the CF head whose settings refit each fold (:meth:`~hybridrec.models.cf_head.DenseEASEHead.validation_fold`).
        binary: ``[n_users, n_items]`` binary training interactions.
        content: the item content blocks.
        warm: ``[n_warm]`` item indices with interactions.
        fixed: block name -> weight not searched.
        tune: search at all (False: every tunable block at 1).
        hidden_share: share of warm items hidden per fold (at most :data:`VALIDATION_MAX_HIDDEN` items).
        folds: how many disjoint hidden sets are scored and averaged.
        seed: seeds the hidden sets.

    Returns:
        ``(weights, trials)``: block name -> weight (every block, fixed ones included), and
        ``{trial_key: recall}`` of every trial (None when there was no search).
    """
    tunable = [name for name in content.blocks if name not in fixed]
    chosen = {**{name: 1.0 for name in tunable}, **fixed}
    n_hidden = min(int(round(hidden_share * len(warm))), VALIDATION_MAX_HIDDEN)
    # One tunable block is still weighed against the fixed ones (e.g. a poster block against
    # the attribute flags); alone, only its scale against the ridge strength would change.
    anchored = any(chosen[name] > 0 for name in content.blocks if name not in tunable)
    if not tune or len(tunable) < (1 if anchored else 2) or n_hidden < 10:
        return chosen, None
    # Disjoint hidden sets, scores averaged: one set of a few hundred items is a noisy judge.
    order = np.random.default_rng(seed).permutation(warm)
    fold_data = []
    for fold in range(min(folds, len(warm) // n_hidden)):
        hidden = np.sort(order[fold * n_hidden:(fold + 1) * n_hidden])
        kept = np.setdiff1d(warm, hidden)
        mask = np.ones(binary.shape[1], dtype=np.float32)
        mask[hidden] = 0.0
        visible = sp.csr_matrix(binary @ sp.diags(mask))
        visible.eliminate_zeros()
        truth = sp.csr_matrix(binary[:, hidden])
        users = scored_users(visible, truth, seed + fold)
        fold_data.append((head.validation_fold(visible), kept, hidden, visible[users], truth[users].toarray() > 0))
    k = min(VALIDATION_K, n_hidden)

    def recall(block_weights: dict) -> float:
        return float(np.mean([
            _recall_at(head.hidden_scores(fold, history, content, kept, hidden, block_weights), truth, k)
            for fold, kept, hidden, history, truth in fold_data]))

    best = recall(chosen)
    trials = {trial_key(chosen): best}
    for name in tunable:
        for value in BLOCK_WEIGHT_STEPS:
            trial = {**chosen, name: value}
            if not any(trial[n] for n in content.blocks):
                continue
            trials[trial_key(trial)] = score = recall(trial)
            if score > best:
                best, chosen = score, trial
    logger.info("cold block weights %s (validation recall@%d %.4f over %d hidden items)", chosen, k, best, n_hidden)
    return chosen, trials


def select_gnn_weight(parts: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]], train: sp.csr_matrix,
                      valid: sp.csr_matrix | None, *, weight: float, seed: int) -> tuple[float, dict[float, float] | None]:
    """The GNN's weight in the fused score ``cf_term + w * gnn_term`` with the best validation recall@20.

    Both parts must come from fits that never saw ``valid`` (the CF head refitted on ``train``,
    the GNN trained on ``train`` and propagated over its edges only), or the search would favour
    whichever part memorised the hold-out. At most :data:`VALIDATION_MAX_USERS` seeded validation
    users are scored, in blocks of :data:`FILTER_SCORE_BLOCK`.

    Args:
        parts: user rows ``[b]`` -> ``(cf_term, gnn_term)``, each ``[b, n_items]``: the fused score's
            two terms with the GNN term at weight 1.
        train, valid: :func:`validation_holdout` of the training interactions.
        weight: the configured weight (the search tries it times each of :data:`GNN_WEIGHT_FACTORS`).
        seed: seeds the user sample.

    Returns:
        ``(weight, trials)``: the choice and ``{weight: recall}``; ``trials`` is None when there
        was no validation user (the configured weight is kept).
    """
    if valid is None or valid.nnz == 0:
        return float(weight), None
    users = scored_users(train, valid, seed)
    if len(users) == 0:
        return float(weight), None
    weights = sorted({float(weight) * factor for factor in GNN_WEIGHT_FACTORS})
    k = min(VALIDATION_K, train.shape[1])
    hits = dict.fromkeys(weights, 0.0)
    for start in range(0, len(users), FILTER_SCORE_BLOCK):
        block = users[start:start + FILTER_SCORE_BLOCK]
        cf_term, gnn_term = (part.numpy() for part in parts(block))
        truth, seen = valid[block].toarray() > 0, train[block].toarray() > 0
        for trial in weights:
            scores = cf_term + trial * gnn_term
            scores[seen] = -np.inf
            hits[trial] += _recall_at(scores, truth, k) * len(block)
    results = {trial: total / len(users) for trial, total in hits.items()}
    best = max(weights, key=lambda trial: (results[trial], trial == weight))
    logger.info("GNN weight %g in the fused score (validation recall@%d on %d users: %s)", best, k, len(users),
                {trial: round(recall, 4) for trial, recall in results.items()})
    return best, results
