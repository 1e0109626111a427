"""The two flags every command shares, defined once: ``--json [PATH]`` and ``--device``.

``--json`` without a path prints the command's machine-readable summary on stdout and nothing
else there (the human-readable lines go to stderr), so ``hybridrec CMD ... --json | jq`` works;
with a path it writes the same JSON there atomically and prints the usual lines.

``--device`` takes ``auto`` (the GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; the
name is checked when parsed, and resolved by :func:`hybridrec.device.resolve_device` (a CUDA
device asked for on a machine without one is an error, never a silent switch).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TextIO

from hybridrec.atomic import check_writable, write_text_atomic

STDOUT = "-"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device_name(value: str) -> str:
    """argparse type of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")
    return value


def add_device_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, what: str = "") -> None:
    """``--device {auto,cpu,cuda,cuda:N}`` (default ``auto``)."""
    parser.add_argument("--device", type=device_name, default="auto", metavar="DEVICE",
                        help=f"auto (the GPU when present), cpu, cuda or cuda:N{what} (default: auto)")


def add_json_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, what: str = "the summary") -> None:
    """``--json [PATH]``: ``what`` as JSON to PATH, or alone on stdout without PATH."""
    parser.add_argument("--json", nargs="?", const=STDOUT, metavar="PATH",
                        help=f"write {what} as JSON to PATH, or print it alone on stdout without PATH")


def check_json_target(args: argparse.Namespace) -> None:
    """Refuse an unwritable ``--json PATH`` before any work (``--overwrite`` when the command has it)."""
    if args.json and args.json != STDOUT:
        check_writable(args.json, arg="--json", overwrite=getattr(args, "overwrite", False))


def text_stream(args: argparse.Namespace) -> TextIO:
    """Where the human-readable lines go: stderr while stdout carries the JSON, else stdout."""
    return sys.stderr if getattr(args, "json", None) == STDOUT else sys.stdout


def json_text(summary: object) -> str:
    """``summary`` as the JSON every command writes (indented; paths and numpy scalars as text)."""
    return json.dumps(summary, indent=2, default=str) + "\n"


def emit_json(args: argparse.Namespace, summary: object | str) -> None:
    """Write ``summary`` (an object, or JSON text already made) where ``--json`` says; nothing without it."""
    if not args.json:
        return
    text = summary if isinstance(summary, str) else json_text(summary)
    if args.json == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(args.json, text, overwrite=getattr(args, "overwrite", False))
