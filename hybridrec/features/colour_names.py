"""Colour words in a text, and how much of a photo shows that colour.

A shopper types "navy blue shirt"; many catalogs never name the colour in the title, but the photo
shows it. Text and image encoders cannot join the two on their own (a CCA learned from titles
without colour words has no colour direction), so colour words are read with a fixed, public,
dataset-independent lexicon: the xkcd colour survey's 949 names plus the 148 CSS4 names (both as
matplotlib ships them, ``matplotlib.colors.XKCD_COLORS`` / ``CSS4_COLORS``), each an sRGB value.

:func:`find_colour_names` finds the longest lexicon phrases in a text (whole words, at most three),
:func:`remove_colour_names` drops them, and :func:`named_colour_match` compares the colours a title
names with a query's in CIELAB (the same kernel as for photos);
:func:`colour_match` scores photos by the share of their foreground pixels close to those colours in
CIELAB, from the histograms of :mod:`hybridrec.features.colour_histogram` (a Gaussian kernel of
``COLOUR_SIGMA`` ΔE around each named colour, over the histogram bins' centre colours).

Many lexicon names are also plain words ("leather", "indigo", "ice", "earth" in a brand name).
:func:`confirmed_colour_names` keeps, for a catalog with photos, the names its own photos bear out:
the photos of the items whose text names the colour show it more than the other photos do (a
one-sided Welch t-test at ``CONFIRMATION_LEVEL``; no labels involved)::

    names = find_colour_names("Navy Blue Tshirts")            # ["navy blue"]
    match = colour_match(histograms, names)                    # [n_items] in [0, 1]
"""

from __future__ import annotations

import colorsys
import functools
import re
from collections.abc import Sequence

import numpy as np
from scipy import stats

from hybridrec.features.colour_histogram import GREYS, HUES, N_BINS, SATURATIONS, VALUES

#: Width of the colour kernel in CIELAB ΔE (about the distance between two neighbouring colour
#: names, e.g. navy and blue); fixed a priori, see benchmarks/README.md "Query search".
COLOUR_SIGMA = 20.0
#: Longest lexicon phrase looked for, in words ("dark olive green").
MAX_PHRASE_WORDS = 3
#: Colour names kept per item text ("Navy Blue & Red ..." names two).
MAX_NAMED_COLOURS = 4
#: One-sided significance level at which a catalog's photos confirm a colour name of its texts
#: (a conventional level, fixed a priori; see :func:`confirmed_colour_names`).
CONFIRMATION_LEVEL = 0.01
_WORD = re.compile(r"[a-z]+")


@functools.lru_cache(maxsize=1)
def colour_lexicon() -> dict[str, tuple[float, float, float]]:
    """Colour name (lower case, words separated by one space) -> sRGB in [0, 1]; xkcd names first."""
    from matplotlib.colors import CSS4_COLORS, XKCD_COLORS, to_rgb

    lexicon = {name.split(":", 1)[1].lower(): to_rgb(value) for name, value in XKCD_COLORS.items()}
    for name, value in CSS4_COLORS.items():
        lexicon.setdefault(name.lower(), to_rgb(value))
    return {" ".join(_WORD.findall(name)): rgb for name, rgb in lexicon.items() if _WORD.findall(name)}


def _colour_phrases(words: list[str]) -> list[tuple[int, int]]:
    """``(start, length)`` of the lexicon phrases in ``words``: longest phrase first at each word,
    a word belonging to one phrase at most."""
    lexicon = colour_lexicon()
    found, position = [], 0
    while position < len(words):
        for length in range(min(MAX_PHRASE_WORDS, len(words) - position), 0, -1):
            if " ".join(words[position:position + length]) in lexicon:
                found.append((position, length))
                position += length
                break
        else:
            position += 1
    return found


def find_colour_names(text: str) -> list[str]:
    """Colour names of :func:`colour_lexicon` in ``text``, longest phrase first at each word, in order.

    Only whole words count ("sandals" holds no "sand"); a word belongs to one name at most.
    """
    words = _WORD.findall(str(text).lower())
    return [" ".join(words[start:start + length]) for start, length in _colour_phrases(words)]


def remove_colour_names(text: str) -> str:
    """``text``'s words (lower case, letters only) without the colour names :func:`find_colour_names` finds:
    what the text says about the product apart from its colour ("Navy Blue Tshirts" -> "tshirts")."""
    words = _WORD.findall(str(text).lower())
    inside = {start + offset for start, length in _colour_phrases(words) for offset in range(length)}
    return " ".join(word for position, word in enumerate(words) if position not in inside)


def named_colours(texts: Sequence, max_names: int = MAX_NAMED_COLOURS) -> list[list[str]]:
    """Per item, the first ``max_names`` colour names (:func:`find_colour_names`) of its text(s).

    Args:
        texts: per item a text, or a list of its texts (searched one by one, in order); values
            that are not text name no colour.
    """
    found = []
    for item_texts in texts:
        item_texts = [item_texts] if isinstance(item_texts, str) else list(item_texts or [])
        found.append([name for text in item_texts if isinstance(text, str) for name in find_colour_names(text)][:max_names])
    return found


def named_colours_lab(texts: Sequence, max_names: int = MAX_NAMED_COLOURS) -> np.ndarray:
    """``[n, max_names, 3]`` float32 CIELAB of the first ``max_names`` colour names of each item
    (:func:`named_colours`; ``texts`` as there); NaN rows past an item's last name."""
    return names_lab(named_colours(texts, max_names), max_names)


