"""Low-level, location-aware parsing shared by every reader.

Everything here reads strictly: a file that cannot be decoded, an empty file or a missing column
raises :class:`HybridRecError` naming file, line and column; a malformed row is a counted skip in
the :class:`LoadReport` (or an error in strict mode). Parsed tables carry a ``__line__`` column
(1-based line in the source file) until the reader drops it, so later checks can still point at
the offending line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.errors import HybridRecError, located
from data_builders.report import LoadReport

LINE = "__line__"


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole file decoded with ``encoding``.

    Raises:
        HybridRecError: the file is missing, empty, or not valid ``encoding`` (with the line of the
            first bad byte and a hint to pass another encoding).
    """
    path = Path(path)
    if not path.is_file():
        raise HybridRecError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise HybridRecError(f"{path}: file is empty")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise HybridRecError(
            located(f"cannot decode byte 0x{raw[err.start]:02x} as {encoding}; "
                    "pass the file's encoding (e.g. encoding='latin-1')", file=path, line=line)
        ) from None
    return text.lstrip("\ufeff")


def read_delimited(path: str | Path, *, sep: str, names: Sequence[str] | None = None,
                   encoding: str = "utf-8", report: LoadReport, quoted: bool = True,
                   min_fields: int | None = None) -> pd.DataFrame:
    """Read a delimited text file into a table of strings with a ``__line__`` column.

    Args:
        path: file to read.
        sep: field separator (may be several characters, e.g. ``"::"``; then no quoting).
        names: column names when the file has no header; ``None`` reads them from line 1.
        encoding: text encoding.
        report: where rows with the wrong number of fields are counted.
        quoted: honour CSV double quotes (only for single-character ``sep``).
        min_fields: accept rows with at least this many fields (extra fields dropped); default is
            exactly ``len(names)``.

    Returns:
        DataFrame of ``str`` columns (``""`` for empty fields) plus ``__line__`` (int64).
    """
    text = read_text(path, encoding)
    if len(sep) == 1 and quoted:
        rows = csv.reader(io.StringIO(text), delimiter=sep)
        records = [(rows.line_num, row) for row in rows]
    else:
        records = [(i + 1, line.rstrip("\r").split(sep)) for i, line in enumerate(text.split("\n"))]
    records = [(n, row) for n, row in records if row and any(field.strip() for field in row)]
    if names is None:
        if not records:
            raise HybridRecError(f"{path}: file is empty")
        names = [name.strip() for name in records[0][1]]
        records = records[1:]
    width = len(names)
    lowest = width if min_fields is None else min_fields
    good_rows, good_lines = [], []
    for line_number, row in records:
        if not lowest <= len(row) <= max(width, len(row) if min_fields is not None else width):
            report.skip(f"expected {width} fields, found {len(row)}", file=path, line=line_number)
            continue
        row = (row + [""] * width)[:width]
        good_rows.append(row)
        good_lines.append(line_number)
    table = pd.DataFrame(good_rows, columns=list(names), dtype=object)
    table[LINE] = np.asarray(good_lines, dtype=np.int64)
    return table


def read_json_lines(path: str | Path, *, encoding: str = "utf-8", report: LoadReport,
                    allow_python_literals: bool = False) -> pd.DataFrame:
    """Read JSON Lines (one object per line) into a table with a ``__line__`` column.

    Args:
        allow_python_literals: also accept Python dict literals (older Amazon metadata dumps).
    """
    import ast

    text = read_text(path, encoding)
    objects, lines = [], []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            value = None
            if allow_python_literals:
                try:
                    value = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    value = None
            if value is None:
                report.skip(f"invalid JSON ({err.msg})", file=path, line=line_number)
                continue
        if not isinstance(value, dict):
            report.skip("line is not a JSON object", file=path, line=line_number)
            continue
        objects.append(value)
        lines.append(line_number)
    table = pd.DataFrame.from_records(objects) if objects else pd.DataFrame()
    table[LINE] = np.asarray(lines, dtype=np.int64)
    return table


