"""The text side of a query-search index: each text column encoded alone and again without its
colour names, and the colour names themselves (see :mod:`hybridrec.features.query_search`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hybridrec.features.colour_names import named_colours, names_lab, remove_colour_names
from hybridrec.features.text_encoder import TextEncoder

#: Feature-cache column of a text without its colour names.
PRODUCT_TEXT_SUFFIX = "_without_colour_names"


@dataclass(frozen=True)
class EncodedTexts:
    """The text side of an index for the rows of a table: ``text [c, t, d]``, ``present [c, t]``,
    ``names`` (per row, its texts' colour names), their ``colours [t, m, 3]``, and for the
    ``product_rows`` (positions in the table) whose text names a colour, ``product_text [c, r, d]``
    / ``product_present [c, r]``."""

    text: np.ndarray
    present: np.ndarray
    names: list[list[str]]
    colours: np.ndarray
    product_rows: np.ndarray
    product_text: np.ndarray
    product_present: np.ndarray


def encode_texts(table: pd.DataFrame, text_columns: list[str], encoder: TextEncoder, cache_dir: str | Path,
                 device: str, progress: bool) -> EncodedTexts:
    """Encode each text column of ``table`` alone, and again without its colour names where it names any
    (cached under the column name + ``PRODUCT_TEXT_SUFFIX``, so neither replaces the other)."""
    from hybridrec.features.feature_cache import encode_items

    n_columns, n_rows = len(text_columns), len(table)
    text = np.zeros((n_columns, n_rows, encoder.dim), dtype=np.float32)
    present = np.zeros((n_columns, n_rows), dtype=bool)
    values = [[value if isinstance(value, str) else "" for value in table[column]] for column in text_columns]
    names = named_colours([[column[row] for column in values] for row in range(n_rows)])
    colours = names_lab(names)
    product_rows = np.flatnonzero(~np.isnan(colours[:, :, 0]).all(axis=1))
    product_text = np.zeros((n_columns, len(product_rows), encoder.dim), dtype=np.float32)
    product_present = np.zeros((n_columns, len(product_rows)), dtype=bool)
    for position, column in enumerate(text_columns):
        features = encode_items(table, text_cols=[column], cache_dir=cache_dir, text_encoder=encoder, device=device,
                                progress=progress)
        text[position], present[position] = features.text, ~features.text_empty
        if len(product_rows):
            name = column + PRODUCT_TEXT_SUFFIX
            stripped = pd.DataFrame({"item_id": table["item_id"].to_numpy()[product_rows],
                                     name: [remove_colour_names(values[position][row]) for row in product_rows]})
            features = encode_items(stripped, text_cols=[name], cache_dir=cache_dir, text_encoder=encoder,
                                    device=device, progress=progress)
            product_text[position], product_present[position] = features.text, ~features.text_empty
    return EncodedTexts(text, present, names, colours, product_rows, product_text, product_present)


def confirmed_mask(names: list[list[str]], confirmed: set[str], width: int) -> np.ndarray:
    """``[len(names), width]`` bool: whether each item's i-th colour name is in ``confirmed``."""
    mask = np.zeros((len(names), width), dtype=bool)
    for row, item_names in enumerate(names):
        mask[row, :len(item_names[:width])] = [name in confirmed for name in item_names[:width]]
    return mask