def names_lab(item_names: Sequence[list[str]], max_names: int = MAX_NAMED_COLOURS) -> np.ndarray:
    """``[n, max_names, 3]`` float32 CIELAB of lexicon names, per item (NaN rows past its last name)."""
    lexicon = colour_lexicon()
    lab = np.full((len(item_names), max_names, 3), np.nan, dtype=np.float32)
    for row, names in enumerate(item_names):
        if names:
            lab[row, :len(names[:max_names])] = srgb_to_lab(np.array([lexicon[name] for name in names[:max_names]]))
    return lab


def confirmed_colour_names(item_names: Sequence[list[str]], histograms: np.ndarray,
                           level: float = CONFIRMATION_LEVEL) -> tuple[set[str], dict[str, float]]:
    """The colour names of item texts that the items' own photos confirm.

    A name is confirmed when the photos of the items whose text names it match it
    (:func:`colour_match`) more than the other photos do: a one-sided Welch t-test, p < ``level``.
    A name on fewer than two photographed items cannot be tested and is not confirmed. Nothing
    but texts and photos is read (no labels).

    Args:
        item_names: per item, its colour names (:func:`named_colours`).
        histograms: ``[n, N_BINS]`` the items' photo histograms, zero rows without a photo.

    Returns:
        The confirmed names, and each tested name's p-value.
    """
    histograms = np.asarray(histograms, dtype=np.float32)
    photo_rows = np.flatnonzero(histograms.any(axis=1))
    rows_by_name: dict[str, list[int]] = {}
    for position, row in enumerate(photo_rows):
        for name in set(item_names[row]):
            rows_by_name.setdefault(name, []).append(position)
    names = sorted(rows_by_name)
    if not names:
        return set(), {}
    matches = (histograms[photo_rows] ** 2) @ _colour_kernels(names)                    # [n_photos, n_names]
    p_values = {}
    for column, name in enumerate(names):
        naming = np.zeros(len(photo_rows), dtype=bool)
        naming[rows_by_name[name]] = True
        if naming.sum() < 2 or (~naming).sum() < 2:
            continue
        result = stats.ttest_ind(matches[naming, column], matches[~naming, column], equal_var=False,
                                 alternative="greater")
        p_values[name] = float(result.pvalue)
    return {name for name, p in p_values.items() if p < level}, p_values


def named_colour_match(named_lab: np.ndarray, names: list[str], sigma: float = COLOUR_SIGMA) -> np.ndarray:
    """How close the colours a text names are to the query's: ``max exp(-ΔE^2 / 2 sigma^2)`` over the
    pairs of a named colour (from :func:`named_colours_lab`) and a query colour name.

    Args:
        named_lab: ``[n, m, 3]`` CIELAB, NaN where the text names fewer colours.
        names: the query's colour names.

    Returns:
        ``[n]`` float32 in [0, 1]; 0 for a text naming no colour or when ``names`` is empty.
    """
    if not names:
        return np.zeros(len(named_lab), dtype=np.float32)
    lexicon = colour_lexicon()
    targets = srgb_to_lab(np.array([lexicon[name] for name in names])).astype(np.float32)      # [q, 3]
    distance = np.linalg.norm(named_lab[:, :, None] - targets[None, None], axis=-1)          # [n, m, q]
    kernel = np.exp(-np.nan_to_num(distance, nan=np.inf) ** 2 / (2 * sigma ** 2))
    return kernel.reshape(len(named_lab), -1).max(axis=1, initial=0.0).astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` sRGB in [0, 1] -> ``[..., 3]`` CIELAB (D65 white)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@functools.lru_cache(maxsize=1)
def histogram_bin_colours() -> np.ndarray:
    """``[N_BINS, 3]`` sRGB centre of each bin of :func:`~hybridrec.features.colour_histogram.colour_histogram`
    (coloured bins: hue x saturation x value, saturation above 0.2; then the grey levels)."""
    centres = []
    for hue in range(HUES):
        for saturation in range(SATURATIONS):
            for value in range(VALUES):
                centres.append(colorsys.hsv_to_rgb((hue + 0.5) / HUES, 0.2 + 0.8 * (saturation + 0.5) / SATURATIONS,
                                                   (value + 0.5) / VALUES))
    centres += [((grey + 0.5) / GREYS,) * 3 for grey in range(GREYS)]
    return np.asarray(centres, dtype=np.float64)


def colour_match(histograms: np.ndarray, names: list[str], sigma: float = COLOUR_SIGMA) -> np.ndarray:
    """Share of each photo's foreground pixels near any of the named colours.

    Args:
        histograms: ``[n, N_BINS]`` square-rooted histograms (zero rows: no photo).
        names: colour names of :func:`colour_lexicon` (e.g. from :func:`find_colour_names`).
        sigma: kernel width in ΔE.

    Returns:
        ``[n]`` float32 in [0, 1]: ``sum_bin share(bin) * exp(-ΔE(bin, nearest name)^2 / 2 sigma^2)``;
        zeros when ``names`` is empty.
    """
    histograms = np.asarray(histograms, dtype=np.float32)
    if histograms.ndim != 2 or histograms.shape[1] != N_BINS:
        raise ValueError(f"colour histograms must be [n, {N_BINS}], got {histograms.shape}")
    if not names:
        return np.zeros(len(histograms), dtype=np.float32)
    return (histograms ** 2) @ _colour_kernels(names, sigma).max(axis=1)


def _colour_kernels(names: Sequence[str], sigma: float = COLOUR_SIGMA) -> np.ndarray:
    """``[N_BINS, len(names)]`` float32 ``exp(-ΔE(bin, name)^2 / 2 sigma^2)`` over the histogram bins' centres."""
    lexicon = colour_lexicon()
    targets = srgb_to_lab(np.array([lexicon[name] for name in names]))                       # [q, 3]
    distance = np.linalg.norm(srgb_to_lab(histogram_bin_colours())[:, None] - targets[None], axis=-1)
    return np.exp(-distance ** 2 / (2 * sigma ** 2)).astype(np.float32)
