"""Fit-and-evaluate protocol on real MovieLens-100K: segments, provenance, leakage, speed."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest

import hybridrec
from evaluation.item_knn import ItemKNNRecommender
from evaluation.matrix_factorization import BPRMFRecommender
from evaluation.popularity import PopularityRecommender
from evaluation.protocol import (EvaluationConfig, dataset_fingerprint, dataset_summary, evaluate_model,
                                 evaluate_ranking, fit_and_evaluate, segment_truths)
from evaluation.splitters import SplitConfig, make_split

logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def provenance(movielens) -> dict:
    return dataset_summary(movielens.interactions, movielens.name)


@pytest.fixture(scope="module")
def warm_split(movielens):
    return make_split(movielens.interactions, SplitConfig(kind="random", seed=0, min_rating=4, min_positives=5))


@pytest.fixture(scope="module")
def cold_item_split(movielens):
    return make_split(movielens.interactions, SplitConfig(kind="cold-item", seed=0, valid_ratio=0.1))


@pytest.fixture(scope="module")
def popularity_on_warm(movielens, warm_split, provenance):
    model = PopularityRecommender()
    result = fit_and_evaluate(model, warm_split, dataset=provenance, items=movielens.items, users=movielens.users)
    return model, result


def test_segments_partition_the_test_pairs(cold_item_split):
    truths = segment_truths(cold_item_split)
    train_items = set(cold_item_split.train["item_id"])
    assert set(truths["warm"]["item_id"]) <= train_items
    assert not set(truths["cold_item"]["item_id"]) & train_items
    assert sum(len(t) for t in truths.values()) == len(cold_item_split.test)


def test_cold_item_segment_ranks_only_cold_items(movielens, cold_item_split, provenance):
    result = fit_and_evaluate(PopularityRecommender(), cold_item_split, dataset=provenance,
                              items=movielens.items, users=movielens.users)
    # The held-out items, not every catalog item that merely lacks a training interaction.
    assert len(cold_item_split.cold_item_ids) < len(movielens.items) - cold_item_split.train["item_id"].nunique()
    assert set(result.segments) == {"warm", "cold_item"}
    assert result.segments["cold_item"]["n_candidates"] == len(cold_item_split.cold_item_ids)
    assert result.segments["warm"]["n_candidates"] == len(movielens.items)
    # Popularity knows nothing about cold items: every cold list is decided by the tie-break.
    assert result.segments["cold_item"]["tied_at_cutoff@20"] == 1.0


def test_cold_user_segment(movielens, provenance):
    split = make_split(movielens.interactions, SplitConfig(kind="cold-user", seed=0, cold_share=0.1))
    result = fit_and_evaluate(PopularityRecommender(), split, dataset=provenance, items=movielens.items,
                              users=movielens.users)
    assert result.segments["cold_user"]["n_users"] == len(split.cold_user_ids)
    assert result.segments["warm"]["n_users"] == movielens.interactions["user_id"].nunique() - len(split.cold_user_ids)


def test_result_carries_provenance(popularity_on_warm, warm_split):
    _, result = popularity_on_warm
    assert result.version == hybridrec.__version__
    assert result.split["seed"] == 0 and result.split["kind"] == "random"
    assert result.split["sizes"] == warm_split.sizes
    assert len(result.dataset["fingerprint"]) == 64
    assert result.leaked_test_pairs == 0
    assert result.to_dict()["segments"]["warm"]["n_users"] == warm_split.test["user_id"].nunique()


def test_fingerprint_is_stable_and_sensitive(movielens):
    interactions = movielens.interactions
    assert dataset_fingerprint(interactions) == dataset_fingerprint(interactions.copy())
    changed = interactions.copy()
    changed.loc[0, "weight"] = 1.5
    assert dataset_fingerprint(changed) != dataset_fingerprint(interactions)


def test_metrics_match_recommend_output(popularity_on_warm, warm_split, provenance):
    """recall@20 recomputed with pandas from the public ``recommend`` output (same tie rule)."""
    model, _ = popularity_on_warm
    result = evaluate_model(model, warm_split, dataset=provenance, config=EvaluationConfig(tie_seed=None))
    truth = segment_truths(warm_split)["warm"]
    recs = model.recommend(truth["user_id"].unique(), k=20)
    hits = recs.merge(truth, on=["user_id", "item_id"]).groupby("user_id").size()
    per_user = (hits / truth.groupby("user_id").size()).fillna(0.0)
    assert result.segments["warm"]["recall@20"] == pytest.approx(per_user.mean(), rel=1e-9)


def test_batch_size_does_not_change_results(popularity_on_warm, warm_split, provenance):
    model, result = popularity_on_warm
    small = evaluate_model(model, warm_split, dataset=provenance, config=EvaluationConfig(batch_size=37))
    for key, value in result.segments["warm"].items():
        if key != "evaluate_seconds":
            assert small.segments["warm"][key] == pytest.approx(value, rel=1e-12)


def test_random_tie_break_removes_id_order_signal(movielens, cold_item_split, provenance):
    """Popularity scores every cold item 0: with a random tie order it is no better than chance."""
    model = PopularityRecommender()
    by_index = fit_and_evaluate(model, cold_item_split, dataset=provenance, items=movielens.items,
                                users=movielens.users, config=EvaluationConfig(tie_seed=None))
    shuffled = evaluate_model(model, cold_item_split, dataset=provenance, config=EvaluationConfig(tie_seed=0))
    n_candidates = shuffled.segments["cold_item"]["n_candidates"]
    chance = 20 / n_candidates
    assert by_index.segments["cold_item"]["recall@20"] > 1.5 * chance  # MovieLens ids follow popularity
    assert shuffled.segments["cold_item"]["recall@20"] == pytest.approx(chance, rel=0.3)


def test_excluded_pairs_are_never_ranked(popularity_on_warm, warm_split):
    model, _ = popularity_on_warm
    top_item = model.item_ids_.ids[int(model.item_popularity_.argmax())]
    users = warm_split.test["user_id"].unique()[:50]
    users = [u for u in users if top_item not in set(warm_split.train.loc[warm_split.train["user_id"] == u, "item_id"])]
    truth = pd.DataFrame({"user_id": users, "item_id": top_item})
    assert evaluate_ranking(model, truth, ks=(1,))["hit_rate@1"] == 1.0
    exclude = model.user_items_.copy() * 0
    exclude = exclude.tolil()
    exclude[model.user_ids_.to_index(users), model.item_ids_.to_index([top_item])[0]] = 1
    assert evaluate_ranking(model, truth, ks=(20,), exclude=exclude.tocsr())["hit_rate@20"] == 0.0


def test_model_trained_on_test_pairs_is_flagged(movielens, warm_split, provenance):
    leaky = PopularityRecommender().fit(movielens.interactions)
    result = evaluate_model(leaky, warm_split, dataset=provenance)
    assert result.leaked_test_pairs == len(warm_split.test)


def test_full_movielens_evaluation_is_fast_and_baselines_beat_popularity(movielens, warm_split, provenance,
                                                                         popularity_on_warm):
    _, popularity = popularity_on_warm
    knn = ItemKNNRecommender().fit(warm_split.train, items=movielens.items, users=movielens.users)
    started = time.perf_counter()
    knn_result = evaluate_model(knn, warm_split, dataset=provenance)
    seconds = time.perf_counter() - started
    logger.info("item-kNN evaluation of all ML-100K test users: %.2f s", seconds)
    assert seconds < 10.0  # about 0.3 s on 2 cores; generous for loaded CI machines
    mf = fit_and_evaluate(BPRMFRecommender(epochs=15, seed=0), warm_split, dataset=provenance,
                          items=movielens.items, users=movielens.users)
    for result in (knn_result, mf):
        assert result.segments["warm"]["recall@20"] > popularity.segments["warm"]["recall@20"]
        assert result.segments["warm"]["ndcg@20"] > popularity.segments["warm"]["ndcg@20"]
    assert np.isfinite(mf.segments["warm"]["novelty@20"])
