"""``hybridrec export-similar``: item–item similarity table from a saved model or from content alone,
sharded, or merged from shards."""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.parsing import LINE, read_parquet, read_text
from hybridrec.atomic import check_writable
from hybridrec.errors import HybridRecError, located
from hybridrec.features.image_paths import resolve_image_paths
from hybridrec.id_map import IdMap
from hybridrec.load_report import LoadReport

from hybridrec.cli.dataset_args import text_encoding

logger = logging.getLogger(__name__)

ID_COLUMN_NAMES = ("item_id", "user_id", "id")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-similar", help="write the top-k similar items of every item (Parquet/CSV)",
        description="Write item_id, similar_item_id, score, rank for every item (or a list), from a saved "
                    "model (--model), from item content alone (--items), or merge shard files (--merge).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="DIR", help="folder of a saved model")
    source.add_argument("--items", metavar="FILE", help="item table (CSV/Parquet): content-only similarity")
    source.add_argument("--merge", nargs="+", metavar="SHARD", help="shard files to check and merge into --out")
    parser.add_argument("--out", required=True, metavar="PATH", help="table to write (.parquet default, .csv)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a table already at --out (a folder there is never replaced)")
    parser.add_argument("--k", type=int, default=50, help="neighbours per item (default 50)")
    parser.add_argument("--metric", choices=("cosine", "dot"),
                        help="vector similarity (default cosine; not for models without item vectors)")
    parser.add_argument("--min-score", type=float, metavar="X", help="drop neighbours scoring below X")
    parser.add_argument("--candidates", metavar="FILE", help="ids of the only items that may be neighbours")
    parser.add_argument("--items-list", metavar="FILE", help="ids of the items to find neighbours for (default all)")
    add_encoding_argument(parser)
    parser.add_argument("--include-self", action="store_true", help="an item may be its own neighbour")
    parser.add_argument("--shard", metavar="I/N", help="compute only shard I of N (0-based) of the query items")
    parser.add_argument("--format", choices=("parquet", "csv"), help="table format (default from --out suffix)")
    parser.add_argument("--approx", choices=("faiss",), help="approximate search (needs hybridrec[ann])")
    parser.add_argument("--ann-index", choices=("hnsw", "ivf"), default="hnsw", help="faiss index kind")
    parser.add_argument("--recall-sample", type=int, default=1000, metavar="N",
                        help="queries on which --approx recall@k is measured against exact (0: skip)")
    parser.add_argument("--memory-budget", type=float, default=256, metavar="MIB",
                        help="ceiling for one block of scores in MiB (default 256)")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    content = parser.add_argument_group("content-only (--items)")
    content.add_argument("--item-id-col", default="item_id", help="item id column (default item_id)")
    content.add_argument("--text-cols", metavar="COLS", help="comma-separated text columns")
    content.add_argument("--attr-cols", metavar="COLS", help="comma-separated categorical columns (one-hot)")
    content.add_argument("--image-dir", metavar="DIR", help="folder of item images")
    content.add_argument("--image-pattern", default="{item_id}.jpg", help="image file name in --image-dir")
    content.add_argument("--image-col", metavar="COL", help="column holding image paths")
    content.add_argument("--text-weight", type=float, help="weight of the text block")
    content.add_argument("--image-weight", type=float, help="weight of the image block")
    content.add_argument("--attr-weight", type=float, help="weight of the attribute block")
    content.add_argument("--colour-weight", type=float,
                         help="weight of the photos' colour histograms (0 turns them off)")
    content.add_argument("--fusion", choices=("cca", "concat"), default="cca",
                         help="cca (default): align the text and image views in a space learned from the items "
                              "that have both (CCA); concat: weighted concatenation of the blocks")
    content.add_argument("--cca-components", type=int, default=64, metavar="N",
                         help="dimension of the shared text-image space (--fusion cca, default 64)")
    content.add_argument("--missing", choices=("impute", "zero"), default="impute",
                         help="--fusion concat: an item without an image (or text): impute that block from its "
                              "nearest items (default) or leave it zero and re-weight the rest")
    content.add_argument("--cache-dir", metavar="DIR", help="feature cache folder (default: none kept)")
    parser.set_defaults(handler=run)


def add_encoding_argument(parser: argparse.ArgumentParser) -> None:
    """``--encoding`` of the text files a command reads (tables and id lists)."""
    parser.add_argument("--encoding", type=text_encoding, default="utf-8",
                        help="text encoding of the CSV and id-list files read (default utf-8)")


def threads_and_merge(args: argparse.Namespace, noun: str) -> bool:
    """Apply ``--threads``; with ``--merge``, merge the shards into ``--out`` and return True.

    Shared by ``export-similar`` and ``recommend`` (``noun`` names what a shard's queries are).
    """
    import torch

    from hybridrec.topk_table import merge_shards

    if args.threads is not None and args.threads < 1:
        raise HybridRecError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.merge:
        return False
    summary = merge_shards(args.merge, args.out, format=args.format, progress=not args.no_progress,
                           overwrite=args.overwrite)
    print(f"merged {len(args.merge)} shard(s): {summary.n_rows:,} rows for {summary.n_queries:,} {noun} "
          f"-> {summary.path}")
    return True


