"""``hybridrec encode``: flags -> encode_items -> printed throughput, on real MovieLens and fashion slices."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from conftest import find_data_dir as real_data_dir

from hybridrec.cli import encode
from hybridrec.errors import HybridRecError


def run_encode(argv: list[str]) -> int:
    """Parse ``argv`` the way ``hybridrec`` does (``encode.register`` on a sub-parser) and run the handler."""
    parser = argparse.ArgumentParser(prog="hybridrec")
    encode.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["encode", *argv])
    return args.handler(args)


def test_register_sets_a_handler():
    parser = argparse.ArgumentParser(prog="hybridrec")
    encode.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["encode", "--dataset", "movielens-100k", "--out", "x"])
    assert args.handler is encode.run and args.batch_size is None and args.device == "auto"


def test_movielens_titles_and_posters_then_all_reused(tmp_path, capsys):
    argv = ["--dataset", "movielens-100k", "--data-dir", str(real_data_dir()), "--limit", "24",
            "--out", str(tmp_path), "--num-workers", "0"]
    assert run_encode(argv) == 0
    first = capsys.readouterr().out
    assert "24 items" in first and "items/s" in first
    assert "text : " in first and "24 encoded, 0 reused" in first and "image: " in first
    assert run_encode(argv + ["--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["text"]["encoded"], stats["text"]["reused"]) == (0, 24)
    assert (stats["image"]["encoded"], stats["image"]["reused"]) == (0, 24)
    assert (tmp_path / "text").is_dir() and (tmp_path / "image").is_dir()


def test_items_file_with_image_pattern(tmp_path, capsys):
    root = real_data_dir() / "fashion-products"
    styles = pd.read_csv(root / "styles.csv", on_bad_lines="skip").head(12)
    styles.to_csv(tmp_path / "styles.csv", index=False)
    assert run_encode(["--items", str(tmp_path / "styles.csv"), "--item-id-col", "id",
                       "--text-cols", "productDisplayName,baseColour", "--image-dir", str(root / "images"),
                       "--image-pattern", "{item_id}.jpg", "--out", str(tmp_path / "cache"),
                       "--batch-size", "8", "--device", "cpu", "--num-workers", "0", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    expected_missing = sum(not (root / "images" / f"{i}.jpg").is_file() for i in styles["id"])
    assert stats["items"] == 12 and stats["text"]["encoded"] == 12
    assert stats["image"]["absent"] == expected_missing


def test_no_images_skips_images(tmp_path, capsys):
    assert run_encode(["--dataset", "movielens-100k", "--data-dir", str(real_data_dir()), "--limit", "5",
                       "--out", str(tmp_path), "--no-images", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert "image" not in stats and stats["text"]["encoded"] == 5


def test_dataset_and_items_together_are_refused(tmp_path):
    with pytest.raises(HybridRecError, match="exactly one of --dataset or --items"):
        run_encode(["--dataset", "movielens-100k", "--items", "x.csv", "--out", str(tmp_path)])


def test_items_file_without_the_id_column_is_refused(tmp_path):
    (tmp_path / "items.csv").write_text("sku,title\n1,Shirt\n", encoding="utf-8")
    with pytest.raises(HybridRecError, match="no id column 'item_id'"):
        run_encode(["--items", str(tmp_path / "items.csv"), "--text-cols", "title", "--out", str(tmp_path / "c")])


def test_items_file_with_nothing_to_encode_is_refused(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,title\n1,Shirt\n", encoding="utf-8")
    with pytest.raises(HybridRecError, match="nothing to encode"):
        run_encode(["--items", str(tmp_path / "items.csv"), "--out", str(tmp_path / "c")])
