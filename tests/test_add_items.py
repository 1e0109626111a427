"""model.add_items / remove_items on MovieLens-100K's cold-item split: items added after fitting
score like the same items known as cold at fit time, and are recommendable, similar and searchable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.protocol import catalog_tables, evaluate_model
from evaluation.splitters import SplitConfig, make_split
from hybridrec.errors import HybridRecError
from hybridrec.recommender import HybridRecommender

FIT = {"item_text_cols": ["title", "overview"], "item_attr_cols": ["genres", "year"],
       "user_attr_cols": ["age", "gender", "occupation"]}
FAST = {"tune_ease_l2": False, "tune_block_weights": False, "progress": False}


@pytest.fixture(scope="module")
def cold(movielens):
    split = make_split(movielens.interactions, SplitConfig(kind="cold-item", cold_share=0.2, test_ratio=0.0, seed=0,
                                                           min_rating=4.0, min_positives=5))
    items, users = catalog_tables(split, movielens.items, movielens.users)
    new = items["item_id"].isin(split.cold_item_ids)
    return split, items.loc[~new], items.loc[new], users


def cold_recall(model, split) -> float:
    return evaluate_model(model, split, dataset={"name": "ml-100k"}).segments["cold_item"]["recall@20"]


@pytest.fixture(scope="module")
def added(cold):
    """The fused model (small GNN) fitted without the cold items, which are then added."""
    split, known, new, users = cold
    model = HybridRecommender(dim=16, epochs=2, **FAST).fit(split.train, items=known, users=users, **FIT)
    return model.add_items(new)


def test_cf_columns_of_added_items_score_as_cold_at_fit(cold):
    split, known, new, users = cold
    at_fit = HybridRecommender(use_gnn=False, **FAST).fit(split.train, items=pd.concat([known, new]), users=users, **FIT)
    later = HybridRecommender(use_gnn=False, **FAST).fit(split.train, items=known, users=users, **FIT).add_items(new)
    assert set(later.item_ids_.ids) == set(at_fit.item_ids_.ids)
    recall_at_fit, recall_later = cold_recall(at_fit, split), cold_recall(later, split)
    assert recall_at_fit > 0.2
    assert abs(recall_later / recall_at_fit - 1) < 0.02


def test_added_items_are_recommended_similar_and_searchable(added, cold):
    split, _, new, _ = cold
    new_ids = set(new["item_id"])
    users = split.train["user_id"].unique()[:5]
    top = added.recommend(users, k=10, candidates=list(new_ids))
    assert len(top) == 50 and set(top["item_id"]) <= new_ids
    first = new["item_id"].iloc[0]
    similar = added.similar_items([first], k=10)
    assert len(similar) == 10 and first not in set(similar["similar_item_id"])
    # an added item appears among the similar items of warm ones (it is in the similarity matrix)
    warm = split.train["item_id"].value_counts().index[:50]
    assert set(added.similar_items(warm, k=20)["similar_item_id"]) & new_ids
    title = new["title"].iloc[0]
    assert first in set(added.search(title, k=5)["item_id"])


def test_gnn_embeddings_of_added_items_come_from_content(added, cold):
    _, _, new, _ = cold
    index = added.item_ids_.to_index(new["item_id"].to_numpy())
    embeddings = added.item_embeddings_[index]
    assert embeddings.abs().sum(dim=1).min() > 0
    assert (added.item_popularity_[index] == 0).all()


def test_known_ids_are_refused_or_updated(added, cold):
    _, known, new, _ = cold
    with pytest.raises(HybridRecError, match=str(known["item_id"].iloc[0])):
        added.add_items(known.head(2))
    item = new.head(1)
    before = added.item_embeddings_[added.item_ids_.to_index(item["item_id"].to_numpy())].clone()
    n_items = len(added.item_ids_)
    added.add_items(item.assign(overview="A bleak war film about submarines.", genres=[["War"]]), update=True)
    after = added.item_embeddings_[added.item_ids_.to_index(item["item_id"].to_numpy())]
    assert len(added.item_ids_) == n_items and not np.allclose(before.numpy(), after.numpy())
    added.add_items(item, update=True)


def test_remove_items_hides_them(added, cold):
    split, _, new, _ = cold
    hidden = list(new["item_id"].head(30))
    user = split.train["user_id"].iloc[0]
    before = added.recommend([user], k=5, candidates=list(new["item_id"]))
    assert set(before["item_id"]) & set(hidden)
    added.remove_items(hidden)
    after = added.recommend([user], k=5, candidates=list(new["item_id"]))
    assert not set(after["item_id"]) & set(hidden)
    assert not set(added.search(new["title"].iloc[0], k=10)["item_id"]) & set(hidden)
    added.add_items(new.head(30), update=True)  # shown again
    assert len(added.hidden_items_) == 0


def test_saved_model_adds_items_like_the_fitted_one(cold, tmp_path):
    split, known, new, users = cold
    model = HybridRecommender(dim=16, epochs=1, **FAST).fit(split.train, items=known, users=users, **FIT)
    model.save(tmp_path / "m")
    loaded = HybridRecommender.load(tmp_path / "m").add_items(new)
    model.add_items(new)
    users_index = np.arange(20)
    np.testing.assert_allclose(loaded.score_users(users_index).numpy(), model.score_users(users_index).numpy(),
                               rtol=1e-5, atol=1e-5)
    (tmp_path / "m" / "catalog.json").unlink()
    with pytest.raises(HybridRecError, match="catalog.json"):
        HybridRecommender.load(tmp_path / "m").add_items(new)


def test_sparse_head_adds_items_on_a_slice(cold):
    split, known, new, users = cold
    params = {"cf_head": "sparse", "filter_rank": 32, "filter_neighbors": 32, "use_gnn": False, **FAST}
    at_fit = HybridRecommender(**params).fit(split.train, items=pd.concat([known, new]), users=users, **FIT)
    later = HybridRecommender(**params).fit(split.train, items=known, users=users, **FIT).add_items(new)
    recall_at_fit, recall_later = cold_recall(at_fit, split), cold_recall(later, split)
    assert recall_at_fit > 0.1
    assert abs(recall_later / recall_at_fit - 1) < 0.05


def test_cli_add_items_saves_a_model_with_the_new_items(cold, tmp_path, capsys):
    import json

    from hybridrec.cli import main

    split, known, new, users = cold
    HybridRecommender(use_gnn=False, **FAST).fit(split.train, items=known, users=users, **FIT).save(tmp_path / "m")
    new.head(40).to_parquet(tmp_path / "new.parquet", index=False)
    args = ["add-items", "--model", str(tmp_path / "m"), "--items", str(tmp_path / "new.parquet"),
            "--out", str(tmp_path / "m2"), "--json", "--device", "cpu"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items_added"] == 40
    grown = HybridRecommender.load(tmp_path / "m2")
    assert set(new["item_id"].head(40)) <= set(grown.item_ids_.ids)
    again = ["add-items", "--model", str(tmp_path / "m2"), "--items", str(tmp_path / "new.parquet"),
             "--out", str(tmp_path / "m3")]
    assert main(again) == 1                                   # the same ids again: refused, named
    assert str(new["item_id"].iloc[0]) in capsys.readouterr().err
