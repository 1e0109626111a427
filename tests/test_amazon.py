"""Amazon reviews + metadata on small generated files in the dumps' formats (JSON and Python literals)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from data_builders.amazon import load_amazon
from hybridrec.errors import HybridRecError

REVIEWS = [
    {"reviewerID": "A1", "asin": "B001", "reviewerName": "Ann", "overall": 5.0, "summary": "great",
     "unixReviewTime": 1400000000, "reviewTime": "05 13, 2014"},
    {"reviewerID": "A1", "asin": "B002", "overall": 3.0, "unixReviewTime": 1400000100},
    {"reviewerID": "A2", "asin": "B001", "overall": 4.0, "unixReviewTime": 1400000200},
    {"reviewerID": "A3", "asin": "B003", "overall": 2.0, "unixReviewTime": 1400000300},
]
# The 2014 metadata dump: one Python dict literal per line (single quotes), categories as paths.
OLD_METADATA = [
    "{'asin': 'B001', 'title': 'Red Shoe', 'price': 12.99, 'imUrl': 'http://ecx.images-amazon.com/B001.jpg', "
    "'categories': [['Clothing', 'Shoes'], ['Clothing', 'Sale']], 'brand': 'Acme', "
    "'description': \"A shoe that's red\"}",
    "{'asin': 'B002', 'title': 'Blue Hat', 'categories': [['Clothing', 'Hats']], 'salesRank': {'Clothing': 5}}",
    "{'asin': 'B003', 'title': 'Cold Scarf', 'price': 3.5, 'categories': [['Clothing']]}",
    "{'asin': 'B004', 'title': 'Never reviewed', 'categories': []}",
]
# The 2018 metadata dump: JSON, "category" as one path, description paragraphs and price as text.
NEW_METADATA = [
    {"asin": "B001", "title": "Red Shoe", "category": ["Clothing", "Shoes"], "description": ["Red.", "A shoe."],
     "price": "$12.99", "brand": "Acme", "image": ["https://images/B001.jpg"]},
    {"asin": "B002", "title": "Blue Hat", "category": ["Clothing", "Hats"], "description": [], "price": ""},
    {"asin": "B003", "title": "Scarf", "category": [], "price": "$3.99 - $5.99"},
]


def write_json_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture
def files(tmp_path):
    return (write_json_lines(tmp_path / "reviews_Clothing.json", REVIEWS),
            write_json_lines(tmp_path / "meta_Clothing.json", OLD_METADATA))


def examples(dataset) -> list[str]:
    return [example for shown in dataset.report.examples.values() for example in shown]


def test_reviews_become_rated_interactions(files):
    interactions = load_amazon(*files).interactions
    assert interactions["user_id"].tolist() == ["A1", "A1", "A2", "A3"]
    assert interactions["rating"].tolist() == [5.0, 3.0, 4.0, 2.0]
    assert interactions["weight"].tolist() == interactions["rating"].tolist()
    assert interactions["timestamp"].tolist()[0] == 1400000000 and interactions["timestamp"].dtype == np.int64


def test_python_literal_metadata_is_read(files):
    dataset = load_amazon(*files)
    items = dataset.items.set_index("item_id")
    assert dataset.report.total_skipped == 0
    assert items.loc["B001", "categories"] == ["Clothing", "Shoes", "Sale"]
    assert items.loc["B001", "brand"] == "Acme" and items.loc["B002", "brand"] is None
    assert items.loc["B001", "image_url"] == "http://ecx.images-amazon.com/B001.jpg"
    assert dataset.item_roles.multi == ["categories"] and dataset.item_roles.text == ["title", "description"]


def test_never_reviewed_products_are_cold_items(files):
    assert list(load_amazon(*files).cold_item_ids) == ["B004"]


def test_2018_json_metadata_with_text_prices(tmp_path, files):
    metadata = write_json_lines(tmp_path / "meta.json", NEW_METADATA)
    dataset = load_amazon(files[0], metadata)
    items = dataset.items.set_index("item_id")
    assert items.loc["B001", "price"] == pytest.approx(12.99) and np.isnan(items.loc["B002", "price"])
    assert np.isnan(items.loc["B003", "price"])  # a price range is not one number: noted, not skipped
    assert items.loc["B001", "description"] == "Red. A shoe."
    assert items.loc["B001", "categories"] == ["Clothing", "Shoes"]
    assert items.loc["B001", "image_url"] == "https://images/B001.jpg"
    assert any("column 'price'" in note for note in dataset.report.notes)


def test_local_images_by_asin(tmp_path, files):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "B002.jpg").write_bytes(b"jpg")
    dataset = load_amazon(*files, image_dir=tmp_path / "images")
    paths = dataset.items.set_index("item_id")["image_path"]
    assert paths.loc["B002"].endswith("images/B002.jpg") and paths.loc["B001"] is None
    assert dataset.item_roles.image == "image_path"


def test_without_metadata_items_come_from_reviews(files):
    dataset = load_amazon(files[0])
    assert dataset.items["item_id"].tolist() == ["B001", "B002", "B003"] and dataset.item_roles.text == []


def test_gzipped_dumps_are_read(tmp_path, files):
    packed = tmp_path / "reviews.json.gz"
    packed.write_bytes(gzip.compress(files[0].read_bytes()))
    assert len(load_amazon(packed, files[1]).interactions) == 4


def test_review_of_unknown_product_is_a_counted_skip(tmp_path, files):
    reviews = write_json_lines(tmp_path / "reviews.json", REVIEWS + [{"reviewerID": "A9", "asin": "ZZZ",
                                                                      "overall": 5.0, "unixReviewTime": 1}])
    dataset = load_amazon(reviews, files[1])
    assert f"{reviews}:5, column 'asin': item not in the item catalog" in examples(dataset)


def test_duplicate_review_is_a_counted_skip(tmp_path, files):
    reviews = write_json_lines(tmp_path / "reviews.json", REVIEWS + [REVIEWS[0]])
    dataset = load_amazon(reviews, files[1])
    assert len(dataset.interactions) == 4
    assert any(e.startswith(f"{reviews}:5: duplicate event") for e in examples(dataset))


def test_invalid_json_line_is_a_counted_skip(tmp_path, files):
    reviews = write_json_lines(tmp_path / "reviews.json", REVIEWS + ['{"reviewerID": "A9", "asin": '])
    dataset = load_amazon(reviews)
    assert len(dataset.interactions) == 4 and any(f"{reviews}:5" in e and "invalid JSON" in e
                                                  for e in examples(dataset))


def test_bad_rating_is_a_counted_skip(tmp_path):
    reviews = write_json_lines(tmp_path / "reviews.json", REVIEWS + [
        {"reviewerID": "A9", "asin": "B001", "overall": "five", "unixReviewTime": 1}])
    dataset = load_amazon(reviews)
    assert f"{reviews}:5, column 'overall': cannot parse value as a number" in examples(dataset)


def test_missing_required_field_names_file_and_column(tmp_path):
    reviews = write_json_lines(tmp_path / "reviews.json", [{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1}])
    with pytest.raises(HybridRecError, match=r"reviews\.json, column 'overall': missing required column"):
        load_amazon(reviews)


def test_strict_mode_raises_on_a_bad_line(tmp_path):
    reviews = write_json_lines(tmp_path / "reviews.json", REVIEWS + ["not json"])
    with pytest.raises(HybridRecError, match=r"reviews\.json:5.*invalid JSON"):
        load_amazon(reviews, strict=True)


def test_image_dir_without_metadata_is_an_error(files, tmp_path):
    with pytest.raises(HybridRecError, match="image_dir needs metadata_path"):
        load_amazon(files[0], image_dir=tmp_path)
