"""GNN training on 1 vs N processes (torch.distributed DDP, gloo on CPU) on MovieLens-100K.

The warm protocol of ``model_vs_peers.py`` (ratings >= 4, users with >= 5, seeded random 80/20 per
user), one split seed; hybridrec's GNN alone by default (``--use-cf`` adds the CF head, fitted on
rank 0 only), genres, year buckets and the user attributes as content (no text encoder), the
default training config. Each world size runs in fresh processes (``torch.multiprocessing``
spawn, torchrun's variables set by hand); every rank reports its mean step time and peak memory,
rank 0 the test recall@20 / NDCG@20 and the GNN embeddings, compared with the single process's.

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/distributed_training.py --processes 1 2

The CPU threads are split between the ranks (``cpu_count // N`` each, or ``--threads-per-rank``),
so on one machine the step time shows the cost of the all-reduce and of the replicated
propagation next to the halved scoring, not a multi-machine speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

FIT = {"item_attr_cols": ["genres", "year"], "user_attr_cols": ["age", "gender", "occupation"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_rank(rank: int, world: int, port: int, options: dict, out: str) -> None:
    """One rank: fit on the warm split; rank 0 also scores the test set and keeps the embeddings."""
    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
    torch.set_num_threads(options["threads"] or max(1, (os.cpu_count() or 1) // world))
    from data_builders.movielens import load_movielens_100k
    from evaluation.protocol import (
        EvaluationConfig,
        catalog_tables,
        dataset_summary,
        evaluate_model,
    )
    from evaluation.splitters import SplitConfig, make_split
    from hybridrec.recommender import HybridRecommender
    from training import distributed

    movielens = load_movielens_100k(options["data_dir"])
    split = make_split(movielens.interactions, SplitConfig(kind="random", test_ratio=0.2, seed=options["seed"],
                                                           min_rating=4.0, min_positives=5))
    items, users = catalog_tables(split, movielens.items, movielens.users)
    model = HybridRecommender(use_cf=options["use_cf"], seed=0, progress=False, device=options["device"],
                              **({"epochs": options["epochs"]} if options["epochs"] else {}))
    started = time.perf_counter()
    model.fit(split.train, items=items, users=users, **FIT)
    fit_seconds = time.perf_counter() - started
    distributed.shutdown()
    report = {"rank": rank, "fit_seconds": round(fit_seconds, 2), "summary": model.fit_summary_,
              "epochs_run": model.train_result_.epochs_run, "best_epoch": model.train_result_.best_epoch}
    if rank == 0:
        result = evaluate_model(model, split, dataset=dataset_summary(split.train, "movielens-100k"),
                                config=EvaluationConfig(ks=(20,), segments=("warm",)))
        report.update(recall=result.segments["warm"]["recall@20"], ndcg=result.segments["warm"]["ndcg@20"])
        torch.save(model.item_embeddings_, Path(out) / f"items-{world}.pt")
    (Path(out) / f"world{world}-rank{rank}.json").write_text(json.dumps(report, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--epochs", type=int, default=None, help="GNN epochs (default: the model's, early stopping)")
    parser.add_argument("--use-cf", action="store_true", help="the fused model (CF head on rank 0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads-per-rank", type=int, default=None,
                        help="torch threads per process (default: CPU cores // processes)")
    args = parser.parse_args()
    options = {"data_dir": os.environ.get("HYBRIDREC_DATA_DIR", "../shared/data"), "seed": args.seed,
               "epochs": args.epochs, "use_cf": args.use_cf, "device": args.device,
               "threads": args.threads_per_rank}
    with tempfile.TemporaryDirectory() as out:
        rows = {}
        for world in args.processes:
            started = time.perf_counter()
            mp.spawn(run_rank, args=(world, free_port(), options, out), nprocs=world, join=True)
            reports = [json.loads((Path(out) / f"world{world}-rank{rank}.json").read_text()) for rank in range(world)]
            rows[world] = (reports, time.perf_counter() - started)
        reference = torch.load(Path(out) / f"items-{args.processes[0]}.pt", weights_only=True)
        print("| processes | recall@20 | NDCG@20 | epochs (best) | s per step, per rank | peak MB per rank | "
              f"GNN fit s | max abs diff of item embeddings vs {args.processes[0]} |")
        print("| ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |")
        for world, (reports, _) in rows.items():
            main_report, summary = reports[0], reports[0]["summary"]
            diff = (torch.load(Path(out) / f"items-{world}.pt", weights_only=True) - reference).abs().max().item()
            print(f"| {world} | {main_report['recall']:.4f} | {main_report['ndcg']:.4f} | "
                  f"{main_report['epochs_run']} ({main_report['best_epoch']}) | "
                  f"{summary['gnn_step_seconds_per_rank']} | {summary['gnn_memory_mb_per_rank']} | "
                  f"{summary['gnn_seconds']} | {diff:.2e} |")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, device {args.device}, split seed {args.seed}, "
          f"threads per rank {args.threads_per_rank or 'cores // processes'}, load average "
          f"{os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
