"""Readers never change or drop a value silently, and bad input is a one-line error naming its source.

Timestamp units decided per value, skip locations in the log and the report, ``--encoding``, one id
rule across formats, and clean errors (no traceback) for bad ``--users``/``--history``/``--items``
files, bad flags and bad TOML configs.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from data_builders.event_log import ColumnMapping, load_from_files
from hybridrec.cli import main
from hybridrec.cli.id_files import read_id_file
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap

HEADER = "user_id,item_id,rating,timestamp\n"


def write(path, text: str, encoding: str = "utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``hybridrec ARGV``; a traceback fails the test."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture(scope="module")
def popularity_model(tmp_path_factory) -> str:
    from evaluation.popularity import PopularityRecommender

    folder = tmp_path_factory.mktemp("model") / "popularity"
    log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 13]})
    PopularityRecommender().fit(log).save(folder)
    return str(folder)


# -- item 4: timestamp units ----------------------------------------------------------------------
def test_mixed_timestamp_units_are_read_per_value_and_reported(tmp_path):
    rows = [f"u{i},i{i},4,{1600000000000 + i}" for i in range(8)] + ["u9,i9,4,1600000009"]
    path = write(tmp_path / "log.csv", HEADER + "\n".join(rows) + "\n")
    dataset = load_from_files(path)
    assert dataset.interactions["timestamp"].between(1600000000, 1600000010).all()
    report = dataset.report.to_dict()
    changed = [entry for entry in report["changed"] if "seconds" in entry["reason"]]
    assert sum(entry["count"] for entry in report["changed"]) == 9
    assert any(f"{path}:10:timestamp" in entry["locations"] for entry in changed)


def test_mixed_timestamp_units_are_an_error_in_strict_mode(tmp_path):
    rows = [f"u{i},i{i},4,{1600000000000 + i}" for i in range(8)] + ["u9,i9,4,1600000009"]
    path = write(tmp_path / "log.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(HybridRecError, match=rf"{path}:10, column 'timestamp': .*mix"):
        load_from_files(path, strict=True)


# -- item 8: skip locations -----------------------------------------------------------------------
def test_skip_locations_are_logged_and_in_the_report_dict(tmp_path, caplog):
    rows = "u1,i1,4,1600000000\nu2,i2,five,1600000000\nu3,i3,4,1600000000\n"
    path = write(tmp_path / "log.csv", "user_id,item_id,weight,timestamp\n" + rows)
    with caplog.at_level(logging.WARNING):
        dataset = load_from_files(path)
    assert f"{path}:3:weight" in caplog.text
    entry = dataset.report.to_dict()["skipped"][0]
    assert entry["locations"] == [f"{path}:3:weight"]


def test_no_usable_rows_lists_every_reason_with_its_count(tmp_path):
    rows = ["u1,i1,five,1", "u2,i2,six,1", ",i3,4,1", "u4,,4,1", "u5,i5,4,soon", "u6,i6,0,1"]
    path = write(tmp_path / "log.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(HybridRecError, match="no usable rows") as raised:
        load_from_files(path, columns=ColumnMapping(weight="rating"))
    message = str(raised.value)
    for reason in ("2 row(s): cannot parse value as a number", "1 row(s): missing user id",
                   "1 row(s): missing item id", "1 row(s): cannot parse timestamp", "1 row(s): weight must be > 0"):
        assert reason in message


# -- item 9: --encoding ---------------------------------------------------------------------------
def test_encoding_flag_reads_a_latin1_log(tmp_path, capsys):
    path = write(tmp_path / "log.csv", HEADER + "andré,café,4,1600000000\nbob,thé,5,1600000001\n", "latin-1")
    code, err = run_main(["build-graph", "--interactions", str(path), "--json", str(tmp_path / "s.json")], capsys)
    assert code == 1 and "--encoding" in err
    code, err = run_main(["build-graph", "--interactions", str(path), "--encoding", "latin-1",
                          "--json", str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["nodes"]["user"] == 2


def test_encoding_flag_reads_a_latin1_id_file(tmp_path):
    path = write(tmp_path / "ids.txt", "café\nthé\n", "latin-1")
    assert read_id_file(path, IdMap(["café", "thé"]), encoding="latin-1").tolist() == ["café", "thé"]


# -- item 11: ids, --min-score, k > catalog --------------------------------------------------------
def test_a_plain_id_list_keeps_a_first_id_with_a_comma(tmp_path):
    path = write(tmp_path / "ids.txt", "a,b\nc\n")
    assert read_id_file(path, IdMap(["a,b", "c"])).tolist() == ["a,b", "c"]


def test_min_score_nan_is_refused(popularity_model, tmp_path, capsys):
    code, err = run_main(["export-similar", "--model", popularity_model, "--min-score", "nan",
                          "--out", str(tmp_path / "s.parquet")], capsys)
    assert code == 1 and "--min-score" in err


def test_k_larger_than_the_catalog_warns_once(popularity_model, caplog):
    from evaluation.protocol import evaluate_ranking
    from hybridrec.recommender_base import RecommenderBase

    model = RecommenderBase.load(popularity_model)
    truth = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [12, 13, 11]})
    with caplog.at_level(logging.WARNING):
        evaluate_ranking(model, truth, ks=(2, 10, 20), batch_size=1)
    warnings = [r.getMessage() for r in caplog.records if "catalog" in r.getMessage()]
    assert len(warnings) == 1 and "20" in warnings[0] and "4" in warnings[0]


def test_one_id_rule_across_csv_tsv_jsonl_and_parquet(tmp_path):
    expected = ["1", "1", "1.0"]
    write(tmp_path / "log.csv", 'user_id,item_id\nu,1\nu,"1"\nu,1.0\n')
    write(tmp_path / "log.tsv", "user_id\titem_id\nu\t1\nu\t1\nu\t1.0\n")
    write(tmp_path / "log.jsonl", '{"user_id": "u", "item_id": 1}\n{"user_id": "u", "item_id": "1"}\n'
                                  '{"user_id": "u", "item_id": 1.0}\n')
    pd.DataFrame({"user_id": ["u"] * 3, "item_id": expected}).to_parquet(tmp_path / "log.parquet")
    for name in ("log.csv", "log.tsv", "log.jsonl", "log.parquet"):
        dataset = load_from_files(tmp_path / name, dedupe="none")
        assert dataset.interactions["item_id"].tolist() == expected, name


# -- item 6: clean errors for bad input -----------------------------------------------------------
def test_non_utf8_users_file_is_a_clean_error(popularity_model, tmp_path, capsys):
    users = tmp_path / "users.txt"
    users.write_bytes(b"1\n\xff\xfe2\n")
    code, err = run_main(["recommend", "--model", popularity_model, "--users", str(users),
                          "--out", str(tmp_path / "r.parquet")], capsys)
    assert code == 1 and str(users) in err and "--encoding" in err


def test_empty_history_file_is_a_clean_error(popularity_model, tmp_path, capsys):
    history = write(tmp_path / "history.csv", "")
    code, err = run_main(["recommend", "--model", popularity_model, "--history", str(history),
                          "--out", str(tmp_path / "r.parquet")], capsys)
    assert code == 1 and str(history) in err


def test_an_id_list_of_only_a_byte_order_mark_is_a_clean_error(popularity_model, tmp_path, capsys):
    users = tmp_path / "users.txt"
    users.write_bytes("\ufeff\n".encode())
    code, err = run_main(["recommend", "--model", popularity_model, "--users", str(users),
                          "--out", str(tmp_path / "r.parquet")], capsys)
    assert code == 1 and str(users) in err and "no ids" in err


def test_empty_items_csv_is_a_clean_error(tmp_path, capsys):
    items = write(tmp_path / "items.csv", "")
    code, err = run_main(["export-similar", "--items", str(items), "--text-cols", "title",
                          "--out", str(tmp_path / "s.parquet")], capsys)
    assert code == 1 and str(items) in err


def test_negative_threads_is_a_clean_error(popularity_model, tmp_path, capsys):
    code, err = run_main(["export-similar", "--model", popularity_model, "--threads", "-2",
                          "--out", str(tmp_path / "s.parquet")], capsys)
    assert code == 1 and "--threads" in err


def test_graph_config_with_a_toml_syntax_error_is_a_clean_error(tmp_path, capsys):
    log = write(tmp_path / "log.csv", HEADER + "u1,i1,4,1600000000\n")
    config = write(tmp_path / "graph.toml", "[graph\nnumeric_buckets = 3\n")
    code, err = run_main(["build-graph", "--interactions", str(log), "--config", str(config)], capsys)
    assert code == 1 and str(config) in err


def test_train_config_with_a_wrongly_typed_value_names_key_and_file(tmp_path, capsys):
    log = write(tmp_path / "log.csv", HEADER + "u1,i1,4,1600000000\nu2,i1,5,1600000001\n")
    config = write(tmp_path / "train.toml", '[train]\nepochs = "two"\n')
    code, err = run_main(["train", "--interactions", str(log), "--config", str(config),
                          "--out", str(tmp_path / "model")], capsys)
    assert code == 1 and str(config) in err and "epochs" in err
    assert not (tmp_path / "model").exists()


def test_train_config_type_check_accepts_integers_for_floats(tmp_path):
    from training.config import TrainConfig

    config = write(tmp_path / "train.toml", "[train]\nlr = 1\nepochs = 3\n")
    loaded = TrainConfig.from_toml(config)
    assert loaded.lr == 1.0 and isinstance(loaded.lr, float) and loaded.epochs == 3
    assert np.isclose(TrainConfig().lr, 5e-3)


def test_train_config_out_of_range_value_names_the_file(tmp_path):
    from training.config import TrainConfig

    config = write(tmp_path / "train.toml", "[train]\nepochs = -3\n")
    with pytest.raises(HybridRecError, match=rf"{config}: \[train\] TrainConfig.epochs must be >= 1"):
        TrainConfig.from_toml(config)


def test_a_config_key_outside_any_table_is_an_error(tmp_path):
    from hybridrec.graph import GraphConfig

    config = write(tmp_path / "graph.toml", "train = 3\n")
    with pytest.raises(HybridRecError, match=rf"{config}: top-level key\(s\) \['train'\] are not tables"):
        GraphConfig.from_toml(config)


def test_encode_reads_items_in_the_given_encoding(tmp_path):
    import argparse

    from hybridrec.cli import encode

    items = write(tmp_path / "items.csv", "item_id,title\n1,Caf\u00e9\n", "latin-1")
    parser = argparse.ArgumentParser()
    encode.register(parser.add_subparsers())
    args = parser.parse_args(["encode", "--items", str(items), "--encoding", "latin-1", "--text-cols", "title",
                              "--out", str(tmp_path / "cache")])
    loaded = encode._load_items(args)[0]
    assert loaded["title"].tolist() == ["Caf\u00e9"]
