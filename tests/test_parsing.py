"""Location-aware parsing: line numbers, counted skips, clear errors for undecodable or empty files."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from data_builders.parsing import (LINE, as_strings, numeric_values, parse_numeric, read_delimited, read_json_lines,
                                   read_parquet, read_table, require_columns, require_rows, skip_rows)
from data_builders.timestamps import parse_timestamps
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_u_data_slice_keeps_every_row_with_its_line(data_dir, tmp_path):
    lines = (data_dir / "ml-100k" / "u.data").read_text().splitlines()[:2000]
    path = write(tmp_path / "u.data", "\n".join(lines) + "\n")
    report = LoadReport()
    table = read_delimited(path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"], report=report,
                           quoted=False)
    assert len(table) == 2000 and table[LINE].tolist() == list(range(1, 2001))
    assert table.iloc[0]["user_id"] == lines[0].split("\t")[0]
    assert report.total_skipped == 0


def test_quoted_and_split_paths_agree(tmp_path):
    rows = "a,b\n1,x\n2,y\n\n3,z\n"
    plain = read_delimited(write(tmp_path / "plain.csv", rows), sep=",", report=LoadReport())
    quoted = read_delimited(write(tmp_path / "quoted.csv", rows.replace("y", '"y"')), sep=",", report=LoadReport())
    pd.testing.assert_frame_equal(plain, quoted)
    assert plain[LINE].tolist() == [2, 3, 5]


def test_quoted_separator_and_newline_keep_the_record_start_line(tmp_path):
    path = write(tmp_path / "items.csv", 'id,name\n1,"a, b"\n2,"multi\nline"\n3,c\n')
    table = read_delimited(path, sep=",", report=LoadReport())
    assert table["name"].tolist() == ["a, b", "multi\nline", "c"]
    assert table[LINE].tolist() == [2, 3, 5]


def test_wrong_field_count_is_a_counted_skip_naming_the_line(tmp_path):
    path = write(tmp_path / "log.csv", "a,b\n1,2\n3,4,5\n6,7\n")
    report = LoadReport()
    table = read_delimited(path, sep=",", report=report)
    assert len(table) == 2
    assert report.total_skipped == 1
    assert any(f"{path}:3" in example for examples in report.examples.values() for example in examples)


def test_wrong_field_count_raises_in_strict_mode(tmp_path):
    path = write(tmp_path / "log.csv", "a,b\n1,2\n3,4,5\n")
    with pytest.raises(HybridRecError, match=r"log\.csv:3: expected 2 fields, found 3"):
        read_delimited(path, sep=",", report=LoadReport(strict=True))


def test_non_utf8_file_names_file_line_and_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user_id,title\nu1,ok\nu2,caf\xe9\n")
    with pytest.raises(HybridRecError, match=r"log\.csv:3, column 'title': cannot decode byte 0xe9") as err:
        read_delimited(path, sep=",", report=LoadReport())
    assert "encoding=" in str(err.value)


def test_empty_and_blank_files_raise(tmp_path):
    for text in ("", "\n  \n"):
        with pytest.raises(HybridRecError, match="file is empty"):
            read_delimited(write(tmp_path / "empty.csv", text), sep=",", report=LoadReport())


def test_missing_file_raises(tmp_path):
    with pytest.raises(HybridRecError, match="file not found"):
        read_table(tmp_path / "nope.csv", report=LoadReport())


def test_header_only_file_has_no_usable_rows(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id\n")
    table = read_delimited(path, sep=",", report=LoadReport())
    with pytest.raises(HybridRecError, match="no usable rows"):
        require_rows(table, file=path, report=LoadReport())


def test_duplicate_header_name_raises(tmp_path):
    with pytest.raises(HybridRecError, match=r"log\.csv:1, column 'a': duplicate column name"):
        read_delimited(write(tmp_path / "log.csv", "a,b,a\n1,2,3\n"), sep=",", report=LoadReport())


def test_missing_column_names_file_and_column(tmp_path):
    table = read_delimited(write(tmp_path / "log.csv", "a,b\n1,2\n"), sep=",", report=LoadReport())
    with pytest.raises(HybridRecError, match=r"log\.csv, column 'user_id': missing required column"):
        require_columns(table, ["a", "user_id"], file=tmp_path / "log.csv")


def test_unparsable_number_is_a_counted_skip_with_line_and_column(tmp_path):
    table = read_delimited(write(tmp_path / "r.csv", "rating\n4\nfour\n\n5\n 3 \n"), sep=",", report=LoadReport())
    report = LoadReport()
    parsed = parse_numeric(table, "rating", file="r.csv", report=report)
    assert parsed["rating"].tolist() == [4.0, 5.0, 3.0]
    assert report.examples[("r.csv", "cannot parse value as a number")] == ["r.csv:3, column 'rating': "
                                                                            "cannot parse value as a number"]


def test_strict_number_error_shows_the_value():
    table = pd.DataFrame({"rating": ["4", "x"], LINE: [2, 3]})
    with pytest.raises(HybridRecError, match=r"r\.csv:3, column 'rating'.*'x'"):
        parse_numeric(table, "rating", file="r.csv", report=LoadReport(strict=True))


def test_blank_and_fractional_values_are_their_own_reasons():
    table = pd.DataFrame({"id": ["1", "", "2.5", "3"], LINE: [2, 3, 4, 5]})
    report = LoadReport()
    parsed = parse_numeric(table, "id", file="f", report=report, integer=True)
    assert parsed["id"].tolist() == [1, 3] and parsed["id"].dtype == np.int64
    assert {reason for _, reason in report.skipped} == {"missing value", "value is not an integer"}


def test_more_bad_rows_than_examples_are_all_counted():
    table = pd.DataFrame({"x": ["a"] * 12 + ["1"], LINE: np.arange(2, 15)})
    report = LoadReport()
    parse_numeric(table, "x", file="f", report=report)
    assert report.total_skipped == 12
    assert len(report.examples[("f", "cannot parse value as a number")]) == report.max_examples


def test_optional_numbers_become_nan_with_a_note():
    table = pd.DataFrame({"price": ["$1,299.50", "NA", "cheap", "12 EUR"], LINE: [2, 3, 4, 5]})
    report = LoadReport()
    parsed = parse_numeric(table, "price", file="items.csv", report=report, required=False, currency=True)
    np.testing.assert_array_equal(parsed["price"].to_numpy(), [1299.5, np.nan, np.nan, 12.0])
    assert report.total_skipped == 0 and "items.csv:4, column 'price'" in report.notes[0]


def test_numeric_values_read_pandas_str_columns():
    values, blank = numeric_values(pd.Series(["1", " 2", "", None, "nan"], dtype="str"))
    np.testing.assert_array_equal(values, [1.0, 2.0, np.nan, np.nan, np.nan])
    assert blank.tolist() == [False, False, True, True, True]  # "nan" is a missing marker


def test_timestamps_from_seconds_iso_and_datetimes():
    table = pd.DataFrame({"ts": ["1600000000", "2020-09-13T12:26:40Z", "2020-09-13 12:26:40"], LINE: [2, 3, 4]})
    parsed = parse_timestamps(table, "ts", file="f", report=LoadReport())
    assert parsed["ts"].tolist() == [1600000000] * 3 and parsed["ts"].dtype == np.int64
    dated = pd.DataFrame({"ts": pd.to_datetime(["2020-09-13 12:26:40"]), LINE: [2]})
    assert parse_timestamps(dated, "ts", file="f", report=LoadReport())["ts"].tolist() == [1600000000]


def test_millisecond_timestamps_are_converted_with_a_note():
    table = pd.DataFrame({"ts": [1600000000123, 1600000001000], LINE: [2, 3]})
    report = LoadReport()
    assert parse_timestamps(table, "ts", file="f", report=report)["ts"].tolist() == [1600000000, 1600000001]
    assert "milliseconds" in report.notes[0]


def test_bad_timestamp_is_a_counted_skip():
    table = pd.DataFrame({"ts": ["1600000000", "yesterday", ""], LINE: [2, 3, 4]})
    report = LoadReport()
    assert len(parse_timestamps(table, "ts", file="f", report=report)) == 1
    assert report.examples[("f", "cannot parse timestamp")] == ["f:3, column 'ts': cannot parse timestamp"]
    assert report.skipped[("f", "missing timestamp")] == 1


def test_ids_compare_equal_across_formats():
    assert as_strings(pd.Series([7.0, None])).tolist() == ["7", ""]
    assert as_strings(pd.Series([7, "8", 9.0, None], dtype=object)).tolist() == ["7", "8", "9", ""]
    assert as_strings(pd.Series([" a "])).tolist() == ["a"]


def test_skip_rows_without_line_numbers_still_counts():
    report = LoadReport()
    kept = skip_rows(pd.DataFrame({"a": [1, 2, 3]}), [True, False, True], "bad", file="f", report=report)
    assert kept["a"].tolist() == [2] and report.skipped[("f", "bad")] == 2


def test_json_lines_skip_bad_lines_and_accept_python_literals(tmp_path):
    path = write(tmp_path / "meta.json", '{"asin": "A"}\n{broken\n{\'asin\': \'B\', \'x\': [1]}\n[1, 2]\n')
    report = LoadReport()
    table = read_json_lines(path, report=report, allow_python_literals=True)
    assert table["asin"].tolist() == ["A", "B"] and table[LINE].tolist() == [1, 3]
    assert report.total_skipped == 2
    assert any(f"{path}:2" in e for examples in report.examples.values() for e in examples)


def test_json_array_and_all_bad_json_raise(tmp_path):
    with pytest.raises(HybridRecError, match="JSON array"):
        read_json_lines(write(tmp_path / "a.json", '[{"a": 1}]'), report=LoadReport())
    with pytest.raises(HybridRecError, match="none of its 2 line"):
        read_json_lines(write(tmp_path / "b.json", "{\n}x\n"), report=LoadReport())


def test_gzip_files_are_read(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read_table(path, report=LoadReport())["b"].tolist() == ["2"]


def test_corrupt_parquet_raises(tmp_path):
    path = write(tmp_path / "log.parquet", "not parquet")
    with pytest.raises(HybridRecError, match="not a readable Parquet file"):
        read_parquet(path, report=LoadReport())


def test_read_table_dispatches_by_extension(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    shutil.copy(tmp_path / "t.jsonl", tmp_path / "t.ndjson")
    assert read_table(tmp_path / "t.parquet", report=LoadReport())["a"].tolist() == [1, 2]
    for name in ("t.jsonl", "t.ndjson"):  # JSON numbers keep their text, like CSV fields
        assert read_table(tmp_path / name, report=LoadReport())["a"].tolist() == ["1", "2"]
    assert read_table(write(tmp_path / "t.tsv", "a\tb\n1\t2\n"), report=LoadReport())["b"].tolist() == ["2"]
