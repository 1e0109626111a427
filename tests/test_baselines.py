"""The three baselines: each passes the recommender contract, plus what makes each one itself."""

from __future__ import annotations

import numpy as np
import pytest
from recommender_contract import RecommenderContract, contract_data
from sklearn.metrics.pairwise import cosine_similarity

from evaluation.baselines import BASELINES, make_baseline
from evaluation.ease import EASERecommender
from evaluation.item_knn import ItemKNNRecommender
from evaluation.matrix_factorization import BPRMFRecommender
from evaluation.popularity import PopularityRecommender
from hybridrec.errors import HybridRecError


class TestPopularityContract(RecommenderContract):
    supports_similar_items = False

    def make_model(self, seed: int) -> PopularityRecommender:
        return PopularityRecommender()


class TestItemKNNContract(RecommenderContract):
    def make_model(self, seed: int) -> ItemKNNRecommender:
        return ItemKNNRecommender(n_neighbors=50, shrinkage=2.0)


class TestBPRMFContract(RecommenderContract):
    def make_model(self, seed: int) -> BPRMFRecommender:
        return BPRMFRecommender(n_factors=16, epochs=5, seed=seed)


class TestEASEContract(RecommenderContract):
    def make_model(self, seed: int) -> EASERecommender:
        return EASERecommender(l2=100.0)


def test_ease_weights_solve_the_closed_form(data):
    """B = I - P diag(1/diag(P)) with P = (XᵀX + λI)⁻¹, zero diagonal; checked in float64 with numpy."""
    model = EASERecommender(l2=50.0).fit(data.interactions, items=data.items)
    binary = (model.user_items_ > 0).astype(np.float64).toarray()
    precision = np.linalg.inv(binary.T @ binary + 50.0 * np.eye(binary.shape[1]))
    expected = np.eye(binary.shape[1]) - precision / np.diag(precision)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.item_weights_.numpy(), expected, atol=1e-4)


@pytest.fixture(scope="module")
def data(movielens):
    return contract_data(movielens)


def test_popularity_ranks_by_distinct_users(data):
    model = PopularityRecommender().fit(data.interactions, items=data.items)
    counts = data.interactions.groupby("item_id")["user_id"].nunique()
    seen = set(data.interactions.loc[data.interactions["user_id"] == 1, "item_id"])
    expected = counts.drop(index=list(seen), errors="ignore")
    expected = expected.sort_values(ascending=False, kind="stable").head(5)
    recs = model.recommend([1], k=5)
    assert recs["score"].tolist() == expected.astype(np.float32).tolist()


def test_item_knn_matches_sklearn_cosine(data):
    model = ItemKNNRecommender(n_neighbors=None).fit(data.interactions, items=data.items)
    binary = (model.user_items_ > 0).astype(np.float64)
    expected = cosine_similarity(binary.T, dense_output=True)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.similarity_.toarray(), expected, atol=1e-6)


def test_item_knn_pruning_keeps_n_neighbors(data):
    model = ItemKNNRecommender(n_neighbors=7).fit(data.interactions, items=data.items)
    assert np.diff(model.similarity_.indptr).max() == 7


def test_item_knn_shrinkage_damps_similarities(data):
    plain = ItemKNNRecommender(n_neighbors=None).fit(data.interactions).similarity_
    shrunk = ItemKNNRecommender(n_neighbors=None, shrinkage=10.0).fit(data.interactions).similarity_
    assert shrunk.sum() < plain.sum()
    assert (shrunk.toarray() <= plain.toarray() + 1e-7).all()


def test_item_knn_rejects_bad_params(data):
    with pytest.raises(HybridRecError, match="n_neighbors"):
        ItemKNNRecommender(n_neighbors=0).fit(data.interactions)


def test_bpr_loss_decreases(data):
    model = BPRMFRecommender(n_factors=16, epochs=6, seed=0).fit(data.interactions)
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_bpr_seeds_differ(data):
    first = BPRMFRecommender(n_factors=16, epochs=2, seed=0).fit(data.interactions)
    second = BPRMFRecommender(n_factors=16, epochs=2, seed=1).fit(data.interactions)
    assert not np.allclose(first.score_users(np.arange(3)).numpy(), second.score_users(np.arange(3)).numpy())


def test_bpr_cold_user_is_ranked_by_item_bias(data):
    model = BPRMFRecommender(n_factors=16, epochs=2, seed=0).fit(data.interactions, users=data.users)
    cold = model.user_ids_.to_index(data.cold_user_ids[:1])
    item_bias = model.network_.item_bias.weight.detach().numpy()[:, 0]
    np.testing.assert_allclose(model.score_users(cold).numpy()[0], item_bias)


def test_make_baseline_by_name():
    assert sorted(BASELINES) == ["ease", "itemknn", "mf", "popularity"]
    assert isinstance(make_baseline("itemknn", n_neighbors=5), ItemKNNRecommender)
    with pytest.raises(HybridRecError, match="unknown baseline"):
        make_baseline("svd")
