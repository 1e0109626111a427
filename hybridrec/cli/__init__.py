"""The ``hybridrec`` command: a thin layer that parses flags and calls library functions.

Each sub-command lives in its own module here and exposes ``register(subparsers)``, which adds
its parser and sets ``handler`` to a function taking the parsed namespace and returning an exit
code. Library code never imports this package.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from data_builders.errors import HybridRecError

# Sub-command modules, in the order ``hybridrec --help`` lists them.
COMMAND_MODULES = ("build_graph", "encode", "train", "evaluate", "export_similar", "recommend")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridrec", description="Graph-based hybrid recommendation.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"hybridrec.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # torch_geometric's import triggers torch's own deprecation notice; it is noise for users.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose + 1, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except HybridRecError as err:
        print(f"hybridrec {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
