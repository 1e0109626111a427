"""Items that must never be shown (out of stock): ``exclude=`` on recommend, similar_items and
recommend_for_history removes exactly those items and leaves the rest of each ranking in order."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.baselines import EASERecommender
from hybridrec import HybridRecommender
from hybridrec.errors import HybridRecError


@pytest.fixture(scope="module")
def fitted(movielens, tmp_path_factory):
    positives = movielens.interactions[movielens.interactions["rating"] >= 4]
    model = HybridRecommender(dim=16, epochs=2, eval_every=1, progress=False, device="cpu",
                              feature_cache_dir=str(tmp_path_factory.mktemp("features")))
    model.fit(positives, items=movielens.items, item_attr_cols=["genres"])
    return model


def _lists(frame, column):
    return {key: group.sort_values("rank")[column].tolist() for key, group in frame.groupby(frame.columns[0])}


def test_recommend_never_returns_excluded_items_and_keeps_the_rest_in_order(fitted):
    users = fitted.user_ids_.ids[:20]
    full = _lists(fitted.recommend(users, k=30), "item_id")
    # Exclude each user's own top 3 (and one item nobody was shown): the rest moves up unchanged.
    excluded = sorted({item for items in full.values() for item in items[:3]})
    filtered = _lists(fitted.recommend(users, k=10, exclude=excluded), "item_id")
    for user, items in filtered.items():
        assert not set(items) & set(excluded)
        assert items == [item for item in full[user] if item not in set(excluded)][:10]


def test_exclude_and_candidates_combine(fitted):
    candidates = fitted.item_ids_.ids[:200]
    excluded = candidates[:50]
    frame = fitted.recommend(fitted.user_ids_.ids[:5], k=20, candidates=candidates, exclude=excluded)
    assert set(frame["item_id"]) <= set(candidates[50:])


def test_similar_items_and_histories_honour_exclude(fitted):
    query = fitted.item_ids_.ids[:5]
    full = _lists(fitted.similar_items(query, k=20), "similar_item_id")
    excluded = sorted({items[0] for items in full.values()})
    filtered = _lists(fitted.similar_items(query, k=5, exclude=excluded), "similar_item_id")
    for item, items in filtered.items():
        assert items == [other for other in full[item] if other not in set(excluded)][:5]
    history = fitted.item_ids_.ids[10:15]
    top = fitted.recommend_for_history(history, k=10)["item_id"].tolist()
    again = fitted.recommend_for_history(history, k=10, exclude=top[:4])["item_id"].tolist()
    assert again[:6] == top[4:] and not set(again) & set(top[:4])


def test_unknown_excluded_ids_are_named(fitted):
    with pytest.raises(HybridRecError, match="no-such-item"):
        fitted.recommend(fitted.user_ids_.ids[:2], k=5, exclude=["no-such-item"])


def test_baselines_take_exclude_too(movielens):
    positives = movielens.interactions[movielens.interactions["rating"] >= 4]
    model = EASERecommender().fit(positives)
    users = model.user_ids_.ids[:10]
    top = _lists(model.recommend(users, k=5), "item_id")
    excluded = np.unique([items[0] for items in top.values()])
    again = _lists(model.recommend(users, k=4, exclude=excluded), "item_id")
    assert all(not set(items) & set(excluded) for items in again.values())


def test_a_lone_id_counts_as_one_id(fitted):
    user = fitted.user_ids_.ids[3]
    assert fitted.recommend(user, k=5).equals(fitted.recommend([user], k=5))
    item = fitted.item_ids_.ids[7]
    assert fitted.similar_items(item, k=5).equals(fitted.similar_items([item], k=5))


def test_loading_through_the_base_class_reads_what_the_class_saves(fitted, tmp_path):
    from hybridrec.recommender_base import RecommenderBase

    fitted.save(tmp_path / "model")
    loaded = RecommenderBase.load(tmp_path / "model")
    assert type(loaded) is HybridRecommender
    direct = HybridRecommender.load(tmp_path / "model")
    # The search index lives in its own folder: the base class's load must not drop it.
    assert (getattr(loaded, "search_index_", None) is None) == (getattr(direct, "search_index_", None) is None)
    assert getattr(fitted, "search_index_", None) is None or loaded.search_index_ is not None
    assert loaded.recommend(fitted.user_ids_.ids[:3], k=5).equals(fitted.recommend(fitted.user_ids_.ids[:3], k=5))
