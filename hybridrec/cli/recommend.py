"""``hybridrec recommend``: top-k items for every user (or a list, or new users from a history) of a
saved model, streamed to Parquet/CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from data_builders.parsing import read_typed_table
from hybridrec.atomic import check_writable
from hybridrec.errors import HybridRecError, located

from hybridrec.cli.common_flags import add_json_argument, check_json_target, emit_json, text_stream
from hybridrec.cli.id_files import add_encoding_argument, coerce_ids, read_id_file
from hybridrec.cli.shard_merge import (add_engine_arguments, check_engine, engine_note, run_export,
                                       threads_and_merge)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recommend", help="write the top-k items of every user (Parquet/CSV)",
        description="Write user_id, item_id, score, rank for the users of a saved model, a list of them, "
                    "or new users given by their history; or merge shard files (--merge).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="DIR", help="folder of a saved model")
    source.add_argument("--merge", nargs="+", metavar="SHARD", help="shard files to check and merge into --out")
    parser.add_argument("--out", required=True, metavar="PATH", help="table to write (.parquet default, .csv)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a table already at --out (a folder there is never replaced)")
    parser.add_argument("--k", type=int, default=20, help="items per user (default 20)")
    users = parser.add_mutually_exclusive_group()
    users.add_argument("--users", metavar="FILE", help="ids of the users to recommend for (default all)")
    users.add_argument("--user-ids", nargs="+", metavar="ID", help="user ids to recommend for")
    users.add_argument("--history", metavar="FILE",
                       help="user_id,item_id rows of new users (needs a model with recommend_for_history)")
    parser.add_argument("--candidates", metavar="FILE", help="ids of the only items to recommend")
    parser.add_argument("--exclude", metavar="FILE", help="ids of items never to recommend (e.g. out of stock)")
    add_encoding_argument(parser)
    parser.add_argument("--keep-seen", action="store_true", help="also recommend items the user already has")
    parser.add_argument("--shard", metavar="I/N", help="only shard I of N (0-based) of the users")
    parser.add_argument("--format", choices=("parquet", "csv"), help="table format (default from --out suffix)")
    parser.add_argument("--batch-size", type=int, default=4096, help="users per batch (default 4096)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--explain", type=int, nargs="?", const=5, metavar="K",
                        help="add why each item is recommended: cf_term, gnn_term, cf_raw, the K (default 5) history "
                             "items contributing most to cf_raw and the attributes shared with the history")
    add_json_argument(parser, what="the export summary (rows, users, seconds)")
    add_engine_arguments(parser, "users")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hybridrec.recommender_base import RecommenderBase
    from hybridrec.similarity_export import export_recommendations

    progress = not args.no_progress
    check_writable(args.out, arg="--out", overwrite=args.overwrite)
    check_json_target(args)
    if threads_and_merge(args, "users"):
        return 0
    check_engine(args)  # before the model is read
    if args.batch_size < 1:
        raise HybridRecError(f"--batch-size must be >= 1, got {args.batch_size}")
    model = RecommenderBase.load(args.model)
    user_ids = history = candidates = None
    if args.users:
        user_ids = read_id_file(args.users, model.user_ids_, encoding=args.encoding)
    elif args.user_ids:
        user_ids = coerce_ids(pd.Series(args.user_ids), model.user_ids_, column="--user-ids")
    elif args.history:
        history = read_history(args.history, model, encoding=args.encoding)
    if args.candidates:
        candidates = read_id_file(args.candidates, model.item_ids_, encoding=args.encoding)
    if args.exclude:
        excluded = set(read_id_file(args.exclude, model.item_ids_, encoding=args.encoding))
        pool = model.item_ids_.ids if candidates is None else candidates
        candidates = [item for item in pool if item not in excluded]
    summary = run_export(args, export_recommendations, model=model, k=args.k, user_ids=user_ids, history=history,
                         filter_seen=not args.keep_seen, candidate_ids=candidates, shard=args.shard,
                         format=args.format, batch_size=args.batch_size, progress=progress,
                         source=str(args.model), overwrite=args.overwrite)
    if args.explain:
        add_explanations(summary.path, model, args.explain, args.format)
    emit_json(args, summary.to_dict())
    print(f"wrote {summary.n_rows:,} recommendations for {summary.n_queries:,} users to {summary.path} "
          f"in {summary.seconds:.1f} s ({summary.queries_per_second:,.0f} users/s{engine_note(summary)})",
          file=text_stream(args))
    return 0


def add_explanations(path, model, k: int, table_format: str | None) -> None:
    """Rewrite the recommendations at ``path`` with the columns of
    :func:`hybridrec.recommender_explain.explanation_columns` (``--explain K``, known users only)."""
    from hybridrec.atomic import atomic_path
    from hybridrec.recommender_explain import explanation_columns

    if not hasattr(model, "explain"):
        raise HybridRecError(f"--explain: a {type(model).__name__} has no explanations (only HybridRecommender)")
    csv = (table_format or Path(path).suffix.lstrip(".")) == "csv"
    table = pd.read_csv(path) if csv else pd.read_parquet(path)
    if "user_id" not in table.columns:
        raise HybridRecError("--explain needs known users (--users or --user-ids), not --history")
    reasons = pd.concat([model.explain(user, part["item_id"], k=k) for user, part in table.groupby("user_id", sort=False)],
                        ignore_index=True)
    table = table.merge(explanation_columns(reasons), on=["user_id", "item_id"], how="left")
    with atomic_path(path, overwrite=True) as tmp:
        table.to_csv(tmp, index=False) if csv else table.to_parquet(tmp, index=False)


def read_history(path: str, model, *, encoding: str = "utf-8") -> pd.DataFrame:
    """``user_id, item_id`` rows (CSV/Parquet), item ids typed like the model's (new users' ids as read).

    Raises:
        HybridRecError: naming the file: missing, empty, not ``encoding``, no rows, a missing column or
            an item id of the wrong type.
    """
    history = read_typed_table(path, encoding=encoding)
    for column in ("user_id", "item_id"):
        if column not in history.columns:
            raise HybridRecError(located(f"no column {column!r}; found {list(history.columns)}", file=path))
    history = history.copy()
    history["item_id"] = coerce_ids(history["item_id"], model.item_ids_, file=path, header_line=1, column="item_id")
    return history
