"""The contract every recommender obeys, as a test mixin.

Use it in a test module like this::

    from recommender_contract import RecommenderContract

    class TestMyModel(RecommenderContract):
        supports_similar_items = True

        def make_model(self, seed: int) -> RecommenderBase:
            return MyModel(seed=seed)

The tests run on a real slice of MovieLens-100K (the ``movielens`` fixture of ``conftest.py``):
users 1..120 with their ratings, the full item catalog (so items without a rating in the slice are
cold items) and a user table with ten extra users without ratings (cold users).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from hybridrec.errors import HybridRecError
from hybridrec.recommender_base import RecommenderBase

SLICE_USERS = 120
COLD_USERS = 10


@dataclass(frozen=True)
class ContractData:
    """The real slice the contract runs on."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    cold_item_ids: np.ndarray
    cold_user_ids: np.ndarray


def contract_data(movielens) -> ContractData:
    """Users ``1..SLICE_USERS`` with their ratings, all items, and ``COLD_USERS`` users without ratings."""
    interactions = movielens.interactions.loc[movielens.interactions["user_id"] <= SLICE_USERS].reset_index(drop=True)
    users = movielens.users.loc[movielens.users["user_id"] <= SLICE_USERS + COLD_USERS].reset_index(drop=True)
    items = movielens.items
    cold_items = np.setdiff1d(items["item_id"].to_numpy(), interactions["item_id"].unique())
    cold_users = np.arange(SLICE_USERS + 1, SLICE_USERS + COLD_USERS + 1)
    return ContractData(interactions, items, users, cold_items, cold_users)


