"""Streaming Arrow readers: CSV/TSV (``pyarrow.csv.open_csv``), JSON Lines (``pyarrow.json.open_json``)
and a Parquet file or a (hive-)partitioned Parquet folder (``pyarrow.dataset``), read in record batches.

Text files come through :class:`data_builders.text_pieces.TextPieces` (decoded, checked, indexed),
so every row gets its line in the file and the table is the one the Python reader of
:mod:`data_builders.parsing` gives: text columns (ids and numbers as written), ``__line__``, the
same rows in the same order, rows with a wrong number of fields listed for the load report.

When a file holds something Arrow would read differently (see :mod:`data_builders.text_pieces`;
also JSON numbers with a fraction, nested or boolean JSON values, a line holding two JSON objects,
a separator Arrow cannot take), a reader gives up and says why in :attr:`ArrowRead.fallback`, and
:mod:`data_builders.parsing` reads the file with its Python reader, logging the switch at INFO.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_dataset
import pyarrow.json as pa_json

from data_builders.text_pieces import (PIECE_BYTES, PLACEHOLDER, PythonReaderNeeded, RecordLines, TextPieces,
                                       header_names)
from hybridrec.errors import HybridRecError, located

LINE = "__line__"


@dataclass
class ArrowRead:
    """An Arrow reader's answer: the table (with ``__line__``), or why the Python reader must read the file.

    ``wrong_widths`` maps a number of fields found to ``(rows, first lines)`` of the rows skipped
    for it (CSV/TSV only); ``records`` counts the data rows read, skipped ones included.
    """

    table: pd.DataFrame | None = None
    fallback: str | None = None
    wrong_widths: dict[int, tuple[int, list[int]]] = field(default_factory=dict)
    records: int = 0


def _strings(chunks: list[pa.Array], count: int) -> pd.Series:
    if not chunks:
        return pd.Series([], dtype="str")
    return pd.Series(pa.chunked_array(chunks, type=pa.large_string()), dtype="str", index=pd.RangeIndex(count))


def _frame(columns: dict[str, list[pa.Array]], lines: list[np.ndarray], all_names: Sequence[str]) -> pd.DataFrame:
    """The table of text columns (``""`` where empty) plus ``__line__``; ``attrs["columns"]`` lists the file's."""
    line_numbers = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)
    table = pd.DataFrame({name: _strings(chunks, len(line_numbers)) for name, chunks in columns.items()})
    table[LINE] = line_numbers
    table.attrs["columns"] = list(all_names)
    return table


def _first_record(pieces: TextPieces, index: RecordLines, *, sep: str, quoting: bool,
                  placeholder: bool) -> tuple[list[str], int]:
    """Fields and line of the first record that is not only white space (the header), from the first pieces.

    ``placeholder``: ``sep`` is :data:`PLACEHOLDER` standing for a separator that is not white space.
    """
    text, start = "", 0
    while True:
        piece = pieces.peek()
        text += piece.decode("utf-8")
        while (end := text.find("\n", start)) >= 0 or not piece:
            line = text[start:] if end < 0 else text[start:end]
            if (line.replace(sep, "_") if placeholder else line).strip():
                number = text.count("\n", 0, start) + 1
                if not quoting:
                    return line.rstrip("\r").split(sep), number
                rows = csv.reader(io.StringIO(text[start:]), delimiter=sep)
                header = next(rows)
                if not piece or not index.in_quotes or next(rows, None) is not None:
                    return header, number
                break
            if end < 0:
                raise HybridRecError(f"{pieces.path}: file is empty")
            start = end + 1


