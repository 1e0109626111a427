"""Low-level, location-aware parsing shared by every reader.

Everything here reads strictly: a file that cannot be decoded, an empty file or a missing column
raises :class:`HybridRecError` naming file, line and column; a malformed row is a counted skip in
the :class:`LoadReport` (or an error in strict mode). Parsed tables carry a ``__line__`` column
(1-based line in the source file) until the reader drops it, so later checks can still point at
the offending line.

Text files are read by the streaming Arrow readers of :mod:`data_builders.arrow_tables` (CSV/TSV
through ``pyarrow.csv``, JSON Lines through ``pyarrow.json``, in record batches, with every row's
line); Parquet files and partitioned Parquet folders through ``pyarrow.dataset``. A file those
readers could read differently from the rules here (a double quote inside a field, JSON numbers
with a fraction, ...) is read by the Python reader below instead, and the switch is logged at INFO
with its reason: delimited text split with Arrow kernels, or Python's ``csv`` module where quotes
are used, JSON through ``json.loads``. Both give the same table.

One rule for ids (and every other value read as text) across formats: **an id is its text exactly
as written in the file**, trimmed. CSV quotes and JSON string quotes are not part of the text, and
JSON numbers keep the text they were written with (read with ``parse_int``/``parse_float`` as
strings). So in CSV, TSV and JSON Lines alike ``1`` and ``"1"`` are one id and ``1.0`` is another;
``007`` stays ``007``. Parquet columns are typed, so there an integer column gives its digits, a
float column of whole numbers (how pandas returns an integer column with nulls) gives them without
``.0``, and a string column gives its text (see :func:`as_strings`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_builders.arrow_tables import LINE, read_delimited_arrow, read_json_arrow, read_parquet_arrow
from data_builders.text_pieces import header_names, undecodable
from hybridrec.errors import HybridRecError, located
from hybridrec.load_report import LoadReport

logger = logging.getLogger(__name__)

# Currency marks stripped from numeric catalog values such as "$12.99" or "12.99 EUR".
CURRENCY_PATTERN = r"^(?:US\$|[$€£¥₹]|USD|EUR|GBP)\s*|\s*(?:USD|EUR|GBP|[€£])$"
THOUSANDS_PATTERN = r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"
# Cells that mean "no value" in numeric and categorical columns (compared case-insensitively).
MISSING_MARKERS = ("na", "n/a", "nan", "null", "none", "#n/a")


def read_text(path: str | Path, encoding: str = "utf-8", *, sep: str | None = None,
              names: Sequence[str] | None = None) -> str:
    """The whole file decoded with ``encoding`` (gzip-compressed files are unpacked first).

    Args:
        sep, names: when given, a decoding error also names the column of the bad byte
            (``names``, or the header on line 1).

    Raises:
        HybridRecError: the file is missing, empty, or not valid ``encoding`` (with the line of the
            first bad byte and a hint to pass another encoding).
    """
    path = Path(path)
    if not path.is_file():
        raise HybridRecError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise HybridRecError(f"{path}: corrupt gzip file ({err})") from None
    if not raw.strip():
        raise HybridRecError(f"{path}: file is empty")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        raise undecodable(path, byte=raw[err.start], line=raw.count(b"\n", 0, err.start) + 1, encoding=encoding,
                          line_prefix=raw[line_start:err.start], first_line=raw[: raw.find(b"\n")], sep=sep,
                          names=names) from None
    except LookupError:
        raise HybridRecError(f"{path}: unknown encoding {encoding!r}") from None
    return text.lstrip("\ufeff")


def read_delimited(path: str | Path, *, sep: str, names: Sequence[str] | None = None,
                   encoding: str = "utf-8", report: LoadReport, quoted: bool = True,
                   min_fields: int | None = None, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read a delimited text file into a table of strings with a ``__line__`` column.

    Read by ``pyarrow.csv`` in record batches (:func:`data_builders.arrow_tables.read_delimited_arrow`),
    or by the Python reader where that one is needed (logged at INFO with the reason).

    Args:
        path: file to read.
        sep: field separator (may be several characters, e.g. ``"::"``; then no quoting).
        names: column names when the file has no header; ``None`` reads them from line 1.
        encoding: text encoding.
        report: where rows with the wrong number of fields are counted.
        quoted: honour CSV double quotes (only for single-character ``sep``).
        min_fields: accept rows with at least this many fields (missing ones are ``""``, extra
            ones dropped); default is exactly ``len(names)``. Read by the Python reader.
        columns: keep only these columns (those the file lacks are ignored).

    Returns:
        DataFrame of ``str`` columns (``""`` for empty fields) plus ``__line__`` (int64), in file
        order; ``attrs["columns"]`` names every column of the file. Lines of only white space are
        ignored; every other line is a row (or a counted skip).
    """
    path = Path(path)
    if min_fields is not None:
        reason = "min_fields keeps rows of other widths, which pyarrow.csv rejects"
    else:
        result = read_delimited_arrow(path, sep=sep, names=names, encoding=encoding, quoted=quoted, columns=columns,
                                      max_examples=report.max_examples)
        if result.fallback is None:
            width = len(result.table.attrs["columns"])
            for found in sorted(result.wrong_widths):
                count, lines = result.wrong_widths[found]
                _count_rows(np.asarray(lines), count, f"expected {width} fields, found {found}", file=path,
                            report=report)
            report.read(path, result.records)
            return result.table
        reason = result.fallback
    logger.info("%s: read by the Python reader, not pyarrow.csv: %s", path, reason)
    skipped = report.total_skipped
    text = read_text(path, encoding, sep=sep, names=names)
    if len(sep) == 1 and quoted and '"' in text:
        table = _read_quoted(text, path, sep=sep, names=names, report=report, min_fields=min_fields)
    else:
        table = _read_split(text, path, sep=sep, names=names, report=report, min_fields=min_fields)
    report.read(path, len(table) + report.total_skipped - skipped)
    return _select(table, columns)


