"""Item and user tables from files, on the real fashion-products catalog and small generated files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_builders.catalog import category_values, multi_values, read_items, read_users, text_values
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport

FASHION_CATEGORIES = ["gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage"]


@pytest.fixture(scope="module")
def fashion_dir(data_dir):
    folder = data_dir / "fashion-products"
    if not (folder / "styles.csv").is_file():
        pytest.skip("fashion-products/styles.csv not in the data folder")
    return folder


@pytest.fixture(scope="module")
def fashion(fashion_dir):
    report = LoadReport()
    items, roles = read_items(fashion_dir / "styles.csv", item_id_col="id", text_cols=["productDisplayName"],
                              categorical_cols=FASHION_CATEGORIES, numeric_cols=["year"],
                              image_dir=fashion_dir / "images", report=report)
    return items, roles, report


def test_fashion_catalog_reads_every_row(fashion):
    items, _, report = fashion
    assert len(items) == 44_446 and items["item_id"].is_unique
    assert report.total_skipped == 0


def test_fashion_catalog_roles_and_columns(fashion):
    items, roles, _ = fashion
    assert roles.categorical == FASHION_CATEGORIES and roles.numeric == ["year"] and roles.image == "image_path"
    assert list(items.columns) == ["item_id", "productDisplayName", *FASHION_CATEGORIES, "year", "image_path"]


def test_fashion_quoted_names_and_missing_values(fashion):
    items, _, _ = fashion
    by_id = items.set_index("item_id")
    assert by_id.loc["7491", "productDisplayName"] == "Nike Women's EM Tempo 3.5\" Pink Short"
    assert by_id["baseColour"].isna().sum() == 15 and by_id["year"].isna().sum() == 1


def test_fashion_images_found_by_id(fashion, fashion_dir):
    items, _, report = fashion
    with_image = items["image_path"].dropna()
    assert len(with_image) == len(list((fashion_dir / "images").glob("*.jpg")))
    first = items.dropna(subset=["image_path"]).iloc[0]
    assert first["image_path"].endswith(f"/{first['item_id']}.jpg")
    assert any("have a local image" in note for note in report.notes)


def test_extra_comma_in_a_product_name_is_a_counted_skip(fashion_dir, tmp_path):
    lines = (fashion_dir / "styles.csv").read_text().splitlines()[:50]
    lines.append("99999,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Shirt, with a comma")
    path = tmp_path / "styles.csv"
    path.write_text("\n".join(lines) + "\n")
    report = LoadReport()
    items, _ = read_items(path, item_id_col="id", text_cols=["productDisplayName"], report=report)
    assert len(items) == 49
    assert report.examples[(str(path), "expected 10 fields, found 11")] == [f"{path}:51: expected 10 fields, found 11"]


def test_multi_values_from_strings_and_lists():
    values = pd.Series(["a|b| a |", None, ["x", ["y", "x"]], "", float("nan")], dtype=object)
    assert multi_values(values).tolist() == [["a", "b"], [], ["x", "y"], [], []]


def test_text_and_category_values():
    assert text_values(pd.Series([" hi ", None, ["p1", "p2"]], dtype=object)).tolist() == ["hi", "", "p1 p2"]
    assert category_values(pd.Series(["x", "", None, 2011.0], dtype=object)).tolist() == ["x", None, None, "2011"]


def test_catalog_from_json_lines_with_lists(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"sku": 1, "tags": ["a", "b"], "price": "$5.00"}\n{"sku": 2, "tags": [], "price": 7}\n')
    items, roles = read_items(path, item_id_col="sku", multi_cols=["tags"], numeric_cols=["price"])
    assert items["item_id"].tolist() == ["1", "2"] and items["tags"].tolist() == [["a", "b"], []]
    assert items["price"].tolist() == [5.0, 7.0] and roles.multi == ["tags"]


def test_bad_numeric_value_becomes_nan_with_a_note(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,price\na,1.5\nb,cheap\n")
    report = LoadReport()
    items, _ = read_items(path, numeric_cols=["price"], report=report)
    assert np.isnan(items["price"].iloc[1]) and report.total_skipped == 0
    assert f"{path}:3, column 'price'" in report.notes[0]


def test_image_column_paths_are_resolved_and_checked(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"png")
    path = tmp_path / "items.csv"
    path.write_text("item_id,picture\na,img/a.png\nb,img/missing.png\nc,http://example.com/c.jpg\nd,\n")
    report = LoadReport()
    items, roles = read_items(path, image_col="picture", report=report)
    assert items["image_path"].tolist() == [str((tmp_path / "img" / "a.png").absolute()), None, None, None]
    assert roles.image == "image_path"
    assert any("URLs" in note for note in report.notes) and any("do not exist" in note for note in report.notes)


def test_missing_image_dir_is_an_error(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id\na\n")
    with pytest.raises(HybridRecError, match="image folder not found"):
        read_items(path, image_dir=tmp_path / "nowhere")


def test_missing_declared_column_names_file_and_column(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\na,x\n")
    with pytest.raises(HybridRecError, match=r"items\.csv, column 'genre': missing required column"):
        read_items(path, categorical_cols=["genre"])


def test_a_column_can_play_one_role_only(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\na,x\n")
    with pytest.raises(HybridRecError, match="both a text and a categorical column"):
        read_items(path, text_cols=["title"], categorical_cols=["title"])
    with pytest.raises(HybridRecError, match="list of names"):
        read_items(path, text_cols="title")


def test_strict_duplicate_id_raises(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\na,x\na,y\n")
    with pytest.raises(HybridRecError, match=r"items\.csv:3, column 'item_id': duplicate item_id"):
        read_items(path, text_cols=["title"], strict=True)


def test_users_table(tmp_path):
    path = tmp_path / "users.tsv"
    path.write_text("uid\tcountry\tage\tlangs\nu1\tFR\t31\tfr|en\nu2\t\t\t\n")
    users, roles = read_users(path, user_id_col="uid", categorical_cols=["country"], numeric_cols=["age"],
                              multi_cols=["langs"])
    assert users["user_id"].tolist() == ["u1", "u2"] and users["country"].tolist() == ["FR", None]
    assert users["langs"].tolist() == [["fr", "en"], []] and np.isnan(users["age"].iloc[1])
    assert roles.categorical == ["country"] and roles.image is None
