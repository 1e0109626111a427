"""How hybridrec scales with the catalog: fit time, memory and quality on synthetic logs of 10k-1M items.

For each ``--items`` size a seeded synthetic e-commerce log is generated (``synthetic_log.py``:
Zipf-like popularity, users with 1-3 taste clusters, about 10 events per item, a per-user 80/20
split of each user's distinct items, a catalog with ``category`` and ``brand``). Then, each in a
subprocess of its own so that its peak resident memory is its own:

* **read**: the Parquet log and catalog read back with the project's reader
  (``data_builders.event_log.load_from_files``): rows/s;
* one child per method, which fits on the train part (``item_attr_cols=["category", "brand"]``)
  and scores recall@20 / NDCG@20 on the test part: all-item ranking, training items filtered,
  recall = hits / the user's test items (``evaluation.protocol.evaluate_ranking`` over the test
  pairs of ``segment_truths`` of the ``given`` split, as ``hybridrec evaluate --split given``
  does; at most ``--eval-users`` seeded test users). The hybrid model then exports the top-50
  similar items of every item through ``export_model_similar_items(..., approx="faiss")``, the path
  of ``hybridrec export-similar --approx faiss``, and its recall@50 against exact on a sample
  (the sparse head alone exports too).

Methods: ``hybridrec`` (``HybridRecommender()`` defaults), ``hybridrec-fixed`` (the same work per
event at every size: ``HybridRecommender(epochs=1, tune_filter=False, tune_gnn_weight=False)``, what
the defaults do on the 1M-item log, for a like-for-like growth exponent; not exported), ``sparse-head`` (the sparse
CF head alone: ``HybridRecommender(cf_head="sparse", use_gnn=False)``) and ``popularity``.

    python benchmarks/scale_curve.py --items 10000 100000 1000000 --json runs/scale_curve.json

Peak RSS is the child's absolute ``ru_maxrss`` (imports and the loaded log included): "fit" as it
stood right after the fit, "all" at the end (evaluation and export included).
Prints a Markdown table, each fitted model's ``fit_summary_``, and the fit-time growth exponent
between 100k and 1M items, ``log(t_1M / t_100k) / log(events_1M / events_100k)``. The logs are kept
in ``--work-dir`` (reused when their settings match) with each child's stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthetic_log  # noqa: E402

RESULT_MARK = "BENCHMARK_RESULT "
METHODS = {
    "hybridrec": "hybridrec (defaults)",
    "hybridrec-fixed": "hybridrec, the same work per event at every size (1 GNN epoch, no validation searches)",
    "sparse-head": "sparse head alone (cf_head='sparse', use_gnn=False)",
    "popularity": "popularity",
}
EXPORT_K, RECALL_K = 50, 20
ATTRIBUTE_COLUMNS = ["category", "brand"]


# -- children: one measured configuration per process ------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict) -> None:
    """Hand a child's result to the parent: one marked JSON line on stdout."""
    print(RESULT_MARK + json.dumps(result, default=str), flush=True)


def jsonable(value):
    """``value`` with NumPy scalars and other odd leaves turned into JSON types (or their repr)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else repr(v)))


def make_model(method: str, seed: int):
    """A fresh, unfitted model for ``method`` (a key of :data:`METHODS`)."""
    if method == "popularity":
        from evaluation.popularity import PopularityRecommender

        return PopularityRecommender()
    from hybridrec.recommender import HybridRecommender

    if method == "hybridrec":
        return HybridRecommender(seed=seed, progress=False)
    if method == "hybridrec-fixed":
        # What the defaults do on the 1M-item log, at every size: one GNN epoch (the interaction budget
        # gives that log one) and the configured filter shape and GNN weight (the searches stop above
        # 200k items), so its fit-time growth between sizes compares like with like.
        return HybridRecommender(epochs=1, tune_filter=False, tune_gnn_weight=False, seed=seed, progress=False)
    if method == "sparse-head":
        return HybridRecommender(cf_head="sparse", use_gnn=False, seed=seed, progress=False)
    raise SystemExit(f"unknown method {method!r}; choose from {list(METHODS)}")


def eval_batch_size(n_items: int) -> int:
    """Users scored at once: about 128 MiB of float32 scores per batch, between 16 and 1024."""
    return int(min(1024, max(16, 2**25 // max(1, n_items))))


def sampled_test_pairs(split, max_users: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Test pairs of the users with training rows (warm and cold-item segments of
    :func:`evaluation.protocol.segment_truths`), for at most ``max_users`` seeded users."""
    from evaluation.protocol import segment_truths

    truths = segment_truths(split)
    truth = pd.concat([truths["warm"], truths["cold_item"]], ignore_index=True)
    users = np.sort(pd.unique(truth["user_id"].to_numpy()))
    if max_users and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
        truth = truth[truth["user_id"].isin(users)]
    return truth, {"eval_users": int(len(users)), "eval_test_pairs": int(len(truth)),
                   "cold_item_share_of_test_pairs": len(truths["cold_item"]) / max(1, len(truths["warm"])
                                                                                  + len(truths["cold_item"]))}


