"""Evaluation reports: a JSON file, a plain-text table, and a Markdown page with a recall/NDCG plot.

Results are keyed by a label (``"popularity"``, a model folder name, ...). All results in one
report must share the dataset fingerprint and split spec, so their figures are comparable.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from evaluation.metrics import METRICS_AT_K
from evaluation.protocol import SEGMENTS, EvaluationResult
from hybridrec.atomic import atomic_path, write_text_atomic
from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

PLOT_FILE = "recall_ndcg.png"
MARKDOWN_FILE = "report.md"
#: Share of users whose top-K cut-off fell inside tied scores above which the report warns.
TIE_WARNING_SHARE = 0.2


def _check_comparable(results: Mapping[str, EvaluationResult]) -> EvaluationResult:
    if not results:
        raise HybridRecError("no evaluation results to report")
    first = next(iter(results.values()))
    for label, result in results.items():
        if result.dataset.get("fingerprint") != first.dataset.get("fingerprint"):
            raise HybridRecError(f"result {label!r} comes from another dataset (fingerprint differs): not comparable")
        if result.split != first.split:
            raise HybridRecError(f"result {label!r} comes from another split spec: not comparable")
    return first


def report_dict(results: Mapping[str, EvaluationResult]) -> dict:
    """JSON-ready report: provenance once, then each model's metrics by segment."""
    first = _check_comparable(results)
    return {
        "hybridrec_version": first.version,
        "dataset": first.dataset,
        "split": first.split,
        "ks": list(first.ks),
        "models": {label: {key: value for key, value in result.to_dict().items()
                           if key not in ("dataset", "split", "ks", "version")}
                   for label, result in results.items()},
    }


