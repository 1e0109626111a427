"""Build one text per item from catalog columns, e.g. ``"{title}. Genres: {genres}"``.

Values are rendered the same way whatever the column kind: lists (multi-valued attributes) are
joined with ``", "``, missing values (None, NaN, ``""``) become ``""``, whole floats lose their
``.0`` (``1995.0`` -> ``"1995"``). An item whose referenced columns are all empty gets the
empty text ``""`` (flagged by :func:`assemble_texts`), never a template skeleton such as
``". Genres: "``.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hybridrec.errors import HybridRecError

LIST_SEPARATOR = ", "
_SPACES = re.compile(r"\s+")


def template_fields(template: str) -> list[str]:
    """Column names a template refers to, in order of first use.

    Raises:
        HybridRecError: the template is malformed or uses positional / attribute / index fields.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise HybridRecError(f"text template {template!r} is malformed: {err}") from None
    fields: list[str] = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name or name.isdigit() or any(ch in name for ch in ".["):
            raise HybridRecError(
                f"text template {template!r}: field {{{name}}} must name a column, e.g. {{title}}")
        if name not in fields:
            fields.append(name)
    return fields


def default_template(columns: Sequence[str]) -> str:
    """``"{a}. {b}"`` for columns ``[a, b]``: values joined by ``". "``."""
    return ". ".join("{" + column + "}" for column in columns)


def render_value(value: object) -> str:
    """One cell as text: lists joined with ``", "``, missing as ``""``, whole floats without ``.0``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        parts = (render_value(part) for part in value)
        return LIST_SEPARATOR.join(part for part in parts if part)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if float(value).is_integer():
            return str(int(value))
    if value is pd.NA or value is pd.NaT:
        return ""
    return _SPACES.sub(" ", str(value)).strip()


def assemble_texts(items: pd.DataFrame, columns: Sequence[str] | None = None,
                   template: str | None = None) -> tuple[list[str], np.ndarray]:
    """One text per row of ``items``.

    Args:
        items: catalog table.
        columns: columns to use when no template is given (joined with ``". "``).
        template: ``str.format`` template naming columns, e.g. ``"{title}. Genres: {genres}"``;
            it decides which columns are used.

    Returns:
        ``(texts, empty)``: ``texts`` has ``len(items)`` strings, ``empty`` is a bool array
        ``[len(items)]``, True where every referenced column was empty (the text is then ``""``).

    Raises:
        HybridRecError: no columns, or the template / columns name columns ``items`` lacks.
    """
    if template is None:
        if not columns:
            raise HybridRecError("no text columns given: pass text_cols (e.g. ['title']) or a text template")
        template = default_template(columns)
    fields = template_fields(template)
    if not fields:
        raise HybridRecError(f"text template {template!r} names no column, e.g. '{{title}}'")
    missing = [name for name in fields if name not in items.columns]
    if missing:
        raise HybridRecError(f"items table has no column(s) {missing} used by the text template {template!r}; "
                             f"it has {list(items.columns)}")
    rendered = {name: [render_value(value) for value in items[name].tolist()] for name in fields}
    texts: list[str] = []
    empty = np.zeros(len(items), dtype=bool)
    for row in range(len(items)):
        values = {name: rendered[name][row] for name in fields}
        if not any(values.values()):
            empty[row] = True
            texts.append("")
            continue
        texts.append(_SPACES.sub(" ", template.format(**values)).strip())
    return texts, empty
