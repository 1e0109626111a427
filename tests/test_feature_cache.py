"""The on-disk feature cache: reuse, incremental updates, model changes and damage, on real MovieLens items."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import find_data_dir as real_data_dir

from hybridrec.errors import HybridRecError
from hybridrec.features.feature_cache import FeatureStore, encode_items
from hybridrec.features.image_encoder import ImageEncoder
from hybridrec.features.text_encoder import TextEncoder

ML_TEMPLATE = "{title}. Genres: {genres}"


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    """The first 40 MovieLens-100K items (titles, genres, TMDB poster paths)."""
    from data_builders.movielens import load_movielens_100k

    return load_movielens_100k(real_data_dir(), download=False).items.head(40).reset_index(drop=True)


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return TextEncoder(device="cpu", progress=False)


@pytest.fixture(scope="module")
def image_encoder() -> ImageEncoder:
    return ImageEncoder(device="cpu", num_workers=0, progress=False)


def encode_text(items, cache_dir, encoder, **kwargs):
    return encode_items(items, text_template=ML_TEMPLATE, cache_dir=cache_dir, text_encoder=encoder,
                        progress=False, **kwargs)


def test_second_run_encodes_nothing_and_returns_the_same_vectors(items, tmp_path, text_encoder):
    first = encode_text(items, tmp_path, text_encoder)
    second = encode_text(items, tmp_path, text_encoder)
    assert (first.stats["text"].encoded, second.stats["text"].encoded) == (40, 0)
    assert second.stats["text"].reused == 40
    np.testing.assert_array_equal(first.text, second.text)


def test_cached_run_does_not_load_the_model(items, tmp_path, text_encoder):
    encode_text(items, tmp_path, text_encoder)
    cached = encode_text(items, tmp_path, None)  # default checkpoint: built only if something is new
    assert cached.stats["text"].encoded == 0 and cached.stats["text"].load_seconds == 0.0


def test_changed_and_new_items_are_the_only_ones_encoded(items, tmp_path, text_encoder):
    before = encode_text(items, tmp_path, text_encoder)
    changed = items.copy()
    changed.loc[[3, 7], "title"] = ["Jurassic Park (1993)", "Titanic (1997)"]
    extra = pd.DataFrame({"item_id": [9001, 9002], "title": ["Alien (1979)", "Aliens (1986)"],
                          "genres": [["Horror", "Sci-Fi"], ["Action", "Sci-Fi"]]})
    after = encode_text(pd.concat([changed, extra], ignore_index=True), tmp_path, text_encoder)
    assert after.stats["text"].encoded == 4 and after.stats["text"].reused == 38
    unchanged = np.setdiff1d(np.arange(40), [3, 7])
    np.testing.assert_array_equal(after.text[unchanged], before.text[unchanged])
    assert float(after.text[3] @ before.text[3]) < 0.9
    assert after.text[40] @ after.text[41] > after.text[40] @ after.text[0]  # Aliens is nearer than Toy Story


def test_a_different_model_setting_gets_its_own_cache(items, tmp_path, text_encoder, monkeypatch):
    default = encode_text(items, tmp_path, text_encoder)
    monkeypatch.setattr(text_encoder, "max_tokens", 32)
    short = encode_text(items, tmp_path, text_encoder)
    assert short.stats["text"].encoded == 40
    assert short.stats["text"].folder != default.stats["text"].folder


def test_two_text_views_of_the_same_items_are_cached_side_by_side(items, tmp_path, text_encoder):
    for _ in range(2):
        title = encode_items(items, text_cols=["title"], cache_dir=tmp_path, text_encoder=text_encoder, progress=False)
        overview = encode_items(items, text_cols=["overview"], cache_dir=tmp_path, text_encoder=text_encoder,
                                progress=False)
    assert title.stats["text"].encoded == 0 and overview.stats["text"].encoded == 0
    assert title.stats["text"].folder != overview.stats["text"].folder
    assert not np.allclose(title.text, overview.text)


def test_rows_follow_the_order_of_the_items(items, tmp_path, text_encoder):
    ordered = encode_text(items, tmp_path, text_encoder)
    shuffled = items.sample(frac=1.0, random_state=0)
    again = encode_text(shuffled, tmp_path, text_encoder)
    np.testing.assert_array_equal(again.item_ids, shuffled["item_id"].to_numpy())
    np.testing.assert_array_equal(again.text, ordered.text[shuffled.index.to_numpy()])


def test_manifest_ids_and_mask_are_written(items, tmp_path, text_encoder):
    with_empty = items.copy()
    with_empty.loc[0, "title"], with_empty.at[0, "genres"] = "", []
    features = encode_text(with_empty, tmp_path, text_encoder)
    folder = Path(features.stats["text"].folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2" and len(manifest["weight_hash"]) == 16
    assert (manifest["dim"], manifest["count"], manifest["text_template"]) == (384, 40, ML_TEMPLATE)
    assert "created" in manifest
    table = pd.read_parquet(folder / "items.parquet")
    assert table["item_id"].tolist() == items["item_id"].tolist()
    assert table["empty"].tolist() == [True] + [False] * 39
    assert features.text_empty[0] and not features.text[0].any()
    assert np.load(folder / "text.npy").shape == (40, 384)


def test_damaged_cache_is_rebuilt(items, tmp_path, text_encoder, caplog):
    first = encode_text(items, tmp_path, text_encoder)
    (Path(first.stats["text"].folder) / "text.npy").write_bytes(b"garbage")
    rebuilt = encode_text(items, tmp_path, text_encoder)
    assert rebuilt.stats["text"].encoded == 40 and "unreadable feature cache" in caplog.text
    np.testing.assert_allclose(rebuilt.text, first.text, atol=1e-6)


def test_images_are_cached_by_file_content(items, tmp_path, image_encoder):
    posters = tmp_path / "posters"
    posters.mkdir()
    subset = items.head(6).copy()
    paths = []
    for item_id, source in zip(subset["item_id"], subset["image_path"]):
        if source is not None:
            shutil.copy(source, posters / f"{item_id}.jpg")
        paths.append(str(posters / f"{item_id}.jpg"))
    subset["image_path"] = paths
    cache = tmp_path / "cache"
    first = encode_items(subset, image_col="image_path", cache_dir=cache, image_encoder=image_encoder, progress=False)
    assert first.image.shape == (6, 1280) and first.stats["image"].encoded == 6

    os.utime(paths[0], ns=(1, 1))  # new mtime, same bytes: re-hashed, not re-encoded
    shutil.copy(paths[2], paths[1])  # new bytes: re-encoded
    Path(paths[4]).unlink()  # now missing: "re-encoded" as absent
    second = encode_items(subset, image_col="image_path", cache_dir=cache, image_encoder=image_encoder,
                          progress=False)
    assert second.stats["image"].encoded == 2 and second.stats["image"].reused == 4
    np.testing.assert_allclose(second.image[1], second.image[2], atol=1e-6)
    assert second.image_present.tolist() == [True, True, True, True, False, True]
    assert not second.image[4].any()


def test_text_and_images_together(items, tmp_path, text_encoder, image_encoder):
    features = encode_items(items.head(5), text_template=ML_TEMPLATE, image_col="image_path", cache_dir=tmp_path,
                            text_encoder=text_encoder, image_encoder=image_encoder, progress=False)
    assert features.text.shape == (5, 384) and features.image.shape == (5, 1280)
    assert features.image_present.dtype == bool and features.text_empty.dtype == bool
    assert set(features.stats) == {"text", "image"}


def test_duplicate_ids_are_refused(items, tmp_path):
    with pytest.raises(HybridRecError, match="duplicate item ids"):
        encode_items(pd.concat([items.head(2), items.head(1)]), text_cols=["title"], cache_dir=tmp_path)


def test_nothing_to_encode_is_refused(items, tmp_path):
    with pytest.raises(HybridRecError, match="nothing to encode"):
        encode_items(items, cache_dir=tmp_path)


def test_missing_image_column_is_refused(items, tmp_path):
    with pytest.raises(HybridRecError, match="no image column 'poster'"):
        encode_items(items, image_col="poster", cache_dir=tmp_path)


def test_store_opens_empty_for_an_unknown_identity(tmp_path):
    store = FeatureStore.open(tmp_path, "text", {"model": "m", "weight_hash": "0"})
    assert len(store.table) == 0
    assert (store.positions([1, 2], ["a", "b"]) == -1).all()
