"""Modality ablation on MovieLens-100K with TMDB overviews and posters: hybridrec and its peers,
each given the same item content, on the warm and cold-item splits of ``model_vs_peers.py``.

Content configurations: ids + genres + year (release-year quantile buckets); + title; + title +
overview; + poster only (genres + year + poster); + title + overview + poster. Peers get the same
genre flags, year buckets and embeddings (one block per text column, the EfficientNet-Lite0 poster
block): the ridge content->EASE map (lambda 3, cold items; its warm side is plain EASE), LightFM
WARP (genres, year and each block's top 32 principal components as item features) and content kNN
(cold items). hybridrec aligns the poster with a text column by default
(``image_alignment="auto"``); with text and poster it also runs with the raw poster block
(``image_alignment="none"``) to show what the alignment adds. Metrics are means over the seeds.

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/modality_ablation.py --seeds 0 1 2 \\
        --csv runs/ablation.csv --readme benchmarks/README.md
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_builders.movielens import load_movielens_100k  # noqa: E402
from evaluation.ease import EASERecommender  # noqa: E402
from evaluation.protocol import EvaluationConfig, dataset_summary  # noqa: E402
from hybridrec.atomic import write_text_atomic  # noqa: E402
from hybridrec.recommender import HybridRecommender  # noqa: E402
from model_vs_peers import fit_and_score_splits, protocol_splits  # noqa: E402

CONFIGS = {
    "ids + genres + year": ([], None),
    "+ title": (["title"], None),
    "+ title + overview": (["title", "overview"], None),
    "+ poster only": ([], "image_path"),
    "+ title + overview + poster": (["title", "overview"], "image_path"),
}
USER_ATTRS = ["age", "gender", "occupation"]
RAW_POSTER = "hybridrec, raw poster block"
MARK_START, MARK_END = "<!-- modality-ablation:start -->", "<!-- modality-ablation:end -->"


def methods(text_cols: list[str], image_col: str | None, cache_dir: str) -> dict:
    """Name -> (factory(seed) -> model, fit kwargs, splits it runs on)."""
    import peers

    content = {"text_cols": text_cols, "image_col": image_col, "cache_dir": cache_dir}
    hybrid_fit = {"item_text_cols": text_cols, "item_image_col": image_col, "item_attr_cols": ["genres", "year"],
                  "user_attr_cols": USER_ATTRS}
    table = {
        "hybridrec": (lambda s: HybridRecommender(seed=s, progress=False, feature_cache_dir=cache_dir), hybrid_fit,
                      ("warm", "cold-item")),
    }
    if image_col is not None and text_cols:
        # The default aligns the poster with a text column; this row measures what that adds.
        table[RAW_POSTER] = (lambda s: HybridRecommender(seed=s, progress=False, feature_cache_dir=cache_dir,
                                                         image_alignment="none"), hybrid_fit, ("warm", "cold-item"))
    return {
        **table,
        "ridge content->EASE": (lambda s: peers.RidgeContentEASE(**content), {}, ("cold-item",)),
        "LightFM WARP": (lambda s: peers.LightFMWarp(seed=s, **content), {}, ("warm", "cold-item")),
        "content kNN": (lambda s: peers.ContentKNN(**content), {}, ("cold-item",)),
    }


def run(seeds: list[int], configs: list[str], selected: list[str] | None, data_dir: str | None,
        cache_dir: str) -> pd.DataFrame:
    dataset = load_movielens_100k(data_dir)
    if "overview" not in dataset.items:
        raise SystemExit("ml-100k-tmdb/ (overviews and posters) was not found beside ml-100k/")
    provenance = dataset_summary(dataset.interactions, dataset.name)
    config = EvaluationConfig(ks=(10, 20))
    rows = []
    for seed in seeds:
        splits = protocol_splits(dataset.interactions, seed)
        runs = [("(no content)", "EASE (lambda 250)", lambda s: EASERecommender(l2=250.0), {}, ("warm",))]
        for config_name in configs:
            text_cols, image_col = CONFIGS[config_name]
            for name, (factory, fit_kwargs, split_names) in methods(text_cols, image_col, cache_dir).items():
                runs.append((config_name, name, factory, fit_kwargs, split_names))
        for config_name, name, factory, fit_kwargs, split_names in runs:
            if selected and name not in selected and config_name != "(no content)":
                continue
            for split_name, model, metrics, fit_seconds, _ in fit_and_score_splits(
                    factory, seed, splits, split_names, dataset, provenance, config, fit_kwargs):
                chosen = getattr(model, "cold_block_weights_", None)
                rows.append({"split": split_name, "content": config_name, "method": name, "seed": seed,
                             "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"],
                             "precision@10": metrics["precision@10"], "fit_s": fit_seconds,
                             "block_weights": "" if chosen is None else str(chosen)})
                print(f"seed {seed} {split_name:9s} {config_name:28s} {name:20s} recall@20 {metrics['recall@20']:.4f} "
                      f"ndcg@20 {metrics['ndcg@20']:.4f} P@10 {metrics['precision@10']:.4f} fit {fit_seconds:6.1f} s"
                      + (f" cold block weights {chosen}" if chosen else ""), flush=True)
    return pd.DataFrame(rows)


def to_markdown(results: pd.DataFrame) -> str:
    """One table: mean over seeds per (split, content, method), warm first, configurations in order."""
    summary = (results.groupby(["split", "content", "method"], sort=False)
               .agg(recall=("recall@20", "mean"), ndcg=("ndcg@20", "mean"), precision=("precision@10", "mean"),
                    fit=("fit_s", "mean"), seeds=("seed", "nunique"))
               .reset_index())
    content_order = {name: rank for rank, name in enumerate(["(no content)", *CONFIGS])}
    method_order = {name: rank for rank, name in enumerate(["EASE (lambda 250)", "hybridrec", RAW_POSTER, "ridge content->EASE",
                                                            "LightFM WARP", "content kNN"])}
    summary = summary.assign(split_rank=summary["split"].map({"warm": 0, "cold-item": 1}),
                             content_rank=summary["content"].map(content_order),
                             method_rank=summary["method"].map(method_order))
    summary = summary.sort_values(["split_rank", "content_rank", "method_rank"], kind="stable")
    lines = ["| split | content | method | recall@20 | NDCG@20 | P@10 | fit s | seeds |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in summary.itertuples(index=False):
        lines.append(f"| {row.split} | {row.content} | {row.method} | {row.recall:.4f} | {row.ndcg:.4f} | "
                     f"{row.precision:.4f} | {row.fit:.1f} | {row.seeds} |")
    return "\n".join(lines)


def write_into_readme(readme: Path, table: str) -> None:
    """Replace the text between the ablation markers of ``readme`` (appended when absent)."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    block = f"{MARK_START}\n{table}\n{MARK_END}"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(readme, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", help="subset of method names (default: all)")
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDREC_DATA_DIR"))
    parser.add_argument("--cache-dir", default="runs/feature-cache")
    parser.add_argument("--csv", help="also write per-seed rows to this CSV")
    parser.add_argument("--from-csv", nargs="+", metavar="CSV",
                        help="build the table from earlier --csv files instead of running (later files replace "
                             "rows of the same split, content, method and seed)")
    parser.add_argument("--readme", help="write the table between the ablation markers of this Markdown file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.from_csv:
        results = pd.concat([pd.read_csv(path, keep_default_na=False) for path in args.from_csv], ignore_index=True)
        results = results.drop_duplicates(["split", "content", "method", "seed"], keep="last")
    else:
        results = run(args.seeds, args.configs, args.methods, args.data_dir, args.cache_dir)
    table = to_markdown(results)
    print()
    print(table)
    if args.csv:
        results.to_csv(args.csv, index=False)
    if args.readme:
        write_into_readme(Path(args.readme), table)


if __name__ == "__main__":
    main()
