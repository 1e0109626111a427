"""Flags shared by every sub-command that reads a dataset: a named public dataset or files."""

from __future__ import annotations

import argparse
import codecs

from hybridrec.errors import HybridRecError
from hybridrec.tables import RecDataset

DATASETS = ("movielens-100k", "movielens-1m", "movielens-latest-small", "gowalla", "yelp2018", "amazon-book",
            "lightgcn")


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _event_weights(text: str) -> dict[str, float]:
    weights = {}
    for part in _csv_list(text):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected EVENT=WEIGHT pairs like view=1,cart=3, got {part!r}") from None
    return weights


def text_encoding(text: str) -> str:
    """``--encoding`` value: a codec name Python knows (checked now, not at the first bad byte)."""
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown text encoding {text!r} (e.g. utf-8, latin-1, cp1252)") from None


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataset``/``--data-dir`` or ``--interactions/--items/--users`` with column flags."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, help="a public dataset (default: movielens-100k)")
    group.add_argument("--data-dir", help="folder holding the dataset folder (else $HYBRIDREC_DATA_DIR, then the cache)")
    group.add_argument("--no-download", action="store_true", help="never download a missing public dataset")
    group.add_argument("--interactions", help="event log file (CSV, TSV, Parquet or JSON Lines)")
    group.add_argument("--items", help="item catalog file")
    group.add_argument("--users", help="user table file")
    group.add_argument("--user-col", default="user_id")
    group.add_argument("--item-col", default="item_id")
    group.add_argument("--timestamp-col", default="timestamp")
    group.add_argument("--event-col", default="event")
    group.add_argument("--weight-col", default="weight")
    group.add_argument("--rating-col", default=None)
    group.add_argument("--event-weights", type=_event_weights, default=None,
                       help="EVENT=WEIGHT pairs, e.g. view=1,cart=3,purchase=5")
    group.add_argument("--item-text-cols", type=_csv_list, default=[])
    group.add_argument("--item-attr-cols", type=_csv_list, default=[], help="categorical item columns")
    group.add_argument("--item-multi-cols", type=_csv_list, default=[], help="multi-valued item columns ('|'-separated)")
    group.add_argument("--item-numeric-cols", type=_csv_list, default=[])
    group.add_argument("--item-image-col", default=None)
    group.add_argument("--image-dir", default=None, help="folder that relative image paths are resolved against")
    group.add_argument("--user-attr-cols", type=_csv_list, default=[], help="categorical user columns")
    group.add_argument("--user-numeric-cols", type=_csv_list, default=[])
    group.add_argument("--dedupe", default="exact", choices=("none", "exact", "first", "last", "max", "sum"),
                       help="duplicate-event policy for file logs")
    group.add_argument("--strict", action="store_true", help="turn counted skips of bad rows into errors")
    group.add_argument("--encoding", type=text_encoding, default=None,
                       help="text encoding of the --interactions/--items/--users files (default utf-8)")


def load_dataset_from_args(args: argparse.Namespace) -> RecDataset:
    """Load what the flags of :func:`add_dataset_arguments` name."""
    if args.interactions and args.dataset:
        raise HybridRecError("give either --dataset or --interactions, not both")
    if args.interactions:
        from data_builders.event_log import ColumnMapping, load_from_files

        columns = ColumnMapping(user_id=args.user_col, item_id=args.item_col, timestamp=args.timestamp_col,
                                event=args.event_col, weight=args.weight_col, rating=args.rating_col)
        return load_from_files(
            args.interactions, args.items, args.users, columns=columns, event_weights=args.event_weights,
            item_id_col=args.item_col, item_text_cols=args.item_text_cols,
            item_categorical_cols=args.item_attr_cols, item_multi_cols=args.item_multi_cols,
            item_numeric_cols=args.item_numeric_cols, item_image_col=args.item_image_col,
            image_dir=args.image_dir, user_id_col=args.user_col, user_categorical_cols=args.user_attr_cols,
            user_numeric_cols=args.user_numeric_cols, dedupe=args.dedupe, strict=args.strict,
            encoding=args.encoding or "utf-8")
    if args.encoding:
        raise HybridRecError("--encoding applies to --interactions/--items/--users files; the public datasets' "
                             "encodings are known")
    name = args.dataset or "movielens-100k"
    download = not args.no_download
    if name == "movielens-100k":
        from data_builders.movielens import load_movielens_100k

        return load_movielens_100k(args.data_dir, strict=args.strict, download=download)
    if name in ("gowalla", "yelp2018", "amazon-book", "lightgcn"):
        from data_builders.lightgcn import load_lightgcn

        # "lightgcn": any folder of that format, given as --data-dir.
        return load_lightgcn(args.data_dir, name=None if name == "lightgcn" else name, strict=args.strict)
    if name == "movielens-1m":
        from data_builders.movielens import load_movielens_1m

        return load_movielens_1m(args.data_dir, strict=args.strict, download=download)
    from data_builders.movielens import load_movielens_latest_small

    return load_movielens_latest_small(args.data_dir, strict=args.strict, download=download)
