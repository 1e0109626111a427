"""Interaction filters, each checked against a hand-computed example, plus k-core on real ratings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_builders.filters import deduplicate, implicit_positives, k_core
from data_builders.parsing import LINE
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport


def table(rows, columns=("user_id", "item_id", "weight", "timestamp")) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    if "weight" in frame.columns:
        frame["weight"] = frame["weight"].astype(np.float32)
    return frame


def pairs(frame: pd.DataFrame) -> list[tuple]:
    return list(zip(frame["user_id"], frame["item_id"]))


def test_k_core_iterates_to_a_fixed_point():
    # 2-core. Pass 1 drops the single rows of items c and d; that leaves u3 and u4 with one row
    # each, dropped in pass 2; pass 3 changes nothing. Only the u1/u2 x a/b square survives.
    interactions = table([("u1", "a", 1, 0), ("u1", "b", 1, 0), ("u2", "a", 1, 0), ("u2", "b", 1, 0),
                          ("u3", "b", 1, 0), ("u3", "c", 1, 0), ("u4", "d", 1, 0), ("u4", "a", 1, 0)])
    filtered, counts = k_core(interactions, min_user=2, min_item=2)
    assert pairs(filtered) == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]
    assert counts == {"rows_removed": 4, "users_removed": 2, "items_removed": 2, "iterations": 3}


def test_k_core_on_real_ratings_meets_the_threshold(data_dir):
    ratings = pd.read_csv(data_dir / "ml-100k" / "u.data", sep="\t", nrows=20_000,
                          names=["user_id", "item_id", "rating", "timestamp"])
    filtered, counts = k_core(ratings, min_user=10, min_item=10)
    assert filtered["user_id"].value_counts().min() >= 10 and filtered["item_id"].value_counts().min() >= 10
    assert counts["rows_removed"] == len(ratings) - len(filtered) > 0


def test_k_core_records_a_note():
    report = LoadReport()
    k_core(table([("u1", "a", 1, 0)]), min_user=2, min_item=1, report=report)
    assert report.notes == ["k-core (min_user=2, min_item=1): removed 1 interaction(s), 1 user(s), 1 item(s) "
                            "in 2 pass(es)"]


def test_k_core_rejects_bad_thresholds():
    with pytest.raises(HybridRecError, match="min_user must be a non-negative integer"):
        k_core(table([("u1", "a", 1, 0)]), min_user=-1)


def test_implicit_positives_keep_high_ratings_with_weight_one():
    interactions = table([("u1", "a", 5, 0, 5.0), ("u1", "b", 3, 0, 3.0), ("u2", "a", 4, 0, 4.0)],
                         columns=("user_id", "item_id", "weight", "timestamp", "rating"))
    filtered, counts = implicit_positives(interactions, min_rating=4.0)
    assert pairs(filtered) == [("u1", "a"), ("u2", "a")] and filtered["weight"].tolist() == [1.0, 1.0]
    assert filtered["weight"].dtype == np.float32 and counts == {"rows_removed": 1}


def test_implicit_positives_need_a_rating():
    with pytest.raises(HybridRecError, match="needs interaction column"):
        implicit_positives(table([("u1", "a", 1, 0)]))


REPEATS = [("u1", "a", 1.0, 30, "view"), ("u1", "a", 1.0, 30, "view"), ("u1", "a", 5.0, 10, "purchase"),
           ("u1", "a", 3.0, 20, "cart"), ("u2", "a", 1.0, 5, "view")]
EVENT_COLUMNS = ("user_id", "item_id", "weight", "timestamp", "event")


@pytest.mark.parametrize("policy, weights, events", [
    ("none", [1, 1, 5, 3, 1], ["view", "view", "purchase", "cart", "view"]),
    ("exact", [1, 5, 3, 1], ["view", "purchase", "cart", "view"]),
    ("first", [5, 1], ["purchase", "view"]),
    ("last", [1, 1], ["view", "view"]),
    ("max", [5, 1], ["purchase", "view"]),
    ("sum", [10, 1], ["view", "view"]),
])
def test_deduplicate_policies(policy, weights, events):
    filtered, counts = deduplicate(table(REPEATS, EVENT_COLUMNS), policy)
    assert filtered["weight"].tolist() == weights and filtered["event"].tolist() == events
    assert counts == {"rows_removed": 5 - len(weights)}


def test_first_and_last_follow_timestamps_not_row_order():
    interactions = table([("u1", "a", 1, 50), ("u1", "a", 2, 10), ("u1", "a", 3, 30)])
    assert deduplicate(interactions, "first")[0]["weight"].tolist() == [2.0]
    assert deduplicate(interactions, "last")[0]["weight"].tolist() == [1.0]


def test_sum_keeps_the_weight_dtype():
    filtered, _ = deduplicate(table([("u1", "a", 1, 0), ("u1", "a", 2, 1)]), "sum")
    assert filtered["weight"].dtype == np.float32 and filtered["weight"].tolist() == [3.0]


def test_exact_duplicates_are_counted_skips_with_lines():
    interactions = table(REPEATS, EVENT_COLUMNS).assign(**{LINE: [2, 3, 4, 5, 6]})
    report = LoadReport()
    deduplicate(interactions, "exact", report=report, file="log.csv")
    assert report.total_skipped == 1
    assert next(iter(report.examples.values()))[0].startswith("log.csv:3: duplicate event")


def test_exact_duplicates_raise_in_strict_mode():
    with pytest.raises(HybridRecError, match="duplicate event"):
        deduplicate(table(REPEATS, EVENT_COLUMNS), "exact", report=LoadReport(strict=True))


def test_merging_policies_are_noted_not_skipped():
    report = LoadReport(strict=True)
    deduplicate(table(REPEATS, EVENT_COLUMNS), "max", report=report)
    assert report.total_skipped == 0 and report.notes == ["dedupe 'max': merged 3 repeated user-item row(s)"]


def test_unknown_policy_is_an_error():
    with pytest.raises(HybridRecError, match="unknown dedupe policy 'avg'"):
        deduplicate(table(REPEATS, EVENT_COLUMNS), "avg")
