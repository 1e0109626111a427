"""The ``hybridrec`` command: a thin layer that parses flags and calls library functions.

Each sub-command lives in its own module here and exposes ``register(subparsers)``, which adds
its parser and sets ``handler`` to a function taking the parsed namespace and returning an exit
code. Library code never imports this package.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import sys
import warnings

from hybridrec.errors import HybridRecError

# Sub-command modules, in the order ``hybridrec --help`` lists them.
COMMAND_MODULES = ("build_graph", "encode", "train", "evaluate", "export_similar", "recommend", "search", "serve",
                   "add_items")
#: The modules of every recommender class a saved model may name: imported before a command given
#: ``--model`` runs, so that each class has registered itself (a model folder is loaded only as a
#: registered class; see :mod:`hybridrec.model_loading`).
RECOMMENDER_MODULES = ("hybridrec.recommender", "evaluation.baselines")


def import_recommender_classes() -> None:
    """Import :data:`RECOMMENDER_MODULES` (each recommender class registers itself when imported)."""
    for name in RECOMMENDER_MODULES:
        importlib.import_module(name)


def package_version() -> str:
    """The installed distribution's version (``pyproject.toml``), or ``"unknown"`` when this source
    tree runs without being installed."""
    try:
        return importlib.metadata.version("hybridrec")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridrec", description="Graph-based hybrid recommendation.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"hybridrec {package_version()}")
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
        if getattr(args, "model", None):
            import_recommender_classes()
        return int(args.handler(args) or 0)
    except HybridRecError as err:
        return _fail(args.command, str(err))
    except OSError as err:
        # Files the boundary checks could not foresee (a disk filling up, a folder made read-only
        # meanwhile): name the file and the reason, no traceback.
        where = f"{err.filename}: " if err.filename else ""
        return _fail(args.command, f"{where}{err.strerror or err}")
    except KeyboardInterrupt:
        print(f"hybridrec {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence of a command-line tool
        if args.verbose >= 2:
            raise
        return _fail(args.command, f"internal error ({type(err).__name__}: {err}); this is a bug in hybridrec: "
                                   "please report it with the output of the same command run with -vv",
                     code=INTERNAL_ERROR)


#: Exit code of an unexpected exception (a bug), apart from 1 for bad input and 2 for bad flags.
INTERNAL_ERROR = 70


def _fail(command: str, message: str, code: int = 1) -> int:
    """Print ``message`` as one ``hybridrec COMMAND: error: ...`` line on stderr; return ``code``."""
    one_line = " ".join(message.split())
    print(f"hybridrec {command}: error: {one_line}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
