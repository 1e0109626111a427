"""The id lists the table-export commands read (``--candidates``, ``--items-list``, ``--users``,
``--user-ids``) and the ``--encoding`` of their text files.

An id file is a Parquet table, a ``.csv``/``.tsv`` table with a header, or plain text with one id a
line; what is read is checked against the model's id map (integers where it holds integers).
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.parsing import LINE, read_delimited, read_text, read_typed_table
from hybridrec.errors import HybridRecError, located
from hybridrec.id_map import IdMap
from hybridrec.load_report import LoadReport

from hybridrec.cli.dataset_args import text_encoding

logger = logging.getLogger(__name__)

ID_COLUMN_NAMES = ("item_id", "user_id", "id")


def add_encoding_argument(parser: argparse.ArgumentParser) -> None:
    """``--encoding`` of the text files a command reads (tables and id lists)."""
    parser.add_argument("--encoding", type=text_encoding, default="utf-8",
                        help="text encoding of the CSV and id-list files read (default utf-8)")


def read_id_file(path: str | Path, id_map: IdMap, *, column: str | None = None,
                 encoding: str = "utf-8") -> np.ndarray:
    """Ids listed in ``path``, typed like ``id_map``'s ids.

    ``path`` is a Parquet table, a ``.csv``/``.tsv`` table with a header, or plain text. Plain text
    is a CSV table only when its first line names a known id column (``column``, else ``item_id``,
    ``user_id`` or ``id``); otherwise every non-blank line is one id, exactly as written (commas
    included). A table's id column is ``column``, else the first known name, else its first column
    (logged, since line 1 is then taken as the header).

    Raises:
        HybridRecError: the file is missing, empty, not ``encoding``, lists no id, lacks ``column``,
            has a row with another number of fields than its header, or an id is not an integer
            where the map holds integers (naming the line).
    """
    path = Path(path)
    has_header = True
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        table = read_typed_table(path)
        lines = np.arange(1, len(table) + 1)  # row numbers
        has_header = False
    else:
        text = read_text(path, encoding)
        text_lines = text.splitlines()
        if not any(line.replace("\ufeff", "").strip() for line in text_lines):
            raise HybridRecError(located("holds no ids (nothing but white space and a byte-order mark)", file=path))
        sep = "\t" if suffix == ".tsv" else ","
        first = next(csv.reader([text_lines[0]], delimiter=sep), [])
        known = [column] if column else list(ID_COLUMN_NAMES)
        if suffix in (".csv", ".tsv") or any(field.strip() in known for field in first):
            table = read_delimited(path, sep=sep, encoding=encoding, report=LoadReport(strict=True))
            lines = table.pop(LINE).to_numpy()
        else:
            table = pd.DataFrame({"id": [line.strip() for line in text_lines]})
            lines = np.arange(1, len(table) + 1)
            has_header = False
    if column is not None and column not in table.columns:
        raise HybridRecError(located(f"no column {column!r}; found {list(table.columns)}", file=path))
    name = column or next((c for c in ID_COLUMN_NAMES if c in table.columns), None)
    if name is None:
        name = table.columns[0]
        logger.warning("%s: no %s column; ids are read from its first column %r (line 1 is its header)", path,
                       "/".join(ID_COLUMN_NAMES), name)
    values = table[name]
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        values = values.astype(str).str.strip()
        listed = (values != "").to_numpy()
        values, lines = values[listed], lines[listed]
    if values.empty:
        raise HybridRecError(located("lists no id", file=path, column=name if has_header else None))
    return coerce_ids(values, id_map, file=path, column=name, lines=lines)


def coerce_ids(values: pd.Series, id_map: IdMap, *, file: object = None, header_line: int = 0,
               column: str | None = None, lines: np.ndarray | None = None) -> np.ndarray:
    """``values`` converted to the dtype of ``id_map``'s ids (integers or strings).

    Args:
        header_line: lines above the first value; a value's line is its index + ``header_line`` + 1.
        lines: ``[len(values)]`` 1-based line of each value instead (a file with blank lines).
    """
    if id_map.ids.dtype.kind in "iu":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            line = int(lines[position]) if lines is not None else int(values.index[position]) + header_line + 1
            raise HybridRecError(located(f"{id_map.kind} id {values.iloc[position]!r} is not an integer",
                                         file=file, line=line, column=column))
        return numbers.to_numpy().astype(np.int64)
    return values.astype(str).to_numpy(dtype=object)
