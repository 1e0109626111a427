"""``hybridrec add-items``: add products that arrived after training to a saved model, without refitting."""

from __future__ import annotations

import argparse
import time

from hybridrec.cli.common_flags import add_device_argument, add_json_argument, check_json_target, emit_json, text_stream


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "add-items", help="add new items to a saved model without refitting",
        description="Encode the new items' content (feature cache reused), give them CF columns from the model's "
                    "content map and GNN embeddings from its content path, add them to the search index, and save "
                    "the model to --out. The items table has item_id and the text/image/attribute columns the "
                    "model was fitted with.")
    parser.add_argument("--model", required=True, metavar="DIR", help="folder of a saved model")
    parser.add_argument("--items", required=True, metavar="FILE", help="the new items (.csv or .parquet)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to save the updated model to")
    parser.add_argument("--update", action="store_true",
                        help="replace the content-derived parts of ids the model already knows (default: refuse them)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model saved at --out")
    add_json_argument(parser)
    add_device_argument(parser, what=" for encoding the new items' content")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from data_builders.parsing import read_typed_table
    from hybridrec.atomic import check_writable
    from hybridrec.recommender import HybridRecommender
    from hybridrec.recommender_base import MODEL_FOLDER

    check_json_target(args)
    check_writable(args.out, arg="--out", kind=MODEL_FOLDER, overwrite=args.overwrite)
    items = read_typed_table(args.items)
    model = HybridRecommender.load(args.model)
    model.device = args.device
    before = len(model.item_ids_)
    started = time.perf_counter()
    model.add_items(items, update=args.update)
    seconds = time.perf_counter() - started
    model.save(args.out, overwrite=args.overwrite)
    summary = {"model": args.model, "out": args.out, "items_given": len(items),
               "items_added": len(model.item_ids_) - before, "items_updated": len(items) - (len(model.item_ids_) - before),
               "n_items": len(model.item_ids_), "add_seconds": round(seconds, 3)}
    print(f"added {summary['items_added']:,} and updated {summary['items_updated']:,} item(s) in {seconds:.2f} s; "
          f"{summary['n_items']:,} items; saved to {args.out}", file=text_stream(args))
    emit_json(args, summary)
    return 0