def run(args: argparse.Namespace) -> int:

    progress = not args.no_progress
    check_writable(args.out, arg="--out", overwrite=args.overwrite)
    if threads_and_merge(args, "items"):
        return 0
    if args.k < 1:
        raise HybridRecError(f"--k must be >= 1, got {args.k}")
    if args.min_score is not None and not math.isfinite(args.min_score):
        raise HybridRecError(f"--min-score must be a finite number, got {args.min_score}")
    options = dict(k=args.k, min_score=args.min_score, include_self=args.include_self, shard=args.shard,
                   format=args.format, approx=args.approx, recall_sample=args.recall_sample,
                   memory_budget_bytes=int(args.memory_budget * 2**20), device=args.device, progress=progress,
                   overwrite=args.overwrite)
    if args.approx:
        from hybridrec.ann_index import AnnConfig

        options["ann_config"] = AnnConfig(kind=args.ann_index)
    if args.model:
        summary = _export_from_model(args, options)
    else:
        summary = _export_from_content(args, options)
    rate = summary.queries_per_second
    print(f"wrote {summary.n_rows:,} rows for {summary.n_queries:,} items to {summary.path} "
          f"in {summary.seconds:.1f} s ({rate:,.0f} items/s, {summary.method})")
    if summary.recall_at_k is not None:
        print(f"recall@{args.k} of the approximate search against exact "
              f"({min(args.recall_sample, summary.n_queries)} sampled items): {summary.recall_at_k:.4f}")
    return 0


def _export_from_model(args: argparse.Namespace, options: dict):
    from hybridrec.recommender_base import RecommenderBase
    from hybridrec.similarity_export import export_model_similar_items

    model = RecommenderBase.load(args.model)
    if args.candidates:
        options["candidate_ids"] = read_id_file(args.candidates, model.item_ids_, encoding=args.encoding)
    if args.items_list:
        options["query_ids"] = read_id_file(args.items_list, model.item_ids_, encoding=args.encoding)
    return export_model_similar_items(model, args.out, metric=args.metric, source=str(args.model), **options)


def _export_from_content(args: argparse.Namespace, options: dict):
    from hybridrec.features.content_fusion import ContentWeights, content_item_vectors
    from hybridrec.similarity_export import export_similar_items

    items = read_table_file(args.items, encoding=args.encoding)
    if args.item_id_col not in items.columns:
        raise HybridRecError(located(f"no item id column {args.item_id_col!r}; found {list(items.columns)}",
                                     file=args.items))
    if args.metric == "dot":
        raise HybridRecError("content-only similarity is cosine over the fused features; --metric dot does not apply")
    if args.cca_components < 1:
        raise HybridRecError(f"--cca-components must be >= 1, got {args.cca_components}")
    item_ids = IdMap(items[args.item_id_col].to_numpy(), kind="item")
    image_paths = None
    if args.image_dir and args.image_col:
        raise HybridRecError("give --image-dir or --image-col, not both")
    if args.image_dir:
        found = resolve_image_paths(item_ids.ids.tolist(), image_dir=args.image_dir, pattern=args.image_pattern,
                                    file=args.items)
        for line in found.lines():
            print(f"warning: {line}", file=sys.stderr)
        image_paths = found.paths
    elif args.image_col:
        if args.image_col not in items.columns:
            raise HybridRecError(located(f"no image column {args.image_col!r}", file=args.items))
        image_paths = items[args.image_col].tolist()
    weights = ContentWeights.from_overrides(text=args.text_weight, image=args.image_weight, attributes=args.attr_weight,
                                            colour=args.colour_weight)
    vectors = content_item_vectors(items, text_columns=_split_columns(args.text_cols),
                                   attribute_columns=_split_columns(args.attr_cols), image_paths=image_paths,
                                   item_id_column=args.item_id_col, weights=weights, fusion=args.fusion,
                                   cca_components=args.cca_components, missing=args.missing,
                                   cache_dir=args.cache_dir,
                                   device=args.device,
                                   progress=options["progress"])
    if args.candidates:
        options["candidate_ids"] = read_id_file(args.candidates, item_ids, encoding=args.encoding)
    if args.items_list:
        options["query_ids"] = read_id_file(args.items_list, item_ids, encoding=args.encoding)
    return export_similar_items(args.out, item_ids, embeddings=vectors, metric="cosine", source=str(args.items),
                                **options)


def _split_columns(text: str | None) -> list[str]:
    return [column.strip() for column in text.split(",") if column.strip()] if text else []


def read_table_file(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """A CSV or Parquet table (by suffix) with at least one row; CSV values typed by pandas.

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
            or an id is not an integer where the map holds integers (naming the line).
    """
    path = Path(path)
    header_line = 1
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        table = read_table_file(path)
        header_line = 0
    else:
        text = read_text(path, encoding)
        lines = text.splitlines()
        sep = "\t" if suffix == ".tsv" else ","
        first = next(csv.reader([lines[0]], delimiter=sep), [])
        known = [column] if column else list(ID_COLUMN_NAMES)
        if suffix in (".csv", ".tsv") or any(field.strip() in known for field in first):
            try:
                table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
                raise HybridRecError(f"{path}: cannot read as CSV: {err}") from None
            table.columns = [str(name).strip() for name in table.columns]
        else:
            table = pd.DataFrame({"id": [line.strip() for line in lines]})
            header_line = 0
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
        values = values[values != ""]
    if values.empty:
        raise HybridRecError(located("lists no id", file=path, column=name if header_line else None))
    return coerce_ids(values, id_map, file=path, header_line=header_line, column=name)


def coerce_ids(values: pd.Series, id_map: IdMap, *, file: object = None, header_line: int = 0,
               column: str | None = None) -> np.ndarray:
    """``values`` converted to the dtype of ``id_map``'s ids (integers or strings)."""
    if id_map.ids.dtype.kind in "iu":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise HybridRecError(located(f"{id_map.kind} id {values.iloc[position]!r} is not an integer",
                                         file=file, line=int(values.index[position]) + header_line + 1, column=column))
        return numbers.to_numpy().astype(np.int64)
    return values.astype(str).to_numpy(dtype=object)
