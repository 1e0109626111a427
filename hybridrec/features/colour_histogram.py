"""Colour histograms of item photos: the colour signal ImageNet features mostly discard.

A CNN trained for ImageNet classes is built to be invariant to colour (a red and a blue shirt are
both "jersey"), so on the fashion catalog EfficientNet-Lite0 neighbours share the item's
baseColour only 0.31 of the time. A histogram of the product's own pixels (the near-white studio
background dropped) restores that signal cheaply: no model, about a millisecond per photo.

Bins (168): for coloured pixels (saturation > 0.2), 18 hues x 3 saturations x 3 values; for
greyish pixels, 6 grey levels. Counts are normalised and square-rooted (Hellinger), so the cosine
of two histograms is their Bhattacharyya coefficient.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from hybridrec.features.image_files import to_rgb

logger = logging.getLogger(__name__)

HUES, SATURATIONS, VALUES, GREYS = 18, 3, 3, 6
N_BINS = HUES * SATURATIONS * VALUES + GREYS
SIDE = 48  # pixels per side after resizing: colour needs no detail


def colour_histogram(image: Image.Image) -> np.ndarray:
    """``[168]`` float32 square-rooted HSV histogram of ``image``'s foreground.

    Pixels that are nearly white and unsaturated count as background and are dropped, unless fewer
    than 20 pixels would remain (a white product on a white background keeps all its pixels).
    """
    image.draft("RGB", (SIDE + SIDE // 2, SIDE + SIDE // 2))  # JPEG: decode at reduced size
    hsv = np.asarray(to_rgb(image).resize((SIDE, SIDE)).convert("HSV"), dtype=np.float32) / 255.0
    hue, saturation, value = (hsv[..., channel].ravel() for channel in range(3))
    foreground = ~((value > 0.92) & (saturation < 0.08))
    if foreground.sum() >= 20:
        hue, saturation, value = hue[foreground], saturation[foreground], value[foreground]
    coloured = (np.minimum((hue * HUES).astype(int), HUES - 1) * SATURATIONS * VALUES
                + np.minimum(((saturation - 0.2) / 0.8 * SATURATIONS).astype(int), SATURATIONS - 1) * VALUES
                + np.minimum((value * VALUES).astype(int), VALUES - 1))
    grey = HUES * SATURATIONS * VALUES + np.minimum((value * GREYS).astype(int), GREYS - 1)
    counts = np.bincount(np.where(saturation > 0.2, coloured, grey), minlength=N_BINS).astype(np.float32)
    return np.sqrt(counts / counts.sum())


def colour_histograms(paths: Sequence[str | Path | None], *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of image files.

    Args:
        paths: ``[n]`` file paths; ``None``, empty, missing or unreadable files give a zero row.

    Returns:
        ``(histograms [n, 168] float32, present [n] bool)``.
    """
    histograms = np.zeros((len(paths), N_BINS), dtype=np.float32)
    present = np.zeros(len(paths), dtype=bool)
    skipped: Counter = Counter()
    for row, path in enumerate(tqdm(paths, desc="colour histograms", unit="img", disable=not progress)):
        if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
            skipped["no path"] += 1
            continue
        if not os.path.isfile(path):
            skipped["missing file"] += 1
            continue
        try:
            with Image.open(path) as image:
                histograms[row] = colour_histogram(image)
            present[row] = True
        except Exception as err:  # any decoder error is a counted skip, as for the CNN features
            logger.debug("cannot read image %s: %s", path, err)
            skipped["unreadable"] += 1
    if skipped:
        logger.info("colour histograms: %d of %d images read; skipped %s", int(present.sum()), len(paths), dict(skipped))
    return histograms, present
