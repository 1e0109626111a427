"""The pyarrow readers: logs read in record batches give the Python reader's table, skips and line numbers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pa_dataset
import pytest

from data_builders import parsing, text_pieces
from data_builders.arrow_tables import ArrowRead
from data_builders.event_log import load_from_files
from data_builders.parsing import LINE, read_delimited, read_table, require_columns
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport

ROWS = 200_000
HEADER = "user_id,item_id,timestamp"
#: Bad rows of the generated log, by their line in the file (the header is line 1).
BAD_ROWS = {1_001: "u1,7", 50_002: "u2,8,soon", 120_003: ",9,1600000000", 199_999: "u4,10,1600000000,extra"}
SKIPS = {"expected 3 fields, found 2": ["{log}:1001"], "expected 3 fields, found 4": ["{log}:199999"],
         "cannot parse timestamp": ["{log}:50002:timestamp"], "missing user id": ["{log}:120003:user_id"]}


def log_rows(count: int) -> list[str]:
    """``count`` distinct events in time order: integer item ids, a day column to partition by."""
    rows = [f"u{i % 997},{i % 4999},{1600000000 + 60 * i},2020-09-{13 + 60 * i // 86400:02d}" for i in range(count)]
    return [HEADER + ",day"] + rows


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> Path:
    lines = [HEADER] + [f"u{i % 997},{i % 4999},{1600000000 + i}" for i in range(ROWS)]
    for line, text in BAD_ROWS.items():
        lines[line - 1] = text
    path = tmp_path_factory.mktemp("log") / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def clean_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clean") / "log.csv"
    path.write_text("\n".join(log_rows(20_000)) + "\n")
    return path


@pytest.fixture
def small_pieces(monkeypatch):
    """Feed Arrow pieces of 4 KiB, so that records and quoted fields straddle piece ends."""
    monkeypatch.setattr(text_pieces, "PIECE_BYTES", 4096)


def skips(report: LoadReport) -> dict[str, list[str]]:
    return {reason: report.locations[(file, reason)] for (file, reason) in report.skipped}


def test_a_large_log_counts_each_bad_row_at_its_line(big_log):
    dataset = load_from_files(big_log)
    assert len(dataset.interactions) == ROWS - len(BAD_ROWS)
    assert skips(dataset.report) == {reason: [place.format(log=big_log) for place in places]
                                     for reason, places in SKIPS.items()}
    assert dataset.report.total_skipped == len(BAD_ROWS)
    assert dataset.report.rows_read[str(big_log)] == ROWS
    assert dataset.interactions["user_id"].iloc[-1] == f"u{(ROWS - 1) % 997}"
    assert dataset.interactions["item_id"].dtype == "str" and dataset.interactions["timestamp"].dtype == np.int64


def test_pieces_of_any_size_give_the_same_log(big_log, monkeypatch):
    expected = load_from_files(big_log)
    monkeypatch.setattr(text_pieces, "PIECE_BYTES", 64 * 1024)
    dataset = load_from_files(big_log)
    pd.testing.assert_frame_equal(dataset.interactions, expected.interactions)
    assert dataset.report.to_dict() == expected.report.to_dict()


def test_a_partitioned_parquet_folder_reads_as_the_csv(clean_log, tmp_path):
    table = pa.table(pd.read_csv(clean_log, dtype={"user_id": str}))
    folder = tmp_path / "log_parquet"
    pa_dataset.write_dataset(table, folder, format="parquet", partitioning=["day"], partitioning_flavor="hive")
    assert len(list(folder.glob("day=*"))) > 1
    expected = load_from_files(clean_log)
    pd.testing.assert_frame_equal(load_from_files(folder).interactions, expected.interactions)
    days = read_table(folder, report=LoadReport())["day"]
    assert days.dtype == "str" and days.iloc[0] == "2020-09-13"  # a partition key is text as in the path


def test_json_lines_read_by_pyarrow_give_the_csv_table(clean_log, tmp_path, caplog):
    frame = pd.read_csv(clean_log, dtype={"user_id": str})
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in frame.to_dict(orient="records")))
    with caplog.at_level(logging.INFO, logger="data_builders.parsing"):
        dataset = load_from_files(path)
    assert "Python reader" not in caplog.text  # pyarrow.json read it
    pd.testing.assert_frame_equal(dataset.interactions, load_from_files(clean_log).interactions)


def test_a_latin1_log_is_transcoded_with_its_encoding(tmp_path, small_pieces):
    rows = [HEADER] + [f"u{i},i{i},{1600000000 + i}" for i in range(2000)] + ["andré,café,1600009999"]
    path = tmp_path / "log.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    interactions = load_from_files(path, encoding="latin-1").interactions
    assert interactions["user_id"].iloc[-1] == "andré" and interactions["item_id"].iloc[-1] == "café"
    with pytest.raises(HybridRecError, match=rf"{path}:2002, column 'user_id': cannot decode byte 0xe9 as utf-8"):
        load_from_files(path)


def test_quoted_commas_and_newlines_keep_every_row_on_its_line(tmp_path, small_pieces):
    record = 'u{0},"a, b",{0}\nu{0},"two\nlines, and ""quotes""",{0}\n'
    path = tmp_path / "log.csv"
    path.write_text("user_id,title,timestamp\n" + "".join(record.format(i) for i in range(500)) + "u,x\n")
    report = LoadReport()
    table = read_delimited(path, sep=",", report=report)
    assert len(table) == 1000 and table[LINE].tolist()[:4] == [2, 3, 5, 6] and table[LINE].iloc[-1] == 1500
    assert table["title"].tolist()[:2] == ["a, b", 'two\nlines, and "quotes"']
    assert report.locations[(str(path), "expected 3 fields, found 2")] == [f"{path}:1502"]


