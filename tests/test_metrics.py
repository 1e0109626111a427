"""Ranking metrics: hand-computed cases, and agreement with PyG's LinkPred metrics and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from torch_geometric.metrics import (LinkPredF1, LinkPredHitRatio, LinkPredMAP, LinkPredMRR, LinkPredNDCG,
                                     LinkPredPrecision, LinkPredRecall)

from evaluation.metrics import (RankingMetrics, average_precision_at_k, f1_at_k, hit_rate_at_k, hits_at_k, ndcg_at_k,
                                precision_at_k, recall_at_k, reciprocal_rank_at_k)
from hybridrec.errors import HybridRecError
from hybridrec.topk import ranked_top_k

LOG3, LOG6 = math.log2(3), math.log2(6)
IDCG3 = 1 + 1 / LOG3 + 0.5

# Two users with test items and one without; 6 items. User B had only 2 eligible items.
TOP = torch.tensor([[3, 1, 4, 0, 5], [0, 2, -1, -1, -1], [1, 2, 3, 4, 5]])
TRUTH = torch.zeros(3, 6, dtype=torch.bool)
TRUTH[0, [1, 5, 2]] = True
TRUTH[1, 0] = True
# Per user A, B at K = 3 and K = 5, worked out by hand.
EXPECTED = {
    3: {"precision": [1 / 3, 1 / 3], "recall": [1 / 3, 1.0], "f1": [1 / 3, 0.5],
        "ndcg": [(1 / LOG3) / IDCG3, 1.0], "map": [(1 / 2) / 3, 1.0], "hit_rate": [1.0, 1.0], "mrr": [0.5, 1.0]},
    5: {"precision": [2 / 5, 1 / 5], "recall": [2 / 3, 1.0], "f1": [0.5, 1 / 3],
        "ndcg": [(1 / LOG3 + 1 / LOG6) / IDCG3, 1.0], "map": [(1 / 2 + 2 / 5) / 3, 1.0],
        "hit_rate": [1.0, 1.0], "mrr": [0.5, 1.0]},
}


def per_user(name: str, hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    functions = {"precision": lambda: precision_at_k(hits, k), "recall": lambda: recall_at_k(hits, n_relevant, k),
                 "f1": lambda: f1_at_k(hits, n_relevant, k), "ndcg": lambda: ndcg_at_k(hits, n_relevant, k),
                 "map": lambda: average_precision_at_k(hits, n_relevant, k),
                 "hit_rate": lambda: hit_rate_at_k(hits, k), "mrr": lambda: reciprocal_rank_at_k(hits, k)}
    return functions[name]()


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("name", ["precision", "recall", "f1", "ndcg", "map", "hit_rate", "mrr"])
def test_hand_computed_per_user(name, k):
    hits = hits_at_k(TOP[:2], TRUTH[:2])
    values = per_user(name, hits, TRUTH[:2].sum(1), k)
    np.testing.assert_allclose(values.numpy(), EXPECTED[k][name], rtol=1e-12)


def test_hits_ignore_empty_slots():
    hits = hits_at_k(torch.tensor([[0, -1]]), torch.tensor([[True, False]]))
    assert hits.tolist() == [[True, False]]


def test_accumulator_means_over_users_with_test_items():
    metrics = RankingMetrics([3, 5], n_items=6)
    metrics.update(TOP, TRUTH)
    result = metrics.compute()
    assert result["n_users"] == 2
    for k, expected in EXPECTED.items():
        for name, values in expected.items():
            assert result[f"{name}@{k}"] == pytest.approx(sum(values) / 2, rel=1e-12)


def test_coverage_and_novelty_by_hand():
    popularity = torch.tensor([10, 5, 0, 1, 2, 4])
    metrics = RankingMetrics([3, 5], n_items=6, item_popularity=popularity, n_train_users=10)
    metrics.update(TOP, TRUTH)
    result = metrics.compute()
    assert result["coverage@3"] == pytest.approx(5 / 6)  # user C has no test items: its list is not counted
    assert result["coverage@5"] == pytest.approx(1.0)
    information = [-math.log2(max(p, 1) / 10) for p in popularity.tolist()]
    user_a = (information[3] + information[1] + information[4]) / 3
    user_b = (information[0] + information[2]) / 2  # two slots only
    assert result["novelty@3"] == pytest.approx((user_a + user_b) / 2)


def test_coverage_denominator_is_the_candidate_count():
    metrics = RankingMetrics([2], n_items=6, n_candidates=3)
    metrics.update(TOP[:1], TRUTH[:1])
    assert metrics.compute()["coverage@2"] == pytest.approx(2 / 3)


def test_explicit_relevant_counts_make_unknown_items_misses():
    metrics = RankingMetrics([5], n_items=6)
    metrics.update(TOP[:1], TRUTH[:1], n_relevant=torch.tensor([4]))
    assert metrics.compute()["recall@5"] == pytest.approx(2 / 4)


def test_batches_add_up_to_one_pass():
    generator = torch.Generator().manual_seed(3)
    scores = torch.rand(64, 50, generator=generator)
    truth = torch.rand(64, 50, generator=generator) < 0.1
    _, top = ranked_top_k(scores, 20)
    whole, batched = RankingMetrics([5, 20], 50), RankingMetrics([5, 20], 50)
    whole.update(top, truth)
    for start in range(0, 64, 10):
        batched.update(top[start:start + 10], truth[start:start + 10])
    expected = whole.compute()
    for key, value in batched.compute().items():
        assert value == pytest.approx(expected[key], rel=1e-12)


def test_no_user_gives_nan_and_zero_users():
    metrics = RankingMetrics([5], n_items=6)
    metrics.update(TOP[2:], TRUTH[2:])
    result = metrics.compute()
    assert result["n_users"] == 0 and math.isnan(result["recall@5"])


def test_bad_ks_rejected():
    with pytest.raises(HybridRecError, match="ks"):
        RankingMetrics([0, 5], n_items=6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pyg_link_pred_metrics(seed):
    generator = torch.Generator().manual_seed(seed)
    n_users, n_items, k_max = 80, 60, 20
    scores = torch.rand(n_users, n_items, generator=generator)
    truth = torch.rand(n_users, n_items, generator=generator) < 0.08
    truth[:5] = False  # users without test items are skipped by both
    _, top = ranked_top_k(scores, k_max)
    edge_label_index = truth.nonzero().T
    ours = RankingMetrics([1, 5, 10, 20], n_items)
    ours.update(top, truth)
    result = ours.compute()
    for k in (1, 5, 10, 20):
        reference = {"precision": LinkPredPrecision(k), "recall": LinkPredRecall(k), "f1": LinkPredF1(k),
                     "ndcg": LinkPredNDCG(k), "map": LinkPredMAP(k), "mrr": LinkPredMRR(k),
                     "hit_rate": LinkPredHitRatio(k)}
        for name, metric in reference.items():
            metric.update(top, edge_label_index)
            assert result[f"{name}@{k}"] == pytest.approx(float(metric.compute()), abs=1e-6), f"{name}@{k}"


@pytest.mark.parametrize("k", [1, 5, 20])
def test_ndcg_agrees_with_sklearn(k):
    generator = torch.Generator().manual_seed(k)
    scores = torch.rand(40, 30, generator=generator, dtype=torch.float64)
    truth = torch.rand(40, 30, generator=generator) < 0.2
    truth[:, 0] |= ~truth.any(1)  # sklearn scores rows without relevant items differently: give each one
    _, top = ranked_top_k(scores, k)
    ours = ndcg_at_k(hits_at_k(top, truth), truth.sum(1), k).mean().item()
    assert ours == pytest.approx(ndcg_score(truth.numpy().astype(float), scores.numpy(), k=k), abs=1e-9)


def test_ranked_top_k_breaks_ties_by_lower_index():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (30, 25), generator=generator).float()
    scores[torch.rand(30, 25, generator=generator) < 0.3] = -torch.inf
    values, indices = ranked_top_k(scores, 12)
    reference = torch.sort(scores, dim=1, descending=True, stable=True)
    expected = reference.indices[:, :12].clone()
    expected[torch.isneginf(reference.values[:, :12])] = -1
    assert torch.equal(indices, expected)
    assert torch.equal(values, reference.values[:, :12])
