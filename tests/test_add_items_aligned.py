"""add_items on models whose poster block is CCA-aligned with the overview (the default
``image_alignment="auto"``): MovieLens-100K items 1..240 with posters, items 221..240 without
ratings. An added item's photo is placed by the fit's own alignment, exactly where the fit placed
it, and the alignment survives save/load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.item_content import apply_image_alignment, encode_item_content
from hybridrec.recommender import HybridRecommender

N_ITEMS, NEW = 240, np.arange(221, 241)  # 238 items with a poster and an overview
# One text column: the alignment has no choice to make, so a fit runs one CCA, and its search index one
# (each CCA of 1,280-d posters takes seconds on two cores; the choice is tested in test_multimodal.py).
FIT = {"item_text_cols": ["overview"], "item_image_col": "image_path", "item_attr_cols": ["genres"]}
FAST = {"tune_ease_l2": False, "tune_block_weights": False, "seed": 0, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def posters(movielens, tmp_path_factory):
    """Items 1..240 and their positives (none for 221..240), a feature cache shared by the module."""
    items = movielens.items[movielens.items["item_id"] <= N_ITEMS].reset_index(drop=True)
    ratings = movielens.interactions
    positives = ratings[(ratings["rating"] >= 4) & (ratings["item_id"] <= N_ITEMS)
                        & ~ratings["item_id"].isin(NEW)].reset_index(drop=True)
    return positives, items, movielens.users, str(tmp_path_factory.mktemp("aligned-features"))


@pytest.fixture(scope="module")
def at_fit(posters):
    """The default fused model (small GNN) fitted with items 221..240 in its catalog, as cold items."""
    positives, items, users, cache = posters
    model = HybridRecommender(dim=16, epochs=2, eval_every=2, feature_cache_dir=cache, **FAST)
    return model.fit(positives, items=items, users=users, **FIT)


@pytest.fixture(scope="module")
def later(posters, tmp_path_factory):
    """The default fused model (GNN of one epoch) fitted without items 221..240, saved, then given them
    by add_items."""
    positives, items, users, cache = posters
    model = HybridRecommender(dim=16, epochs=1, eval_every=1, feature_cache_dir=cache, **FAST)
    model.fit(positives, items=items.loc[~items["item_id"].isin(NEW)], users=users, **FIT)
    folder = model.save(tmp_path_factory.mktemp("aligned-models") / "known")
    return model.add_items(items.loc[items["item_id"].isin(NEW)]), folder


def test_added_photos_are_placed_as_in_the_fit_content(at_fit, posters):
    _, items, _, cache = posters
    alignment = at_fit.image_alignment_
    assert alignment is not None and at_fit.content_dims_["image:aligned"] == alignment.dims
    fitted = encode_item_content(items, at_fit.item_ids_, text_cols=FIT["item_text_cols"], image_col="image_path",
                                 cache_dir=cache, device="cpu", progress=False)
    apply_image_alignment(fitted, alignment)  # the whole fit content at once; the next test checks it is the fit's
    new = items.loc[items["item_id"].isin(NEW)].reset_index(drop=True)
    new.loc[0, "overview"], new.loc[1, "image_path"] = "", None            # poster only, overview only
    new.loc[2, ["overview", "image_path"]] = ["", None]                     # neither
    added = encode_item_content(new, IdMap(new["item_id"].to_numpy()), text_cols=FIT["item_text_cols"],
                                image_col="image_path", cache_dir=cache, device="cpu", progress=False)
    poster_only = alignment.cca.transform_image(added.blocks["image"][:1] * np.sqrt(alignment.weights.image)).numpy()
    apply_image_alignment(added, alignment)
    assert list(added.blocks) == list(fitted.blocks) == ["text:overview", "image:aligned"]
    rows, expected = added.blocks["image:aligned"], fitted.blocks["image:aligned"][at_fit.item_ids_.to_index(NEW)]
    # Measured (max abs difference): 0.0 here, 1e-7 for the poster-only row.
    np.testing.assert_allclose(rows[3:], expected[3:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(rows[0], poster_only[0], rtol=0, atol=1e-6)
    assert not np.allclose(rows[1], expected[1], atol=1e-3) and abs(np.linalg.norm(rows[1]) - 1) < 1e-5
    assert not rows[2].any() and added.present["image:aligned"].tolist() == [True, True, False] + [True] * 17


def test_cold_items_added_again_keep_what_the_fit_gave_them(at_fit, posters):
    _, items, _, _ = posters
    index = torch.from_numpy(at_fit.item_ids_.to_index(NEW))
    columns, embeddings = at_fit.item_weights_[:, index].clone(), at_fit.item_embeddings_[index].clone()
    assert columns.abs().sum(dim=0).min() > 0
    at_fit.add_items(items.loc[items["item_id"].isin(NEW)], update=True)   # refused before the alignment was kept
    # Measured (max abs difference): CF columns 5e-9 (largest entry 0.036), GNN embeddings 1.3e-7 (largest 0.35).
    torch.testing.assert_close(at_fit.item_weights_[:, index], columns, rtol=0, atol=1e-6)
    torch.testing.assert_close(at_fit.item_embeddings_[index], embeddings, rtol=0, atol=1e-5)


def test_added_items_are_recommended_and_similar(later):
    model, _ = later
    assert model.item_embeddings_[torch.from_numpy(model.item_ids_.to_index(NEW))].abs().sum(dim=1).min() > 0
    new_ids = set(NEW.tolist())
    users = model.user_ids_.ids[:5]
    top = model.recommend(users, k=10, candidates=NEW)
    assert len(top) == 50 and set(top["item_id"]) <= new_ids
    similar = model.similar_items([NEW[3]], k=10)
    assert len(similar) == 10 and NEW[3] not in set(similar["similar_item_id"])
    warm = model.item_ids_.ids[np.argsort(-model.item_popularity_.numpy())[:50]]
    assert set(model.similar_items(warm, k=20)["similar_item_id"]) & new_ids


def test_a_loaded_model_adds_photos_like_the_fitted_one(later, posters):
    model, folder = later
    _, items, _, _ = posters
    loaded = HybridRecommender.load(folder)
    for name, tensor in model.image_alignment_.tensors().items():
        torch.testing.assert_close(loaded.image_alignment_.tensors()[name], tensor, rtol=0, atol=0)
    assert loaded.image_alignment_.summary == model.image_alignment_.summary
    loaded.add_items(items.loc[items["item_id"].isin(NEW)])
    index = torch.from_numpy(model.item_ids_.to_index(NEW))
    # Measured (max abs difference): 0.0 for the CF columns, GNN embeddings and search photo rows.
    torch.testing.assert_close(loaded.item_weights_[:, index], model.item_weights_[:, index], rtol=0, atol=1e-6)
    torch.testing.assert_close(loaded.item_embeddings_[index], model.item_embeddings_[index], rtol=0, atol=1e-6)
    users = np.arange(20)
    torch.testing.assert_close(loaded.score_users(users), model.score_users(users), rtol=1e-5, atol=1e-5)
    # The search index's own CCA places the added posters after loading too.
    shared, loaded_shared = model.search_index_.image_shared[index], loaded.search_index_.image_shared[index]
    assert np.abs(loaded_shared).sum(axis=1).min() > 0
    np.testing.assert_allclose(loaded_shared, shared, rtol=0, atol=1e-6)


def test_a_model_saved_without_the_alignment_loads_and_refuses_to_add(later, posters, tmp_path):
    _, folder = later
    _, items, _, _ = posters
    old = shutil.copytree(folder, tmp_path / "old")
    state = torch.load(old / "state.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("model.catalog_image_alignment.")},
               old / "state.pt")
    catalog = json.loads((old / "catalog.json").read_text())
    (old / "catalog.json").write_text(json.dumps({k: v for k, v in catalog.items() if k != "image_alignment"}))
    model = HybridRecommender.load(old)                                     # as saved before it was kept
    assert model.image_alignment_ is None and len(model.recommend(model.user_ids_.ids[:2], k=5)) == 10
    with pytest.raises(HybridRecError, match="CCA-aligned with its text, but the alignment was not saved"):
        model.add_items(items.loc[items["item_id"].isin(NEW)])
    half = shutil.copytree(folder, tmp_path / "half")
    (half / "catalog.json").write_text(json.dumps({k: v for k, v in catalog.items() if k != "image_alignment"}))
    with pytest.raises(HybridRecError, match="catalog.json: the image alignment's arrays were saved without"):
        HybridRecommender.load(half)
