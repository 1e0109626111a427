"""Colour histograms: real product photos of one colour are closer than photos of different colours."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hybridrec.features.colour_histogram import HUES, N_BINS, SATURATIONS, VALUES, colour_histogram, colour_histograms


@pytest.fixture(scope="module")
def photos(data_dir):
    root = data_dir / "fashion-products"
    styles = pd.read_csv(root / "styles.csv", usecols=["id", "baseColour"], nrows=3000)
    styles["path"] = [str(root / "images" / f"{item_id}.jpg") for item_id in styles["id"]]
    styles = styles[styles["path"].map(lambda p: __import__("os").path.isfile(p))]
    chosen = pd.concat([styles[styles["baseColour"] == colour].head(12) for colour in ("Red", "Blue", "Black", "White")])
    assert len(chosen) == 48
    return chosen.reset_index(drop=True)


def test_same_colour_photos_are_nearest(photos):
    histograms, present = colour_histograms(photos["path"].tolist(), progress=False)
    assert present.all() and histograms.shape == (48, N_BINS)
    np.testing.assert_allclose(np.linalg.norm(histograms, axis=1), 1.0, rtol=1e-5)  # Hellinger: unit vectors
    similarity = histograms @ histograms.T
    np.fill_diagonal(similarity, -np.inf)
    colours = photos["baseColour"].to_numpy()
    nearest = similarity.argmax(axis=1)
    assert (colours[nearest] == colours).mean() >= 0.5  # chance is 11/47; measured 0.62 (white items are hard)
    same = colours[:, None] == colours[None, :]
    np.fill_diagonal(same, False)
    finite = np.isfinite(similarity)
    assert similarity[same & finite].mean() > similarity[~same & finite].mean() + 0.1


def test_white_background_is_ignored_and_red_lands_in_red_bins():
    canvas = np.full((96, 96, 3), 255, dtype=np.uint8)
    canvas[30:66, 30:66] = (200, 20, 20)  # a red square on a white studio background
    histogram = colour_histogram(Image.fromarray(canvas)) ** 2  # back to pixel shares
    red = sum(histogram[s * VALUES + v] for s in range(SATURATIONS) for v in range(VALUES))  # hue bin 0
    assert red > 0.9
    assert histogram[HUES * SATURATIONS * VALUES:].sum() < 0.1  # almost no grey: the background was dropped


def test_missing_and_corrupt_files_give_zero_rows(tmp_path, photos):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    histograms, present = colour_histograms([photos["path"][0], None, str(tmp_path / "nope.jpg"),
                                             str(tmp_path / "broken.jpg")], progress=False)
    assert present.tolist() == [True, False, False, False]
    assert histograms[0].sum() > 0 and not histograms[1:].any()
