"""``hybridrec search``: rank items for a free-text query, from a saved model or a content-only index."""

from __future__ import annotations

import argparse
import json

from hybridrec.errors import HybridRecError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="rank items for a free-text query",
        description="Rank items for a query through the items' text encoder and the text-image alignment, "
                    "from a saved model (--model, optionally personalised with --user) or from a content-only "
                    "index written by `hybridrec export-similar --items ... --search-index DIR` (--index).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="DIR", help="folder of a saved model (trained with item text)")
    source.add_argument("--index", metavar="DIR", help="folder of a content-only search index")
    parser.add_argument("--query", required=True, help='what to look for, e.g. "red running shoes"')
    parser.add_argument("--k", type=int, default=20, help="results (default 20)")
    parser.add_argument("--user", metavar="ID", help="personalise for this user (--model only)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.model:
        from hybridrec.recommender import HybridRecommender

        model = HybridRecommender.load(args.model)
        user = None if args.user is None else _user_id(model, args.user)
        results = model.search(args.query, k=args.k, user_id=user)
    else:
        if args.user is not None:
            raise HybridRecError("--user needs --model: a content-only index knows no users")
        from hybridrec.features.query_search import QuerySearchIndex
        from hybridrec.recommender_search import ranked_search_frame

        results = ranked_search_frame(QuerySearchIndex.load(args.index), args.query, args.k)
    if args.json:
        rows = [{"item_id": _plain(row.item_id), "score": float(row.score), "rank": int(row.rank)}
                for row in results.itertuples()]
        print(json.dumps({"query": args.query, "k": args.k, "user": args.user, "results": rows}))
    else:
        print(results.drop(columns=["query"]).to_string(index=False))
    return 0


def _user_id(model, text: str):
    """The model's user id spelled ``text`` (ids may be integers)."""
    for candidate in (text, *([int(text)] if text.lstrip("-").isdigit() else [])):
        if candidate in model.user_ids_:
            return candidate
    raise HybridRecError(f"--user: unknown user id {text!r}")


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def write_content_index(args: argparse.Namespace, items, image_paths: list | None) -> None:
    """``export-similar --items ... --search-index DIR``: write the items' query search index to DIR."""
    import tempfile

    from hybridrec.atomic import check_writable
    from hybridrec.features.query_search import SEARCH_INDEX_FOLDER, build_search_index

    check_writable(args.search_index, arg="--search-index", kind=SEARCH_INDEX_FOLDER, overwrite=args.overwrite)
    text_columns = [column.strip() for column in (args.text_cols or "").split(",") if column.strip()]
    if not text_columns:
        raise HybridRecError("--search-index needs --text-cols: queries are compared with the item texts")
    table = items.assign(_search_image=image_paths) if image_paths is not None else items
    with tempfile.TemporaryDirectory(prefix="hybridrec-search-") as scratch:
        index = build_search_index(table, text_columns=text_columns,
                                   image_column="_search_image" if image_paths is not None else None,
                                   item_id_column=args.item_id_col, cache_dir=args.cache_dir or scratch,
                                   cca_components=args.cca_components, device=args.device,
                                   progress=not args.no_progress)
    index.save(args.search_index, overwrite=args.overwrite)
    print(f"wrote the search index of {len(index):,} items to {args.search_index}")
