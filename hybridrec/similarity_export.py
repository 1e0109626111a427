"""Item–item similarity tables and batch recommendations, streamed to Parquet or CSV.

Tables in, tables out: external ids in every column (``item_id, similar_item_id, score, rank`` or
``user_id, item_id, score, rank``). Files are written atomically (temporary file, then rename) so a
crash never leaves a table that looks complete, one block of queries at a time so memory never
holds the whole table. ``shard`` splits the queries into disjoint contiguous ranges, one file each;
:func:`merge_shards` checks that they tile the queries exactly and writes the full table.

Each table records how it was made in its metadata (Parquet key-value metadata ``hybridrec``, or a
``PATH.meta.json`` sidecar for CSV): ``settings`` (equal across shards of one export), ``shard``
(query range) and ``stats``.
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
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hybridrec.atomic import atomic_path, write_text_atomic
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.recommender_base import RecommenderBase
from hybridrec.topk import METRICS, EmbeddingScorer, FunctionScorer, Scorer, TopKBlock, iter_top_k

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


def _as_shard(shard: ShardSpec | str | None) -> ShardSpec:
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
    with TopKTableWriter(out, _schema_from_settings(settings), metadata, format=format,
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


def _schema_from_settings(settings: dict) -> pa.Schema:
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
    schema = _schema_from_settings(meta["settings"])
    tables = list(_read_batches(Path(path), schema))
    return (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()


# -- exports ---------------------------------------------------------------------------------

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

    @property
    def queries_per_second(self) -> float:
        return self.n_queries / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["path"] = str(self.path)
        return values


def _unique_ids(ids: Iterable, what: str) -> np.ndarray:
    values = pd.Index(np.asarray(list(ids) if not isinstance(ids, (np.ndarray, pd.Index, pd.Series)) else ids))
    if not values.is_unique:
        logger.warning("%d duplicate %s id(s) dropped", int(values.duplicated().sum()), what)
        values = values.unique()
    return values.to_numpy()


def export_similar_items(out: str | Path, item_ids: IdMap, *, embeddings: torch.Tensor | np.ndarray | None = None,
                         score_block=None, k: int = 50, metric: str = "cosine", query_ids: Iterable | None = None,
                         candidate_ids: Iterable | None = None, include_self: bool = False,
                         min_score: float | None = None, shard: ShardSpec | str | None = None,
                         format: str | None = None, approx: str | None = None, ann_config=None,
                         recall_sample: int = 1000, memory_budget_bytes: int | None = None,
                         device: str | torch.device | None = "auto", progress: bool = True,
                         source: str | None = None, overwrite: bool = True) -> ExportSummary:
    """Write the top-``k`` similar items of each query item to ``out``.

    Args:
        out: destination table (``.parquet`` by default, ``.csv``).
        item_ids: external ids of the rows of ``embeddings`` / columns of ``score_block``.
        embeddings: ``[n_items, dim]`` item vectors, scored by ``metric`` (``cosine`` or ``dot``).
        score_block: instead of embeddings, ``item_index [b] -> scores [b, n_items]``.
        query_ids: items to find neighbours for (default all, in index order).
        candidate_ids: the only items that may be neighbours (e.g. in stock).
        include_self: allow an item to be its own neighbour (excluded by default).
        min_score: drop neighbours scoring below it.
        shard: ``ShardSpec`` or ``"i/n"``: only that contiguous part of the queries.
        approx: ``"faiss"`` for approximate search (embeddings only); its recall@k against exact
            on ``recall_sample`` queries is logged and recorded.
        memory_budget_bytes: ceiling for one block of scores (default 256 MiB).
        overwrite: replace a file already at ``out`` (a folder there is always refused).

    Returns:
        :class:`ExportSummary`; the table has columns item_id, similar_item_id, score, rank.
    """
    started = time.perf_counter()
    if (embeddings is None) == (score_block is None):
        raise HybridRecError("give exactly one of embeddings or score_block")
    if k < 1:
        raise HybridRecError(f"k must be >= 1, got {k}")
    if embeddings is not None and metric not in METRICS:
        raise HybridRecError(f"metric must be one of {METRICS}, got {metric!r}")
    if embeddings is not None and len(embeddings) != len(item_ids):
        raise HybridRecError(f"{len(embeddings)} item vectors but {len(item_ids)} item ids")
    shard = _as_shard(shard)
    queries = item_ids.ids if query_ids is None else _unique_ids(query_ids, "query item")
    query_index = item_ids.to_index(queries)
    candidate_index = None
    if candidate_ids is not None:
        candidate_index = np.sort(item_ids.to_index(_unique_ids(candidate_ids, "candidate item")))
    start, stop = shard.query_range(len(query_index))
    method = "exact" if approx is None else f"{approx}-{_ann_kind(ann_config)}"
    settings = {
        "table": ITEM_SIMILARITY, "query_column": "item_id", "result_column": "similar_item_id",
        "query_id_type": str(id_type(item_ids.ids)), "result_id_type": str(id_type(item_ids.ids)),
        "k": int(k), "metric": metric if embeddings is not None else "model", "min_score": min_score,
        "exclude_self": not include_self, "method": method, "n_queries_total": int(len(query_index)),
        "query_fingerprint": fingerprint(queries), "catalog_fingerprint": fingerprint(item_ids.ids),
        "candidates_fingerprint": None if candidate_index is None else fingerprint(candidate_index),
    }
    metadata = {"format_version": FORMAT_VERSION, "settings": settings,
                "shard": {"index": shard.index, "count": shard.count, "query_start": start, "query_stop": stop},
                "stats": {"source": source}}
    shard_queries = query_index[start:stop]
    recall = None
    if approx is not None:
        from hybridrec.ann_index import approximate_top_k_blocks, measure_recall

        if embeddings is None:
            raise HybridRecError("approximate search needs item vectors; this model only has item_similarity")
        if approx != "faiss":
            raise HybridRecError(f"approx must be 'faiss', got {approx!r}")
        blocks, index = approximate_top_k_blocks(embeddings, shard_queries, k, metric=metric,
                                                 candidate_index=candidate_index, exclude_self=not include_self,
                                                 min_score=min_score, config=ann_config)
        if recall_sample > 0 and len(shard_queries):
            recall = measure_recall(index, embeddings, shard_queries, k, metric=metric,
                                    candidate_index=candidate_index, exclude_self=not include_self,
                                    sample_size=recall_sample, device=device)
            metadata["stats"]["recall_at_k"] = recall
            logger.info("faiss recall@%d against exact on %d sampled queries: %.4f", k,
                        min(recall_sample, len(shard_queries)), recall)
    else:
        scorer: Scorer
        if embeddings is not None:
            scorer = EmbeddingScorer(embeddings, metric=metric, columns=candidate_index, device=device)
        else:
            scorer = FunctionScorer(score_block, len(item_ids), columns=candidate_index, device=device)
        blocks = iter_top_k(scorer, shard_queries, k, exclude_self=not include_self, min_score=min_score,
                            memory_budget_bytes=memory_budget_bytes)
    schema = table_schema("item_id", "similar_item_id", id_type(item_ids.ids), id_type(item_ids.ids))
    ids = item_ids.ids
    with TopKTableWriter(out, schema, metadata, format=format, overwrite=overwrite) as writer, \
            tqdm(total=len(shard_queries), unit="item", unit_scale=True, desc="similar items",
                 disable=not progress) as bar:
        for block in blocks:
            writer.write(block_table(block, ids, ids, schema))
            bar.update(len(block.query_index))
        metadata["stats"]["seconds"] = time.perf_counter() - started
    seconds = time.perf_counter() - started
    logger.info("wrote %d rows for %d items to %s in %.1f s", writer.n_rows, len(shard_queries), out, seconds)
    return ExportSummary(path=Path(out), table=ITEM_SIMILARITY, n_queries=len(shard_queries), n_rows=writer.n_rows,
                         seconds=seconds, method=method, recall_at_k=recall, shard=metadata["shard"])


def _ann_kind(ann_config) -> str:
    return getattr(ann_config, "kind", "hnsw")


def export_model_similar_items(model, out: str | Path, *, metric: str | None = None, **options) -> ExportSummary:
    """:func:`export_similar_items` for a fitted recommender.

    Uses ``model.item_vectors()`` (``[n_items, dim]``) when the model has it, scored by ``metric``
    (default cosine); otherwise ``model.item_similarity(item_index)`` block by block, where
    ``metric`` does not apply.
    """
    if not hasattr(model, "item_ids_"):
        raise HybridRecError(f"{type(model).__name__} is not fitted")
    item_vectors = getattr(model, "item_vectors", None)
    if callable(item_vectors):
        return export_similar_items(out, model.item_ids_, embeddings=item_vectors(), metric=metric or "cosine",
                                    **options)
    if metric is not None:
        raise HybridRecError(f"{type(model).__name__} has no item_vectors(): its own item_similarity is used "
                             "and a metric does not apply")
    if getattr(type(model), "item_similarity", None) in (None, RecommenderBase.item_similarity):
        raise HybridRecError(f"{type(model).__name__} has neither item_vectors() nor item_similarity(): "
                             "it cannot export similar items")
    return export_similar_items(out, model.item_ids_, score_block=model.item_similarity, **options)


def export_recommendations(model, out: str | Path, *, k: int = 20, user_ids: Iterable | None = None,
                           history: pd.DataFrame | None = None, filter_seen: bool = True,
                           candidate_ids: Iterable | None = None, shard: ShardSpec | str | None = None,
                           format: str | None = None, batch_size: int = 4096, progress: bool = True,
                           source: str | None = None, overwrite: bool = True) -> ExportSummary:
    """Write the top-``k`` items of each user to ``out`` (user_id, item_id, score, rank).

    Args:
        model: a fitted recommender (``RecommenderBase`` contract).
        user_ids: known users (default all, in index order); ignored with ``history``.
        history: ``user_id, item_id`` rows of new users, ranked through the model's
            ``recommend_for_history(history, k=..., ...)``.
        filter_seen: drop items the user already interacted with.
        candidate_ids: rank only these items.
        shard: only that contiguous part of the users (``"i/n"``).
        batch_size: users per ``recommend`` call.
        overwrite: replace a file already at ``out`` (a folder there is always refused).
    """
    started = time.perf_counter()
    if not hasattr(model, "item_ids_"):
        raise HybridRecError(f"{type(model).__name__} is not fitted")
    if k < 1:
        raise HybridRecError(f"k must be >= 1, got {k}")
    shard = _as_shard(shard)
    candidates = None if candidate_ids is None else _unique_ids(candidate_ids, "candidate item")
    if history is not None:
        method = getattr(model, "recommend_for_history", None)
        if not callable(method):
            raise HybridRecError(f"{type(model).__name__} cannot recommend for new users from a history "
                                 "(it has no recommend_for_history method); pass known users instead")
        for column in ("user_id", "item_id"):
            if column not in history.columns:
                raise HybridRecError(f"history has no column {column!r}; found {list(history.columns)}")
        users = pd.unique(history["user_id"].to_numpy())
        history_by_user = history.groupby("user_id", sort=False).indices
    else:
        users = model.user_ids_.ids if user_ids is None else _unique_ids(user_ids, "user")
        model.user_ids_.to_index(users)  # unknown users fail here, before any work
    start, stop = shard.query_range(len(users))
    settings = {
        "table": RECOMMENDATIONS, "query_column": "user_id", "result_column": "item_id",
        "query_id_type": str(id_type(users if len(users) else model.user_ids_.ids)),
        "result_id_type": str(id_type(model.item_ids_.ids)), "k": int(k), "filter_seen": bool(filter_seen),
        "method": "history" if history is not None else "recommend", "model": type(model).__name__,
        "n_queries_total": int(len(users)), "query_fingerprint": fingerprint(users),
        "catalog_fingerprint": fingerprint(model.item_ids_.ids),
        "candidates_fingerprint": None if candidates is None else fingerprint(np.sort(model.item_ids_.to_index(candidates))),
    }
    metadata = {"format_version": FORMAT_VERSION, "settings": settings,
                "shard": {"index": shard.index, "count": shard.count, "query_start": start, "query_stop": stop},
                "stats": {"source": source}}
    schema = _schema_from_settings(settings)
    with TopKTableWriter(out, schema, metadata, format=format, overwrite=overwrite) as writer, \
            tqdm(total=stop - start, unit="user", unit_scale=True, desc="recommend", disable=not progress) as bar:
        for batch_start in range(start, stop, batch_size):
            batch = users[batch_start:min(batch_start + batch_size, stop)]
            if history is not None:
                rows = np.concatenate([history_by_user[user] for user in batch])
                frame = _call_recommend_for_history(model, history.iloc[np.sort(rows)], k=k, filter_seen=filter_seen,
                                                    candidates=candidates)
            else:
                frame = model.recommend(batch, k=k, filter_seen=filter_seen, candidates=candidates)
            writer.write(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False))
            bar.update(len(batch))
        metadata["stats"]["seconds"] = time.perf_counter() - started
    seconds = time.perf_counter() - started
    logger.info("wrote %d recommendations for %d users to %s in %.1f s", writer.n_rows, stop - start, out, seconds)
    return ExportSummary(path=Path(out), table=RECOMMENDATIONS, n_queries=stop - start, n_rows=writer.n_rows,
                         seconds=seconds, method=settings["method"], shard=metadata["shard"])


def _call_recommend_for_history(model, history: pd.DataFrame, **options) -> pd.DataFrame:
    """Per new user of ``history`` (user_id, item_id rows), ``model.recommend_for_history(item_ids,
    k=..., filter_seen=..., candidates=...)``, stacked with a ``user_id`` column."""
    frames = []
    for user, rows in history.groupby("user_id", sort=False):
        frame = model.recommend_for_history(rows["item_id"].to_numpy(), **options)
        frames.append(frame.assign(user_id=user))
    return pd.concat(frames, ignore_index=True)


# -- content-only similarity -----------------------------------------------------------------

@dataclass(frozen=True)
class ContentWeights:
    """Share of each modality in the fused vectors (see :func:`fuse_content_features`).

    ``colour`` weighs the photo's colour histogram
    (:mod:`hybridrec.features.colour_histogram`), used when images are given. With
    ``fusion="concat"`` the weights are shares of the fused cosine. With ``fusion="cca"`` (the
    default) they scale the blocks inside the text view (text, attributes) and the image view
    (image, colour) before the views are aligned, and each view's summed weight is its share of
    the fused vector. Defaults measured on the fashion catalog
    (``benchmarks/fashion_content_similarity.py``).
    """

    text: float = 0.6
    image: float = 0.4
    attributes: float = 0.2
    colour: float = 0.15

    def __post_init__(self) -> None:
        for name in ("text", "image", "attributes", "colour"):
            value = getattr(self, name)
            if not value >= 0:
                raise HybridRecError(f"ContentWeights.{name} must be >= 0, got {value}")

    @classmethod
    def from_overrides(cls, **overrides: float | None) -> "ContentWeights":
        """Defaults, with the given non-None values replacing them."""
        return cls(**{name: value for name, value in overrides.items() if value is not None})


def one_hot_attributes(items: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``[n_items, n_values]`` float32 indicator of each (column, value); list cells count every element.

    Missing values set no indicator.
    """
    blocks = []
    for column in columns:
        if column not in items.columns:
            raise HybridRecError(f"items table has no attribute column {column!r}; found {list(items.columns)}")
        cells = items[column].tolist()
        lists = [cell if isinstance(cell, (list, tuple, np.ndarray)) else [cell] for cell in cells]
        values = [[v for v in cell if not (v is None or (isinstance(v, float) and np.isnan(v)))] for cell in lists]
        codes = pd.Index(sorted({str(v) for cell in values for v in cell}))
        block = np.zeros((len(items), len(codes)), dtype=np.float32)
        rows = np.repeat(np.arange(len(items)), [len(cell) for cell in values])
        if len(rows):
            block[rows, codes.get_indexer([str(v) for cell in values for v in cell])] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(items), 0), np.float32)


