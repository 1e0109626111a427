"""``hybridrec encode``: compute and cache item text and image features, printing throughput."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hybridrec.cli.common_flags import add_device_argument, add_json_argument, check_json_target, emit_json, text_stream
from hybridrec.cli.dataset_args import text_encoding
from hybridrec.errors import HybridRecError
from hybridrec.features.image_paths import resolve_image_paths, validate_image_pattern

ENCODE_DATASETS = ("movielens-100k",)
MOVIELENS_TEMPLATE = "{title}. Genres: {genres}"


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode", help="compute and cache item text and image features",
        description="Encode item text (transformer sentence embeddings) and images (CNN embeddings) into a "
                    "feature cache; only new or changed items are encoded.")
    source = parser.add_argument_group("items")
    source.add_argument("--dataset", choices=ENCODE_DATASETS,
                        help="a public dataset (titles + genres, TMDB posters when present)")
    source.add_argument("--data-dir",
                        help="folder holding the dataset folder (else $HYBRIDREC_DATA_DIR, then the cache)")
    source.add_argument("--items", type=Path, help="items table (CSV, TSV, Parquet or JSON Lines)")
    source.add_argument("--item-id-col", default="item_id", help="id column of --items (default: item_id)")
    source.add_argument("--encoding", type=text_encoding, default="utf-8",
                        help="text encoding of --items (default utf-8)")
    source.add_argument("--limit", type=int, help="encode only the first N items")
    text = parser.add_argument_group("text")
    text.add_argument("--text-cols", type=_csv_list, default=None, help="comma-separated text columns")
    text.add_argument("--text-template", help='e.g. "{title}. Genres: {genres}" (lists are joined with ", ")')
    text.add_argument("--text-model", help="hub name or local folder (default: offline all-MiniLM-L6-v2)")
    text.add_argument("--no-text", action="store_true", help="skip text features")
    image = parser.add_argument_group("images")
    image.add_argument("--image-col", help="column with image paths (relative ones resolved against --image-dir)")
    image.add_argument("--image-dir", type=Path, help="folder of the images")
    image.add_argument("--image-pattern", default="{item_id}.jpg",
                       help="file name inside --image-dir when there is no --image-col (default: {item_id}.jpg)")
    image.add_argument("--image-model",
                       help="ARCH[:WEIGHTS], e.g. resnet50, resnet50:IMAGENET1K_V1, efficientnet_lite0:/path/w.pth "
                            "(default: offline EfficientNet-Lite0)")
    image.add_argument("--num-workers", type=int, help="image reading processes (default: min(2, cpus))")
    image.add_argument("--no-images", action="store_true", help="skip image features")
    parser.add_argument("--out", type=Path, required=True, help="feature cache folder")
    parser.add_argument("--batch-size", type=int, help="items per forward pass")
    add_device_argument(parser)
    add_json_argument(parser, what="the statistics")
    parser.set_defaults(handler=run)


def _load_items(args: argparse.Namespace):
    """Items table, id column, text columns, template and image column named by the flags."""
    from data_builders.parsing import LINE, read_table
    from hybridrec.load_report import LoadReport

    if bool(args.dataset) == bool(args.items):
        raise HybridRecError("give exactly one of --dataset or --items")
    if args.dataset:
        from data_builders.movielens import load_movielens_100k

        items = load_movielens_100k(args.data_dir).items
        id_col, template = "item_id", args.text_template
        text_cols = args.text_cols or (None if template else ["title", "genres"])
        template = template or (MOVIELENS_TEMPLATE if text_cols == ["title", "genres"] else None)
        image_col = args.image_col or ("image_path" if "image_path" in items.columns else None)
    else:
        report = LoadReport()
        items = read_table(args.items, report=report, encoding=args.encoding).drop(columns=[LINE], errors="ignore")
        for line in report.lines():
            print(f"warning: {line}", file=sys.stderr)
        id_col, text_cols, template, image_col = args.item_id_col, args.text_cols, args.text_template, args.image_col
        if id_col not in items.columns:
            raise HybridRecError(f"{args.items}: no id column {id_col!r} (set --item-id-col); "
                                 f"columns: {list(items.columns)}")
    if args.limit is not None:
        items = items.head(args.limit)
    if args.image_dir is not None:
        items, image_col = _image_paths(items, id_col, image_col, args.image_dir, args.image_pattern)
    if args.no_text:
        text_cols, template = None, None
    if args.no_images:
        image_col = None
    return items, id_col, text_cols, template, image_col


def _image_paths(items, id_col: str, image_col: str | None, image_dir: Path, pattern: str):
    """Add a ``__image_path__`` column: ``image_dir / value`` of ``image_col``, else ``image_dir / pattern``.

    Paths that resolve outside ``image_dir`` are refused (the item has no image) and reported on stderr.
    """
    if not image_dir.is_dir():
        raise HybridRecError(f"--image-dir {image_dir} is not a folder")
    validate_image_pattern(pattern)
    items = items.copy()
    if image_col is not None and image_col not in items.columns:
        raise HybridRecError(f"no image column {image_col!r}; columns: {list(items.columns)}")
    found = resolve_image_paths(items[id_col].tolist(), None if image_col is None else items[image_col].tolist(),
                                image_dir=image_dir, pattern=None if image_col is not None else pattern,
                                column=image_col)
    for line in found.lines():
        print(f"warning: {line}", file=sys.stderr)
    items["__image_path__"] = found.paths
    return items, "__image_path__"


def run(args: argparse.Namespace) -> int:
    from hybridrec.features.feature_cache import encode_items

    check_json_target(args)
    items, id_col, text_cols, template, image_col = _load_items(args)
    if not text_cols and template is None and image_col is None:
        raise HybridRecError("nothing to encode: give --text-cols / --text-template and/or --image-col / --image-dir")
    features = encode_items(items, text_cols=text_cols, text_template=template, image_col=image_col,
                            cache_dir=args.out, text_encoder=args.text_model, image_encoder=args.image_model,
                            item_id_col=id_col, device=args.device, batch_size=args.batch_size,
                            num_workers=args.num_workers, progress=sys.stderr.isatty())
    emit_json(args, {"items": len(features), "cache": str(args.out),
                     **{name: stats.to_dict() for name, stats in features.stats.items()}})
    out = text_stream(args)
    print(f"{len(features)} items -> {args.out}", file=out)
    for stats in features.stats.values():
        speed = f"{stats.items_per_second:.1f} items/s" if stats.items_per_second else "- items/s (all cached)"
        absent = "empty" if stats.modality == "text" else "without a readable image"
        print(f"{stats.modality:<5}: {speed}, {stats.encoded} encoded, {stats.reused} reused, "
              f"{stats.absent} {absent}" + (f", {stats.truncated} truncated" if stats.truncated else "")
              + f" [{stats.model}, load {stats.load_seconds:.1f} s, encode {stats.encode_seconds:.1f} s]", file=out)
    return 0