class RecommenderContract:
    """Mixin: shapes, id round-trips, ``filter_seen``, candidates, cold ids, determinism with a
    seed, save/load equality and unknown-id errors. Subclasses define :meth:`make_model`."""

    #: Set to False for models without item-item similarity (``similar_items`` is then skipped).
    supports_similar_items: bool = True
    k: int = 10
    #: Extra keyword arguments for ``fit`` (e.g. content columns of a hybrid model).
    fit_kwargs: dict = {}

    def make_model(self, seed: int) -> RecommenderBase:
        """A fresh, unfitted model whose randomness comes from ``seed``."""
        raise NotImplementedError

    # -- fixtures ----------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    def data(self, movielens) -> ContractData:
        return contract_data(movielens)

    @pytest.fixture(scope="class")
    def fitted(self, data) -> RecommenderBase:
        return self.make_model(seed=0).fit(data.interactions, items=data.items, users=data.users, **self.fit_kwargs)

    @pytest.fixture(scope="class")
    def query_users(self, data) -> np.ndarray:
        return np.array([1, 7, 42, 99, 120])

    # -- fitting -----------------------------------------------------------------------------
    def test_fit_returns_self(self, data):
        model = self.make_model(seed=0)
        assert model.fit(data.interactions, items=data.items, users=data.users, **self.fit_kwargs) is model

    def test_catalog_keeps_cold_items_and_users(self, fitted, data):
        assert len(fitted.item_ids_) == len(data.items)
        assert all(user in fitted.user_ids_ for user in data.cold_user_ids)

    def test_not_fitted_raises(self):
        with pytest.raises(HybridRecError, match="not fitted"):
            self.make_model(seed=0).recommend([1])

    # -- shapes ------------------------------------------------------------------------------
    def test_score_users_shape(self, fitted):
        scores = fitted.score_users(np.arange(4))
        assert tuple(scores.shape) == (4, len(fitted.item_ids_))
        assert scores.dtype == torch.float32

    def test_recommend_shape_and_order(self, fitted, query_users):
        recs = fitted.recommend(query_users, k=self.k)
        assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
        assert len(recs) == len(query_users) * self.k
        for _, group in recs.groupby("user_id"):
            assert group["rank"].tolist() == list(range(1, self.k + 1))
            assert (np.diff(group["score"].to_numpy()) <= 0).all()
            assert group["item_id"].is_unique

    # -- ids ---------------------------------------------------------------------------------
    def test_ids_round_trip(self, fitted, query_users, data):
        recs = fitted.recommend(query_users, k=self.k)
        assert recs["user_id"].tolist() == np.repeat(query_users, self.k).tolist()
        assert recs["item_id"].isin(data.items["item_id"]).all()

    def test_string_ids_round_trip(self, data):
        interactions = data.interactions.assign(user_id="u" + data.interactions["user_id"].astype(str),
                                                item_id="i" + data.interactions["item_id"].astype(str))
        model = self.make_model(seed=0).fit(interactions)
        recs = model.recommend(["u3", "u5"], k=5)
        assert recs["user_id"].tolist() == ["u3"] * 5 + ["u5"] * 5
        assert recs["item_id"].isin(set(interactions["item_id"])).all()

    def test_unknown_user_raises(self, fitted):
        with pytest.raises(HybridRecError, match="unknown user"):
            fitted.recommend([1, 999_999], k=5)

    def test_unknown_candidate_raises(self, fitted):
        with pytest.raises(HybridRecError, match="unknown item"):
            fitted.recommend([1], k=5, candidates=[1, 999_999])

    def test_k_below_one_raises(self, fitted):
        with pytest.raises(HybridRecError, match="k must be"):
            fitted.recommend([1], k=0)

    # -- filtering ---------------------------------------------------------------------------
    def test_filter_seen(self, fitted, query_users, data):
        recs = fitted.recommend(query_users, k=50)
        seen = set(zip(data.interactions["user_id"], data.interactions["item_id"]))
        assert not any(pair in seen for pair in zip(recs["user_id"], recs["item_id"]))

    def test_without_filter_lists_are_full(self, fitted, query_users):
        recs = fitted.recommend(query_users, k=self.k, filter_seen=False)
        assert len(recs) == len(query_users) * self.k

    def test_candidates_restrict_results(self, fitted, query_users, data):
        candidates = data.items["item_id"].to_numpy()[100:140]
        recs = fitted.recommend(query_users, k=self.k, candidates=candidates)
        assert recs["item_id"].isin(candidates).all()
        assert len(recs) > 0

    def test_short_candidate_list_gives_short_lists(self, fitted, data):
        seen = data.interactions.loc[data.interactions["user_id"] == 1, "item_id"]
        unseen = np.setdiff1d(data.items["item_id"], seen)
        recs = fitted.recommend([1], k=self.k, candidates=unseen[:3])
        assert sorted(recs["item_id"]) == sorted(unseen[:3])

    def test_cold_items_can_be_recommended(self, fitted, data):
        recs = fitted.recommend([1], k=5, candidates=data.cold_item_ids)
        assert len(recs) == 5
        assert recs["item_id"].isin(data.cold_item_ids).all()

    def test_cold_user_gets_a_full_list(self, fitted, data):
        recs = fitted.recommend(data.cold_user_ids[:2], k=self.k)
        assert len(recs) == 2 * self.k

    # -- determinism and persistence ------------------------------------------------------------
    def test_deterministic_with_seed(self, fitted, data, query_users):
        again = self.make_model(seed=0).fit(data.interactions, items=data.items, users=data.users, **self.fit_kwargs)
        pd.testing.assert_frame_equal(fitted.recommend(query_users, k=self.k), again.recommend(query_users, k=self.k))

    def test_save_load_equality(self, fitted, query_users, tmp_path):
        path = fitted.save(tmp_path / "model")
        for loader in (RecommenderBase.load, type(fitted).load):
            loaded = loader(path)
            assert type(loaded) is type(fitted)
            assert loaded.get_params() == fitted.get_params()
            assert loaded.user_ids_ == fitted.user_ids_ and loaded.item_ids_ == fitted.item_ids_
            assert (loaded.user_items_ != fitted.user_items_).nnz == 0
            assert torch.allclose(loaded.score_users(np.arange(6)), fitted.score_users(np.arange(6)))
            pd.testing.assert_frame_equal(loaded.recommend(query_users, k=self.k),
                                          fitted.recommend(query_users, k=self.k))

    # -- item similarity ---------------------------------------------------------------------
    def test_similar_items(self, fitted):
        if not self.supports_similar_items:
            with pytest.raises(HybridRecError, match="no item-item similarity"):
                fitted.similar_items([1])
            return
        similar = fitted.similar_items([1, 50], k=5)
        assert list(similar.columns) == ["item_id", "similar_item_id", "score", "rank"]
        assert len(similar) == 10
        assert (similar["item_id"] != similar["similar_item_id"]).all()

    def test_similar_items_unknown_raises(self, fitted):
        with pytest.raises(HybridRecError, match="unknown item"):
            fitted.similar_items([999_999])
