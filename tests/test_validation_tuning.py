"""Choices made on validation data inside ``fit``: the EASE ridge strength (validation hold-out) and
the cold-item block weights (pseudo-cold items), so a useless modality is turned down."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.protocol import catalog_tables
from evaluation.splitters import SplitConfig, make_split
from hybridrec import HybridRecommender


@pytest.fixture(scope="module")
def cold_split(movielens):
    split = make_split(movielens.interactions, SplitConfig(kind="cold-item", cold_share=0.2, test_ratio=0.0, seed=0,
                                                           min_rating=4.0, min_positives=5))
    items, users = catalog_tables(split, movielens.items, movielens.users)
    # A text column with no relation to the movie: random words drawn per item.
    rng = np.random.default_rng(0)
    vocabulary = np.array("river stone lamp violet engine paper orbit candle harbor maple quartz tunnel".split())
    items = items.assign(noise=[" ".join(rng.choice(vocabulary, 4)) for _ in range(len(items))])
    return split, items, users


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")  # one feature cache: each text column is encoded once


def fit(split, items, users, tmp_path, **params):
    model = HybridRecommender(use_gnn=False, progress=False, device="cpu", feature_cache_dir=str(tmp_path), **params)
    return model.fit(split.train, items=items, users=users, item_text_cols=["title", "noise"], item_attr_cols=["genres"])


def test_noise_block_is_turned_down_and_title_kept(cold_split, cache):
    split, items, users = cold_split
    model = fit(split, items, users, cache)
    assert model.cold_block_weights_["text:noise"] < 1.0
    assert model.cold_block_weights_["text:title"] > 0.0
    assert model.cold_block_weights_["attributes"] == model.attribute_weight  # fixed blocks stay fixed
    # Every trial is recorded, and the choice is the best of them.
    assert len(model.block_weight_trials_) >= 4
    best = max(model.block_weight_trials_.values())
    chosen = ", ".join(f"{k}={v:g}" for k, v in sorted(model.cold_block_weights_.items()))
    assert model.block_weight_trials_[chosen] == best


def test_fixed_weights_are_not_tuned(cold_split, cache):
    split, items, users = cold_split
    model = fit(split, items, users, cache, block_weights={"text:noise": 1.0, "text:title": 0.5})
    assert model.cold_block_weights_["text:noise"] == 1.0 and model.cold_block_weights_["text:title"] == 0.5
    assert not hasattr(model, "block_weight_trials_")  # every block fixed: nothing to search


def test_a_single_tunable_block_is_weighed_against_the_fixed_ones(cold_split, cache):
    split, items, users = cold_split
    model = fit(split, items, users, cache, block_weights={"text:title": 0.0})
    assert len(model.block_weight_trials_) == 4  # noise at 1, 0.5, 0.25, 0 against the genre flags
    assert model.cold_block_weights_["text:noise"] < 1.0
    assert model.cold_block_weights_["text:title"] == 0.0


def test_ease_l2_is_the_validation_best(cold_split, cache):
    split, items, users = cold_split
    model = fit(split, items, users, cache, block_weights={"text:noise": 0.0})
    trials = model.ease_l2_trials_
    assert sorted(trials) == [125.0, 250.0, 500.0, 1000.0]
    assert model.ease_l2_ == max(trials, key=trials.get)
    assert len(set(round(v, 6) for v in trials.values())) > 1  # the strength matters on real data
    fixed = HybridRecommender(use_gnn=False, tune_ease_l2=False, progress=False, device="cpu",
                              feature_cache_dir=str(cache))
    fixed.fit(split.train, items=items, users=users, item_text_cols=["title"], item_attr_cols=["genres"])
    assert fixed.ease_l2_ == fixed.ease_l2 and not hasattr(fixed, "ease_l2_trials_")


def test_content_map_targets_a_sharper_ease_and_touches_only_cold_columns(cold_split, cache):
    split, items, users = cold_split
    params = {"block_weights": {"text:noise": 0.0}, "tune_ease_l2": False, "tune_block_weights": False}
    sharp = fit(split, items, users, cache, **params)
    plain = fit(split, items, users, cache, content_target_l2_factor=1.0, **params)
    binary = sharp.user_items_.copy()
    binary.data[:] = 1.0
    assert np.array_equal(plain.dense_head().content_targets(binary, plain.item_weights_.numpy()), plain.item_weights_.numpy())
    cold = np.flatnonzero(np.asarray(binary.sum(axis=0)).ravel() == 0)
    warm = np.setdiff1d(np.arange(binary.shape[1]), cold)
    assert len(cold) > 100
    # Warm columns are the same EASE head; only the content-predicted cold columns change.
    assert np.array_equal(sharp.item_weights_[:, warm].numpy(), plain.item_weights_[:, warm].numpy())
    sharp_cold, plain_cold = sharp.item_weights_[:, cold].numpy(), plain.item_weights_[:, cold].numpy()
    assert np.isfinite(sharp_cold).all() and not np.allclose(sharp_cold, plain_cold, atol=1e-4)
    # Both still rank cold items for users by their content: strongly correlated, not identical.
    assert 0.5 < np.corrcoef(sharp_cold.ravel(), plain_cold.ravel())[0, 1] < 0.9999