def fit_summary_of(model) -> dict | None:
    """The model's ``fit_summary_`` as JSON types (None while the estimator has none)."""
    summary = getattr(model, "fit_summary_", None)
    return None if summary is None else jsonable(summary)


def run_read(log_dir: Path) -> dict:
    """Read the log and catalog with ``data_builders.event_log.load_from_files`` (ids as text,
    duplicate events checked; the reader keeps the canonical columns only, so ``split`` is dropped)."""
    from data_builders.event_log import load_from_files

    started = time.perf_counter()
    dataset = load_from_files(log_dir / synthetic_log.INTERACTIONS_FILE, log_dir / synthetic_log.ITEMS_FILE,
                              item_categorical_cols=ATTRIBUTE_COLUMNS)
    seconds = time.perf_counter() - started
    rows = len(dataset.interactions)
    return {"method": "read", "read_seconds": seconds, "read_rows": rows, "read_rows_per_s": rows / seconds,
            "peak_rss_mb": peak_rss_mb()}


def run_fit(method: str, log_dir: Path, *, seed: int, eval_users: int, export: bool, recall_sample: int,
            keep_export: bool, export_shards: int = 1) -> dict:
    """Fit ``method`` on the train part of the log in ``log_dir``, score it, export (hybridrec)."""
    from evaluation.protocol import catalog_tables, evaluate_ranking
    from evaluation.splitters import SplitConfig, make_split

    result: dict = {"method": method, "label": METHODS[method]}
    interactions, items = synthetic_log.read_log(log_dir)
    split = make_split(interactions, SplitConfig(kind="given"))
    del interactions
    items, users = catalog_tables(split, items)
    result["rss_after_load_mb"] = peak_rss_mb()
    model = make_model(method, seed)
    fit_kwargs = {"item_attr_cols": ATTRIBUTE_COLUMNS} if method != "popularity" else {}
    started = time.perf_counter()
    model.fit(split.train, items=items, users=users, **fit_kwargs)
    result["fit_seconds"] = time.perf_counter() - started
    result["peak_rss_fit_mb"] = peak_rss_mb()
    result["fit_summary"] = fit_summary_of(model)
    result["fit_timings"] = jsonable(getattr(model, "fit_timings_", None))

    truth, sample = sampled_test_pairs(split, eval_users, seed)
    result.update(sample)
    started = time.perf_counter()
    metrics = evaluate_ranking(model, truth, ks=(RECALL_K,), batch_size=eval_batch_size(len(model.item_ids_)),
                               description=f"evaluate {method}")
    result["evaluate_seconds"] = time.perf_counter() - started
    result["recall@20"], result["ndcg@20"] = metrics[f"recall@{RECALL_K}"], metrics[f"ndcg@{RECALL_K}"]
    result["coverage@20"] = metrics.get(f"coverage@{RECALL_K}")
    if export:
        result.update(run_export(model, log_dir / f"similar-{method}.parquet", recall_sample, keep_export,
                                 export_shards))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_export(model, out: Path, recall_sample: int, keep: bool, shards: int = 1) -> dict:
    """Top-50 similar items of every item, as ``hybridrec export-similar --approx faiss`` writes them
    (``shards > 1``: only the first of ``shards`` parts of the items, as ``--shard 0/N`` does; the
    index is still built over the whole catalog)."""
    from hybridrec.ann_index import AnnConfig
    from hybridrec.similarity_export import export_model_similar_items
    from hybridrec.topk_table import ShardSpec

    started = time.perf_counter()
    summary = export_model_similar_items(model, out, k=EXPORT_K, approx="faiss", ann_config=AnnConfig(kind="hnsw"),
                                         recall_sample=recall_sample, memory_budget_bytes=256 * 2**20,
                                         device="auto", progress=False, source="scale_curve",
                                         shard=ShardSpec(0, shards) if shards > 1 else None)
    seconds = time.perf_counter() - started
    if not keep:
        out.unlink(missing_ok=True)
    return {"export_seconds": seconds, "export_shards": shards, "export_rows": summary.n_rows,
            "export_method": summary.method,
            "export_recall@50": summary.recall_at_k, "export_recall_sample": min(recall_sample, summary.n_queries)}


