"""Concurrent writers of one feature cache, image paths confined to --image-dir, and --image-pattern checks."""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import find_data_dir as real_data_dir

from data_builders.catalog import read_items
from hybridrec.cli import encode
from hybridrec.errors import HybridRecError
from hybridrec.features.feature_cache import encode_items
from hybridrec.features.image_paths import OUTSIDE_IMAGE_DIR, resolve_image_paths, validate_image_pattern
from hybridrec.features.text_encoder import EncodedTexts, TextEncoder
from hybridrec.load_report import LoadReport

REPO = Path(__file__).resolve().parents[1]
DIM = 8


class _StubCheckpoint:
    def identity(self, *, max_tokens=None) -> dict:
        return {"model": "stub/hash-encoder", "weight_hash": "0" * 16, "max_tokens": max_tokens}


class StubTextEncoder(TextEncoder):
    """A model-free text encoder (a hash per text) that waits on ``barrier`` before returning, so two
    processes have both read the cache before either writes it."""

    def __init__(self, barrier=None):  # no model to load
        self.checkpoint, self.max_tokens, self.dim, self.barrier = _StubCheckpoint(), 16, DIM, barrier

    def encode_with_report(self, texts: list[str]) -> EncodedTexts:
        if self.barrier is not None:
            self.barrier.wait(timeout=60)
        vectors = np.stack([np.frombuffer(hashlib.blake2b(text.encode(), digest_size=DIM).digest(), np.uint8)
                            for text in texts]).astype(np.float32) + 1.0
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        flags = np.zeros(len(texts), dtype=bool)
        return EncodedTexts(embeddings=vectors, empty=flags, truncated=flags.copy())


def _titles(first_id: int, count: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": np.arange(first_id, first_id + count),
                         "title": [f"item number {i}" for i in range(first_id, first_id + count)]})


def _encode_share(cache_dir: str, first_id: int, barrier) -> None:
    encode_items(_titles(first_id, 5), text_cols=["title"], cache_dir=cache_dir,
                 text_encoder=StubTextEncoder(barrier), progress=False)


