"""``export-similar --engine ray`` against ``--engine local`` on a seeded synthetic log: seconds and speed-up.

A seeded synthetic e-commerce log of ``--items`` items (``synthetic_log.generate``, about 10 events
per item) is fitted by the model the scale curve benchmarks (``scale_curve.py``'s ``sparse-head``:
``HybridRecommender(cf_head="sparse", use_gnn=False)``, ``item_attr_cols=["category", "brand"]``).
Then the exact top-``--k`` similar items of every item (or of the first ``--queries``) are
exported twice, as the CLI does:

* **local**: ``export_model_similar_items`` in this process, torch on all cores;
* **ray**: ``hybridrec.ray_engine.export_with_ray`` on a local Ray cluster of ``--workers`` CPUs
  (``--ray-address``: an existing cluster instead), ``--blocks`` tasks, one torch thread each,
  the model in the object store once, the parts merged by ``merge_shards``.

Both tables are read back and compared (ids and ranks must be equal). Printed: item, user, query
and worker counts, the fit, local and Ray seconds (the Ray cluster's start apart, and with it),
and the speed-up ``local / ray``. On a machine whose cores are all given to the local run already
(torch's own threads), expect little: Ray adds processes, not cores, until the cluster has more
machines.

    python benchmarks/ray_export.py --items 100000 --workers 2 [--json runs/ray_export.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthetic_log  # noqa: E402

ATTRIBUTE_COLUMNS = ["category", "brand"]


def fit_model(n_items: int, seed: int):
    """The sparse-head hybrid fitted to the train part of the seeded log; ``(model, facts)``."""
    from evaluation.protocol import catalog_tables
    from evaluation.splitters import SplitConfig, make_split
    from hybridrec import HybridRecommender

    interactions, items = synthetic_log.generate(n_items, seed=seed)
    split = make_split(interactions, SplitConfig(kind="given"))
    items, users = catalog_tables(split, items)
    model = HybridRecommender(cf_head="sparse", use_gnn=False, seed=seed, progress=False)
    started = time.perf_counter()
    model.fit(split.train, items=items, users=users, item_attr_cols=ATTRIBUTE_COLUMNS)
    facts = {"items": len(model.item_ids_), "users": len(model.user_ids_), "events": len(interactions),
             "fit_seconds": time.perf_counter() - started}
    return model, facts


def same_ids_and_ranks(path_a: Path, path_b: Path) -> bool:
    from hybridrec.topk_table import read_table

    table_a, table_b = read_table(path_a), read_table(path_b)
    columns = ["item_id", "similar_item_id", "rank"]
    return table_a[columns].equals(table_b[columns])


def run(args: argparse.Namespace) -> dict:
    import ray
    import torch

    from hybridrec.ray_engine import RayConfig, connect, export_with_ray
    from hybridrec.similarity_export import export_model_similar_items

    model, result = fit_model(args.items, args.seed)
    queries = model.item_ids_.ids if args.queries is None else model.item_ids_.ids[:args.queries]
    options = dict(k=args.k, query_ids=queries, memory_budget_bytes=int(args.memory_budget * 2**20),
                   device="cpu", source="ray_export benchmark")
    local_threads = torch.get_num_threads()
    result.update(queries=len(queries), k=args.k, local_threads=local_threads, cores=os.cpu_count())
    with tempfile.TemporaryDirectory(prefix="ray-export-", dir=args.work_dir) as folder:
        local_out, ray_out = Path(folder) / "local.parquet", Path(folder) / "ray.parquet"
        started = time.perf_counter()
        export_model_similar_items(model, local_out, progress=False, **options)
        result["local_seconds"] = time.perf_counter() - started

        config = RayConfig(address=args.ray_address, workers=None if args.ray_address else args.workers,
                           blocks=args.blocks)
        started = time.perf_counter()
        connect(config)
        result["ray_start_seconds"] = time.perf_counter() - started
        try:
            result["workers"] = int(ray.cluster_resources().get("CPU", 0))
            started = time.perf_counter()
            summary = export_with_ray(export_model_similar_items, ray_out, config, progress=False, model=model,
                                      **options)
            result["ray_seconds"] = time.perf_counter() - started
        finally:
            ray.shutdown()
        result["blocks"] = summary.engine["blocks"]
        result["rows"] = summary.n_rows
        result["equal_ids_and_ranks"] = same_ids_and_ranks(local_out, ray_out)
    result["speed_up"] = result["local_seconds"] / result["ray_seconds"]
    result["speed_up_with_start"] = result["local_seconds"] / (result["ray_seconds"] + result["ray_start_seconds"])
    return result


def report(result: dict) -> None:
    print(f"items {result['items']:,} (users {result['users']:,}, events {result['events']:,}); "
          f"queries {result['queries']:,}, top-{result['k']}; fit {result['fit_seconds']:.1f} s")
    print(f"local: {result['local_seconds']:.1f} s ({result['local_threads']} torch threads, "
          f"{result['cores']} cores on this machine)")
    print(f"ray:   {result['ray_seconds']:.1f} s ({result['workers']} workers, {result['blocks']} blocks, "
          f"1 torch thread each; cluster start {result['ray_start_seconds']:.1f} s more)")
    print(f"speed-up local / ray: {result['speed_up']:.2f}x ({result['speed_up_with_start']:.2f}x with the "
          f"cluster start); same ids and ranks: {result['equal_ids_and_ranks']}; rows {result['rows']:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="catalog size of the synthetic log (default 100k)")
    parser.add_argument("--queries", type=int, help="export only the first N items' neighbours (default all)")
    parser.add_argument("--k", type=int, default=50, help="neighbours per item (default 50)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    parser.add_argument("--blocks", type=int, help="Ray tasks (default 2 per worker)")
    parser.add_argument("--ray-address", help="an existing Ray cluster instead of a local one")
    parser.add_argument("--memory-budget", type=float, default=256, help="MiB per block of scores (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="folder for the two tables (default the system's temporary folder)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    report(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    return 0 if result["equal_ids_and_ranks"] else 1


if __name__ == "__main__":
    sys.exit(main())
