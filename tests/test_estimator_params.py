"""Estimator conventions of every recommender: scikit-learn's get_params / set_params / clone, values
checked in fit (not in __init__), and the optional capabilities that raise by default."""

from __future__ import annotations

import json

import pytest
from sklearn.base import clone

from evaluation.ease import EASERecommender
from evaluation.item_knn import ItemKNNRecommender
from evaluation.matrix_factorization import BPRMFRecommender
from evaluation.popularity import PopularityRecommender
from hybridrec.errors import HybridRecError
from hybridrec.recommender import HybridRecommender
from hybridrec.recommender_base import RecommenderBase

SLICE_USERS = 30

ESTIMATORS = {
    "hybrid": lambda: HybridRecommender(dim=8, epochs=2, block_weights={"title": 0.5}, seed=3, progress=False),
    "popularity": lambda: PopularityRecommender(use_weights=True),
    "itemknn": lambda: ItemKNNRecommender(n_neighbors=7, shrinkage=2.0),
    "mf": lambda: BPRMFRecommender(n_factors=4, epochs=1, seed=5),
    "ease": lambda: EASERecommender(l2=12.5),
}


@pytest.fixture(scope="module")
def interactions(movielens):
    return movielens.interactions.loc[movielens.interactions["user_id"] <= SLICE_USERS].reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_sklearn_clone_gives_an_unfitted_copy_with_equal_params(name):
    model = ESTIMATORS[name]()
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "item_ids_")


def test_clone_of_a_fitted_model_is_unfitted(interactions):
    model = PopularityRecommender().fit(interactions)
    assert not hasattr(clone(model), "item_ids_")


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_set_params_sets_and_returns_self(name):
    model = ESTIMATORS[name]()
    first = next(iter(model.get_params()))
    value = model.get_params()[first]
    assert model.set_params(**{first: value}) is model
    assert model.set_params() is model


def test_set_params_changes_the_named_values_only():
    model = ItemKNNRecommender(n_neighbors=7, shrinkage=2.0)
    model.set_params(n_neighbors=3, binary=False)
    assert model.get_params() == {"n_neighbors": 3, "shrinkage": 2.0, "binary": False}


def test_set_params_refuses_an_unknown_name_and_sets_nothing():
    model = EASERecommender(l2=12.5)
    with pytest.raises(HybridRecError, match=r"unknown parameter 'alpha'.*\['l2'\]"):
        model.set_params(l2=1.0, alpha=2.0)
    assert model.l2 == 12.5


@pytest.mark.parametrize(("make", "parameter"), [
    (lambda: ItemKNNRecommender(n_neighbors=0), "n_neighbors"),
    (lambda: ItemKNNRecommender(shrinkage=-1.0), "shrinkage"),
    (lambda: BPRMFRecommender(epochs=0), "epochs"),
    (lambda: BPRMFRecommender(n_factors=0), "n_factors"),
    (lambda: BPRMFRecommender(batch_size=0), "batch_size"),
    (lambda: ItemKNNRecommender().set_params(n_neighbors=-2), "n_neighbors"),
])
def test_baseline_params_are_checked_in_fit_naming_the_parameter(interactions, make, parameter):
    model = make()  # building (and set_params) never refuses: fit does
    with pytest.raises(HybridRecError, match=parameter):
        model.fit(interactions)
    assert not hasattr(model, "item_ids_")


def test_bad_params_in_a_saved_folder_are_refused_at_load(interactions, tmp_path):
    folder = ItemKNNRecommender(n_neighbors=5).fit(interactions).save(tmp_path / "knn")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["params"]["n_neighbors"] = 0
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(HybridRecError, match=r"config\.json.*n_neighbors must be >= 1"):
        RecommenderBase.load(folder)


def test_optional_capabilities_raise_by_default(interactions):
    model = PopularityRecommender().fit(interactions)
    assert not hasattr(model, "item_vectors") and not hasattr(model, "recommend_for_history")
    assert hasattr(HybridRecommender(), "recommend_for_history")
    with pytest.raises(HybridRecError, match="PopularityRecommender has no item vectors"):
        model.item_vectors()
    with pytest.raises(HybridRecError, match="PopularityRecommender has no recommend_for_history"):
        model.recommend_for_history([1, 2], k=3)
