"""``--threads`` and ``--merge`` of the table-export commands (``export-similar``, ``recommend``)."""

from __future__ import annotations

import argparse

from hybridrec.errors import HybridRecError


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