def _select(table: pd.DataFrame, columns: Collection[str] | None) -> pd.DataFrame:
    """Only ``columns`` (when given and the file has one of them) and ``__line__``; all names in attrs."""
    names = [name for name in table.columns if name != LINE]
    kept = [name for name in names if columns is None or name in columns] or names
    if len(kept) < len(names):
        table = table[kept + [LINE]]
    table.attrs["columns"] = names
    return table


def _skip_wrong_widths(lengths: np.ndarray, lines: np.ndarray, width: int, min_fields: int | None,
                       path: Path, report: LoadReport) -> np.ndarray:
    """Count rows with a wrong number of fields (one reason per count found); the mask of good rows."""
    good = lengths == width if min_fields is None else lengths >= min_fields
    for found in np.unique(lengths[~good]):
        reason = f"expected {width} fields, found {int(found)}"
        flagged = lengths == found
        _count_rows(lines[flagged], int(flagged.sum()), reason, file=path, report=report)
    return good


def _read_split(text: str, path: Path, *, sep: str, names: Sequence[str] | None, report: LoadReport,
                min_fields: int | None) -> pd.DataFrame:
    """Unquoted split of every line with Arrow kernels."""
    lines = pc.utf8_rtrim(pa.array(text.split("\n"), type=pa.large_string()), characters="\r")
    line_numbers = np.arange(1, len(lines) + 1, dtype=np.int64)
    nonblank = np.asarray(pc.not_equal(pc.utf8_trim_whitespace(lines), ""))
    lines, line_numbers = lines.filter(pa.array(nonblank)), line_numbers[nonblank]
    if names is None:
        if len(lines) == 0:
            raise HybridRecError(f"{path}: file is empty")
        names = header_names(lines[0].as_py().split(sep), path, line=int(line_numbers[0]))
        lines, line_numbers = lines[1:], line_numbers[1:]
    else:
        names = header_names(names, path)
    width = len(names)
    parts = pc.split_pattern(lines, sep)
    lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    good = _skip_wrong_widths(lengths, line_numbers, width, min_fields, path, report)
    parts, lengths, line_numbers = parts.filter(pa.array(good)), lengths[good], line_numbers[good]
    flat = pc.list_flatten(parts)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    columns = {}
    for j, name in enumerate(names):
        if len(flat) == 0:
            values = pa.array([], type=pa.large_string())
        elif (lengths > j).all():
            values = flat.take(pa.array(starts + j))
        else:
            present = lengths > j
            values = pc.if_else(pa.array(present), flat.take(pa.array(np.where(present, starts + j, 0))), "")
        columns[name] = pd.Series(values, dtype="str")
    table = pd.DataFrame(columns)
    table[LINE] = line_numbers
    return table


