"""model.explain on MovieLens-100K: the history contributions add up to the raw CF score (dense
EASE: sum of B[h, i]; sparse head, sharpened: P̃[h, i] - β (P̃P̃)[h, i] + L[h]·Q(I - βP̃)[:, i]), CF term +
GNN term = the fused score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridrec.errors import HybridRecError
from hybridrec.recommender import HybridRecommender

FIT = {"item_text_cols": ["title"], "item_attr_cols": ["genres", "year"]}
FAST = {"tune_ease_l2": False, "tune_block_weights": False, "progress": False, "dim": 16, "epochs": 1}


@pytest.fixture(scope="module", params=["dense", "sparse"])
def fitted(request, movielens):
    interactions = movielens.interactions.loc[movielens.interactions["rating"] >= 4]
    # The sparse head with a fixed sharpening step, so its contributions are checked sharpened.
    model = HybridRecommender(cf_head=request.param, filter_rank=32, filter_neighbors=32, filter_sharpen=0.5,
                              tune_filter=False, **FAST)
    return model.fit(interactions, items=movielens.items, **FIT), movielens


def test_contributions_add_up_to_the_raw_cf_score(fitted):
    model, _ = fitted
    user = model.user_ids_.ids[3]
    top = model.recommend([user], k=10)
    table = model.explain(user, top["item_id"], k=5)
    user_index = model.user_ids_.to_index([user])
    history = torch.from_numpy(model._binary_rows(user_index))
    history_index = np.flatnonzero(history[0].numpy())
    item_index = model.item_ids_.to_index(top["item_id"].to_numpy())
    if model.item_weights_ is not None:      # EASE: raw = sum over history of B[h, i]
        expected_raw = model.item_weights_[torch.from_numpy(history_index)].sum(0)[item_index].double().numpy()
    else:                                    # sparse: r P̃ (I - βP̃) + (r L) Q (I - βP̃)
        assert model.cf_filter_.sharpen == 0.5
        expected_raw = model.cf_filter_.score(history)[0, item_index].double().numpy()
    for position, item in enumerate(top["item_id"]):
        rows = table.loc[table["item_id"] == item].set_index("reason")
        raw = float(rows.loc["cf_raw", "value"])
        assert raw == pytest.approx(expected_raw[position], rel=1e-5, abs=1e-6)
        history_rows = table.loc[(table["item_id"] == item) & (table["reason"] == "history")]
        assert len(history_rows) == 5 and set(history_rows["source"]) <= set(model.item_ids_.ids[history_index])
        listed = history_rows["value"].sum() + float(rows.loc["history_rest", "value"])
        assert listed == pytest.approx(raw, rel=1e-5, abs=1e-5)
        # the terms add up to the fused score, which is what recommend ranks by
        assert float(rows.loc["cf_term", "value"]) + float(rows.loc["gnn_term", "value"]) == pytest.approx(
            float(rows.loc["fused_score", "value"]), abs=1e-5)
        assert float(rows.loc["fused_score", "value"]) == pytest.approx(float(top["score"].iloc[position]), abs=1e-5)


def test_largest_contribution_is_listed_first(fitted):
    model, _ = fitted
    user = model.user_ids_.ids[10]
    item = model.recommend([user], k=1)["item_id"].iloc[0]
    history_index = np.flatnonzero(model._binary_rows(model.user_ids_.to_index([user]))[0])
    shares = model.history_contributions(history_index, model.item_ids_.to_index([item]))[:, 0].numpy()
    rows = model.explain(user, [item], k=3)
    first = rows.loc[rows["reason"] == "history"].iloc[0]
    assert first["source"] == model.item_ids_.ids[history_index[np.argmax(np.abs(shares))]]


def test_shared_attributes_count_history_items(fitted):
    model, movielens = fitted
    user = model.user_ids_.ids[0]
    item = model.recommend([user], k=1)["item_id"].iloc[0]
    rows = model.explain(user, [item], k=50)
    shared = rows.loc[rows["reason"] == "attribute"]
    genres = movielens.items.set_index("item_id")["genres"]
    seen = model.user_items_[model.user_ids_.to_index([user])[0]].indices
    history_ids = model.item_ids_.ids[seen]
    for genre in genres[item]:
        count = sum(genre in genres[h] for h in history_ids)
        found = shared.loc[shared["source"] == f"genres={genre}", "value"]
        assert (len(found) == 0 and count == 0) or float(found.iloc[0]) == count


def test_bad_inputs_are_named(fitted):
    model, _ = fitted
    with pytest.raises(HybridRecError, match="no-such-user"):
        model.explain("no-such-user", [model.item_ids_.ids[0]])
    with pytest.raises(HybridRecError, match="k must be"):
        model.explain(model.user_ids_.ids[0], [model.item_ids_.ids[0]], k=0)


def test_cli_recommend_explain_adds_the_reasons(fitted, tmp_path):
    import pandas as pd

    from hybridrec.cli import main

    model, _ = fitted
    model.save(tmp_path / "m")
    users = [str(u) for u in model.user_ids_.ids[:3]]
    assert main(["recommend", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r.parquet"), "--k", "4",
                 "--user-ids", *users, "--explain", "3", "--no-progress"]) == 0
    table = pd.read_parquet(tmp_path / "r.parquet")
    assert len(table) == 12
    np.testing.assert_allclose(table["cf_term"] + table["gnn_term"], table["score"], atol=1e-5)
    assert table["history"].str.count(":").eq(3).all()
