"""An event log that carries its own train/test assignment: the reader keeps its ``split`` column
(bad labels are counted skips with their lines) and ``hybridrec evaluate --split given`` scores it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_builders.event_log import load_from_files
from hybridrec import cli

N_USERS, ITEMS_PER_USER, N_ITEMS, TEST_PER_USER = 40, 8, 30, 2


def generated_log() -> pd.DataFrame:
    """Seeded log: each user's ``ITEMS_PER_USER`` distinct items in time order, the last
    ``TEST_PER_USER`` marked test."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(N_USERS):
        items = rng.choice(N_ITEMS, size=ITEMS_PER_USER, replace=False)
        for position, item in enumerate(items):
            split = "test" if position >= ITEMS_PER_USER - TEST_PER_USER else "train"
            rows.append((f"u{user}", f"i{item}", 1_600_000_000 + 100 * user + position, split))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "split"])


def examples(dataset) -> list[str]:
    return [example for shown in dataset.report.examples.values() for example in shown]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_the_split_column_is_kept_in_every_format(tmp_path, suffix):
    log = generated_log()
    path = tmp_path / f"log{suffix}"
    if suffix == ".csv":
        log.to_csv(path, index=False)
    elif suffix == ".jsonl":
        log.to_json(path, orient="records", lines=True)
    else:
        log.to_parquet(path, index=False)
    dataset = load_from_files(path)
    assert dataset.interactions["split"].tolist() == log["split"].tolist()
    assert dataset.report.total_skipped == 0


def test_a_log_without_a_split_column_has_none(tmp_path):
    path = tmp_path / "log.csv"
    generated_log().drop(columns=["split"]).to_csv(path, index=False)
    assert "split" not in load_from_files(path).interactions.columns


def test_bad_split_labels_are_counted_skips_with_their_lines(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,split\nu1,i1,train\nu1,i2, test \nu2,i1,valid\nu2,i2,\nu3,i1,Train\n")
    dataset = load_from_files(path)
    assert dataset.interactions["split"].tolist() == ["train", "test"]
    reason = "split label must be 'train' or 'test'"
    assert dataset.report.skipped[(str(path), reason)] == 2
    assert f"{path}:4, column 'split': {reason}" in examples(dataset)
    assert f"{path}:6, column 'split': {reason}" in examples(dataset)
    assert f"{path}:5, column 'split': missing split label" in examples(dataset)


def test_a_column_mapped_to_another_role_is_not_the_split(tmp_path):
    from data_builders.event_log import ColumnMapping

    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,split\nu1,i1,view\nu1,i2,cart\n")
    dataset = load_from_files(path, columns=ColumnMapping(event="split"))
    assert "split" not in dataset.interactions.columns
    assert dataset.interactions["event"].tolist() == ["view", "cart"]


def test_evaluate_scores_the_given_split_of_a_log(tmp_path, capsys):
    log = generated_log()
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    code = cli.main(["evaluate", "--interactions", str(path), "--split", "given", "--baseline", "popularity",
                     "--k", "5", "--json", str(tmp_path / "result.json")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "result.json").read_text())
    sizes = report["split"]["sizes"]
    assert report["split"]["kind"] == "given"
    assert (sizes["train"], sizes["valid"], sizes["test"]) == (int((log["split"] == "train").sum()), 0,
                                                               int((log["split"] == "test").sum()))
    assert sizes["test_users"] == N_USERS
