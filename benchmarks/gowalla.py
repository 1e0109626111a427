"""hybridrec on the LightGCN paper's Gowalla split, against EASE, PyG LightGCN and the published figures.

The data is the published train/test pair (``data_builders.lightgcn.load_lightgcn``: 29,858 users,
40,981 items, 810,128 / 217,242 interactions), scored as published: ``SplitConfig(kind="given")``
and ``evaluation.protocol.fit_and_evaluate``, the path of
``hybridrec evaluate --dataset gowalla --split given`` (all-item ranking, training items
filtered, recall = hits / the user's test items). Each method is fitted in a subprocess of its
own, so its fit seconds and peak resident memory (``ru_maxrss``) are its own.

    python benchmarks/gowalla.py --json runs/gowalla.json
    python benchmarks/gowalla.py --methods popularity gnn --smoke     # a quick check of the script

Methods (``--methods``): ``hybridrec`` (``HybridRecommender()`` defaults), ``ease`` (the dense
EASE baseline, ``evaluation.ease``, lambda 250: a 41k x 41k matrix, many GiB and many minutes),
``sparse-head`` (``HybridRecommender(cf_head="sparse", use_gnn=False)``), ``gnn``
(``HybridRecommender(use_cf=False)``), ``lightgcn`` (``peers.PyGLightGCN`` for
``--lightgcn-epochs`` epochs of ``--lightgcn-batch``; one step propagates over the whole graph,
about 6 s on two busy cores, so the default budget of one epoch of 8,192 takes about 10 minutes
here) and ``popularity``. ``--smoke`` shrinks the budgets (hybridrec GNN epochs 1, LightGCN one
epoch of 262,144) and scores 2,000 seeded test users: for checking the script, not for figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale_curve import emit, jsonable, peak_rss_mb, run_script  # noqa: E402

METHOD_NAMES = ("hybridrec", "ease", "sparse-head", "gnn", "lightgcn", "popularity")
#: (method, recall@20, NDCG@20) as published on this split.
PUBLISHED = (
    ("EASE (published)", 0.1765, 0.1467),
    ("LightGCN (published)", 0.1830, 0.1554),
    ("UltraGCN (published)", 0.1862, 0.1580),
    ("GF-CF (published)", 0.1849, 0.1518),
    ("BSPM-EM (published)", 0.1920, 0.1597),
)
RSS_LIMIT_MB = 8 * 1024
SMOKE_EVAL_USERS = 2000
SMOKE_LIGHTGCN_BATCH = 2**18


def method_label(method: str, args: argparse.Namespace) -> str:
    """The row label, with the budget a method ran under."""
    epochs = " (GNN epochs 1, smoke)" if args.smoke else ""
    return {
        "hybridrec": "hybridrec (defaults)" + epochs,
        "ease": "dense EASE (evaluation.ease, lambda 250)",
        "sparse-head": "sparse head alone (cf_head='sparse', use_gnn=False)",
        "gnn": "GNN alone (use_cf=False)" + epochs,
        "lightgcn": f"PyG LightGCN (3 layers, {args.lightgcn_epochs} epoch(s), batch {args.lightgcn_batch:,})",
        "popularity": "popularity",
    }[method]


def make_model(method: str, args: argparse.Namespace):
    """A fresh, unfitted model for ``method``."""
    hybrid_budget = {"epochs": 1} if args.smoke else {}
    if method == "popularity":
        from evaluation.popularity import PopularityRecommender

        return PopularityRecommender()
    if method == "ease":
        from evaluation.ease import EASERecommender

        return EASERecommender()
    if method == "lightgcn":
        import peers

        return peers.PyGLightGCN(epochs=args.lightgcn_epochs, batch_size=args.lightgcn_batch, seed=args.seed)
    from hybridrec.recommender import HybridRecommender

    options = {"seed": args.seed, "progress": False}
    if method == "hybridrec":
        return HybridRecommender(**options, **hybrid_budget)
    if method == "sparse-head":
        return HybridRecommender(cf_head="sparse", use_gnn=False, **options)
    if method == "gnn":
        return HybridRecommender(use_cf=False, **options, **hybrid_budget)
    raise SystemExit(f"unknown method {method!r}; choose from {list(METHOD_NAMES)}")


def run_one(method: str, args: argparse.Namespace) -> dict:
    """Fit ``method`` on the Gowalla train file and score the published test file (in this process)."""
    from data_builders.lightgcn import load_lightgcn
    from evaluation.protocol import EvaluationConfig, catalog_tables, dataset_summary, evaluate_model
    from evaluation.splitters import SplitConfig, make_split

    dataset = load_lightgcn(args.data_dir, name="gowalla")
    split = make_split(dataset.interactions, SplitConfig(kind="given"))
    provenance = dataset_summary(dataset.interactions, dataset.name)
    if args.eval_users:
        users = np.sort(split.test["user_id"].unique())
        if len(users) > args.eval_users:
            chosen = np.random.default_rng(args.seed).choice(users, size=args.eval_users, replace=False)
            split = dataclasses.replace(split, test=split.test[split.test["user_id"].isin(chosen)])
    # What evaluation.protocol.fit_and_evaluate(model, split, catalog=dataset) does, with the peak
    # memory read between the fit and the evaluation.
    items, users = catalog_tables(split, dataset.items, dataset.users)
    fit_on = dataclasses.replace(dataset, interactions=split.train, items=items, users=users)
    result = {"method": method, "rss_after_load_mb": peak_rss_mb()}
    model = make_model(method, args)
    started = time.perf_counter()
    model.fit(fit_on)
    fit_seconds = time.perf_counter() - started
    result["peak_rss_fit_mb"] = peak_rss_mb()
    evaluation = evaluate_model(model, split, dataset=provenance, fit_seconds=fit_seconds,
                                config=EvaluationConfig(ks=(20,), batch_size=args.batch_size))
    warm = evaluation.segments.get("warm", {})
    result.update(fit_seconds=fit_seconds, evaluate_seconds=evaluation.evaluate_seconds, peak_rss_mb=peak_rss_mb(),
                  recall_at_20=warm.get("recall@20"), ndcg_at_20=warm.get("ndcg@20"),
                  eval_users=warm.get("n_users"), leaked_test_pairs=evaluation.leaked_test_pairs,
                  other_segments={name: {"n_users": values["n_users"], "recall@20": values["recall@20"]}
                                  for name, values in evaluation.segments.items() if name != "warm"},
                  fit_summary=jsonable(getattr(model, "fit_summary_", None)),
                  fit_timings=jsonable(getattr(model, "fit_timings_", None)))
    trials = getattr(model, "gnn_weight_trials_", None)
    if args.weight_curve and trials:
        # A diagnostic of the validation choice: the test figures at every GNN weight it tried.
        # The model keeps the weight chosen on validation; these figures choose nothing.
        chosen, curve = model.gnn_weight_, {}
        for weight in sorted(trials):
            model.gnn_weight_ = weight
            scored = evaluate_model(model, split, dataset=provenance, fit_seconds=fit_seconds,
                                    config=EvaluationConfig(ks=(20,), batch_size=args.batch_size)).segments["warm"]
            curve[str(weight)] = {"validation_recall@20": trials[weight], "test_recall@20": scored["recall@20"],
                                  "test_ndcg@20": scored["ndcg@20"]}
        model.gnn_weight_ = chosen
        result["test_by_gnn_weight"] = curve
    return result


# -- parent ------------------------------------------------------------------------------------
def child_argv(method: str, args: argparse.Namespace) -> list[str]:
    argv = ["--one", method, "--seed", str(args.seed), "--lightgcn-epochs", str(args.lightgcn_epochs),
            "--lightgcn-batch", str(args.lightgcn_batch), "--eval-users", str(args.eval_users),
            "--batch-size", str(args.batch_size)] + (["--weight-curve"] if args.weight_curve else [])
    if args.data_dir:
        argv += ["--data-dir", str(args.data_dir)]
    return argv + (["--smoke"] if args.smoke else [])


def _number(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def checks(runs: dict[str, dict]) -> list[str]:
    """The two yes/no checks of hybridrec (defaults), each with its figures."""
    lines = []
    hybrid, ease = runs.get("hybridrec", {}), runs.get("ease", {})
    if hybrid.get("fit_seconds") is not None and ease.get("fit_seconds") is not None:
        verdict = "yes" if hybrid["fit_seconds"] <= ease["fit_seconds"] else "no"
        lines.append(f"hybridrec fit s <= dense EASE fit s: {verdict} "
                     f"({hybrid['fit_seconds']:.1f} s vs {ease['fit_seconds']:.1f} s)")
    else:
        lines.append("hybridrec fit s <= dense EASE fit s: not measured (needs --methods hybridrec ease, both fitted)")
    peak = hybrid.get("peak_rss_fit_mb")
    if peak is not None:
        verdict = "yes" if peak <= RSS_LIMIT_MB else "no"
        lines.append(f"hybridrec peak RSS <= 8 GiB: {verdict} ({peak:,.0f} MB through the fit, data and imports "
                     f"included, of {RSS_LIMIT_MB:,} MB; {hybrid.get('peak_rss_mb', 0):,.0f} MB with the evaluation)")
    else:
        lines.append("hybridrec peak RSS <= 8 GiB: not measured (needs --methods hybridrec, fitted)")
    return lines


def to_markdown(runs: dict[str, dict], args: argparse.Namespace) -> str:
    lines = ["| method | recall@20 | NDCG@20 | fit s | peak RSS MB (fit) | peak RSS MB (with evaluation) | users |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, r in runs.items():
        label = method_label(method, args) + (f" (failed: {r['error'][:100]})" if "error" in r else "")
        lines.append(f"| {label} | {_number(r.get('recall_at_20'), '.4f')} | {_number(r.get('ndcg_at_20'), '.4f')} | "
                     f"{_number(r.get('fit_seconds'), '.1f')} | {_number(r.get('peak_rss_fit_mb'), ',.0f')} | "
                     f"{_number(r.get('peak_rss_mb', r.get('child_peak_rss_mb')), ',.0f')} | "
                     f"{_number(r.get('eval_users'), ',')} |")
    for name, recall, ndcg in PUBLISHED:
        lines.append(f"| {name} | {recall:.4f} | {ndcg:.4f} | - | - | - | - |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    work_dir = Path(args.work_dir)
    runs = {}
    for method in args.methods:
        started = time.perf_counter()
        result = run_script(Path(__file__), child_argv(method, args), work_dir / f"{method}.stderr", args.timeout)
        runs[method] = {**result, "label": method_label(method, args)}
        print(f"{method_label(method, args)}: recall@20 {_number(result.get('recall_at_20'), '.4f')} NDCG@20 "
              f"{_number(result.get('ndcg_at_20'), '.4f')} fit {_number(result.get('fit_seconds'), '.1f')} s, peak RSS "
              f"{_number(result.get('peak_rss_fit_mb'), ',.0f')} MB through the fit, "
              f"{_number(result.get('peak_rss_mb', result.get('child_peak_rss_mb')), ',.0f')} MB in all "
              f"({time.perf_counter() - started:.0f} s in all)" + (f", error: {result['error']}" if "error" in result else ""),
              flush=True)
    return {"runs": runs, "published": [{"method": m, "recall@20": r, "ndcg@20": n} for m, r, n in PUBLISHED],
            "checks": checks(runs),
            "settings": {"seed": args.seed, "smoke": args.smoke, "eval_users": args.eval_users,
                         "lightgcn_epochs": args.lightgcn_epochs, "lightgcn_batch": args.lightgcn_batch}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES))
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDREC_DATA_DIR"),
                        help="folder holding gowalla/ (default $HYBRIDREC_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the models (and the --eval-users sample)")
    parser.add_argument("--lightgcn-epochs", type=int, default=1, help="PyG LightGCN epoch budget (default 1)")
    parser.add_argument("--lightgcn-batch", type=int, default=8192, help="PyG LightGCN BPR batch (default 8192)")
    parser.add_argument("--eval-users", type=int, default=0, help="score only this many seeded test users (0: all)")
    parser.add_argument("--batch-size", type=int, default=1024, help="users scored at once")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budgets and 2,000 test users, to check the script (not for figures)")
    parser.add_argument("--work-dir", default="runs/gowalla", help="where each child's stderr is kept")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per child before it is killed")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--weight-curve", action="store_true",
                        help="also score hybridrec's test split at every GNN weight its validation tried "
                             "(a diagnostic of that choice; the model keeps the validated weight)")
    parser.add_argument("--one", metavar="METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.eval_users = args.eval_users or SMOKE_EVAL_USERS
        if "--lightgcn-batch" not in (argv if argv is not None else sys.argv):
            args.lightgcn_batch = SMOKE_LIGHTGCN_BATCH
    if args.one:
        emit(run_one(args.one, args))
        return 0
    results = run(args)
    print()
    print(to_markdown(results["runs"], args))
    print()
    for line in results["checks"]:
        print(line)
    for method, r in results["runs"].items():
        if r.get("fit_summary") is not None:
            print(f"fit_summary_ ({method}): {json.dumps(r['fit_summary'], sort_keys=True)}")
        for weight, figures in (r.get("test_by_gnn_weight") or {}).items():
            print(f"{method} at GNN weight {weight} (diagnostic, chooses nothing): validation recall@20 "
                  f"{figures['validation_recall@20']:.4f}, test recall@20 {figures['test_recall@20']:.4f}, "
                  f"NDCG@20 {figures['test_ndcg@20']:.4f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(jsonable(results), indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
