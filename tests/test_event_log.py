"""Generic event logs: column mapping, event weights, formats, and one test per kind of bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data_builders.event_log import DEFAULT_EVENT_WEIGHTS, ColumnMapping, load_from_files
from hybridrec.errors import HybridRecError

LOG = """user_id,item_id,event,timestamp
u1,i1,view,1600000000
u1,i2,cart,1600000100
u2,i1,purchase,1600000200
u2,i3,click,1600000300
u3,i2,view,1600000400
"""
ITEMS = """item_id,title,genre,tags,price
i1,Red shoe,shoes,red|leather,$12.99
i2,Blue hat,hats,,3.50
i3,Green scarf,,wool|green|wool,
i4,Cold item,hats,new,1
"""
USERS = """user_id,country,age
u1,FR,31
u2,DE,
u9,IT,40
"""


def write(path, text: str):
    path.write_text(text)
    return path


def examples(dataset) -> list[str]:
    return [example for shown in dataset.report.examples.values() for example in shown]


def skipped(dataset, reason: str) -> int:
    return sum(count for (_, why), count in dataset.report.skipped.items() if why == reason)


@pytest.fixture
def log(tmp_path):
    return write(tmp_path / "log.csv", LOG)


def test_event_types_map_to_default_weights(log):
    dataset = load_from_files(log)
    assert dataset.interactions["weight"].tolist() == [1.0, 3.0, 5.0, 1.0, 1.0]
    assert dataset.interactions["weight"].dtype == np.float32
    assert dataset.interactions["event"].tolist() == ["view", "cart", "purchase", "click", "view"]
    assert dict(DEFAULT_EVENT_WEIGHTS) == {"view": 1, "click": 1, "cart": 3, "purchase": 5}


def test_custom_event_weights(log):
    dataset = load_from_files(log, event_weights={"view": 0.5, "click": 1, "cart": 2, "purchase": 4})
    assert dataset.interactions["weight"].tolist() == [0.5, 2.0, 4.0, 1.0, 0.5]


def test_canonical_columns_and_dtypes(log):
    interactions = load_from_files(log).interactions
    assert list(interactions.columns) == ["user_id", "item_id", "weight", "timestamp", "event"]
    assert interactions["timestamp"].dtype == np.int64
    assert interactions["user_id"].tolist() == ["u1", "u1", "u2", "u2", "u3"]


def test_no_event_and_no_weight_column_means_weight_one(tmp_path):
    dataset = load_from_files(write(tmp_path / "log.csv", "user_id,item_id\nu1,i1\nu2,i1\n"))
    assert dataset.interactions["weight"].tolist() == [1.0, 1.0]
    assert list(dataset.interactions.columns) == ["user_id", "item_id", "weight"]


def test_weight_column_is_used(tmp_path):
    dataset = load_from_files(write(tmp_path / "log.csv", "user_id,item_id,weight\nu1,i1,2.5\nu2,i1,1\n"))
    assert dataset.interactions["weight"].tolist() == [2.5, 1.0]


def test_renamed_columns_and_rating_as_weight(tmp_path):
    path = write(tmp_path / "log.csv", "uid,sku,stars,when\n1,a,4,2020-09-13T12:26:40Z\n2,b,2,1600000000\n")
    columns = ColumnMapping(user_id="uid", item_id="sku", timestamp="when", event=None, weight="stars", rating="stars")
    interactions = load_from_files(path, columns=columns).interactions
    assert interactions["rating"].tolist() == [4.0, 2.0] and interactions["weight"].tolist() == [4.0, 2.0]
    assert interactions["timestamp"].tolist() == [1600000000, 1600000000]
    assert interactions["user_id"].tolist() == ["1", "2"]


def test_parquet_and_json_lines_give_the_same_interactions(log, tmp_path):
    expected = load_from_files(log).interactions
    frame = pd.read_csv(log)
    frame.to_parquet(tmp_path / "log.parquet")
    frame.to_json(tmp_path / "log.jsonl", orient="records", lines=True)
    for name in ("log.parquet", "log.jsonl"):
        pd.testing.assert_frame_equal(load_from_files(tmp_path / name).interactions, expected)


def test_integer_ids_in_parquet_match_a_csv_catalog(tmp_path):
    pd.DataFrame({"user_id": [1, 2], "item_id": [10, 11]}).to_parquet(tmp_path / "log.parquet")
    items = write(tmp_path / "items.csv", "item_id,title\n10,a\n11,b\n")
    dataset = load_from_files(tmp_path / "log.parquet", items, item_text_cols=["title"])
    assert dataset.report.total_skipped == 0 and dataset.interactions["item_id"].tolist() == ["10", "11"]


def test_item_and_user_tables_with_roles(log, tmp_path):
    dataset = load_from_files(log, write(tmp_path / "items.csv", ITEMS), write(tmp_path / "users.csv", USERS),
                              item_text_cols=["title"], item_categorical_cols=["genre"], item_multi_cols=["tags"],
                              item_numeric_cols=["price"], user_categorical_cols=["country"],
                              user_numeric_cols=["age"])
    items = dataset.items.set_index("item_id")
    assert items.loc["i1", "tags"] == ["red", "leather"] and items.loc["i3", "tags"] == ["wool", "green"]
    assert items.loc["i1", "price"] == pytest.approx(12.99) and np.isnan(items.loc["i3", "price"])
    assert items.loc["i3", "genre"] is None
    assert dataset.item_roles.multi == ["tags"] and dataset.user_roles.numeric == ["age"]


def test_cold_items_and_cold_users_are_kept(log, tmp_path):
    dataset = load_from_files(log, write(tmp_path / "items.csv", ITEMS), write(tmp_path / "users.csv", USERS),
                              user_categorical_cols=["country"])
    assert list(dataset.cold_item_ids) == ["i4"] and list(dataset.cold_user_ids) == ["u9"]


def test_users_missing_from_the_user_table_are_kept_without_attributes(log, tmp_path):
    dataset = load_from_files(log, users_path=write(tmp_path / "users.csv", USERS), user_categorical_cols=["country"])
    users = dataset.users.set_index("user_id")
    assert users.loc["u3", "country"] is None and len(dataset.interactions) == 5
    assert any("not in the user table" in note for note in dataset.report.notes)


# --- one test per kind of bad input -------------------------------------------------------------

def test_missing_required_column_names_file_and_column(tmp_path):
    path = write(tmp_path / "log.csv", "user,item_id\nu1,i1\n")
    with pytest.raises(HybridRecError, match=r"log\.csv, column 'user_id': missing required column"):
        load_from_files(path)


def test_renamed_column_that_is_absent_is_an_error(log):
    with pytest.raises(HybridRecError, match="'ts'"):
        load_from_files(log, columns=ColumnMapping(timestamp="ts"))


def test_unparsable_timestamp_is_a_counted_skip(tmp_path):
    path = write(tmp_path / "log.csv", LOG + "u4,i1,view,yesterday\n")
    dataset = load_from_files(path)
    assert skipped(dataset, "cannot parse timestamp") == 1
    assert f"{path}:7, column 'timestamp': cannot parse timestamp" in examples(dataset)


def test_unparsable_weight_is_a_counted_skip(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,weight\nu1,i1,2\nu2,i1,lots\nu3,i1,-1\n")
    dataset = load_from_files(path)
    assert len(dataset.interactions) == 1
    assert f"{path}:3, column 'weight': cannot parse value as a number" in examples(dataset)
    assert f"{path}:4, column 'weight': weight must be > 0" in examples(dataset)


def test_row_with_wrong_field_count_is_a_counted_skip(tmp_path):
    path = write(tmp_path / "log.csv", LOG + "u4,i1,view\n")
    dataset = load_from_files(path)
    assert len(dataset.interactions) == 5 and f"{path}:7: expected 4 fields, found 3" in examples(dataset)


def test_missing_id_is_a_counted_skip(tmp_path):
    path = write(tmp_path / "log.csv", LOG + ",i1,view,1600000500\n")
    dataset = load_from_files(path)
    assert f"{path}:7, column 'user_id': missing user id" in examples(dataset)


def test_unknown_event_type_is_a_counted_skip(tmp_path):
    path = write(tmp_path / "log.csv", LOG + "u4,i1,like,1600000500\nu4,i2,like,1600000600\n")
    dataset = load_from_files(path)
    reason = "unknown event type 'like' (event_weights has ['cart', 'click', 'purchase', 'view'])"
    assert dataset.report.skipped[(str(path), reason)] == 2
    assert f"{path}:7, column 'event': {reason}" in examples(dataset)


def test_unknown_item_is_a_counted_skip(log, tmp_path):
    items = write(tmp_path / "items.csv", "item_id,title\ni1,a\ni2,b\n")
    dataset = load_from_files(log, items, item_text_cols=["title"])
    assert skipped(dataset, "item not in the item catalog") == 1
    assert f"{log}:5, column 'item_id': item not in the item catalog" in examples(dataset)


def test_duplicate_event_is_a_counted_skip(tmp_path):
    path = write(tmp_path / "log.csv", LOG + "u1,i1,view,1600000000\n")
    dataset = load_from_files(path)
    assert len(dataset.interactions) == 5
    assert any(e.startswith(f"{path}:7: duplicate event") for e in examples(dataset))
    assert len(load_from_files(path, dedupe="none").interactions) == 6


def test_dedupe_policy_is_applied(tmp_path):
    path = write(tmp_path / "log.csv", LOG + "u1,i1,purchase,1600000900\n")
    dataset = load_from_files(path, dedupe="sum")
    pair = dataset.interactions.query("user_id == 'u1' and item_id == 'i1'")
    assert pair["weight"].tolist() == [6.0] and pair["event"].tolist() == ["purchase"]


def test_empty_file_raises(tmp_path):
    with pytest.raises(HybridRecError, match=r"log\.csv: file is empty"):
        load_from_files(write(tmp_path / "log.csv", ""))


def test_header_only_file_raises(tmp_path):
    with pytest.raises(HybridRecError, match=r"log\.csv: no usable rows"):
        load_from_files(write(tmp_path / "log.csv", "user_id,item_id\n"))


def test_non_utf8_file_names_file_line_and_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user_id,item_id\nu1,i1\nu2,caf\xe9\n")
    with pytest.raises(HybridRecError, match=r"log\.csv:3, column 'item_id': cannot decode byte 0xe9 as utf-8"):
        load_from_files(path)
    assert load_from_files(path, encoding="latin-1").interactions["item_id"].tolist() == ["i1", "café"]


def test_all_rows_skipped_raises_with_the_reasons(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,event\nu1,i1,like\n")
    with pytest.raises(HybridRecError, match="no usable rows.*unknown event type 'like'"):
        load_from_files(path)


def test_strict_mode_turns_skips_into_errors(log, tmp_path):
    items = write(tmp_path / "items.csv", "item_id\ni1\ni2\n")
    with pytest.raises(HybridRecError, match=r"log\.csv:5, column 'item_id': item not in the item catalog.*strict"):
        load_from_files(log, items, strict=True)


def test_bad_item_table_rows_are_counted(log, tmp_path):
    items = write(tmp_path / "items.csv", "item_id,title\ni1,a\ni1,again\n,blank\ni2,b\ni3,c\n")
    dataset = load_from_files(log, items, item_text_cols=["title"])
    assert dataset.items["title"].tolist() == ["a", "b", "c"]
    assert f"{items}:3, column 'item_id': duplicate item_id (its first row is kept)" in examples(dataset)
    assert f"{items}:4, column 'item_id': missing item_id" in examples(dataset)


# --- arguments ----------------------------------------------------------------------------------

def test_column_mapping_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ColumnMapping().user_id = "x"
    with pytest.raises(HybridRecError, match="ColumnMapping.user_id"):
        ColumnMapping(user_id="")
    with pytest.raises(HybridRecError, match="ColumnMapping.item_id and ColumnMapping.timestamp"):
        ColumnMapping(item_id="x", timestamp="x")


def test_bad_event_weights_and_policy_are_errors(log):
    with pytest.raises(HybridRecError, match=r"event_weights\['view'\] must be a number > 0"):
        load_from_files(log, event_weights={"view": 0})
    with pytest.raises(HybridRecError, match="unknown dedupe policy 'often'"):
        load_from_files(log, dedupe="often")
    with pytest.raises(HybridRecError, match="without items_path"):
        load_from_files(log, item_text_cols=["title"])


def test_event_weights_without_event_column_is_an_error(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id\nu1,i1\n")
    with pytest.raises(HybridRecError, match="no event column 'event'"):
        load_from_files(path, event_weights={"view": 1})