def _finite_or_none(value):
    """``value`` with every NaN / infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def json_report(results: Mapping[str, EvaluationResult]) -> str:
    """:func:`report_dict` as JSON text (NaN written as null)."""
    return json.dumps(_finite_or_none(report_dict(results)), indent=2, default=str) + "\n"


def write_json_report(results: Mapping[str, EvaluationResult], path: str | Path, *, overwrite: bool = True) -> Path:
    """Write :func:`json_report` to ``path`` atomically.

    ``overwrite``: replace a file already at ``path`` (a folder there is always refused).
    """
    path = Path(path)
    write_text_atomic(path, json_report(results), overwrite=overwrite)
    logger.info("wrote %s", path)
    return path


def _rows(results: Mapping[str, EvaluationResult]) -> tuple[list[str], list[list[str]]]:
    first = _check_comparable(results)
    header = ["model", "segment", "users", "K", *METRICS_AT_K]
    rows = []
    for label, result in results.items():
        for segment in SEGMENTS:
            metrics = result.segments.get(segment)
            if metrics is None:
                continue
            for k in first.ks:
                values = [metrics.get(f"{name}@{k}") for name in METRICS_AT_K]
                rows.append([label, segment, str(int(metrics["n_users"])), str(k),
                             *("-" if v is None else f"{v:.4f}" for v in values)])
    return header, rows


def format_table(results: Mapping[str, EvaluationResult]) -> str:
    """Aligned plain-text table, one row per model x segment x K."""
    header, rows = _rows(results)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def plot_recall_ndcg(results: Mapping[str, EvaluationResult], path: str | Path, *, overwrite: bool = True) -> Path:
    """PNG with recall@K (top row) and NDCG@K (bottom row) against K, one column per segment.

    ``overwrite``: replace a file already at ``path`` (a folder there is always refused).
    """
    first = _check_comparable(results)
    segments = [s for s in SEGMENTS if any(s in r.segments for r in results.values())]
    figure = Figure(figsize=(4.2 * max(1, len(segments)), 6.4), layout="constrained")
    axes = figure.subplots(2, max(1, len(segments)), squeeze=False)
    for column, segment in enumerate(segments):
        for row, metric in enumerate(("recall", "ndcg")):
            axis = axes[row][column]
            for label, result in results.items():
                metrics = result.segments.get(segment)
                if metrics is not None:
                    axis.plot(first.ks, [metrics[f"{metric}@{k}"] for k in first.ks], marker="o", label=label)
            n_users = max(int(r.segments[segment]["n_users"]) for r in results.values() if segment in r.segments)
            axis.set_title(f"{segment} ({n_users} users): {metric}@K")
            axis.set_xlabel("K")
            axis.set_xticks(list(first.ks))
            axis.grid(alpha=0.3)
            axis.set_ylim(bottom=0)
    axes[0][0].legend(fontsize="small")
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def report_notes(results: Mapping[str, EvaluationResult]) -> list[str]:
    """Timings, leakage warnings and tie warnings, one line each."""
    notes = []
    for label, result in results.items():
        if result.fit_seconds is not None:
            notes.append(f"{label}: fitted in {result.fit_seconds:.2f} s, evaluated in {result.evaluate_seconds:.2f} s")
        else:
            notes.append(f"{label}: evaluated as loaded in {result.evaluate_seconds:.2f} s")
        if result.leaked_test_pairs:
            notes.append(f"WARNING {label}: the model was trained on {result.leaked_test_pairs} test pairs; "
                         "its figures are not honest.")
        for segment, metrics in result.segments.items():
            tied = max((metrics.get(f"tied_at_cutoff@{k}", 0.0) for k in result.ks), default=0.0)
            if tied > TIE_WARNING_SHARE:
                notes.append(f"{label} / {segment}: for {tied:.0%} of users the top-K cut-off fell inside tied "
                             "scores, so the list was completed by the tie-break order, not by the model.")
    return notes


def markdown_report(results: Mapping[str, EvaluationResult], plot_file: str | None = PLOT_FILE) -> str:
    """Markdown page: provenance, one table per segment, warnings, and the plot."""
    first = _check_comparable(results)
    spec = first.split
    lines = [
        "# hybridrec offline evaluation", "",
        f"- hybridrec version: `{first.version}`",
        f"- dataset: `{first.dataset.get('name')}`, {first.dataset.get('n_interactions'):,} interactions, "
        f"fingerprint `{first.dataset.get('fingerprint', '')}`",
        f"- split: `{spec.get('kind')}`, seed {spec.get('seed')}, "
        + ", ".join(f"{key} {value}" for key, value in spec.items()
                    if key not in ("kind", "seed", "sizes", "filter")),
        f"- filter: {spec.get('filter')}",
        f"- sizes: {spec.get('sizes')}",
        "- protocol: full ranking over all items not in the user's training (or validation) items; "
        "the cold_item segment ranks only items without training interactions; tied scores are ordered by a "
        "seeded per-user pseudo-random order, so id order carries no signal.",
        "",
    ]
    header, rows = _rows(results)
    for segment in SEGMENTS:
        segment_rows = [row for row in rows if row[1] == segment]
        if not segment_rows:
            continue
        lines += [f"## {segment}", "", "| " + " | ".join(h for h in header if h != "segment") + " |",
                  "|" + "---|" * (len(header) - 1)]
        lines += ["| " + " | ".join(cell for i, cell in enumerate(row) if i != 1) + " |" for row in segment_rows]
        lines.append("")
    notes = [f"- {note}" for note in report_notes(results)]
    lines += ["## Notes", "", *notes, ""]
    if plot_file:
        lines += [f"![recall@K and NDCG@K]({plot_file})", ""]
    return "\n".join(lines)


def report_files(directory: str | Path) -> list[Path]:
    """The files :func:`write_markdown_report` writes into ``directory``."""
    return [Path(directory) / MARKDOWN_FILE, Path(directory) / PLOT_FILE]


def write_markdown_report(results: Mapping[str, EvaluationResult], directory: str | Path, *,
                          overwrite: bool = True) -> Path:
    """Write ``report.md`` and ``recall_ndcg.png`` into ``directory``; return the Markdown path.

    ``overwrite``: replace those two files when already there (other files in ``directory`` are
    never touched).
    """
    directory = Path(directory)
    if not overwrite:
        for existing in report_files(directory):
            if existing.exists():
                raise HybridRecError(f"{existing}: already exists; pass overwrite=True to replace it")
    plot_recall_ndcg(results, directory / PLOT_FILE, overwrite=overwrite)
    path = directory / MARKDOWN_FILE
    write_text_atomic(path, markdown_report(results, PLOT_FILE), overwrite=overwrite)
    logger.info("wrote %s and %s", path, directory / PLOT_FILE)
    return path