def test_concurrent_encodes_into_one_cache_keep_both_item_sets(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(3):
        cache = tmp_path / f"cache{attempt}"
        barrier = context.Barrier(2)
        workers = [context.Process(target=_encode_share, args=(str(cache), first_id, barrier))
                   for first_id in (0, 100)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [worker.exitcode for worker in workers] == [0, 0]
        union = pd.concat([_titles(0, 5), _titles(100, 5)], ignore_index=True)
        cached = encode_items(union, text_cols=["title"], cache_dir=cache, text_encoder=StubTextEncoder(),
                              progress=False)
        assert (cached.stats["text"].encoded, cached.stats["text"].reused) == (0, 10)
        expected = StubTextEncoder().encode_with_report([f"item number {i}" for i in union["item_id"]])
        np.testing.assert_allclose(cached.text, expected.embeddings, atol=1e-6)


# -- image paths ---------------------------------------------------------------------------------

@pytest.fixture()
def image_tree(tmp_path) -> dict[str, Path]:
    """``images/`` with one real photo and a symlink to a photo outside it, and ``outside/`` with that photo."""
    source = sorted((real_data_dir() / "fashion-products" / "images").glob("*.jpg"))[:2]
    images, outside = tmp_path / "images", tmp_path / "outside"
    images.mkdir()
    outside.mkdir()
    shutil.copy(source[0], images / "inside.jpg")
    shutil.copy(source[1], outside / "secret.jpg")
    os.symlink(outside / "secret.jpg", images / "link.jpg")
    return {"images": images, "outside": outside, "secret": outside / "secret.jpg"}


def test_paths_leaving_the_image_dir_are_refused_and_counted(image_tree):
    values = ["inside.jpg", "../outside/secret.jpg", str(image_tree["secret"]), "link.jpg", None]
    found = resolve_image_paths(["a", "b", "c", "d", "e"], values, image_dir=image_tree["images"],
                                file="items.csv", column="picture", lines=[2, 3, 4, 5, 6])
    assert found.paths == [str((image_tree["images"] / "inside.jpg").resolve()), None, None, None, None]
    assert [(case.item_id, case.line, case.reason) for case in found.refused] == [
        ("b", 3, OUTSIDE_IMAGE_DIR), ("c", 4, OUTSIDE_IMAGE_DIR), ("d", 5, OUTSIDE_IMAGE_DIR)]
    (line,) = found.lines()
    assert line.startswith(f"skipped 3 image path(s): {OUTSIDE_IMAGE_DIR}")
    assert "items.csv:3, column 'picture': item 'b' (row 2): ../outside/secret.jpg" in line


def test_a_pattern_filled_with_an_id_cannot_leave_the_image_dir(image_tree):
    found = resolve_image_paths(["inside", "../outside/secret"], image_dir=image_tree["images"],
                                pattern="{item_id}.jpg")
    assert found.paths[0] is not None and found.paths[1] is None and len(found.refused) == 1


def test_a_symlink_loop_is_refused_not_fatal(image_tree):
    os.symlink("loop.jpg", image_tree["images"] / "loop.jpg")
    found = resolve_image_paths(["a"], ["loop.jpg"], image_dir=image_tree["images"])
    assert found.paths == [None] and "symbolic link loop" in found.refused[0].reason


def test_absolute_paths_without_an_image_dir_are_taken_as_given(image_tree):
    found = resolve_image_paths(["a"], [str(image_tree["secret"])])
    assert found.paths == [str(image_tree["secret"])] and not found.refused


def test_catalog_counts_refused_image_paths_with_their_line(image_tree, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(f"item_id,picture\na,inside.jpg\nb,../outside/secret.jpg\nc,{image_tree['secret']}\nd,link.jpg\n")
    report = LoadReport()
    items, _ = read_items(path, image_col="picture", image_dir=image_tree["images"], report=report)
    assert items["image_path"].notna().tolist() == [True, False, False, False]
    refusal = next(note for note in report.notes if OUTSIDE_IMAGE_DIR in note)
    assert refusal.startswith("skipped 3 image path(s)") and f"{path}:3, column 'picture'" in refusal
    without_dir, _ = read_items(path, image_col="picture", report=LoadReport())
    assert without_dir.loc[2, "image_path"] == str(image_tree["secret"])  # absolute, no image folder: as given


def test_encode_cli_embeds_only_images_inside_the_image_dir(image_tree, tmp_path, capsys):
    table = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ["a", "b", "c", "d"],
                  "picture": ["inside.jpg", "../outside/secret.jpg", str(image_tree["secret"]), "link.jpg"]}
                 ).to_csv(table, index=False)
    parser = argparse.ArgumentParser(prog="hybridrec")
    encode.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["encode", "--items", str(table), "--image-col", "picture", "--image-dir",
                              str(image_tree["images"]), "--out", str(tmp_path / "cache"), "--num-workers", "0",
                              "--device", "cpu", "--json"])
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)["image"]
    assert (stats["items"], stats["absent"]) == (4, 3)
    assert f"skipped 3 image path(s): {OUTSIDE_IMAGE_DIR}" in captured.err
    stored = pd.read_parquet(Path(stats["folder"]) / "items.parquet").set_index("item_id")
    assert stored["present"].to_dict() == {"a": True, "b": False, "c": False, "d": False}
    assert stored["source"].notna().to_dict() == {"a": True, "b": False, "c": False, "d": False}


# -- --image-pattern ----------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["{item_id.foo}", "{item_id[0]}", "{title}.jpg", "{item_id:>5}.jpg",
                                     "{item_id!r}.jpg", "{}.jpg", "{item_id", "poster.jpg"])
def test_bad_image_patterns_are_refused(pattern):
    with pytest.raises(HybridRecError, match="--image-pattern"):
        validate_image_pattern(pattern)


def test_good_image_pattern_is_accepted():
    assert validate_image_pattern("posters/{item_id}_{item_id}.jpg") == "posters/{item_id}_{item_id}.jpg"


@pytest.mark.parametrize("command", ["encode", "export-similar"])
def test_bad_image_pattern_through_the_cli_is_one_line_naming_the_flag(command, image_tree, tmp_path):
    table = tmp_path / "items.csv"
    table.write_text("item_id,title\n1,a\n2,b\n")
    argv = ([sys.executable, "-m", "hybridrec.cli", command, "--items", str(table), "--text-cols", "title",
             "--image-dir", str(image_tree["images"]), "--image-pattern", "{item_id.foo}",
             "--out", str(tmp_path / "out.parquet")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode != 0
    assert "--image-pattern" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
