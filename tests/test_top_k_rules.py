"""The one top-k (hybridrec.topk.select_top_k) with each tie rule, and the one recall@k
(evaluation.metrics.recall_at_k) with each denominator, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.metrics import RankingMetrics, hits_at_k, mean_recall_at_k, recall_at_k
from hybridrec.errors import HybridRecError
from hybridrec.topk import ranked_top_k, seeded_tie_keys, select_top_k


def tied_scores(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (50, 40), generator=generator).float()
    scores[torch.rand(50, 40, generator=generator) < 0.3] = -torch.inf
    return scores


def test_backend_ties_are_torch_topk_for_a_tensor_and_argpartition_for_an_array():
    scores = tied_scores()
    values, columns = select_top_k(scores, 7, ties="backend")
    expected = torch.topk(scores, 7, dim=1)
    np.testing.assert_array_equal(columns, expected.indices.numpy())
    np.testing.assert_array_equal(values, expected.values.numpy())
    array = scores.double().numpy()
    _, columns = select_top_k(array, 7, ties="backend")
    np.testing.assert_array_equal(columns, np.argpartition(-array, 6, axis=1)[:, :7])


def test_tie_keys_order_ties_by_the_lower_key():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0]])
    keys = torch.tensor([[0, 30, 10, 20, 40]])
    _, columns = select_top_k(scores, 3, tie_keys=keys)
    assert columns.tolist() == [[2, 3, 1]]
    _, columns = select_top_k(scores, 3)
    assert columns.tolist() == [[1, 2, 3]]


def test_seeded_tie_keys_do_not_depend_on_batching():
    users = np.arange(10)
    np.testing.assert_array_equal(seeded_tie_keys(users, 30, 4)[6:], seeded_tie_keys(users[6:], 30, 4))


def test_ranked_top_k_gives_float32_tensors_and_minus_one_for_filtered_columns():
    values, indices = ranked_top_k(torch.tensor([[0.5, -torch.inf, 1.0]], dtype=torch.float64), 3)
    assert values.dtype == torch.float32 and indices.dtype == torch.int64
    assert indices.tolist() == [[2, 0, -1]]


def test_unknown_tie_rule_and_misplaced_options_are_refused():
    with pytest.raises(HybridRecError, match="ties must be one of"):
        select_top_k(torch.zeros(1, 3), 1, ties="random")
    with pytest.raises(HybridRecError, match="tie_keys"):
        select_top_k(torch.zeros(1, 3), 1, ties="backend", tie_keys=torch.zeros(1, 3, dtype=torch.int64))


def test_recall_denominators_by_hand():
    hits = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    n_relevant = torch.tensor([4, 1, 2])
    assert recall_at_k(hits, n_relevant, 3).tolist() == [0.5, 1.0, 0.0]
    assert recall_at_k(hits, n_relevant, 3, denominator="capped").tolist() == [2 / 3, 1.0, 0.0]
    with pytest.raises(HybridRecError, match="denominator"):
        recall_at_k(hits, n_relevant, 3, denominator="k")


def test_mean_recall_of_a_score_matrix_by_hand():
    scores = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    truth = np.array([[True, False, True, True], [True, False, False, False], [False, False, False, False]])
    # user 0: top-2 {0, 1} hold 1 of 3 relevant; user 1: {3, 2} hold none; user 2 has none relevant.
    assert mean_recall_at_k(scores, truth, 2) == pytest.approx((1 / 3 + 0) / 2)
    assert mean_recall_at_k(scores, truth, 2, denominator="capped") == pytest.approx((1 / 2 + 0) / 2)


def test_capped_backend_recall_is_the_tuning_searches_formula_bit_for_bit():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (200, 60)).astype(np.float64)  # many ties across the cut-off
    scores[rng.random((200, 60)) < 0.4] = -np.inf
    truth = rng.random((200, 60)) < 0.1
    truth[np.arange(200), rng.integers(0, 60, 200)] = True
    k = 20
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    expected = float(np.mean(np.take_along_axis(truth, top, axis=1).sum(1) / np.minimum(truth.sum(1), k)))
    assert mean_recall_at_k(scores, truth, k, denominator="capped", ties="backend") == expected


def test_ranking_metrics_subset_equals_the_full_computation():
    scores = tied_scores(1)
    truth = torch.rand(50, 40, generator=torch.Generator().manual_seed(2)) < 0.2
    _, top = ranked_top_k(scores, 10)
    full, recall_only = RankingMetrics((5, 10), 40), RankingMetrics((5, 10), 40, metrics=("recall",))
    for metrics in (full, recall_only):
        metrics.update(top[:30], truth[:30])
        metrics.update(top[30:], truth[30:])
    subset = recall_only.compute()
    assert set(subset) == {"recall@5", "recall@10", "n_users"}
    assert all(subset[key] == full.compute()[key] for key in subset)
    expected = recall_at_k(hits_at_k(top, truth), truth.sum(1), 10)[truth.any(1)].mean().item()
    assert subset["recall@10"] == pytest.approx(expected)
    with pytest.raises(HybridRecError, match="metrics must name"):
        RankingMetrics((5,), 40, metrics=("auc",))