class _Rejected:
    """The rows pyarrow.csv rejects (by ordinal), and the ordinals and lines of those it keeps."""

    def __init__(self, index: RecordLines, header_ordinal: int, max_examples: int, placeholder: bool):
        self.index, self.header_ordinal, self.max_examples = index, header_ordinal, max_examples
        self.placeholder = placeholder  # the separator stands as 0x1f, which str.strip() takes for white space
        self.rows: list[tuple[int, int, bool]] = []  # (ordinal, fields found, only white space)
        self.unnumbered = False
        self.cursor, self.done = 1, 0  # next ordinal; rejected rows accounted for
        self.wrong_widths: dict[int, tuple[int, list[int]]] = {}

    def __call__(self, row) -> str:
        if row.number is None:
            self.unnumbered = True
        else:
            text = row.text.replace("\x1f", "_") if self.placeholder else row.text
            self.rows.append((row.number, row.actual_columns, not text.strip()))
        return "skip"

    def take(self, count: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(ordinals, lines)`` of the next ``count`` kept rows (``None``: the rejected rows left at the end)."""
        if self.unnumbered:
            raise PythonReaderNeeded("pyarrow did not number its rejected rows")
        if count is None:
            rejected = len(self.rows) - self.done
            end = self.rows[-1][0] + 1 if rejected else self.cursor
            if end - self.cursor != rejected:
                raise PythonReaderNeeded("pyarrow kept rows after its last batch")
        else:
            end = self.cursor + count
            while True:
                rejected = bisect.bisect_left(self.rows, (end, -1), lo=self.done) - self.done
                if end - self.cursor - rejected == count:
                    break
                end = self.cursor + count + rejected
        span = np.arange(self.cursor, end, dtype=np.int64)
        lines = self.index.lines_of(span)
        bad = np.zeros(len(span), dtype=bool)
        for ordinal, found, blank in self.rows[self.done:self.done + rejected]:
            bad[ordinal - self.cursor] = True
            if ordinal <= self.header_ordinal and not blank:
                raise PythonReaderNeeded("pyarrow read the lines up to its header differently")
            if not blank:
                seen, shown = self.wrong_widths.get(found, (0, []))
                if len(shown) < self.max_examples:
                    shown = shown + [int(lines[ordinal - self.cursor])]
                self.wrong_widths[found] = (seen + 1, shown)
        self.cursor, self.done = end, self.done + rejected
        return span[~bad], lines[~bad]

    @property
    def records(self) -> int:
        """Records pyarrow has seen so far, kept and rejected."""
        return self.cursor - 1 + len(self.rows) - self.done


def read_delimited_arrow(path: Path, *, sep: str, names: Sequence[str] | None, encoding: str, quoted: bool,
                         columns: Sequence[str] | None = None, max_examples: int = 5) -> ArrowRead:
    """A delimited text file through ``pyarrow.csv.open_csv``, as the Python reader would read it.

    Same arguments and table as :func:`data_builders.parsing.read_delimited` (``columns``: keep only
    these); rows with another number of fields than the header are left out and listed in
    ``wrong_widths`` (the first ``max_examples`` lines per count) for the caller to report.
    """
    try:
        return _read_delimited(path, sep=sep, names=names, encoding=encoding, quoted=quoted, columns=columns,
                               max_examples=max_examples)
    except PythonReaderNeeded as reason:
        return ArrowRead(fallback=str(reason))
    except pa.ArrowException as err:
        return ArrowRead(fallback=f"pyarrow.csv cannot read it ({str(err).splitlines()[0]})")


def _read_delimited(path: Path, *, sep: str, names: Sequence[str] | None, encoding: str, quoted: bool,
                    columns: Sequence[str] | None, max_examples: int) -> ArrowRead:
    sep_bytes = sep.encode("utf-8")
    if not sep or set(sep) & set('\n\r"') or (len(sep_bytes) > 1 and len(sep) == 1 and quoted):
        raise PythonReaderNeeded(f"pyarrow.csv cannot take the separator {sep!r}")
    quoting = quoted and len(sep_bytes) == 1
    delimiter = sep_bytes if len(sep_bytes) == 1 else PLACEHOLDER
    placeholder = len(sep_bytes) > 1 and not sep.isspace()
    index = RecordLines(sep=delimiter[0], quoting=quoting)
    with TextPieces(path, encoding, on_piece=index.add, sep=sep, names=names,
                    replace=sep_bytes if len(sep_bytes) > 1 else None) as pieces:
        header, header_ordinal = None, 0
        if names is None:
            header, header_line = _first_record(pieces, index, sep=delimiter.decode("utf-8"), quoting=quoting,
                                                placeholder=placeholder)
            names = header_names(header, path, line=header_line)
            header_ordinal = index.ordinal_of(header_line)
        else:
            names = header_names(names, path)
            if not pieces.peek():
                raise HybridRecError(f"{path}: file is empty")
        rejected = _Rejected(index, header_ordinal, max_examples, placeholder=placeholder)
        chunks, lines = _csv_batches(pieces, rejected, names=names, header=header, delimiter=delimiter.decode("ascii"),
                                     quoting=quoting, whole_rows=len(names) == 1 or sep.isspace(), columns=columns)
        if not pieces.has_content:
            raise HybridRecError(f"{path}: file is empty")
    if index.count != rejected.records:
        raise PythonReaderNeeded("pyarrow and the line index count its records differently")
    table = _frame(chunks, lines, names)
    skipped = sum(count for count, _ in rejected.wrong_widths.values())
    return ArrowRead(table=table, wrong_widths=rejected.wrong_widths, records=len(table) + skipped)


def _csv_batches(pieces: TextPieces, rejected: _Rejected, *, names: Sequence[str], header: Sequence[str] | None,
                 delimiter: str, quoting: bool, whole_rows: bool, columns: Sequence[str] | None):
    """``(chunks per kept column, lines per batch)`` of the rows pyarrow.csv keeps, batch by batch.

    ``whole_rows``: drop rows whose every field is white space (a line of white space, which Arrow
    reads as a row of blank fields when the separator is white space or there is one column).
    """
    width = len(names)
    keep = [j for j, name in enumerate(names) if columns is None or name in columns] or list(range(width))
    read = list(range(width)) if whole_rows else keep
    internal = [f"f{j}" for j in range(width)]
    reader = pa_csv.open_csv(
        pieces, read_options=pa_csv.ReadOptions(use_threads=False, block_size=PIECE_BYTES, column_names=internal),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False,
                                          newlines_in_values=quoting, invalid_row_handler=rejected),
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(internal, pa.large_string()), check_utf8=False,
                                              include_columns=[internal[j] for j in read]))
    chunks: dict[str, list[pa.Array]] = {names[j]: [] for j in keep}
    kept_lines: list[np.ndarray] = []
    for batch in reader:
        ordinals, lines = rejected.take(batch.num_rows)
        mask = ordinals > rejected.header_ordinal
        if header is not None and len(ordinals) and ordinals[0] <= rejected.header_ordinal:
            at = np.flatnonzero(ordinals == rejected.header_ordinal)
            if not len(at) or [batch.column(k)[int(at[0])].as_py() for k in range(len(read))] != [
                    header[j] for j in read]:
                raise PythonReaderNeeded("pyarrow read its header differently")
        if whole_rows:
            blank = np.ones(batch.num_rows, dtype=bool)
            for k in range(len(read)):
                blank &= np.asarray(pc.equal(pc.utf8_trim_whitespace(batch.column(k)), ""))
            mask &= ~blank
        selected = batch if mask.all() else batch.filter(pa.array(mask))
        for k, j in enumerate(read):
            if names[j] in chunks:
                chunks[names[j]].append(selected.column(k))
        kept_lines.append(lines[mask])
    rejected.take(None)
    return chunks, kept_lines


def _json_kept(schema: pa.Schema, columns: Sequence[str] | None) -> list[pa.Field]:
    """The fields to keep, each a type whose text Arrow gives as written (else the Python reader is needed)."""
    kept = [f for f in schema if columns is None or f.name in columns] or list(schema)
    for spec in kept:
        if pa.types.is_null(spec.type):
            raise PythonReaderNeeded(f"its field {spec.name!r} is null or absent in the first rows")
        if not (pa.types.is_string(spec.type) or pa.types.is_large_string(spec.type) or pa.types.is_integer(spec.type)):
            raise PythonReaderNeeded(f"its field {spec.name!r} holds {spec.type} values, whose text as written "
                                     "pyarrow.json does not keep")
    return kept


def _open_json(path: Path, encoding: str, text_fields: Sequence[str] = ()):
    """``(pieces, index, reader)``; ``text_fields`` are read as strings (Arrow would take ISO dates for times)."""
    index = RecordLines(json=True)
    pieces = TextPieces(path, encoding, on_piece=index.add, json=True)
    head = b""
    while not head.strip():
        piece = pieces.peek()
        head += piece
        if not piece:
            break
    if not pieces.has_content:
        raise HybridRecError(f"{path}: file is empty")
    if head.lstrip().startswith(b"["):
        raise HybridRecError(located("this is a JSON array; hybridrec reads JSON Lines (one object per line)",
                                     file=path, line=1))
    schema = pa.schema([(name, pa.string()) for name in text_fields]) if text_fields else None
    reader = pa_json.open_json(pieces, read_options=pa_json.ReadOptions(use_threads=False, block_size=PIECE_BYTES),
                               parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                                  unexpected_field_behavior="infer"))
    return pieces, index, reader


def read_json_arrow(path: Path, *, encoding: str, columns: Sequence[str] | None = None) -> ArrowRead:
    """JSON Lines through ``pyarrow.json.open_json``: the table :func:`data_builders.parsing.read_json_lines`
    gives, for fields of strings and integers (their digits, which are their text as JSON writes them)."""
    try:
        return _read_json(path, encoding=encoding, columns=columns)
    except PythonReaderNeeded as reason:
        return ArrowRead(fallback=str(reason))
    except pa.ArrowException as err:
        return ArrowRead(fallback=f"pyarrow.json cannot read it ({str(err).splitlines()[0]})")


def _read_json(path: Path, *, encoding: str, columns: Sequence[str] | None) -> ArrowRead:
    pieces, index, reader = _open_json(path, encoding)
    times = [f.name for f in reader.schema if pa.types.is_temporal(f.type)]
    if times:
        pieces.close()
        pieces, index, reader = _open_json(path, encoding, times)
    with pieces:
        kept = _json_kept(reader.schema, columns)
        chunks: dict[str, list[pa.Array]] = {f.name: [] for f in kept}
        lines, count = [], 0
        for batch in reader:
            lines.append(index.lines_of(np.arange(count + 1, count + batch.num_rows + 1)))
            count += batch.num_rows
            for spec in kept:
                chunks[spec.name].append(pc.cast(batch.column(spec.name), pa.large_string()))
    if index.count != count:
        raise PythonReaderNeeded("a line holds something other than one JSON object")
    if pieces.negative_zero and any(pa.types.is_integer(f.type) for f in kept):
        raise PythonReaderNeeded("it may hold the number -0, which pyarrow.json reads as 0")
    table = _frame(chunks, lines, reader.schema.names)
    return ArrowRead(table=table, records=len(table))


def read_parquet_arrow(path: Path, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A Parquet file, or a folder of them (hive partitions such as ``day=2020-09-13/`` become text columns),
    through ``pyarrow.dataset``, as ``pandas.read_parquet`` gives it; ``__line__`` is the 1-based row number.

    A folder's rows come file by file in the order of their sorted paths.

    Raises:
        HybridRecError: missing or empty file, a folder without Parquet files, unreadable Parquet.
    """
    if path.is_dir():
        partitioning = pa_dataset.HivePartitioning.discover(infer_dictionary=True)
    elif not path.is_file():
        raise HybridRecError(f"{path}: file not found")
    elif path.stat().st_size == 0:
        raise HybridRecError(f"{path}: file is empty")
    else:
        partitioning = None
    try:
        dataset = pa_dataset.dataset(path, format="parquet", partitioning=partitioning)
        if not dataset.files:
            raise HybridRecError(f"{path}: no Parquet files in this folder")
        names = dataset.schema.names
        index_columns = [c for c in (dataset.schema.pandas_metadata or {}).get("index_columns", [])
                         if isinstance(c, str)]
        selected = [name for name in names if columns is not None and (name in columns or name in index_columns)]
        selected = selected if set(selected) - set(index_columns) else None
        scanner = dataset.scanner(columns=selected)  # batches come in order, threads or not
        table = pa.Table.from_batches(list(scanner.to_batches()), schema=scanner.projected_schema)
    except (pa.ArrowException, OSError) as err:
        raise HybridRecError(f"{path}: not a readable Parquet file ({err})") from None
    if partitioning is not None:
        for name in dataset.partitioning.schema.names:
            if name in table.column_names:
                at = table.column_names.index(name)
                table = table.set_column(at, name, pc.cast(table.column(name), pa.string()))
    frame = table.to_pandas()
    frame[LINE] = np.arange(1, len(frame) + 1, dtype=np.int64)
    frame.attrs["columns"] = [name for name in names if name not in index_columns]
    return frame