MISSING_STRATEGIES = ("impute", "zero")
FUSIONS = ("cca", "concat")
#: Items with both a text and an image below which CCA fusion falls back to concatenation (on 300
#: fashion products CCA is still ahead on articleType, level on baseColour; on 800 ahead on both:
#: benchmarks/fashion_content_similarity.py).
MIN_CCA_PAIRS = 200
TEXT_VIEW = ("text", "attributes")
IMAGE_VIEW = ("image", "colour")


def fuse_content_features(*, text: np.ndarray | None = None, image: np.ndarray | None = None,
                          attributes: np.ndarray | None = None, colour: np.ndarray | None = None,
                          weights: ContentWeights = ContentWeights(), fusion: str = "cca",
                          cca_components: int = 64, cca_fit_rows: np.ndarray | None = None,
                          missing: str = "impute", impute_neighbours: int = 5,
                          device: str | torch.device | None = "auto") -> torch.Tensor:
    """One unit vector per item from its modality blocks (each ``[n_items, d_m]``; a zero row = absent).

    Each block is L2-normalised and scaled by ``sqrt(weight)``. Then:

    - ``fusion="cca"`` (default, when there is a text-side and an image-side block): the text view
      (text, attributes) and the image view (image, colour) are projected into the space where they
      agree most, learned by :class:`~hybridrec.features.cross_modal.CrossModalCCA` from the items
      that have both (no labels), and the two projections are summed, each scaled by the square root
      of its view's summed weight. An item missing one view is placed by the other alone, in the
      same space, so ``missing`` does not apply. On the fashion catalog the 10 nearest neighbours
      share the item's articleType / baseColour 0.91 / 0.64 of the time, against 0.87 / 0.47 for
      ``"concat"``; items whose photo is hidden keep 0.91 / 0.62. On MovieLens-100K (overview +
      poster) 0.58 of the neighbours share a genre, against 0.53 for ``"concat"``.
    - ``fusion="concat"``: the concatenation is L2-normalised again, so the cosine of two items that
      have every modality is ``sum_m w_m cos_m / sum_m w_m``. Also used when one side is missing
      altogether or fewer than ``MIN_CCA_PAIRS`` items have both.

    Args:
        cca_components: dimension of the shared space (``fusion="cca"``).
        cca_fit_rows: ``[n_fit]`` rows the shared space is learned from (those of them with both
            views); default every item with both. All rows are projected either way.
        missing: ``fusion="concat"`` only: what an absent block (no image, empty text) becomes.
            ``"zero"``: it stays zero and the item's other blocks are re-weighted to unit length.
            ``"impute"`` (default): the normalised mean of that block over the item's
            ``impute_neighbours`` nearest items that have it, found on the other blocks. Measured on
            the fashion catalog with 20% of the photos hidden, the hidden items' neighbours share
            their articleType 0.85 of the time with ``"impute"``, 0.69 with ``"zero"`` (which
            favours other items without a photo). Either way an item lacking a modality still gets
            neighbours.

    Returns:
        ``[n_items, dim]`` float32 unit rows (``dim`` = the shared space for ``"cca"``, the summed
        block widths for ``"concat"``); an item with no content at all is a zero row.
    """
    if missing not in MISSING_STRATEGIES:
        raise HybridRecError(f"missing must be one of {MISSING_STRATEGIES}, got {missing!r}")
    if fusion not in FUSIONS:
        raise HybridRecError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    blocks: dict[str, torch.Tensor] = {}
    for name, block in (("text", text), ("image", image), ("colour", colour), ("attributes", attributes)):
        if block is not None and getattr(weights, name) > 0 and block.shape[1] > 0:
            blocks[name] = F.normalize(torch.as_tensor(np.asarray(block, dtype=np.float32)), dim=1)
    if not blocks:
        raise HybridRecError("no content to fuse: give text, image or attribute features with a positive weight")
    fused = _fuse_by_cca(blocks, weights, cca_components, cca_fit_rows) if fusion == "cca" else None
    if fused is None:
        if missing == "impute" and len(blocks) > 1:
            blocks = _impute_absent_blocks(blocks, weights, impute_neighbours, device)
        fused = F.normalize(torch.cat([block * float(np.sqrt(getattr(weights, name)))
                                       for name, block in blocks.items()], dim=1), dim=1)
    empty = int((fused.abs().sum(dim=1) == 0).sum())
    if empty:
        logger.warning("%d item(s) have no content at all: they score 0 with every item", empty)
    return fused


