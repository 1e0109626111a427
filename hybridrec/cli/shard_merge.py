"""``--threads``, ``--merge`` and ``--engine`` of the table-export commands (``export-similar``,
``recommend``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hybridrec.errors import HybridRecError
from hybridrec.ray_engine import RayConfig, export_with_ray, import_ray
from hybridrec.topk_table import ExportSummary

ENGINES = ("local", "ray")
RAY_FLAGS = ("ray_address", "ray_workers", "ray_blocks", "ray_parts")


def threads_and_merge(args: argparse.Namespace, noun: str) -> bool:
    """Apply ``--threads``; with ``--merge``, merge the shards into ``--out`` and return True.

    Shared by ``export-similar`` and ``recommend`` (``noun`` names what a shard's queries are).
    """
    import torch

    from hybridrec.topk_table import merge_shards

    if args.threads is not None and args.threads < 1:
        raise HybridRecError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.merge:
        return False
    summary = merge_shards(args.merge, args.out, format=args.format, progress=not args.no_progress,
                           overwrite=args.overwrite)
    print(f"merged {len(args.merge)} shard(s): {summary.n_rows:,} rows for {summary.n_queries:,} {noun} "
          f"-> {summary.path}")
    return True


def add_engine_arguments(parser: argparse.ArgumentParser, noun: str) -> None:
    """``--engine`` and the ``--ray-*`` flags (``noun``: what the queries are, for the help)."""
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help=f"local (default): this process; ray: blocks of the {noun} as Ray tasks on the cluster "
                            "of --ray-address (needs hybridrec[distributed])")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="Ray cluster to connect to (auto, host:6379, ray://host:10001; default: RAY_ADDRESS, "
                            "a cluster running here, else a new local one)")
    group.add_argument("--ray-workers", type=int, metavar="N",
                       help="CPUs of the local Ray cluster started when there is none (default all cores)")
    group.add_argument("--ray-blocks", type=int, metavar="N",
                       help=f"tasks the {noun} are split into (default 2 per cluster CPU)")
    group.add_argument("--ray-parts", metavar="DIR",
                       help="folder for the Parquet parts, kept (on a multi-machine cluster: one every node "
                            "sees); default a temporary folder beside --out")


def check_engine(args: argparse.Namespace) -> RayConfig | None:
    """Check ``--engine`` and the ``--ray-*`` flags before any work; the :class:`RayConfig` of
    ``--engine ray`` (Ray importable), else None.

    Raises:
        HybridRecError: a ``--ray-*`` flag without ``--engine ray``, ``--shard`` or ``--approx`` with
            it, a count below 1, or Ray not installed (with the command that installs it).
    """
    if args.engine != "ray":
        given = [flag for flag in RAY_FLAGS if getattr(args, flag) is not None]
        if given:
            raise HybridRecError(f"--{given[0].replace('_', '-')} applies only with --engine ray")
        return None
    if args.shard is not None:
        raise HybridRecError("--shard does not apply with --engine ray: it splits the queries into --ray-blocks "
                             "itself")
    if getattr(args, "approx", None) is not None:
        raise HybridRecError("--approx does not apply with --engine ray (exact search only): every task would "
                             "build its own index of the whole catalog")
    for flag in ("ray_workers", "ray_blocks"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise HybridRecError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.ray_workers is not None and args.ray_address is not None:
        raise HybridRecError("--ray-workers sizes a local Ray cluster; with --ray-address the cluster has its own")
    import_ray()
    return RayConfig(address=args.ray_address, workers=args.ray_workers, blocks=args.ray_blocks,
                     parts_dir=args.ray_parts)


def run_export(args: argparse.Namespace, export: Callable[..., ExportSummary], **arguments) -> ExportSummary:
    """``export(out=args.out, **arguments)`` on the engine of ``--engine`` (see :func:`check_engine`).

    ``arguments`` holds ``shard``, ``format``, ``progress`` and ``overwrite`` too; with
    ``--engine ray`` the engine takes the last three.
    """
    config = check_engine(args)
    if config is None:
        return export(out=args.out, **arguments)
    return export_with_ray(export, args.out, config, format=arguments.pop("format"),
                           overwrite=arguments.pop("overwrite"), progress=arguments.pop("progress"), **arguments)


def engine_note(summary: ExportSummary) -> str:
    """``", on Ray: 8 blocks, 4 CPUs"`` for a summary of the Ray engine, else nothing."""
    if summary.engine.get("name") != "ray":
        return ""
    return f", on Ray: {summary.engine['blocks']} blocks, {summary.engine['cpus']} CPUs"
