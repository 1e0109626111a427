"""Run one ``hybridrec`` sub-command in-process, as its parser and handler see it (shared by the
command-line tests)."""

from __future__ import annotations

import argparse

from hybridrec.cli import export_similar, recommend


def run_cli(module, argv: list[str]) -> int:
    """Register ``module``'s sub-command, parse ``argv`` (the command name first) and run it."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def export(argv: list[str]) -> int:
    return run_cli(export_similar, ["export-similar", "--no-progress", *argv])


def recommend_cli(argv: list[str]) -> int:
    return run_cli(recommend, ["recommend", "--no-progress", *argv])