def _fuse_by_cca(blocks: dict[str, torch.Tensor], weights: ContentWeights, n_components: int,
                 fit_rows: np.ndarray | None) -> torch.Tensor | None:
    """Sum of the text and image views' CCA projections, or None when CCA cannot be fitted."""
    from hybridrec.features.cross_modal import CrossModalCCA

    views = {}
    for view, names in (("text", TEXT_VIEW), ("image", IMAGE_VIEW)):
        present = [name for name in names if name in blocks]
        if present:
            views[view] = (torch.cat([blocks[name] * float(np.sqrt(getattr(weights, name))) for name in present],
                                     dim=1), sum(getattr(weights, name) for name in present))
    if len(views) < 2:
        logger.info("CCA fusion needs a text-side and an image-side block; concatenating instead")
        return None
    (text_view, text_weight), (image_view, image_weight) = views["text"], views["image"]
    has_text, has_image = text_view.abs().sum(dim=1) > 0, image_view.abs().sum(dim=1) > 0
    paired = has_text & has_image
    if fit_rows is not None:
        chosen = torch.zeros_like(paired)
        chosen[torch.as_tensor(np.asarray(fit_rows), dtype=torch.long)] = True
        paired &= chosen
    if int(paired.sum()) < MIN_CCA_PAIRS:
        logger.warning("only %d item(s) have both text and an image (CCA fusion needs %d); concatenating instead",
                       int(paired.sum()), MIN_CCA_PAIRS)
        return None
    alignment = CrossModalCCA(n_components=n_components).fit(text_view[paired], image_view[paired])
    logger.info("CCA fusion on %d items with text and image: %d shared dimensions, correlations %.2f .. %.2f",
                alignment.n_pairs_, len(alignment.correlations_), float(alignment.correlations_[0]),
                float(alignment.correlations_[-1]))
    fused = (alignment.transform_text(text_view) * float(np.sqrt(text_weight))
             + alignment.transform_image(image_view) * float(np.sqrt(image_weight)))
    return F.normalize(fused, dim=1)