def _read_quoted(text: str, path: Path, *, sep: str, names: Sequence[str] | None, report: LoadReport,
                 min_fields: int | None) -> pd.DataFrame:
    """CSV with quotes, via the ``csv`` module; a record spanning lines keeps its first line; a line of
    white space is no record (as in the Arrow reader: ``""`` or ``,,`` are rows)."""
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    lines = text.split("\n")
    records, starts, previous = [], [], 0
    # Long free-text fields are legitimate: lift the csv module's 128 KiB field limit for this file.
    field_limit = csv.field_size_limit(min(max(len(text) + 1, csv.field_size_limit()), 2**31 - 1))
    try:
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if row and (previous > start or lines[start - 1].strip()):
                records.append(row)
                starts.append(start)
    except csv.Error as err:
        raise HybridRecError(located(f"malformed CSV ({err})", file=path, line=previous + 1)) from None
    finally:
        csv.field_size_limit(field_limit)
    if names is None:
        if not records:
            raise HybridRecError(f"{path}: file is empty")
        names = header_names(records[0], path, line=starts[0])
        records, starts = records[1:], starts[1:]
    else:
        names = header_names(names, path)
    width = len(names)
    lengths = np.fromiter((len(row) for row in records), dtype=np.int64, count=len(records))
    line_numbers = np.asarray(starts, dtype=np.int64)
    good = _skip_wrong_widths(lengths, line_numbers, width, min_fields, path, report)
    kept = [records[i] if lengths[i] == width else (records[i] + [""] * width)[:width]
            for i in np.flatnonzero(good)]
    fields = list(zip(*kept)) if kept else [()] * width
    table = pd.DataFrame({name: pd.Series(list(values), dtype="str") for name, values in zip(names, fields)})
    table[LINE] = line_numbers[good]
    return table