def test_the_python_reader_gives_the_same_table_and_skips(tmp_path, monkeypatch):
    text = ('\ufeffuser_id,item_id,title\r\n\r\nu1,1,"a, b"\r\n  \r\nu2,2,"two\r\nlines"\r\n'
            'u3,3\r\n,,\r\n"",4,""\r\nu5,5,x,extra\r\nu6,6,"""quoted"""\r\n')
    path = tmp_path / "log.csv"
    path.write_text(text)
    arrow_report, python_report = LoadReport(), LoadReport()
    by_arrow = read_delimited(path, sep=",", report=arrow_report)
    monkeypatch.setattr(parsing, "read_delimited_arrow", lambda *args, **kwargs: ArrowRead(fallback="forced"))
    by_python = read_delimited(path, sep=",", report=python_report)
    pd.testing.assert_frame_equal(by_arrow, by_python)
    assert by_arrow[LINE].tolist() == [3, 5, 8, 9, 11] and by_arrow["title"].iloc[-1] == '"quoted"'
    assert arrow_report.to_dict() == python_report.to_dict() and arrow_report.total_skipped == 2


def test_a_file_only_python_reads_as_written_falls_back_with_a_logged_reason(tmp_path, caplog):
    path = tmp_path / "log.csv"
    path.write_text('user_id,item_id\nu1,12" screen\nu2,plain\n')
    with caplog.at_level(logging.INFO, logger="data_builders.parsing"):
        table = read_delimited(path, sep=",", report=LoadReport())
    assert "read by the Python reader" in caplog.text and "double quote" in caplog.text
    assert table["item_id"].tolist() == ['12" screen', "plain"] and table[LINE].tolist() == [2, 3]


def test_only_the_wanted_columns_are_kept_and_errors_list_all(clean_log):
    table = read_table(clean_log, report=LoadReport(), columns=["item_id", "user_id"])
    assert list(table.columns) == ["user_id", "item_id", LINE]
    with pytest.raises(HybridRecError, match=r"found \['user_id', 'item_id', 'timestamp', 'day'\]"):
        require_columns(table, ["rating"], file=clean_log)
