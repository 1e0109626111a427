"""The GNN's weight in the fused score, chosen on the validation hold-out (``tune_gnn_weight``), on
MovieLens-100K positives: a term that carries no signal is weighed out, an informative one is kept,
and the fitted hybrid keeps and saves its choice."""

from __future__ import annotations

import pytest
import torch

from evaluation.protocol import catalog_tables
from evaluation.splitters import SplitConfig, make_split
from hybridrec import HybridRecommender
from hybridrec.recommender_similarity import zscore_rows
from hybridrec.tuning import GNN_WEIGHT_FACTORS, select_gnn_weight, validation_holdout


@pytest.fixture(scope="module")
def holdout(positives):
    train, _ = positives
    return validation_holdout(train, 0.1, seed=0)


def ease_term(train):
    """``rows -> [b, n_items]`` z-scored EASE scores of users' train rows (a real CF term)."""
    weights = torch.as_tensor(HybridRecommender().dense_head(l2=250.0).fit_weights(train), dtype=torch.float32)
    return lambda rows: zscore_rows(torch.from_numpy(train[rows].toarray()) @ weights)


def test_a_term_without_signal_is_weighed_out(holdout):
    train, valid = holdout
    cf = ease_term(train)
    noise = torch.Generator().manual_seed(0)

    def parts(rows):
        return cf(rows), zscore_rows(torch.randn(len(rows), train.shape[1], generator=noise))

    weight, trials = select_gnn_weight(parts, train, valid, weight=1.5, seed=0)
    assert sorted(trials) == sorted(1.5 * f for f in GNN_WEIGHT_FACTORS)
    assert weight == 0.0 and trials[0.0] == max(trials.values())
    assert trials[0.0] > trials[3.0] + 0.05  # noise at twice the weight costs the CF head much of its recall


def test_an_informative_term_is_kept_and_the_choice_is_the_best_trial(holdout):
    train, valid = holdout
    cf = ease_term(train)
    noise = torch.Generator().manual_seed(1)

    def parts(rows):  # a weakened first term (EASE drowned in noise) and an informative second one (EASE)
        scores = cf(rows)
        return zscore_rows(scores + 3.0 * torch.randn(scores.shape, generator=noise)), scores

    weight, trials = select_gnn_weight(parts, train, valid, weight=1.5, seed=0)
    assert weight >= 1.5 and trials[weight] == max(trials.values()) > trials[0.0]


def test_no_hold_out_keeps_the_configured_weight(positives):
    train, _ = positives
    assert select_gnn_weight(lambda rows: None, train, None, weight=1.5, seed=0) == (1.5, None)


def test_the_fitted_hybrid_keeps_saves_and_scores_with_its_chosen_weight(movielens, tmp_path):
    split = make_split(movielens.interactions.head(30000), SplitConfig(kind="random", test_ratio=0.2, seed=0,
                                                                       min_rating=4.0))
    items, users = catalog_tables(split, movielens.items, movielens.users)
    model = HybridRecommender(epochs=5, eval_every=5, progress=False, device="cpu", seed=0,
                              feature_cache_dir=str(tmp_path / "cache"))
    model.fit(split.train, items=items, users=users, item_attr_cols=["genres"])
    trials = model.gnn_weight_trials_
    assert model.gnn_weight_ in trials and trials[model.gnn_weight_] == max(trials.values())
    assert model.fit_summary_["gnn_weight"] == model.gnn_weight_ and "gnn_weight_seconds" in model.fit_timings_
    users_asked = split.test["user_id"].unique()[:50]
    before = model.recommend(users_asked, k=10)
    loaded = HybridRecommender.load(model.save(tmp_path / "model"))
    assert loaded.gnn_weight_ == model.gnn_weight_
    assert loaded.recommend(users_asked, k=10).equals(before)
    # The fused score is the CF term plus the chosen weight times the z-scored GNN score.
    rows = model.user_ids_.to_index(users_asked[:5])
    history = torch.from_numpy(model._binary_rows(rows))
    embeddings = model.user_embeddings_[torch.from_numpy(rows)]
    _, cf_term, gnn_term = model.fused_parts(history, embeddings)
    warm = model.item_popularity_ > 0
    expected = model.gnn_weight_ * zscore_rows(embeddings @ model.item_embeddings_.T)
    assert torch.allclose(gnn_term[:, warm], expected[:, warm], atol=1e-5)
    # Without the search the configured weight is kept, and nothing is recorded.
    fixed = HybridRecommender(epochs=5, eval_every=5, progress=False, device="cpu", seed=0, tune_gnn_weight=False,
                              feature_cache_dir=str(tmp_path / "cache"))
    fixed.fit(split.train, items=items, users=users, item_attr_cols=["genres"])
    assert fixed.gnn_weight_ == 1.5 and not hasattr(fixed, "gnn_weight_trials_")
