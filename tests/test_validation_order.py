"""The fit's validation hold-out drawn by time (``validation_order="latest"``) on MovieLens-100K:
each user's latest interactions held out, the rest kept, duplicates dated by their latest row, and
clear errors without timestamps or with an unknown order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridrec import HybridRecommender
from hybridrec.errors import HybridRecError
from hybridrec.id_map import table_id_maps
from hybridrec.recommender_base import interaction_matrix, interaction_recency
from hybridrec.tuning import validation_holdout

SHARE = 0.1


@pytest.fixture(scope="module")
def ratings(movielens):
    table = movielens.interactions
    id_maps = table_id_maps(table, None, None)
    binary = interaction_matrix(table, id_maps["user"], id_maps["item"])
    binary.data[:] = 1.0
    return table, id_maps, binary


def test_each_user_holds_out_their_latest_tenth(ratings):
    table, id_maps, binary = ratings
    recency = interaction_recency(table, id_maps["user"], id_maps["item"])
    train, valid = validation_holdout(binary, SHARE, 0, recency=recency)
    assert train.nnz + valid.nnz == binary.nnz and train.multiply(valid).nnz == 0
    counts, held = np.diff(binary.indptr), np.diff(valid.indptr)
    expected = np.where(counts >= 5, np.maximum(1, np.rint(SHARE * counts)), 0)
    np.testing.assert_array_equal(held, expected)
    stamps = table.assign(row=id_maps["user"].to_index(table["user_id"]), col=id_maps["item"].to_index(table["item_id"]))
    for row in np.flatnonzero(held)[:200]:
        mine = stamps.loc[stamps["row"] == row].set_index("col")["timestamp"]
        # Every held-out rating is at least as late as every kept one.
        assert mine.loc[valid[row].indices].min() >= mine.loc[train[row].indices].max()


def test_the_random_order_still_draws_at_random(ratings):
    _, _, binary = ratings
    train, valid = validation_holdout(binary, SHARE, 0)
    again, _ = validation_holdout(binary, SHARE, 0)
    assert (train != again).nnz == 0
    share = valid.nnz / binary.nnz
    assert 0.08 < share < 0.12
    held = np.diff(valid.indptr)
    assert np.std(held / np.maximum(np.diff(binary.indptr), 1)) > 0.01   # not a fixed share per user


def test_a_repeated_pair_is_dated_by_its_latest_row(movielens):
    table = movielens.interactions.head(200)
    first = table.iloc[[0]].assign(timestamp=table["timestamp"].max() + 10)
    repeated = pd.concat([table, first], ignore_index=True)
    id_maps = table_id_maps(repeated, None, None)
    recency = interaction_recency(repeated, id_maps["user"], id_maps["item"])
    row = id_maps["user"].to_index([first["user_id"].iloc[0]])[0]
    col = id_maps["item"].to_index([first["item_id"].iloc[0]])[0]
    assert recency[row, col] == recency.data.max() == len(repeated)
    assert recency.nnz == interaction_matrix(repeated, id_maps["user"], id_maps["item"]).nnz


def test_no_timestamp_or_an_unknown_order_is_refused(movielens):
    table = movielens.interactions.head(2000)
    with pytest.raises(HybridRecError, match="'timestamp' column"):
        HybridRecommender(validation_order="latest", use_gnn=False, progress=False).fit(table.drop(columns="timestamp"))
    with pytest.raises(HybridRecError, match="validation_order must be one of"):
        HybridRecommender(validation_order="newest", use_gnn=False, progress=False).fit(table)


def test_the_fit_reports_the_order_it_used(movielens):
    table = movielens.interactions.loc[movielens.interactions["rating"] >= 4]
    model = HybridRecommender(validation_order="latest", use_gnn=False, progress=False, device="cpu").fit(table)
    assert model.fit_summary_["validation_order"] == "latest"
    assert model.get_params()["validation_order"] == "latest"
