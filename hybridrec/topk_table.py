"""The top-k table format: item–item similarity and recommendation tables on disk (Parquet or CSV).

Tables in, tables out: external ids in every column (``item_id, similar_item_id, score, rank`` or
``user_id, item_id, score, rank``). :class:`TopKTableWriter` writes atomically (temporary file, then
rename) so a crash never leaves a table that looks complete, one block of queries at a time so
memory never holds the whole table. A :class:`ShardSpec` splits the queries into disjoint
contiguous ranges, one file each; :func:`merge_shards` checks that they tile the queries exactly
and writes the full table.

Each table records how it was made in its metadata (Parquet key-value metadata ``hybridrec``, or a
``PATH.meta.json`` sidecar for CSV): ``settings`` (equal across shards of one export), ``shard``
(query range) and ``stats``. The exports that fill these tables are in
:mod:`hybridrec.similarity_export`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from hybridrec.atomic import atomic_path, write_text_atomic
from hybridrec.errors import HybridRecError
from hybridrec.topk import TopKBlock

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
METADATA_KEY = "hybridrec"
SIDECAR_SUFFIX = ".meta.json"
FORMAT_VERSION = 1
#: Rows buffered per Parquet row group.
ROW_GROUP_ROWS = 1 << 20
ITEM_SIMILARITY = "item_similarity"
RECOMMENDATIONS = "recommendations"


# -- table files -----------------------------------------------------------------------------

def table_format(path: str | Path, format: str | None = None) -> str:
    """``format`` if given, else from the suffix (``.csv``/``.csv.gz`` -> csv), else parquet."""
    if format is not None:
        if format not in FORMATS:
            raise HybridRecError(f"format must be one of {FORMATS}, got {format!r}")
        return format
    suffixes = [s.lower() for s in Path(path).suffixes]
    return "csv" if "csv" in {s.lstrip(".") for s in suffixes[-2:]} else "parquet"


def sidecar_path(path: str | Path) -> Path:
    """Where a CSV table's metadata lives: ``PATH.meta.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def stored_format(path: str | Path) -> str:
    """Format of an existing table: csv when it has a sidecar or a CSV suffix, else parquet."""
    return "csv" if sidecar_path(path).is_file() else table_format(path)


