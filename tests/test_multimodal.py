"""MovieLens-100K with TMDB overviews and posters: the reader's counts, a fit with every modality,
and cold items ranked from their poster and overview alone (on a slice, so posters encode quickly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridrec import HybridRecommender
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.item_content import align_image_with_text, encode_item_content

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
    assert model.image_alignment_ is None  # under 200 items with poster and overview: too few for the CCA, kept raw


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


@pytest.fixture(scope="module")
def catalog_300(movielens, tmp_path_factory):
    """Items 1..300 (enough poster–text pairs for the alignment) and their positives; 281..300 cold."""
    items = movielens.items[movielens.items["item_id"] <= 300].reset_index(drop=True)
    cold = np.arange(281, 301)
    positives = movielens.interactions[(movielens.interactions["rating"] >= 4)
                                       & (movielens.interactions["item_id"] <= 300)
                                       & ~movielens.interactions["item_id"].isin(cold)].reset_index(drop=True)
    return positives, items, cold, str(tmp_path_factory.mktemp("features300"))


def test_poster_block_aligned_with_its_text(catalog_300):
    _, items, _, cache = catalog_300
    ids = IdMap(items["item_id"].to_numpy())
    content = encode_item_content(items, ids, text_cols=["title", "overview"], image_col="image_path",
                                  cache_dir=cache, device="cpu", progress=False)
    raw_image, has_image = content.blocks["image"].copy(), content.present["image"].copy()
    summary = align_image_with_text(content).summary
    assert "image" not in content.blocks and summary["text_block"] in ("text:title", "text:overview")
    aligned = content.blocks["image:aligned"]
    assert aligned.shape == (300, summary["dims"]) and summary["dims"] == summary["pairs"] // 10
    present = content.present["image:aligned"]
    np.testing.assert_allclose(np.linalg.norm(aligned[present], axis=1), 1.0, rtol=1e-5)
    text_present = content.present[summary["text_block"]]
    assert (present == (has_image | text_present)).all()
    # Row 30 gets row 31's poster: in the refitted space it comes closer to item 31.
    swapped = encode_item_content(items, ids, text_cols=["title", "overview"], image_col="image_path",
                                  cache_dir=cache, device="cpu", progress=False)
    swapped.blocks["image"][30] = raw_image[31]
    align_image_with_text(swapped, summary["text_block"])
    after = swapped.blocks["image:aligned"]
    assert after[30] @ after[31] > aligned[30] @ aligned[31] + 0.2
    # Rows 0..29 lose their poster: they are placed by their text alone, not dropped.
    hidden = np.arange(30)
    swapped.blocks = {**swapped.blocks, "image": raw_image.copy()}
    del swapped.blocks["image:aligned"], swapped.present["image:aligned"]
    swapped.blocks["image"][hidden] = 0.0
    swapped.present["image"] = has_image.copy()
    swapped.present["image"][hidden] = False
    align_image_with_text(swapped, summary["text_block"])
    placed = swapped.blocks["image:aligned"][hidden]
    assert swapped.present["image:aligned"][hidden].all()
    np.testing.assert_allclose(np.linalg.norm(placed, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(HybridRecError, match="no text block 'text:plot'"):
        align_image_with_text(encode_item_content(items, ids, text_cols=["title"], image_col="image_path",
                                                  cache_dir=cache, device="cpu", progress=False), "text:plot")


def test_fit_uses_the_aligned_poster_and_can_keep_it_raw(catalog_300, movielens):
    positives, items, cold, cache = catalog_300
    fit = {"item_text_cols": ["title", "overview"], "item_image_col": "image_path", "item_attr_cols": ["genres"]}
    model = HybridRecommender(dim=16, epochs=2, eval_every=2, tune_block_weights=False, tune_ease_l2=False, seed=0,
                              progress=False, device="cpu", feature_cache_dir=cache)
    model.fit(positives, items=items, users=movielens.users, **fit)
    assert "image" not in model.content_dims_ and model.content_dims_["image:aligned"] == model.image_alignment_.dims
    assert set(model.modality_gates_) == {"text:title", "text:overview", "image:aligned"}
    scores = model.score_users(np.flatnonzero(np.diff(model.user_items_.indptr) > 0)[:20])
    assert torch.isfinite(scores).all()
    assert (scores[:, torch.from_numpy(model.item_ids_.to_index(cold))].std(dim=1) > 0).all()
    raw = HybridRecommender(use_gnn=False, image_alignment="none", tune_block_weights=False, seed=0, progress=False,
                            device="cpu", feature_cache_dir=cache).fit(positives, items=items, **fit)
    assert raw.image_alignment_ is None and raw.content_dims_["image"] == 1280
