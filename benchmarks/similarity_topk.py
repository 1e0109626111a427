"""Exact item–item top-k at catalog scale: hybridrec's blockwise engine against a bare ``torch.mm``,
a naive per-item loop, scikit-learn's brute-force ``NearestNeighbors`` and (when installed) faiss.

Synthetic, seeded embeddings: ``--n-items`` (200,000) vectors of ``--dim`` (64) drawn around 2,000
Gaussian cluster centres, k=50, cosine, the item itself excluded. Each method runs in its own
subprocess so that its peak resident memory (``getrusage`` maxrss, which counts torch's allocations,
unlike tracemalloc) is its own. The GFLOP/s ratio to a bare ``torch.mm`` of the same block shapes is
measured in one process with the two interleaved part by part, so that both see the same load on a
shared machine. Slow baselines run on a seeded sample of queries and are
extrapolated linearly to all items; the output says which.

    python benchmarks/similarity_topk.py            # full size (about 10 minutes on 2 cores)
    python benchmarks/similarity_topk.py --n-items 20000 --no-faiss
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SEED = 0
N_CLUSTERS = 2000


def make_embeddings(n_items: int, dim: int, seed: int = SEED) -> np.ndarray:
    """``[n_items, dim]`` float32: cluster centre + noise, so neighbourhoods have structure."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLUSTERS, dim), dtype=np.float32)
    vectors = rng.standard_normal((n_items, dim), dtype=np.float32)
    vectors *= 0.7
    vectors += centres[rng.integers(0, N_CLUSTERS, n_items)]
    return vectors


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sample_queries(n_items: int, size: int) -> np.ndarray:
    return np.sort(np.random.default_rng(SEED + 1).choice(n_items, size=min(size, n_items), replace=False))


# -- workers (each in its own process) -------------------------------------------------------

def run_paired(args: argparse.Namespace, vectors: np.ndarray) -> dict:
    """Bare ``torch.mm`` against hybridrec, interleaved so both see the same machine load.

    The queries are cut into ``--pairs`` contiguous parts. For each part, first a bare ``torch.mm``
    of its query blocks against all items into a reused buffer (nothing else: no top-k, no
    output), then ``export_similar_items(..., shard=f"{i}/{pairs}")`` of the same queries
    (normalisation, scores, exact top-k, Parquet file written atomically).
    """
    from hybridrec.id_map import IdMap
    from hybridrec.similarity_export import export_similar_items
    from hybridrec.topk import EmbeddingScorer, choose_block_size
    from hybridrec.topk_table import ShardSpec

    items = IdMap(np.arange(len(vectors), dtype=np.int64) * 7 + 100_000, kind="item")
    scorer = EmbeddingScorer(vectors, metric="cosine", device="cpu")
    block = choose_block_size(scorer.n_columns, len(vectors), memory_budget_bytes=args.memory_budget_mib * 2**20)
    mm_seconds = export_seconds = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.pairs):
            start, stop = ShardSpec(index, args.pairs).query_range(len(vectors))
            buffer = torch.empty(block, scorer.n_columns)
            started = time.perf_counter()
            for block_start in range(start, stop, block):
                queries = scorer.query_vectors[block_start:min(block_start + block, stop)]
                torch.mm(queries, scorer.column_vectors.T, out=buffer[:len(queries)])
            mm_seconds += time.perf_counter() - started
            del buffer
            summary = export_similar_items(Path(folder) / f"part-{index}.parquet", items, embeddings=vectors,
                                           k=args.k, shard=f"{index}/{args.pairs}",
                                           memory_budget_bytes=args.memory_budget_mib * 2**20, device="cpu",
                                           progress=False)
            export_seconds += summary.seconds
    return {"seconds": mm_seconds, "export_seconds": export_seconds, "block": block, "queries": len(vectors),
            "extrapolated": False}


