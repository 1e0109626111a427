"""``hybridrec build-graph``: tables -> user–item–attribute graph, with a summary."""

from __future__ import annotations

import argparse

from hybridrec.atomic import check_writable
from hybridrec.cli.common_flags import add_json_argument, check_json_target, emit_json, text_stream
from hybridrec.cli.dataset_args import add_dataset_arguments, load_dataset_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build-graph", help="build the user–item–attribute graph and summarise it",
                                   description="Build the user–item–attribute graph (PyG HeteroData) and print a summary.")
    add_dataset_arguments(parser)
    parser.add_argument("--numeric-buckets", type=int, default=5, help="quantile buckets per numeric attribute")
    parser.add_argument("--config", help="TOML file with a [graph] table")
    add_json_argument(parser)
    parser.add_argument("--out", help="save the graph to this folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a graph already saved at --out and a file at --json "
                             "(any other folder is never replaced)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hybridrec.tables import content_summary
    from hybridrec.graph import GRAPH_FOLDER, GraphConfig, build_graph

    if args.out:
        check_writable(args.out, arg="--out", kind=GRAPH_FOLDER, overwrite=args.overwrite)
    check_json_target(args)
    dataset = load_dataset_from_args(args)
    config = GraphConfig.from_toml(args.config) if args.config else GraphConfig(numeric_buckets=args.numeric_buckets)
    graph = build_graph(dataset, config)
    summary = {"dataset": dataset.name, **graph.summary(), "content": content_summary(dataset),
               "load_report": dataset.report.to_dict()}
    if args.out:
        graph.save(args.out, overwrite=args.overwrite)
        summary["saved_to"] = str(args.out)
    emit_json(args, summary)
    print(format_summary(summary), file=text_stream(args))
    return 0


def format_summary(summary: dict) -> str:
    """Plain-text rendering of a graph summary for the terminal."""
    lines = [f"dataset: {summary['dataset']}", "nodes:"]
    lines += [f"  {name:<24} {count:>10,}" for name, count in summary["nodes"].items()]
    lines.append("edges:")
    lines += [f"  {name:<36} {count:>10,}" for name, count in summary["edges"].items()]
    lines.append(f"density (user–item): {summary['density']:.5f}")
    for side in ("user_degree", "item_degree"):
        stats = summary[side]
        lines.append(f"{side.replace('_', ' ')}: min {stats.get('min')} median {stats.get('median')} "
                     f"mean {stats.get('mean')} max {stats.get('max')}")
    lines.append(f"cold items: {summary['cold_items']:,}  cold users: {summary['cold_users']:,}")
    content = summary["content"]
    lines.append(f"items with text: {content['items_with_text']:,}  with image: {content['items_with_image']:,}")
    for entry in summary["load_report"]["skipped"]:
        lines.append(f"skipped {entry['count']:,} row(s): {entry['file']}: {entry['reason']}")
    if "saved_to" in summary:
        lines.append(f"graph saved to {summary['saved_to']}")
    return "\n".join(lines)