def read_table_metadata(path: str | Path) -> dict:
    """The ``hybridrec`` metadata of a table written here (Parquet footer or CSV sidecar).

    Raises:
        HybridRecError: the file or its metadata is missing (e.g. an interrupted export).
    """
    path = Path(path)
    if not path.is_file():
        raise HybridRecError(f"{path}: no such table")
    if stored_format(path) == "csv":
        meta_file = sidecar_path(path)
        if not meta_file.is_file():
            raise HybridRecError(f"{path}: its metadata {meta_file.name} is missing (interrupted export?)")
        return json.loads(meta_file.read_text(encoding="utf-8"))
    try:
        key_values = pq.read_metadata(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as err:
        raise HybridRecError(f"{path}: not a readable Parquet table ({err})") from err
    if METADATA_KEY.encode() not in key_values:
        raise HybridRecError(f"{path}: not a table written by hybridrec (no {METADATA_KEY!r} metadata)")
    return json.loads(key_values[METADATA_KEY.encode()])


def id_type(ids: np.ndarray) -> pa.DataType:
    """Arrow type for external ids: int64 for integers, string otherwise."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return pa.int64()
    if ids.dtype.kind == "f":
        raise HybridRecError("ids must be integers or strings, not floats")
    return pa.string()


def table_schema(query_column: str, result_column: str, query_type: pa.DataType,
                 result_type: pa.DataType) -> pa.Schema:
    """``query_column, result_column, score (float32), rank (int64)``."""
    return pa.schema([(query_column, query_type), (result_column, result_type),
                      ("score", pa.float32()), ("rank", pa.int64())])


class TopKTableWriter:
    """Streams a top-k table to Parquet (row groups) or CSV, atomically.

    Use as a context manager; nothing appears at ``path`` until the block exits without error.

    Args:
        path: destination file.
        schema: from :func:`table_schema`.
        metadata: JSON-able dict stored under ``hybridrec`` (``stats.n_rows`` is filled in).
        format: ``"parquet"`` or ``"csv"``; default from the suffix.
        overwrite: replace a file already at ``path`` (a folder there is always refused:
            :mod:`hybridrec.atomic`).
    """

    def __init__(self, path: str | Path, schema: pa.Schema, metadata: dict, *, format: str | None = None,
                 row_group_rows: int = ROW_GROUP_ROWS, overwrite: bool = True) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.schema = schema
        self.metadata = metadata
        self.format = table_format(self.path, format)
        self.row_group_rows = row_group_rows
        self.n_rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._stack = contextlib.ExitStack()
        self._writer = None

    def __enter__(self) -> "TopKTableWriter":
        tmp = self._stack.enter_context(atomic_path(self.path, overwrite=self.overwrite))
        if self.format == "parquet":
            self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd")
        else:  # ".csv.gz" and the like are compressed
            self._sink = self._stack.enter_context(pa.output_stream(str(tmp), compression="detect"))
            self._writer = pa_csv.CSVWriter(self._sink, self.schema)
        return self

    def write(self, table: pa.Table) -> None:
        """Append rows (columns as in the schema)."""
        table = table.cast(self.schema) if table.schema != self.schema else table
        self.n_rows += table.num_rows
        if self.format == "csv":
            self._writer.write_table(table)
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self.row_group_rows)
            self._pending, self._pending_rows = [], 0

    def __exit__(self, exc_type, exc, traceback) -> bool:
        try:
            if exc_type is None:
                self._flush()
                self.metadata.setdefault("stats", {})["n_rows"] = self.n_rows
                if self.format == "parquet":
                    self._writer.add_key_value_metadata({METADATA_KEY: json.dumps(self.metadata)})
            self._writer.close()
        except BaseException as close_error:
            self._stack.__exit__(type(close_error), close_error, close_error.__traceback__)
            raise
        if exc_type is None and self.format == "csv":
            # The old sidecar goes before the new table lands: a crash in between leaves a table
            # without metadata, which merge refuses, never a table with another table's metadata.
            sidecar_path(self.path).unlink(missing_ok=True)
        self._stack.__exit__(exc_type, exc, traceback)  # renames on success, removes on error
        if exc_type is None and self.format == "csv":
            write_text_atomic(sidecar_path(self.path), json.dumps(self.metadata, indent=2) + "\n")
        return False


def block_table(block: TopKBlock, query_ids: np.ndarray, result_ids: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Long table of one :class:`TopKBlock` (``-1`` results dropped; ranks stay 1..)."""
    keep = block.result_index >= 0
    width = block.result_index.shape[1]
    ranks = np.broadcast_to(np.arange(1, width + 1, dtype=np.int64), keep.shape)
    columns = [
        pa.array(np.repeat(query_ids[block.query_index], keep.sum(axis=1)), type=schema.field(0).type),
        pa.array(result_ids[block.result_index[keep]], type=schema.field(1).type),
        pa.array(block.scores[keep].astype(np.float32)),
        pa.array(ranks[keep]),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


# -- shards ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count`` disjoint contiguous query ranges."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise HybridRecError(f"shard count must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise HybridRecError(f"shard index must lie in 0..{self.count - 1} (0-based), got {self.index}")

    @classmethod
    def parse(cls, text: str) -> "ShardSpec":
        """``"i/n"`` -> ``ShardSpec(i, n)``."""
        try:
            index, count = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise HybridRecError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
        return cls(index, count)

    def query_range(self, n_queries: int) -> tuple[int, int]:
        """``(start, stop)`` of this shard's queries among ``n_queries``."""
        return self.index * n_queries // self.count, (self.index + 1) * n_queries // self.count


def as_shard_spec(shard: ShardSpec | str | None) -> ShardSpec:
    """``shard`` as a :class:`ShardSpec`: None is the whole (``0/1``), a string is parsed (``"i/n"``)."""
    if shard is None:
        return ShardSpec(0, 1)
    return shard if isinstance(shard, ShardSpec) else ShardSpec.parse(shard)


def fingerprint(ids: Iterable) -> str:
    """Short SHA-256 of a sequence of ids (order matters)."""
    values = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    digest = hashlib.sha256()
    if values.dtype.kind in "iu":
        digest.update(values.astype(np.int64).tobytes())
    else:
        digest.update("\x1f".join(map(str, values.tolist())).encode("utf-8"))
    return digest.hexdigest()[:16]


def merge_shards(shard_paths: Iterable[str | Path], out: str | Path, *, format: str | None = None,
                 progress: bool = True, overwrite: bool = True) -> "ExportSummary":
    """Concatenate shard tables into the full table at ``out`` (atomically, streaming).

    The shards must come from one export (equal ``settings``) and their query ranges must tile
    ``0..n_queries`` exactly. ``overwrite``: replace a file already at ``out``.

    Raises:
        HybridRecError: naming the shard that is missing, overlaps another, differs in settings or
            holds a different number of rows than it recorded.
    """
    started = time.perf_counter()
    paths = [Path(p) for p in shard_paths]
    if not paths:
        raise HybridRecError("no shard files to merge")
    metas = [read_table_metadata(p) for p in paths]
    settings = metas[0]["settings"]
    for path, meta in zip(paths[1:], metas[1:]):
        differing = sorted(key for key in set(settings) | set(meta["settings"])
                           if settings.get(key) != meta["settings"].get(key))
        if differing:
            key = differing[0]
            raise HybridRecError(f"{path} is not from the same export as {paths[0]}: {key} is "
                                 f"{meta['settings'].get(key)!r} there, {settings.get(key)!r} in {paths[0]}")
    total = settings["n_queries_total"]
    order = sorted(range(len(paths)), key=lambda i: (metas[i]["shard"]["query_start"], metas[i]["shard"]["query_stop"]))
    covered = 0
    for position, i in enumerate(order):
        shard = metas[i]["shard"]
        name = f"{paths[i]} (shard {shard['index']}/{shard['count']}, queries {shard['query_start']}..{shard['query_stop']})"
        if shard["query_start"] > covered:
            raise HybridRecError(f"missing shard: queries {covered}..{shard['query_start']} of {total} are in no "
                                 f"file{_missing_hint(covered, shard['query_start'], total, shard['count'])}")
        if shard["query_start"] < covered:
            previous = metas[order[position - 1]]["shard"]
            raise HybridRecError(f"overlapping shards: {name} overlaps {paths[order[position - 1]]} "
                                 f"(queries {previous['query_start']}..{previous['query_stop']})")
        covered = shard["query_stop"]
    if covered < total:
        last_count = metas[order[-1]]["shard"]["count"]
        raise HybridRecError(f"missing shard: queries {covered}..{total} of {total} are in no "
                             f"file{_missing_hint(covered, total, total, last_count)}")
    metadata = {"format_version": FORMAT_VERSION, "settings": settings,
                "shard": {"index": 0, "count": 1, "query_start": 0, "query_stop": total},
                "stats": {"merged_from": [str(paths[i]) for i in order]}}
    recalls = [metas[i].get("stats", {}).get("recall_at_k") for i in order]
    if all(r is not None for r in recalls):
        metadata["stats"]["recall_at_k"] = float(np.mean(recalls))
    with TopKTableWriter(out, schema_from_settings(settings), metadata, format=format,
                         overwrite=overwrite) as writer, \
            tqdm(total=total, unit="query", unit_scale=True, desc="merge", disable=not progress) as bar:
        for i in order:
            n_rows = 0
            for table in _read_batches(paths[i], writer.schema):
                writer.write(table)
                n_rows += table.num_rows
            expected = metas[i].get("stats", {}).get("n_rows")
            if expected is not None and n_rows != expected:
                raise HybridRecError(f"{paths[i]} holds {n_rows} rows but recorded {expected}: the file is damaged")
            shard = metas[i]["shard"]
            bar.update(shard["query_stop"] - shard["query_start"])
    seconds = time.perf_counter() - started
    logger.info("merged %d shard(s) into %s: %d rows in %.1f s", len(paths), out, writer.n_rows, seconds)
    return ExportSummary(path=Path(out), table=settings["table"], n_queries=total, n_rows=writer.n_rows,
                         seconds=seconds, method=settings.get("method", "exact"),
                         recall_at_k=metadata["stats"].get("recall_at_k"))


def _missing_hint(start: int, stop: int, total: int, count: int) -> str:
    """`` (shard i/n)`` when the gap is exactly one shard of an ``n``-way split."""
    for index in range(count):
        if ShardSpec(index, count).query_range(total) == (start, stop):
            return f" (shard {index}/{count})"
    return ""


def schema_from_settings(settings: dict) -> pa.Schema:
    """The schema a table's recorded ``settings`` describe (columns and id types)."""
    return table_schema(settings["query_column"], settings["result_column"],
                        pa.type_for_alias(settings["query_id_type"]), pa.type_for_alias(settings["result_id_type"]))


def _read_batches(path: Path, schema: pa.Schema) -> Iterator[pa.Table]:
    """A table file as a stream of tables with ``schema``."""
    if stored_format(path) == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
            yield pa.Table.from_batches([batch]).cast(schema)
        return
    options = pa_csv.ConvertOptions(column_types={f.name: f.type for f in schema})
    with pa.input_stream(str(path), compression="detect") as source, \
            pa_csv.open_csv(source, convert_options=options) as reader:
        for batch in reader:
            yield pa.Table.from_batches([batch]).select(schema.names).cast(schema)


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written here (Parquet or CSV) as a DataFrame with its recorded column types."""
    meta = read_table_metadata(path)
    schema = schema_from_settings(meta["settings"])
    tables = list(_read_batches(Path(path), schema))
    return (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()


# -- summaries -------------------------------------------------------------------------------

@dataclass
class ExportSummary:
    """What an export or merge wrote."""

    path: Path
    table: str
    n_queries: int
    n_rows: int
    seconds: float
    method: str = "exact"
    recall_at_k: float | None = None
    shard: dict = field(default_factory=dict)
    #: How it ran when not in this process alone (the Ray engine: ``blocks``, ``cpus``).
    engine: dict = field(default_factory=dict)

    @property
    def queries_per_second(self) -> float:
        return self.n_queries / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["path"] = str(self.path)
        return values