# -- parent: one child per configuration -------------------------------------------------------
def run_child(argv: list[str], stderr_path: Path, timeout_s: float) -> dict:
    """Run ``python this_script *argv`` and return its result line, with ``child_peak_rss_mb``
    (``ru_maxrss`` of that child alone, from ``os.wait4``), ``wall_seconds`` and, on failure,
    ``error`` (exit status and the end of its stderr)."""
    return run_script(Path(__file__), argv, stderr_path, timeout_s)


def run_script(script: Path, argv: list[str], stderr_path: Path, timeout_s: float) -> dict:
    """:func:`run_child` for any benchmark script that ends with :func:`emit`."""
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(stderr_path, "w", encoding="utf-8") as err, \
            open(stderr_path.with_suffix(".stdout"), "w+", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, str(script), *argv], stdout=out, stderr=err,
                                start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith(RESULT_MARK)]
    result = json.loads(lines[-1][len(RESULT_MARK):]) if lines else {}
    result["child_peak_rss_mb"] = usage.ru_maxrss / 1024
    result["wall_seconds"] = time.perf_counter() - started
    if proc.returncode != 0 or not lines:
        tail = stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        why = f"timed out after {timeout_s:.0f} s" if timed_out else f"exit status {proc.returncode}"
        result["error"] = f"{why}: {' '.join(tail).strip()} (see {stderr_path})"
    return result


def prepare_log(n_items: int, seed: int, work_dir: Path) -> tuple[Path, dict]:
    """The log of ``n_items`` in ``work_dir/items-N-seed-S`` (generated unless a matching one is there)."""
    folder = work_dir / f"items-{n_items}-seed-{seed}"
    meta_path = folder / "log.json"
    if meta_path.is_file() and (folder / synthetic_log.INTERACTIONS_FILE).is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("n_items") == n_items and meta.get("seed") == seed:
            meta["reused"] = True
            return folder, meta
    meta = synthetic_log.write_log(synthetic_log.SyntheticLogConfig(n_items=n_items, seed=seed), folder)
    meta_path.write_text(json.dumps(meta))
    return folder, meta


def growth_exponent(runs: list[dict], small: int, large: int) -> dict[str, float]:
    """Per method: ``log(fit_s(large) / fit_s(small)) / log(events(large) / events(small))``."""
    out = {}
    for method in METHODS:
        fits = {r["n_items"]: r for r in runs if r["method"] == method and r.get("fit_seconds")}
        if small in fits and large in fits:
            out[method] = (math.log(fits[large]["fit_seconds"] / fits[small]["fit_seconds"])
                           / math.log(fits[large]["n_events"] / fits[small]["n_events"]))
    return out