def read_parquet(path: str | Path, *, report: LoadReport) -> pd.DataFrame:
    """Read a Parquet file; ``__line__`` is the 1-based row number."""
    path = Path(path)
    if not path.is_file():
        raise HybridRecError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise HybridRecError(f"{path}: file is empty")
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise HybridRecError(f"{path}: not a readable Parquet file ({err})") from None
    table[LINE] = np.arange(1, len(table) + 1, dtype=np.int64)
    return table


def read_table(path: str | Path, *, report: LoadReport, sep: str | None = None,
               encoding: str = "utf-8") -> pd.DataFrame:
    """Read CSV/TSV, Parquet or JSON Lines by extension (``.csv .tsv .txt .parquet .jsonl .json``)."""
    path = Path(path)
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
        return read_parquet(path, report=report)
    if suffixes.endswith(".jsonl") or suffixes.endswith(".json") or suffixes.endswith(".ndjson"):
        return read_json_lines(path, encoding=encoding, report=report)
    if sep is None:
        sep = "\t" if suffixes.endswith(".tsv") else ","
    return read_delimited(path, sep=sep, encoding=encoding, report=report)


def require_columns(table: pd.DataFrame, columns: Sequence[str], *, file: object) -> None:
    """Raise naming the file and the missing columns (and the ones it has)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        present = [c for c in table.columns if c != LINE]
        raise HybridRecError(f"{file}: missing required column(s) {missing}; found {present}")


def parse_numeric(table: pd.DataFrame, column: str, *, file: object, report: LoadReport,
                  integer: bool = False, required: bool = True) -> pd.DataFrame:
    """Convert ``column`` to numbers; unparsable values are a counted skip (or NaN when optional).

    Returns:
        ``table`` with ``column`` as float64 (or int64 when ``integer``), bad rows removed when
        ``required``.
    """
    raw = table[column]
    values = pd.to_numeric(raw.replace("", np.nan) if raw.dtype == object else raw, errors="coerce")
    blank = raw.isna() | (raw.astype(str).str.strip() == "") if raw.dtype == object else raw.isna()
    bad = values.isna() & ~blank
    if integer:
        bad |= values.notna() & (values != np.floor(values.fillna(0)))
    if required:
        bad |= blank
    for line in table.loc[bad, LINE].head(report.max_examples):
        shown = raw[table[LINE] == line].iloc[0]
        report.skip(f"cannot parse {shown!r} as a number", file=file, line=int(line), column=column)
    extra = int(bad.sum()) - min(int(bad.sum()), report.max_examples)
    if extra:
        report.skip(f"cannot parse value as a number", file=file, column=column, count=extra)
    table = table.loc[~bad].copy() if required else table.copy()
    if not required:
        values = values.where(~bad)
    values = values.loc[table.index]
    table[column] = values.astype(np.int64) if integer and required else values.astype(np.float64)
    return table


def parse_timestamps(table: pd.DataFrame, column: str, *, file: object, report: LoadReport) -> pd.DataFrame:
    """Convert unix seconds or ISO-8601 strings in ``column`` to int64 unix seconds; bad rows skipped."""
    raw = table[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        table = table.copy()
        table[column] = numeric.astype(np.int64)
        return table
    parsed = pd.to_datetime(raw.where(numeric.isna()), errors="coerce", utc=True, format="mixed")
    seconds = numeric.copy()
    has_date = parsed.notna()
    seconds[has_date] = parsed[has_date].astype("int64") // 10**9
    bad = seconds.isna()
    for line in table.loc[bad, LINE].head(report.max_examples):
        report.skip("cannot parse timestamp", file=file, line=int(line), column=column)
    extra = int(bad.sum()) - min(int(bad.sum()), report.max_examples)
    if extra:
        report.skip("cannot parse timestamp", file=file, column=column, count=extra)
    table = table.loc[~bad].copy()
    table[column] = seconds[~bad].astype(np.int64)
    return table
