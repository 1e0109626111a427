"""Item and user tables from files: one row per id with text, categorical, multi-valued, numeric and
image columns in their canonical representation (see :mod:`hybridrec.tables`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.parsing import (LINE, MISSING_MARKERS, as_strings, parse_numeric, read_table, require_columns,
                                   require_rows, skip_rows)
from hybridrec.errors import HybridRecError
from hybridrec.features.image_paths import resolve_image_paths
from hybridrec.load_report import LoadReport
from hybridrec.tables import ColumnRoles

logger = logging.getLogger(__name__)

IMAGE_COLUMN = "image_path"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _flatten(value: object) -> Iterable[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        for part in value:
            yield from _flatten(part)
    elif not _is_missing(value):
        yield str(value)


def text_values(values: pd.Series) -> pd.Series:
    """Free text: trimmed ``str``, ``""`` where missing; lists (e.g. description paragraphs) are joined."""
    if values.dtype == object:
        values = values.map(lambda v: " ".join(_flatten(v)) if isinstance(v, (list, tuple, np.ndarray)) else v)
    return values.astype("str").fillna("").str.strip()


def category_values(values: pd.Series) -> pd.Series:
    """Single-valued attributes: trimmed ``str``, ``None`` where missing or a missing marker such as
    "NA" or "null" (object dtype)."""
    strings = as_strings(values)
    missing = ((strings == "") | strings.str.lower().isin(MISSING_MARKERS)).to_numpy()
    return pd.Series(np.where(missing, None, strings.to_numpy(dtype=object)), index=values.index, dtype=object)


def multi_values(values: pd.Series, sep: str = "|") -> pd.Series:
    """Multi-valued attributes as ``list[str]``: split strings on ``sep``, flatten (nested) lists;
    trimmed, blanks dropped, duplicates removed in first-seen order; ``[]`` where missing."""
    def to_list(value: object) -> list[str]:
        if isinstance(value, (list, tuple, np.ndarray)):
            parts = _flatten(value)
        elif _is_missing(value):
            return []
        else:
            parts = str(value).split(sep)
        return list(dict.fromkeys(p for p in (part.strip() for part in parts) if p))

    return pd.Series([to_list(v) for v in values.to_numpy(dtype=object)], index=values.index, dtype=object)


def _check_roles(id_col: str, id_name: str, declared: dict[str, Sequence[str]], image_col: str | None) -> None:
    """A column may play one role only; the id column plays none."""
    seen: dict[str, str] = {}
    for role, columns in declared.items():
        if isinstance(columns, str):
            raise HybridRecError(f"{role} columns must be a list of names, got the string {columns!r}")
        for column in columns:
            if column == id_col:
                raise HybridRecError(f"column {column!r} is the id column and cannot also be a {role} column")
            if column in seen:
                raise HybridRecError(f"column {column!r} is given as both a {seen[column]} and a {role} column")
            if column in (id_name, IMAGE_COLUMN) and column != image_col:
                raise HybridRecError(f"column {column!r} would clash with the canonical {column!r} column; rename it")
            seen[column] = role
    if image_col is not None and image_col in seen:
        raise HybridRecError(f"column {image_col!r} is the image column and cannot also be a {seen[image_col]} column")


def image_paths(ids: pd.Series, values: pd.Series | None, *, image_dir: str | Path | None,
                base_dir: Path, file: object, report: LoadReport, lines: Sequence[int] | None = None,
                column: str | None = None) -> list[str | None]:
    """Local image path per row (``None`` where there is none), with a note on how many were found.

    With ``values`` (an image column), relative paths are resolved against ``image_dir`` (or the
    catalog file's folder); URLs are not fetched. Without, ``image_dir/<id>.jpg`` (or .jpeg, .png,
    .webp) is used when that file exists. With ``image_dir``, paths that resolve outside it (``..``,
    absolute paths, symlinks) are refused and counted in ``report`` with their line (see
    :func:`hybridrec.features.image_paths.resolve_image_paths`).
    """
    if image_dir is not None and not Path(image_dir).is_dir():
        raise HybridRecError(f"{image_dir}: image folder not found")
    found_paths = resolve_image_paths(ids.tolist(), None if values is None else as_strings(values).tolist(),
                                      image_dir=image_dir, base_dir=base_dir, file=file, column=column, lines=lines)
    paths = found_paths.paths
    if values is not None:
        absent = sum(path is not None and not Path(path).is_file() for path in paths)
        paths = [path if path is not None and Path(path).is_file() else None for path in paths]
        if found_paths.urls:
            report.note(f"{file}: {found_paths.urls} image value(s) are URLs; only local files are used")
        if absent:
            report.note(f"{file}: {absent} image file(s) named in the image column do not exist")
    for line in found_paths.lines():
        report.note(line)
    found = sum(p is not None for p in paths)
    report.note(f"{file}: {found} of {len(paths)} rows have a local image")
    return paths


def build_catalog(table: pd.DataFrame, *, file: object, report: LoadReport, id_col: str, id_name: str = "item_id",
                  text_cols: Sequence[str] = (), categorical_cols: Sequence[str] = (),
                  multi_cols: Sequence[str] = (), multi_sep: str = "|", numeric_cols: Sequence[str] = (),
                  image_col: str | None = None, image_dir: str | Path | None = None,
                  keep_cols: Sequence[str] = (), base_dir: Path | None = None) -> tuple[pd.DataFrame, ColumnRoles]:
    """Canonical catalog from a raw table (with ``__line__``): one row per id, typed role columns.

    Missing and duplicate ids are counted skips (the first row of an id is kept). Numeric columns
    accept currency marks ("$12.99"); unparsable numbers become NaN with a note. ``keep_cols`` are
    carried along as plain strings without a role.

    Returns:
        ``(table, roles)``; the table keeps ``__line__`` for later checks.
    """
    _check_roles(id_col, id_name, {"text": text_cols, "categorical": categorical_cols, "multi": multi_cols,
                                   "numeric": numeric_cols, "kept": keep_cols}, image_col)
    wanted = [id_col, *text_cols, *categorical_cols, *multi_cols, *numeric_cols, *keep_cols]
    require_columns(table, wanted + ([image_col] if image_col else []), file=file)
    ids = as_strings(table[id_col])
    table = table.assign(**{id_col: ids})
    table = skip_rows(table, (ids == "").to_numpy(), f"missing {id_name}", file=file, report=report, column=id_col)
    table = skip_rows(table, table[id_col].duplicated().to_numpy(), f"duplicate {id_name} (its first row is kept)",
                      file=file, report=report, column=id_col)
    for column in numeric_cols:
        table = parse_numeric(table, column, file=file, report=report, required=False, currency=True)

    catalog = pd.DataFrame({id_name: table[id_col].to_numpy()}, index=table.index)
    for column in text_cols:
        catalog[column] = text_values(table[column])
    for column in categorical_cols:
        catalog[column] = category_values(table[column])
    for column in multi_cols:
        catalog[column] = multi_values(table[column], multi_sep)
    for column in numeric_cols:
        catalog[column] = table[column].astype(np.float64)
    for column in keep_cols:
        catalog[column] = category_values(table[column])
    image = None
    if image_col is not None or image_dir is not None:
        base = base_dir if base_dir is not None else Path(".")
        paths = image_paths(catalog[id_name], table[image_col] if image_col else None,
                            image_dir=image_dir, base_dir=base, file=file, report=report,
                            lines=table[LINE].tolist(), column=image_col)
        catalog[IMAGE_COLUMN] = pd.Series(paths, index=catalog.index, dtype=object)
        image = IMAGE_COLUMN
    catalog[LINE] = table[LINE].to_numpy()
    roles = ColumnRoles(text=list(text_cols), categorical=list(categorical_cols), multi=list(multi_cols),
                        numeric=list(numeric_cols), image=image)
    return catalog.reset_index(drop=True), roles


def _read_catalog(path: str | Path, *, id_col: str, id_name: str, report: LoadReport | None, strict: bool,
                  encoding: str, sep: str | None, **roles) -> tuple[pd.DataFrame, ColumnRoles]:
    path = Path(path)
    own_report = report is None
    report = LoadReport(strict=strict) if report is None else report
    wanted = [id_col, *(name for role in ("text_cols", "categorical_cols", "multi_cols", "numeric_cols")
                        for name in roles.get(role, ())), roles.get("image_col")]
    raw = read_table(path, report=report, sep=sep, encoding=encoding, columns=[c for c in wanted if c])
    catalog, column_roles = build_catalog(raw, file=path, report=report, id_col=id_col, id_name=id_name,
                                          base_dir=path.parent, **roles)
    require_rows(catalog, file=path, report=report)
    if own_report:
        report.log()
    return catalog.drop(columns=[LINE]), column_roles


def read_items(path: str | Path, *, item_id_col: str = "item_id", text_cols: Sequence[str] = (),
               categorical_cols: Sequence[str] = (), multi_cols: Sequence[str] = (), multi_sep: str = "|",
               numeric_cols: Sequence[str] = (), image_col: str | None = None,
               image_dir: str | Path | None = None, report: LoadReport | None = None, strict: bool = False,
               encoding: str = "utf-8", sep: str | None = None) -> tuple[pd.DataFrame, ColumnRoles]:
    """Read an item catalog (CSV/TSV, Parquet or JSON Lines) into the canonical items table.

    Args:
        path: the catalog file.
        item_id_col: its id column (renamed ``item_id``; ids become strings).
        text_cols, categorical_cols, multi_cols, numeric_cols: columns by role; multi-valued cells
            are ``multi_sep``-separated strings or lists.
        image_col: column with image paths (relative ones resolved against ``image_dir``, else the
            catalog's folder). Without it, ``image_dir/<item_id>.jpg`` is looked up.
        report: where skips and notes go; by default a new one (``strict``) that is logged.
        sep: field separator for text files; by default from the extension.

    Returns:
        ``(items, roles)``: ``item_id`` plus the declared columns (and ``image_path`` when images
        were asked for), in file order.

    Raises:
        HybridRecError: missing file or column, undecodable or empty file, no usable row.
    """
    return _read_catalog(path, id_col=item_id_col, id_name="item_id", report=report, strict=strict,
                         encoding=encoding, sep=sep, text_cols=text_cols, categorical_cols=categorical_cols,
                         multi_cols=multi_cols, multi_sep=multi_sep, numeric_cols=numeric_cols,
                         image_col=image_col, image_dir=image_dir)


def read_users(path: str | Path, *, user_id_col: str = "user_id", text_cols: Sequence[str] = (),
               categorical_cols: Sequence[str] = (), multi_cols: Sequence[str] = (), multi_sep: str = "|",
               numeric_cols: Sequence[str] = (), report: LoadReport | None = None, strict: bool = False,
               encoding: str = "utf-8", sep: str | None = None) -> tuple[pd.DataFrame, ColumnRoles]:
    """Read a user table into the canonical users table (``user_id`` plus attribute columns).

    Same conventions as :func:`read_items`, without images.
    """
    return _read_catalog(path, id_col=user_id_col, id_name="user_id", report=report, strict=strict,
                         encoding=encoding, sep=sep, text_cols=text_cols, categorical_cols=categorical_cols,
                         multi_cols=multi_cols, multi_sep=multi_sep, numeric_cols=numeric_cols)


def empty_attributes(ids: Sequence, roles: ColumnRoles, id_name: str) -> pd.DataFrame:
    """Rows for ``ids`` with no attributes: ``""`` text, ``None`` categories, ``[]`` lists, NaN numbers."""
    count = len(ids)
    rows = pd.DataFrame({id_name: list(ids)})
    for column in roles.text:
        rows[column] = pd.Series([""] * count, dtype="str")
    for column in roles.categorical:
        rows[column] = pd.Series([None] * count, dtype=object)
    for column in roles.multi:
        rows[column] = pd.Series([[] for _ in range(count)], dtype=object)
    for column in roles.numeric:
        rows[column] = np.full(count, np.nan)
    if roles.image:
        rows[roles.image] = pd.Series([None] * count, dtype=object)
    return rows