def run_hybridrec(args: argparse.Namespace, vectors: np.ndarray) -> dict:
    """The full export: blockwise scores + exact top-k + Parquet table written atomically."""
    from hybridrec.id_map import IdMap
    from hybridrec.similarity_export import export_similar_items

    items = IdMap(np.arange(len(vectors), dtype=np.int64) * 7 + 100_000, kind="item")
    with tempfile.TemporaryDirectory() as folder:
        summary = export_similar_items(Path(folder) / "similar.parquet", items, embeddings=vectors, k=args.k,
                                       metric="cosine", memory_budget_bytes=args.memory_budget_mib * 2**20,
                                       device="cpu", progress=False)
        size_mib = summary.path.stat().st_size / 2**20
    return {"seconds": summary.seconds, "queries": len(vectors), "extrapolated": False, "rows": summary.n_rows,
            "table_mib": size_mib}


def run_naive(args: argparse.Namespace, vectors: np.ndarray) -> dict:
    """One item at a time in NumPy: its cosine with every item, then argpartition + sort."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = sample_queries(len(vectors), args.naive_sample)
    started = time.perf_counter()
    for query in queries:
        scores = unit @ unit[query]
        scores[query] = -np.inf
        best = np.argpartition(-scores, args.k)[:args.k]
        best = best[np.argsort(-scores[best], kind="stable")]
    seconds = time.perf_counter() - started
    return {"seconds": seconds * len(vectors) / len(queries), "measured_seconds": seconds, "queries": len(queries),
            "extrapolated": True}


def run_sklearn(args: argparse.Namespace, vectors: np.ndarray) -> dict:
    """``NearestNeighbors(algorithm="brute", metric="cosine", n_jobs=-1)`` on a query sample."""
    from sklearn.neighbors import NearestNeighbors

    queries = sample_queries(len(vectors), args.sklearn_sample)
    started = time.perf_counter()
    index = NearestNeighbors(n_neighbors=args.k + 1, algorithm="brute", metric="cosine", n_jobs=-1).fit(vectors)
    index.kneighbors(vectors[queries], n_neighbors=args.k + 1)
    seconds = time.perf_counter() - started
    return {"seconds": seconds * len(vectors) / len(queries), "measured_seconds": seconds, "queries": len(queries),
            "extrapolated": True}


def run_faiss(args: argparse.Namespace, vectors: np.ndarray) -> dict:
    """faiss HNSW (M=32, efConstruction=200, efSearch=max(2k,128)) over all items, recall vs exact."""
    from hybridrec.ann_index import AnnConfig, approximate_top_k_blocks, measure_recall

    started = time.perf_counter()
    blocks, index = approximate_top_k_blocks(vectors, np.arange(len(vectors)), args.k, metric="cosine",
                                             config=AnnConfig(kind="hnsw"))
    built = time.perf_counter()
    for _ in blocks:
        pass
    seconds = time.perf_counter() - started
    recall = measure_recall(index, vectors, np.arange(len(vectors)), args.k, sample_size=1000, device="cpu")
    return {"seconds": seconds, "build_seconds": built - started, "queries": len(vectors), "extrapolated": False,
            "recall_at_k": recall}


WORKERS = {"paired": run_paired, "hybridrec exact": run_hybridrec, "naive per-item loop": run_naive,
           "sklearn brute cosine": run_sklearn, "faiss HNSW": run_faiss}


def worker_main(args: argparse.Namespace) -> None:
    vectors = make_embeddings(args.n_items, args.dim)
    baseline = peak_rss_mib()
    result = WORKERS[args.worker](args, vectors)
    result.update(peak_rss_mib=peak_rss_mib(), baseline_rss_mib=baseline, threads=torch.get_num_threads())
    print(json.dumps(result))


# -- driver ----------------------------------------------------------------------------------

def run_in_subprocess(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--n-items", str(args.n_items), "--dim", str(args.dim),
               "--k", str(args.k), "--memory-budget-mib", str(args.memory_budget_mib),
               "--naive-sample", str(args.naive_sample), "--sklearn-sample", str(args.sklearn_sample),
               "--pairs", str(args.pairs)]
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if completed.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--memory-budget-mib", type=int, default=256)
    parser.add_argument("--naive-sample", type=int, default=1000, help="queries timed for the naive loop")
    parser.add_argument("--sklearn-sample", type=int, default=4000, help="queries timed for scikit-learn")
    parser.add_argument("--pairs", type=int, default=10, help="interleaved bare-mm / export parts")
    parser.add_argument("--no-faiss", action="store_true")
    parser.add_argument("--json-out", help="also write the results as JSON here")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return

    names = ["paired", "hybridrec exact", "naive per-item loop", "sklearn brute cosine"]
    try:
        import faiss  # noqa: F401
        if not args.no_faiss:
            names.append("faiss HNSW")
    except ImportError:
        print("faiss not installed: skipping the approximate baseline")
    flops = 2.0 * args.n_items * args.n_items * args.dim
    print(f"{args.n_items:,} items x {args.dim} dims, k={args.k}, cosine, seed {SEED}; "
          f"{torch.get_num_threads()} torch threads on {os.cpu_count()} cores; score budget {args.memory_budget_mib} MiB")
    results = {}
    for name in names:
        results[name] = run_in_subprocess(name, args)
        print(f"  ran {name}: {results[name]['seconds']:.1f} s", flush=True)
    paired = results.pop("paired")
    mm_rate = flops / paired["seconds"] / 1e9
    paired_rate = flops / paired["export_seconds"] / 1e9
    ours = results["hybridrec exact"]["seconds"]
    print(f"\nGFLOP/s, paired ({args.pairs} interleaved parts of {args.n_items // args.pairs:,} queries, same process, "
          f"blocks of {paired['block']} queries):")
    print(f"  bare torch.mm (scores only)                    {paired['seconds']:8.1f} s  {mm_rate:6.1f} GFLOP/s")
    print(f"  hybridrec export, {args.pairs} shards (top-k + Parquet) {paired['export_seconds']:8.1f} s  "
          f"{paired_rate:6.1f} GFLOP/s  = {paired_rate / mm_rate:.2f} of bare torch.mm (target >= 0.6)")
    print(f"  (paired process peak RSS {paired['peak_rss_mib']:.0f} MiB)")
    print(f"\n{'method':<22}{'time (s)':>11}{'GFLOP/s':>10}{'vs mm':>8}{'speed-up':>10}{'peak RSS':>11}  note")
    for name, result in results.items():
        rate = flops / result["seconds"] / 1e9
        note = (f"extrapolated from {result['queries']:,} sampled queries ({result['measured_seconds']:.1f} s)"
                if result["extrapolated"] else "")
        if name == "hybridrec exact":
            note = f"one file: {result['rows']:,} rows to Parquet ({result['table_mib']:.0f} MiB)"
        if "recall_at_k" in result:
            note = (f"approximate: recall@{args.k} {result['recall_at_k']:.3f} (1,000 queries); "
                    f"build {result['build_seconds']:.1f} s")
        speed_up = result["seconds"] / ours
        print(f"{name:<22}{result['seconds']:>11.1f}{rate:>10.1f}{rate / mm_rate:>8.2f}"
              f"{speed_up:>9.1f}x{result['peak_rss_mib']:>7.0f} MiB  {note}")
    print(f"\n'vs mm' divides by the paired bare torch.mm rate; 'speed-up' is that method's time / hybridrec's "
          f"one-file time (>1: hybridrec is faster). hybridrec's peak RSS "
          f"{results['hybridrec exact']['peak_rss_mib']:.0f} MiB includes the Python + torch + data baseline of "
          f"{results['hybridrec exact']['baseline_rss_mib']:.0f} MiB (limit 2048 MiB).")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
