"""``hybridrec evaluate`` end to end on MovieLens-100K: table, JSON, Markdown and PNG reports."""

from __future__ import annotations

import json

import pytest

from evaluation.popularity import PopularityRecommender
from evaluation.splitters import SplitConfig, make_split
from hybridrec.cli import evaluate


@pytest.fixture(scope="module")
def popularity_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    code = evaluate.main(["--baseline", "popularity", "--dataset", "movielens-100k", "--data-dir", str(data_dir),
                          "--no-download", "--split", "random", "--min-rating", "4", "--seed", "3", "--k", "5", "20",
                          "--json", str(out / "result.json"), "--report", str(out / "report")])
    return code, out


def test_exit_code_and_json_report(popularity_run):
    code, out = popularity_run
    assert code == 0
    report = json.loads((out / "result.json").read_text())
    warm = report["models"]["popularity"]["segments"]["warm"]
    for name in ("precision", "recall", "f1", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty"):
        assert 0.0 <= warm[f"{name}@20"] and f"{name}@5" in warm
    assert warm["n_users"] > 900
    assert report["split"]["seed"] == 3 and report["split"]["filter"]["min_positives"] == 5
    assert len(report["dataset"]["fingerprint"]) == 64 and report["hybridrec_version"]
    assert report["ks"] == [5, 20]


def test_markdown_and_png_reports(popularity_run):
    _, out = popularity_run
    markdown = (out / "report" / "report.md").read_text()
    assert "## warm" in markdown and "recall_ndcg.png" in markdown and "fingerprint" in markdown
    assert (out / "report" / "recall_ndcg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prints_a_table(popularity_run, capsys, data_dir, tmp_path):
    code = evaluate.main(["--baseline", "popularity", "--data-dir", str(data_dir), "--no-download",
                          "--split", "cold-item", "--cold-share", "0.1", "--k", "10"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "cold-item split" in printed and "cold_item" in printed and "recall" in printed


def test_saved_model_is_evaluated_as_is(popularity_run, movielens, data_dir, tmp_path):
    _, out = popularity_run
    split = make_split(movielens.interactions, SplitConfig(kind="random", seed=3, min_rating=4, min_positives=5))
    PopularityRecommender().fit(split.train, items=movielens.items, users=movielens.users).save(tmp_path / "pop")
    code = evaluate.main(["--model", str(tmp_path / "pop"), "--data-dir", str(data_dir), "--no-download",
                          "--min-rating", "4", "--seed", "3", "--k", "5", "20", "--json", str(tmp_path / "r.json")])
    assert code == 0
    saved = json.loads((tmp_path / "r.json").read_text())["models"]["pop"]
    fitted = json.loads((out / "result.json").read_text())["models"]["popularity"]
    assert saved["leaked_test_pairs"] == 0 and saved["fit_seconds"] is None
    assert saved["segments"]["warm"]["recall@20"] == pytest.approx(fitted["segments"]["warm"]["recall@20"])


def test_nothing_to_evaluate_is_an_error(data_dir, capsys):
    assert evaluate.main(["--data-dir", str(data_dir), "--no-download"]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err


def test_registered_in_the_hybridrec_command(capsys):
    from hybridrec.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    assert "--baseline" in capsys.readouterr().out
