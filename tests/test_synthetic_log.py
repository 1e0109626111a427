"""The synthetic e-commerce log of ``benchmarks/synthetic_log.py``: seeded, sized, heavy-tailed,
taste-structured, and learnable (an item–item model beats popularity on it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from synthetic_log import SyntheticLogConfig, generate, read_log, write_log  # noqa: E402

N_ITEMS = 2000


@pytest.fixture(scope="module")
def log():
    return generate(N_ITEMS, seed=0)


def test_same_seed_same_log_other_seed_other_log(log):
    interactions, items = log
    again, again_items = generate(N_ITEMS, seed=0)
    other, _ = generate(N_ITEMS, seed=1)
    pd.testing.assert_frame_equal(interactions, again)
    pd.testing.assert_frame_equal(items, again_items)
    assert not interactions["item_id"].equals(other["item_id"])


def test_ten_events_per_item_and_one_catalog_row_per_item(log):
    interactions, items = log
    assert len(interactions) == 10 * N_ITEMS
    assert items["item_id"].tolist() == list(range(N_ITEMS))
    assert set(interactions["item_id"].unique()) <= set(items["item_id"])
    assert list(items.columns) == ["item_id", "category", "brand"]


def test_users_average_about_twenty_events_with_a_heavy_tail(log):
    interactions, _ = log
    per_user = interactions.groupby("user_id").size()
    assert 15 <= per_user.mean() <= 25
    assert per_user.max() > 8 * per_user.median()


def test_top_one_percent_of_items_hold_a_large_share_of_events(log):
    counts = np.sort(log[0]["item_id"].value_counts().to_numpy())[::-1]
    top = counts[: N_ITEMS // 100].sum() / counts.sum()
    assert top > 0.2  # uniform popularity would give 0.01


def test_a_users_events_concentrate_in_few_categories(log):
    interactions, items = log
    category = items.set_index("item_id")["category"].astype(str)

    def top3_share(categories: pd.Series) -> float:
        frame = pd.DataFrame({"user_id": interactions["user_id"].to_numpy(), "category": categories.to_numpy()})
        active = frame.groupby("user_id").filter(lambda rows: len(rows) >= 10)
        counts = active.groupby(["user_id", "category"]).size()
        top = counts.groupby(level=0).apply(lambda c: c.nlargest(3).sum() / c.sum())
        return float(top.mean())

    real = top3_share(category.loc[interactions["item_id"]])
    shuffled = category.sample(frac=1.0, random_state=0).set_axis(category.index)
    assert real > 0.75
    assert real > top3_share(shuffled.loc[interactions["item_id"]]) + 0.25


def test_split_holds_out_a_fifth_of_each_users_items_and_no_test_pair_in_training(log):
    interactions, _ = log
    test = interactions[interactions["split"] == "test"]
    train = interactions[interactions["split"] == "train"]
    assert set(interactions["split"].unique()) == {"train", "test"}
    assert 0.15 < test[["user_id", "item_id"]].drop_duplicates().shape[0] / \
        interactions[["user_id", "item_id"]].drop_duplicates().shape[0] < 0.25
    assert set(train["user_id"]) == set(interactions["user_id"])
    overlap = pd.MultiIndex.from_frame(test[["user_id", "item_id"]]).isin(
        pd.MultiIndex.from_frame(train[["user_id", "item_id"]]))
    assert not overlap.any()


def test_written_log_reads_back_equal(tmp_path, log):
    summary = write_log(SyntheticLogConfig(n_items=N_ITEMS, seed=0), tmp_path)
    interactions, items = read_log(tmp_path)
    assert summary["n_events"] == len(interactions) == 10 * N_ITEMS
    pd.testing.assert_frame_equal(interactions, log[0])
    pd.testing.assert_frame_equal(items.astype({c: "category" for c in ("category", "brand")}), log[1],
                                  check_categorical=False)


def test_ease_beats_popularity_so_the_log_has_learnable_structure(log):
    from evaluation.ease import EASERecommender
    from evaluation.popularity import PopularityRecommender
    from evaluation.protocol import EvaluationConfig, evaluate_split
    from evaluation.splitters import SplitConfig, make_split

    interactions, items = log
    split = make_split(interactions, SplitConfig(kind="given"))
    config = EvaluationConfig(ks=(20,), segments=("warm",))
    recall = {}
    for name, model in (("ease", EASERecommender()), ("popularity", PopularityRecommender())):
        model.fit(split.train, items=items[["item_id"]])
        recall[name] = evaluate_split(model, split, config)[0]["warm"]["recall@20"]
    assert recall["ease"] > 1.5 * recall["popularity"], recall
