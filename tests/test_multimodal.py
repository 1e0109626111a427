"""MovieLens-100K with TMDB overviews and posters: the reader's counts, a fit with every modality,
and cold items ranked from their poster and overview alone (on a slice, so posters encode quickly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridrec import HybridRecommender

N_ITEMS, COLD = 150, np.arange(131, 151)  # items 1..150; 131..150 lose their ratings


@pytest.fixture(scope="module")
def multimodal(movielens, tmp_path_factory):
    items = movielens.items[movielens.items["item_id"] <= N_ITEMS].reset_index(drop=True)
    positives = movielens.interactions[(movielens.interactions["rating"] >= 4)
                                       & (movielens.interactions["item_id"] <= N_ITEMS)
                                       & ~movielens.interactions["item_id"].isin(COLD)].reset_index(drop=True)
    return positives, items, movielens.users, str(tmp_path_factory.mktemp("features"))


def test_reader_counts_text_and_posters(movielens):
    items = movielens.items.set_index("item_id")
    assert (items["overview"] != "").sum() == 1641 and items["image_path"].notna().sum() == 1640
    pulp_fiction = items.loc[56]  # no TMDB overview or poster here: kept, with empty content
    assert pulp_fiction["overview"] == "" and pulp_fiction["image_path"] is None or np.isnan(pulp_fiction["image_path"])
    assert items.loc[1, "image_path"].endswith("posters/1.jpg") and "toys" in items.loc[1, "overview"].lower()


def test_fit_with_every_modality(multimodal):
    positives, items, users, cache = multimodal
    model = HybridRecommender(dim=16, epochs=10, eval_every=5, seed=0, progress=False, device="cpu",
                              feature_cache_dir=cache)
    model.fit(positives, items=items, users=users, item_text_cols=["title", "overview"], item_image_col="image_path",
              item_attr_cols=["genres"], user_attr_cols=["age", "gender", "occupation"])
    assert model.content_dims_["image"] == 1280 and model.content_dims_["text:overview"] == 384
    assert set(model.modality_gates_) == {"text:title", "text:overview", "image"}  # one learned gate each
    with_history = np.flatnonzero(np.diff(model.user_items_.indptr) > 0)[:20]
    scores = model.score_users(with_history)
    cold = torch.from_numpy(model.item_ids_.to_index(COLD))
    assert torch.isfinite(scores).all() and (scores[:, cold].std(dim=1) > 0).all()
    assert set(model.cold_block_weights_) == {"attributes", "text:title", "text:overview", "image"}


def test_cold_items_ranked_from_poster_and_overview_alone(multimodal):
    """No title and no genres: a cold item's scores come from its overview and poster only, so
    swapping two cold items' overview and poster swaps their scores."""
    positives, items, users, cache = multimodal

    def cold_scores(table):
        model = HybridRecommender(use_gnn=False, seed=0, progress=False, device="cpu", feature_cache_dir=cache)
        model.fit(positives, items=table, users=users, item_text_cols=["overview"], item_image_col="image_path")
        with_history = np.flatnonzero(np.diff(model.user_items_.indptr) > 0)[:30]
        return model.score_users(with_history)[:, torch.from_numpy(model.item_ids_.to_index(COLD))]

    first, second = 0, 5
    swapped = items.copy()
    rows = swapped.index[swapped["item_id"].isin(COLD[[first, second]])]
    swapped.loc[rows, ["overview", "image_path"]] = swapped.loc[rows[::-1], ["overview", "image_path"]].to_numpy()
    original, exchanged = cold_scores(items), cold_scores(swapped)
    assert (original.std(dim=1) > 0).all()
    assert not torch.allclose(original[:, first], original[:, second])
    torch.testing.assert_close(exchanged[:, first], original[:, second], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(exchanged[:, second], original[:, first], rtol=1e-4, atol=1e-5)
