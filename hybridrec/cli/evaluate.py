"""``hybridrec evaluate``: split a dataset, fit baselines (or load saved models), report metrics.

Also runnable as ``python -m hybridrec.cli.evaluate ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hybridrec.cli.common_flags import STDOUT, add_json_argument, check_json_target, emit_json, text_stream
from hybridrec.cli.dataset_args import add_dataset_arguments, load_dataset_from_args
from hybridrec.cli.train import add_model_arguments, build_model, model_dataset

BASELINE_NAMES = ("popularity", "itemknn", "mf", "ease")
SPLIT_NAMES = ("random", "temporal", "user-temporal", "leave-last", "cold-item", "cold-user", "given")


DESCRIPTION = ("Split the interactions, fit the chosen baselines on the training part (or load saved models "
               "as they are) and report precision/recall/F1/NDCG/MAP/hit rate/MRR/coverage/novelty@K "
               "for the warm, cold_item and cold_user segments of the test set.")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="offline evaluation of baselines or saved models (full ranking, by segment)",
        description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evaluate``."""
    models = parser.add_argument_group("models (at least one)")
    models.add_argument("--baseline", nargs="+", choices=BASELINE_NAMES, default=[], metavar="NAME",
                        help=f"baselines to fit and evaluate: {', '.join(BASELINE_NAMES)}")
    models.add_argument("--model", nargs="+", default=[], metavar="DIR",
                        help="saved model folder(s), evaluated as they are on the split's test set")
    models.add_argument("--hybrid", action="store_true",
                        help="fit the hybrid model on the split's training part and evaluate it")
    add_dataset_arguments(parser)
    add_model_arguments(parser)
    split = parser.add_argument_group("split")
    split.add_argument("--split", choices=SPLIT_NAMES, default="random",
                       help="split kind (default: random per user; given: the train/test pair the dataset comes "
                            "with, e.g. gowalla, scored as published)")
    split.add_argument("--ratio", type=float, default=0.2, help="test share (default 0.2)")
    split.add_argument("--valid-ratio", type=float, default=0.0, help="validation share, kept apart from test")
    split.add_argument("--cold-share", type=float, default=0.2,
                       help="cold-item / cold-user: share of items / users held out of training")
    split.add_argument("--seed", type=int, default=0, help="seeds the split and the MF baseline")
    split.add_argument("--min-rating", type=float, default=None,
                       help="keep only interactions rated at least this (positives), e.g. 4")
    split.add_argument("--min-positives", type=int, default=None,
                       help="keep only users with at least this many items (default: 5 with --min-rating, else 0)")
    metrics = parser.add_argument_group("metrics and output")
    metrics.add_argument("--k", type=int, nargs="+", default=[10, 20], help="cut-offs (default: 10 20)")
    metrics.add_argument("--batch-size", type=int, default=1024, help="users scored at once")
    add_json_argument(metrics, what="the report")
    metrics.add_argument("--report", metavar="DIR", help="write report.md and recall_ndcg.png into DIR")
    metrics.add_argument("--overwrite", action="store_true", help="replace a file already at --json or in --report")
    tuning = parser.add_argument_group("baseline settings")
    tuning.add_argument("--neighbors", type=int, default=100, help="item-kNN neighbours kept per item")
    tuning.add_argument("--shrinkage", type=float, default=0.0, help="item-kNN cosine shrinkage")
    tuning.add_argument("--factors", type=int, default=64, help="MF factor dimension")
    tuning.add_argument("--epochs", type=int, default=30, help="MF training epochs")


def _baseline_params(name: str, args: argparse.Namespace) -> dict:
    if name == "itemknn":
        return {"n_neighbors": args.neighbors, "shrinkage": args.shrinkage}
    if name == "mf":
        return {"n_factors": args.factors, "epochs": args.epochs, "seed": args.seed}
    return {}


def run(args: argparse.Namespace) -> int:
    from hybridrec.errors import HybridRecError
    from evaluation.baselines import make_baseline
    from evaluation.protocol import EvaluationConfig, dataset_summary, evaluate_model, fit_and_evaluate
    from evaluation.report import format_table, json_report, report_files, report_notes, write_markdown_report
    from evaluation.splitters import SplitConfig, make_split
    from hybridrec.atomic import check_writable
    from hybridrec.recommender_base import RecommenderBase

    if not args.baseline and not args.model and not args.hybrid:
        raise HybridRecError("nothing to evaluate: give --hybrid, --baseline NAME... and/or --model DIR...")
    check_json_target(args)
    out = text_stream(args)
    for report_file in report_files(args.report) if args.report else []:
        check_writable(report_file, arg="--report", overwrite=args.overwrite)
    min_positives = args.min_positives if args.min_positives is not None else (5 if args.min_rating is not None else 0)
    split_config = SplitConfig(kind=args.split, test_ratio=args.ratio, valid_ratio=args.valid_ratio,
                               cold_share=args.cold_share, seed=args.seed, min_rating=args.min_rating,
                               min_positives=min_positives)
    config = EvaluationConfig(ks=tuple(args.k), batch_size=args.batch_size)
    dataset = load_dataset_from_args(args)
    split = make_split(dataset.interactions, split_config)
    print(split.summary(), file=out)
    provenance = dataset_summary(dataset.interactions, dataset.name)

    models = {name: make_baseline(name, **_baseline_params(name, args)) for name in args.baseline}
    if args.hybrid:
        models["hybridrec"] = build_model(args)
    catalog = model_dataset(dataset, args)  # the tables and column roles every model is fitted with
    results = {name: fit_and_evaluate(model, split, dataset=provenance, catalog=catalog, config=config)
               for name, model in models.items()}
    for folder in args.model:
        model = RecommenderBase.load(folder)
        label = Path(folder).name or str(folder)
        results[label] = evaluate_model(model, split, dataset=provenance, config=config)

    print(format_table(results), file=out)
    for note in report_notes(results):
        print(f"note: {note}", file=out)
    emit_json(args, json_report(results))
    if args.json and args.json != STDOUT:
        print(f"JSON report: {args.json}", file=out)
    if args.report:
        print(f"Markdown report: {write_markdown_report(results, args.report, overwrite=args.overwrite)}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``evaluate`` alone (without the other sub-commands)."""
    from hybridrec.errors import HybridRecError

    parser = argparse.ArgumentParser(prog="hybridrec evaluate", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose + 1, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except HybridRecError as err:
        print(f"hybridrec evaluate: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
