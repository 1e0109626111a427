"""``hybridrec export-similar``: item–item similarity table from a saved model or from content alone,
sharded, or merged from shards."""

from __future__ import annotations

import argparse
import math
import sys

from data_builders.parsing import read_typed_table
from hybridrec.atomic import check_writable
from hybridrec.errors import HybridRecError, located
from hybridrec.features.image_paths import resolve_image_paths
from hybridrec.id_map import IdMap

from hybridrec.cli.common_flags import add_device_argument, add_json_argument, check_json_target, emit_json, text_stream
from hybridrec.cli.id_files import add_encoding_argument, read_id_file
from hybridrec.cli.shard_merge import (add_engine_arguments, check_engine, engine_note, run_export,
                                       threads_and_merge)


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
    add_device_argument(parser)
    add_json_argument(parser, what="the export summary (rows, seconds, method, recall)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(parser, "query items")
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
    content.add_argument("--search-index", metavar="DIR",
                         help="also write a query search index of these items (for `hybridrec search --index DIR`)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    progress = not args.no_progress
    check_writable(args.out, arg="--out", overwrite=args.overwrite)
    check_json_target(args)
    if threads_and_merge(args, "items"):
        return 0
    check_engine(args)  # before the model is read
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
    emit_json(args, summary.to_dict())
    out = text_stream(args)
    print(f"wrote {summary.n_rows:,} rows for {summary.n_queries:,} items to {summary.path} "
          f"in {summary.seconds:.1f} s ({rate:,.0f} items/s, {summary.method}{engine_note(summary)})", file=out)
    if summary.recall_at_k is not None:
        print(f"recall@{args.k} of the approximate search against exact "
              f"({min(args.recall_sample, summary.n_queries)} sampled items): {summary.recall_at_k:.4f}", file=out)
    return 0


def _export_from_model(args: argparse.Namespace, options: dict):
    from hybridrec.recommender_base import RecommenderBase
    from hybridrec.similarity_export import export_model_similar_items

    model = RecommenderBase.load(args.model)
    if args.candidates:
        options["candidate_ids"] = read_id_file(args.candidates, model.item_ids_, encoding=args.encoding)
    if args.items_list:
        options["query_ids"] = read_id_file(args.items_list, model.item_ids_, encoding=args.encoding)
    return run_export(args, export_model_similar_items, model=model, metric=args.metric, source=str(args.model),
                      **options)


def _export_from_content(args: argparse.Namespace, options: dict):
    from hybridrec.features.content_fusion import ContentWeights, content_item_vectors
    from hybridrec.similarity_export import export_similar_items

    items = read_typed_table(args.items, encoding=args.encoding)
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
    if args.search_index:  # the query search index of the same items: hybridrec/cli/search.py
        from hybridrec.cli.search import write_content_index

        write_content_index(args, items, image_paths)
    return run_export(args, export_similar_items, item_ids=item_ids, embeddings=vectors, metric="cosine",
                      source=str(args.items), **options)


def _split_columns(text: str | None) -> list[str]:
    return [column.strip() for column in text.split(",") if column.strip()] if text else []