def _number(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _export_cell(run: dict) -> str:
    """Export seconds; for a partial export, the part's seconds and which part (``1/N of the items``)."""
    shards = run.get("export_shards", 1)
    seconds = _number(run.get("export_seconds"), ",.1f")
    return seconds if shards <= 1 or seconds == "-" else f"{seconds} (1/{shards} of the items)"


def to_markdown(runs: list[dict]) -> str:
    lines = ["| items | users | events | method | read rows/s | fit s | export s | peak RSS MB (fit) | "
             "peak RSS MB (all) | recall@20 | NDCG@20 | faiss recall@50 | eval users |",
             "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        peak = r.get("peak_rss_mb", r.get("child_peak_rss_mb"))
        label = METHODS[r["method"]] + (f" (failed: {r['error'][:80]})" if "error" in r else "")
        lines.append(f"| {r['n_items']:,} | {r['n_users']:,} | {r['n_events']:,} | {label} | "
                     f"{_number(r.get('read_rows_per_s'), ',.0f')} | {_number(r.get('fit_seconds'), '.1f')} | "
                     f"{_export_cell(r)} | {_number(r.get('peak_rss_fit_mb'), ',.0f')} | "
                     f"{_number(peak, ',.0f')} | "
                     f"{_number(r.get('recall@20'), '.4f')} | {_number(r.get('ndcg@20'), '.4f')} | "
                     f"{_number(r.get('export_recall@50'), '.4f')} | {_number(r.get('eval_users'), ',')} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    work_dir = Path(args.work_dir)
    sizes, runs = [], []
    for n_items in args.items:
        folder, meta = prepare_log(n_items, args.seed, work_dir)
        print(f"{n_items:,} items: {meta['n_events']:,} events of {meta['n_users']:,} users "
              f"({meta['items_with_events']:,} items with events), "
              + ("reused" if meta.get("reused") else f"generated in {meta['seconds']:.1f} s"), flush=True)
        common = ["--log-dir", str(folder), "--seed", str(args.seed)]
        read = run_child(["--one", "read", *common], folder / "read.stderr", args.timeout)
        size = {**meta, **{k: v for k, v in read.items() if k.startswith("read") or k == "error"},
                "read_peak_rss_mb": read.get("peak_rss_mb", read.get("child_peak_rss_mb"))}
        sizes.append(size)
        print(f"  read {_number(read.get('read_rows_per_s'), ',.0f')} rows/s, peak RSS "
              f"{_number(size['read_peak_rss_mb'], ',.0f')} MB{'  ' + read['error'] if 'error' in read else ''}",
              flush=True)
        for method in args.methods:
            argv = ["--one", method, *common, "--eval-users", str(args.eval_users),
                    "--recall-sample", str(args.recall_sample)]
            if method in ("hybridrec", "sparse-head") and not args.no_export:
                argv.append("--export")
            if args.keep_exports:
                argv.append("--keep-export")
            if args.export_shards.get(n_items, 1) > 1:
                argv += ["--export-shards", str(args.export_shards[n_items])]
            result = run_child(argv, folder / f"{method}.stderr", args.timeout)
            result.update(method=method, n_items=n_items, n_users=meta["n_users"], n_events=meta["n_events"],
                          read_rows_per_s=size.get("read_rows_per_s"))
            runs.append(result)
            print(f"  {METHODS[method]}: fit {_number(result.get('fit_seconds'), '.1f')} s, recall@20 "
                  f"{_number(result.get('recall@20'), '.4f')}, export {_number(result.get('export_seconds'), '.1f')} s, "
                  f"peak RSS {_number(result.get('peak_rss_fit_mb'), ',.0f')} MB through the fit, "
                  f"{_number(result.get('peak_rss_mb', result.get('child_peak_rss_mb')), ',.0f')} MB in all"
                  + (f", error: {result['error']}" if "error" in result else ""), flush=True)
    return {"sizes": sizes, "runs": runs, "growth_exponent_100k_1m": growth_exponent(runs, 100_000, 1_000_000),
            "settings": {"seed": args.seed, "eval_users": args.eval_users, "recall_sample": args.recall_sample}}


def report(results: dict) -> None:
    print()
    print(to_markdown(results["runs"]))
    print()
    for r in results["runs"]:
        print(f"fit_summary_ ({r['n_items']:,} items, {r['method']}): "
              + ("none" if r.get("fit_summary") is None else json.dumps(r["fit_summary"], sort_keys=True)))
    growth = results["growth_exponent_100k_1m"]
    if growth:
        print()
        for method, exponent in growth.items():
            print(f"fit-time growth exponent 100k -> 1M items, {METHODS[method]}: {exponent:.2f} "
                  "(log(t_1M / t_100k) / log(events_1M / events_100k); 1 = linear)")
    else:
        print("fit-time growth exponent: needs fitted runs at 100,000 and 1,000,000 items")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="seeds the logs, the models and the user sample")
    parser.add_argument("--eval-users", type=int, default=10_000, help="test users scored per size (0: all)")
    parser.add_argument("--recall-sample", type=int, default=1000,
                        help="items on which the faiss export's recall@50 against exact is measured")
    parser.add_argument("--no-export", action="store_true", help="skip the similar-items export")
    parser.add_argument("--keep-exports", action="store_true", help="keep the exported tables in --work-dir")
    parser.add_argument("--export-part", nargs="+", default=[], metavar="ITEMS:N",
                        help="export only the first 1/N of the items at that size (e.g. 1000000:20), when the "
                             "whole export would not fit the time at hand; the table says so")
    parser.add_argument("--work-dir", default="runs/scale_curve", help="logs, child stderr and exports")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per child before it is killed")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--one", metavar="METHOD", help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", help=argparse.SUPPRESS)
    parser.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--export-shards", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.one:
        try:
            args.export_shards = {int(size): int(count) for size, count in
                                  (part.split(":") for part in args.export_part)}
        except ValueError:
            parser.error(f"--export-part takes ITEMS:N pairs, got {args.export_part}")
    if args.one:
        # The child's progress (the library's INFO log: heads, epochs, searches) goes to its stderr file.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        log_dir = Path(args.log_dir)
        if args.one == "read":
            emit(run_read(log_dir))
        else:
            emit(run_fit(args.one, log_dir, seed=args.seed, eval_users=args.eval_users, export=args.export,
                         recall_sample=args.recall_sample, keep_export=args.keep_export,
                         export_shards=args.export_shards))
        return 0
    results = run(args)
    report(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(jsonable(results), indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