def _impute_absent_blocks(blocks: dict[str, torch.Tensor], weights: ContentWeights, n_neighbours: int,
                          device: str | torch.device | None) -> dict[str, torch.Tensor]:
    """Fill each block's zero rows from the nearest items (on the other blocks) that have it."""
    from hybridrec.topk import exact_top_k

    filled = {}
    for name, block in blocks.items():
        present = block.abs().sum(dim=1) > 0
        others = [other * float(np.sqrt(getattr(weights, key))) for key, other in blocks.items() if key != name]
        context = F.normalize(torch.cat(others, dim=1), dim=1)
        queries = np.flatnonzero(((~present) & (context.abs().sum(dim=1) > 0)).numpy())
        if len(queries) == 0 or not bool(present.any()):
            filled[name] = block
            continue
        _, neighbours = exact_top_k(context, n_neighbours, query_index=queries,
                                    candidate_index=np.flatnonzero(present.numpy()), device=device)
        valid = torch.from_numpy(neighbours >= 0).unsqueeze(2).float()
        means = (block[torch.from_numpy(np.maximum(neighbours, 0))] * valid).sum(dim=1)
        block = block.clone()
        block[torch.from_numpy(queries)] = F.normalize(means, dim=1)
        logger.info("%s: %d item(s) without it get the mean of their %d nearest items' (on the other features)",
                    name, len(queries), n_neighbours)
        filled[name] = block
    return filled