def read_json_lines(path: str | Path, *, encoding: str = "utf-8", report: LoadReport,
                    allow_python_literals: bool = False, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read JSON Lines (one object per line) into a table with a ``__line__`` column.

    Numbers are kept as the text they were written with (``1.0`` stays ``"1.0"``; see the module
    docstring); the numeric parsers read them from that text. Read by ``pyarrow.json`` in record
    batches where it keeps that text (strings, integers, nulls), else by ``json.loads`` (logged).

    Args:
        allow_python_literals: also accept Python dict literals (older Amazon metadata dumps).
        columns: keep only these columns (those the file lacks are ignored).

    Raises:
        HybridRecError: the file is a JSON array, or no line of it is an object.
    """
    import ast

    path = Path(path)
    if allow_python_literals:
        reason = "Python literals are read by json.loads and ast.literal_eval"
    else:
        result = read_json_arrow(path, encoding=encoding, columns=columns)
        if result.fallback is None:
            report.read(path, result.records)
            return result.table
        reason = result.fallback
    logger.info("%s: read by the Python reader, not pyarrow.json: %s", path, reason)
    text = read_text(path, encoding)
    if text.lstrip().startswith("["):
        raise HybridRecError(located("this is a JSON array; hybridrec reads JSON Lines (one object per line)",
                                     file=path, line=1))
    objects, lines, failed = [], [], 0
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_int=str, parse_float=str)  # numbers keep their text
        except json.JSONDecodeError as err:
            value = None
            if allow_python_literals:
                try:
                    value = ast.literal_eval(line.strip())
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    value = None
                if isinstance(value, dict):
                    value = {key: _number_text(item) for key, item in value.items()}
            if value is None:
                failed += 1
                report.skip(f"invalid JSON ({err.msg})", file=path, line=line_number)
                continue
        if not isinstance(value, dict):
            failed += 1
            report.skip("line is not a JSON object", file=path, line=line_number)
            continue
        objects.append(value)
        lines.append(line_number)
    if not objects and failed:
        raise HybridRecError(f"{path}: none of its {failed} line(s) is a JSON object; expected JSON Lines "
                             "(one object per line)")
    table = pd.DataFrame.from_records(objects) if objects else pd.DataFrame()
    table[LINE] = np.asarray(lines, dtype=np.int64)
    report.read(path, len(table) + failed)
    return _select(table, columns)


def _number_text(value: object) -> object:
    """A Python-literal number as the text Python writes it (``1``, ``1.0``), like a JSON number's text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return value


def read_parquet(path: str | Path, *, report: LoadReport, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file or a partitioned folder of them (``pyarrow.dataset``, as ``pandas.read_parquet``
    types it; partition keys as text); ``__line__`` is the 1-based row number.

    See :func:`data_builders.arrow_tables.read_parquet_arrow`.
    """
    path = Path(path)
    table = read_parquet_arrow(path, columns=columns)
    report.read(path, len(table))
    return table


def read_table(path: str | Path, *, report: LoadReport, sep: str | None = None, encoding: str = "utf-8",
               columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read CSV/TSV, Parquet or JSON Lines by extension (``.csv .tsv .txt .parquet .jsonl .json``);
    a folder is read as a (partitioned) Parquet dataset.

    A trailing ``.gz`` is allowed on text formats. Unknown extensions are read as CSV. ``columns``:
    keep only these (those the file lacks are ignored; ``attrs["columns"]`` names all the file's).
    The rows read are counted in ``report.rows_read``.
    """
    path = Path(path)
    suffixes = "".join(path.suffixes).lower().removesuffix(".gz")
    if path.is_dir() or suffixes.endswith((".parquet", ".pq")):
        return read_parquet(path, report=report, columns=columns)
    if suffixes.endswith((".jsonl", ".json", ".ndjson")):
        return read_json_lines(path, encoding=encoding, report=report, columns=columns)
    if sep is None:
        sep = "\t" if suffixes.endswith(".tsv") else ","
    return read_delimited(path, sep=sep, encoding=encoding, report=report, columns=columns)


def read_typed_table(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """A CSV or Parquet table (by suffix) with at least one row, its values typed as pandas reads them.

    For tables of the user's own columns, which no loader here gives a schema (the command line's
    ``--items`` of content-only similarity and ``--history``): unlike :func:`read_table`, whose
    values stay text as written, a CSV column of whole numbers comes back as int64 and an empty
    cell as NaN. No ``__line__`` column.

    Raises:
        HybridRecError: naming the file: missing, empty, not ``encoding`` (with the line and a hint
            to pass ``--encoding``), malformed CSV, unreadable Parquet, or a header without rows.
    """
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        table = read_parquet(path, report=LoadReport()).drop(columns=[LINE])
    else:
        text = read_text(path, encoding, sep=",")
        try:
            table = pd.read_csv(io.StringIO(text), on_bad_lines="error")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise HybridRecError(f"{path}: cannot read as CSV: {err}") from None
    if table.empty:
        raise HybridRecError(f"{path}: no data rows (columns: {list(table.columns)})")
    return table


def require_columns(table: pd.DataFrame, columns: Sequence[str], *, file: object) -> None:
    """Raise naming the file and the missing columns (and the ones it has)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        present = [c for c in table.columns if c != LINE]
        in_file = table.attrs.get("columns")  # all the file's columns, when only some were read
        present = list(in_file) if isinstance(in_file, list) and set(present) <= set(in_file) else present
        raise HybridRecError(located(f"missing required column(s) {missing}; found {present}", file=file,
                                     column=missing[0]))


def require_rows(table: pd.DataFrame, *, file: object, report: LoadReport) -> None:
    """Raise when nothing usable is left of ``file`` (with what was skipped, so nothing vanishes)."""
    if len(table):
        return
    reasons = report.reasons(file)
    detail = ("skipped " + "; ".join(f"{count} row(s): {reason}" for reason, count in reasons) if reasons
              else "it has a header but no data rows")
    raise HybridRecError(f"{file}: no usable rows ({detail})")


def _count_rows(lines: np.ndarray | None, count: int, reason: str, *, file: object, report: LoadReport,
                column: str | None = None, values: Sequence | None = None) -> None:
    """Record ``count`` skips under one reason, the first few with their line numbers."""
    shown = min(count, report.max_examples)
    for k in range(shown):
        line = int(lines[k]) if lines is not None else None
        detail = f"{reason} (value {values[k]!r})" if report.strict and values is not None else reason
        report.skip(detail, file=file, line=line, column=column)
    report.skip(reason, file=file, column=column, count=count - shown)


def skip_rows(table: pd.DataFrame, bad: np.ndarray | pd.Series, reason: str, *, file: object,
              report: LoadReport, column: str | None = None) -> pd.DataFrame:
    """``table`` without the rows flagged in ``bad``, each counted in ``report`` under ``reason``.

    Examples keep their ``__line__`` (when the table has one) and ``column``; in strict mode the
    first flagged row raises, showing its value.
    """
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return table
    lines = table[LINE].to_numpy()[bad] if LINE in table.columns else None
    values = None
    if report.strict and column is not None and column in table.columns:
        values = table[column].to_numpy()[bad][: report.max_examples].tolist()
    _count_rows(lines, int(bad.sum()), reason, file=file, report=report, column=column, values=values)
    return table.loc[~bad]


def numeric_values(raw: pd.Series, *, currency: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(values, blank)``: float64 numbers (NaN where blank or unparsable) and the blank mask.

    Strings are trimmed and :data:`MISSING_MARKERS` ("NA", "null", ...) count as blank; with
    ``currency`` a leading/trailing currency mark ("$12.99", "12 EUR") and thousands separators
    ("1,299.50") are accepted. Non-finite results count as unparsable.
    """
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.isnan(values)
    strings = pa.array(raw.astype("str"))
    strings = pc.utf8_trim_whitespace(strings)
    if currency:
        strings = pc.replace_substring_regex(strings, CURRENCY_PATTERN, "")
        thousands = pc.match_substring_regex(strings, THOUSANDS_PATTERN)
        strings = pc.if_else(pc.fill_null(thousands, False), pc.replace_substring(strings, ",", ""), strings)
    blank = pc.fill_null(pc.or_(pc.equal(strings, ""), pc.is_in(pc.utf8_lower(strings), pa.array(MISSING_MARKERS))),
                         True)
    blank_mask = np.asarray(blank)
    cleared = pc.if_else(blank, pa.scalar(None, strings.type), strings)
    try:
        values = pc.cast(cleared, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = pd.to_numeric(pd.Series(cleared, dtype="str"), errors="coerce").to_numpy(np.float64, na_value=np.nan)
    values = np.where(np.isfinite(values), values, np.nan)
    return values, blank_mask


def parse_numeric(table: pd.DataFrame, column: str, *, file: object, report: LoadReport,
                  integer: bool = False, required: bool = True, currency: bool = False) -> pd.DataFrame:
    """Convert ``column`` to numbers.

    When ``required``, blank and unparsable values are counted skips (the rows are dropped) and
    the column becomes int64 (``integer``) or float64. Otherwise the column is float64 with NaN for
    blanks, and unparsable values also become NaN, reported as a note (the row is kept).
    """
    raw = table[column]
    values, blank = numeric_values(raw, currency=currency)
    unparsable = np.isnan(values) & ~blank
    fractional = np.zeros(len(values), dtype=bool)
    if integer:
        fractional = ~np.isnan(values) & (values != np.floor(np.nan_to_num(values)))
    if not required:
        bad = unparsable | fractional
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            line = int(table[LINE].iloc[first]) if LINE in table.columns else None
            report.note(located(f"{int(bad.sum())} value(s) are not numbers and were set to NaN "
                                f"(first: {raw.iloc[first]!r})", file=file, line=line, column=column))
        table = table.copy()
        table[column] = np.where(bad, np.nan, values)
        return table
    table = table.copy()
    table[column] = values
    checks = (("missing value", blank), ("cannot parse value as a number", unparsable),
              ("value is not an integer", fractional))
    keep = np.ones(len(table), dtype=bool)
    for reason, flagged in checks:
        flagged = flagged & keep
        if flagged.any():
            shown = table.assign(**{column: raw.to_numpy()})
            skip_rows(shown, flagged, reason, file=file, report=report, column=column)
            keep &= ~flagged
    table = table.loc[keep]
    table[column] = table[column].to_numpy(np.int64 if integer else np.float64)
    return table


def as_strings(values: pd.Series) -> pd.Series:
    """Values as trimmed ``str`` ("" where missing); integral floats lose their ".0".

    Used for external ids and categories. Text (CSV, TSV, JSON Lines, whose numbers the readers keep
    as written) is kept as it is; typed values (Parquet, DataFrames passed in) become their digits:
    ``7``, ``7.0`` and ``"7"`` all give ``"7"``.
    """
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.dropna()
        if len(finite) and (finite == np.floor(finite)).all() and finite.abs().max() < 2**53:
            values = values.astype("Int64")
    elif values.dtype == object:
        values = values.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else v)
    return values.astype("str").fillna("").str.strip()
