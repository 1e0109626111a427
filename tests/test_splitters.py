"""Split invariants on real MovieLens-100K: no leakage, cold ids really cold, seeded reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_builders.filters import implicit_positives
from evaluation.splitters import (SplitConfig, cold_item_split, cold_user_split, leave_last_out_split, make_split,
                                  random_split, temporal_split, user_temporal_split)
from hybridrec.errors import HybridRecError


def pairs(table: pd.DataFrame) -> set:
    return set(zip(table["user_id"], table["item_id"]))


@pytest.fixture(scope="module")
def interactions(movielens) -> pd.DataFrame:
    return movielens.interactions


def assert_partition(split, interactions):
    """Train, valid and test are disjoint and together hold every row (ML-100K pairs are unique)."""
    train, valid, test = pairs(split.train), pairs(split.valid), pairs(split.test)
    assert not train & test and not train & valid and not valid & test
    assert len(split.train) + len(split.valid) + len(split.test) == len(interactions)
    assert train | valid | test == pairs(interactions)
    assert split.sizes["train"] == len(split.train) and split.sizes["test"] == len(split.test)


@pytest.mark.parametrize("kind", ["random", "temporal", "user-temporal", "leave-last", "cold-item", "cold-user"])
def test_every_kind_partitions_the_rows(kind, interactions):
    split = make_split(interactions, SplitConfig(kind=kind, valid_ratio=0.1))
    assert_partition(split, interactions)
    assert len(split.valid) > 0 and len(split.test) > 0
    assert split.spec["kind"] == kind


def test_random_split_holds_out_the_ratio_per_user(interactions):
    split = random_split(interactions, test_ratio=0.2, valid_ratio=0.1, seed=0)
    per_user = interactions.groupby("user_id").size()
    test_per_user = split.test.groupby("user_id").size().reindex(per_user.index, fill_value=0)
    np.testing.assert_array_equal(test_per_user.to_numpy(), np.floor(per_user.to_numpy() * 0.2 + 0.5))
    assert split.train["user_id"].nunique() == per_user.size


def test_random_split_is_reproducible_and_seed_dependent(interactions):
    first, again = random_split(interactions, seed=5), random_split(interactions, seed=5)
    pd.testing.assert_frame_equal(first.test, again.test)
    assert pairs(random_split(interactions, seed=6).test) != pairs(first.test)


def test_every_user_keeps_a_training_row():
    tiny = pd.DataFrame({"user_id": [1, 2, 2], "item_id": [1, 1, 2], "weight": 1.0})
    split = random_split(tiny, test_ratio=0.5, seed=0)
    assert set(split.train["user_id"]) == {1, 2}
    assert len(split.test) == 1


def test_temporal_split_cuts_at_one_time(interactions):
    split = temporal_split(interactions, test_ratio=0.2, valid_ratio=0.1)
    assert split.train["timestamp"].max() <= split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() <= split.test["timestamp"].min()
    assert len(split.test) == 20_000


def test_user_temporal_split_holds_out_each_users_latest(interactions):
    split = user_temporal_split(interactions, test_ratio=0.2)
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    assert (last_train.reindex(first_test.index) <= first_test).all()


def test_leave_last_out_holds_out_one_latest_row_per_user(interactions):
    split = leave_last_out_split(interactions, with_valid=True)
    assert split.test["user_id"].is_unique and split.valid["user_id"].is_unique
    assert len(split.test) == interactions["user_id"].nunique()
    latest = interactions.groupby("user_id")["timestamp"].max()
    assert (split.test.set_index("user_id")["timestamp"] == latest.reindex(split.test["user_id"])).all()


def test_cold_items_leave_training_entirely(interactions):
    split = cold_item_split(interactions, cold_share=0.2, test_ratio=0.2, valid_ratio=0.1, seed=0)
    cold = set(split.cold_item_ids)
    assert len(cold) == round(0.2 * interactions["item_id"].nunique())
    assert not cold & set(split.train["item_id"])
    held_rows = interactions.loc[interactions["item_id"].isin(cold)]
    assert pairs(held_rows) <= pairs(split.test) | pairs(split.valid)
    # Validation cold items are kept apart from test cold items.
    valid_cold = set(split.valid["item_id"]) & cold
    test_cold = set(split.test["item_id"]) & cold
    assert valid_cold and test_cold and not valid_cold & test_cold
    # The warm part also has test rows.
    assert (~split.test["item_id"].isin(cold)).any()


def test_cold_users_leave_training_entirely(interactions):
    split = cold_user_split(interactions, cold_share=0.1, seed=0)
    cold = set(split.cold_user_ids)
    assert len(cold) == round(0.1 * interactions["user_id"].nunique())
    assert not cold & set(split.train["user_id"])
    assert cold <= set(split.test["user_id"])
    assert split.sizes["held_out_users"] == len(cold)


def test_cold_splits_are_reproducible_and_seed_dependent(interactions):
    assert np.array_equal(cold_item_split(interactions, seed=3).cold_item_ids,
                          cold_item_split(interactions, seed=3).cold_item_ids)
    assert not np.array_equal(cold_item_split(interactions, seed=3).cold_item_ids,
                              cold_item_split(interactions, seed=4).cold_item_ids)
    assert not np.array_equal(cold_user_split(interactions, seed=3).cold_user_ids,
                              cold_user_split(interactions, seed=4).cold_user_ids)


def test_positives_filter(interactions):
    positives, _ = implicit_positives(interactions, min_rating=4, min_positives=5, unit_weights=False)
    assert (positives["rating"] >= 4).all()
    assert positives.groupby("user_id").size().min() >= 5
    rated_high = interactions.loc[interactions["rating"] >= 4]
    counts = rated_high.groupby("user_id").size()
    assert len(positives) == int(counts[counts >= 5].sum())
    assert positives["user_id"].nunique() == int((counts >= 5).sum()) < interactions["user_id"].nunique()


def test_make_split_records_the_filter_and_seed(interactions):
    split = make_split(interactions, SplitConfig(kind="random", seed=11, min_rating=4, min_positives=5))
    assert split.spec["seed"] == 11
    assert split.spec["filter"]["min_rating"] == 4 and split.spec["filter"]["rows_after"] < len(interactions)
    assert (split.test["rating"] >= 4).all()


@pytest.mark.parametrize("kwargs, field", [({"kind": "shuffle"}, "kind"), ({"test_ratio": 1.2}, "test_ratio"),
                                           ({"test_ratio": 0.6, "valid_ratio": 0.5}, "valid_ratio"),
                                           ({"cold_share": 0.0}, "cold_share")])
def test_config_names_the_bad_field(kwargs, field):
    with pytest.raises(HybridRecError, match=field):
        SplitConfig(**kwargs)


def test_temporal_split_needs_timestamps(interactions):
    with pytest.raises(HybridRecError, match="timestamp"):
        temporal_split(interactions.drop(columns=["timestamp"]))