def content_item_vectors(items: pd.DataFrame, *, text_columns: list[str] | None = None,
                         attribute_columns: list[str] | None = None, image_paths: list | None = None,
                         item_id_column: str = "item_id", weights: ContentWeights = ContentWeights(),
                         fusion: str = "cca", cca_components: int = 64, missing: str = "impute",
                         cache_dir: str | Path | None = None, device: str = "auto",
                         progress: bool = True) -> torch.Tensor:
    """Fused content vectors ``[n_items, dim]`` of ``items`` (rows in table order).

    Text (``text_columns`` through the default sentence encoder) and images (``image_paths``, one
    per item; ``None`` or a missing file = no image) are encoded with ``hybridrec.features``
    (cached in ``cache_dir``; a temporary folder when None); ``attribute_columns`` are one-hot;
    photos also give a colour histogram block (when ``weights.colour > 0``); then
    :func:`fuse_content_features` with ``weights``, ``fusion``, ``cca_components`` and ``missing``.
    """
    from hybridrec.features.feature_cache import encode_items

    text_columns, attribute_columns = list(text_columns or []), list(attribute_columns or [])
    if not text_columns and image_paths is None and not attribute_columns:
        raise HybridRecError("content-only similarity needs text columns, images or attribute columns")
    text = image = attributes = colour = None
    if text_columns or image_paths is not None:
        frame = items[[item_id_column, *text_columns]].copy()
        if image_paths is not None:
            if len(image_paths) != len(items):
                raise HybridRecError(f"{len(image_paths)} image paths for {len(items)} items")
            frame["image_path"] = [None if path is None or path == "" or (isinstance(path, float) and np.isnan(path))
                                   else str(path) for path in image_paths]
        with contextlib.ExitStack() as stack:
            if cache_dir is None:
                import tempfile

                cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-features-"))
            features = encode_items(frame, text_cols=text_columns or None,
                                    image_col="image_path" if image_paths is not None else None,
                                    cache_dir=cache_dir, item_id_col=item_id_column, device=device,
                                    progress=progress)
        text, image = features.text, features.image
        if features.image_present is not None:
            logger.info("%d of %d items have an image", int(features.image_present.sum()), len(items))
        if image_paths is not None and weights.colour > 0:
            from hybridrec.features.colour_histogram import colour_histograms

            colour, _ = colour_histograms(frame["image_path"].tolist(), progress=progress)
    if attribute_columns:
        attributes = one_hot_attributes(items, attribute_columns)
    return fuse_content_features(text=text, image=image, attributes=attributes, colour=colour, weights=weights,
                                 fusion=fusion, cca_components=cca_components, missing=missing, device=device)
