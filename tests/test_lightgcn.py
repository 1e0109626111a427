"""The LightGCN papers' train/test format: the real Gowalla split, counted skips, the given split."""

from __future__ import annotations

import json

import pytest

from data_builders.lightgcn import load_lightgcn
from evaluation.splitters import SplitConfig, make_split
from hybridrec.cli import main
from hybridrec.errors import HybridRecError


@pytest.fixture(scope="module")
def gowalla(data_dir):
    return load_lightgcn(data_dir, name="gowalla")


def test_gowalla_reads_the_published_counts(gowalla):
    interactions = gowalla.interactions
    assert len(interactions) == 1_027_370
    assert (interactions["split"] == "train").sum() == 810_128
    assert (interactions["split"] == "test").sum() == 217_242
    assert interactions["user_id"].nunique() == 29_858 and interactions["item_id"].nunique() == 40_981
    assert not gowalla.report.skipped


def test_given_split_keeps_the_published_train_and_test(gowalla, data_dir):
    split = make_split(gowalla.interactions, SplitConfig(kind="given"))
    assert split.sizes["train"] == 810_128 and split.sizes["test"] == 217_242 and split.sizes["valid"] == 0
    assert "split" not in split.train.columns
    first_user_test = split.test[split.test["user_id"] == 0]["item_id"].tolist()
    with open(data_dir / "gowalla" / "test.txt") as handle:
        assert first_user_test == [int(token) for token in handle.readline().split()[1:]]


def write_folder(folder, train: str, test: str):
    folder.mkdir()
    (folder / "train.txt").write_text(train)
    (folder / "test.txt").write_text(test)
    return folder


def test_malformed_tokens_are_counted_with_their_line_or_refused_when_strict(tmp_path):
    folder = write_folder(tmp_path / "tiny", "0 1 2 x3\n1 2 2\nu 4\n\n2\n", "0 3\n1 1\n")
    dataset = load_lightgcn(folder, name=None)
    skipped = {reason: count for (_, reason), count in dataset.report.skipped.items()}
    assert skipped == {"item id is not a non-negative integer": 1, "duplicate (user, item) pair": 1,
                       "user id is not a non-negative integer": 2}
    assert len(dataset.interactions) == 3 + 2  # (0,1) (0,2) (1,2) in train, (0,3) (1,1) in test
    assert any("train.txt:1" in place for places in dataset.report.locations.values() for place in places)
    with pytest.raises(HybridRecError, match="train.txt:1"):
        load_lightgcn(folder, name=None, strict=True)


def test_a_given_split_needs_the_split_column(gowalla):
    with pytest.raises(HybridRecError, match="'split' column"):
        make_split(gowalla.interactions.drop(columns=["split"]).head(100), SplitConfig(kind="given"))


def test_evaluate_on_a_given_split_through_the_cli(tmp_path, capsys):
    train = "".join(f"{user} " + " ".join(str((user + i) % 30) for i in range(8)) + "\n" for user in range(40))
    test = "".join(f"{user} " + " ".join(str((user + 8 + i) % 30) for i in range(2)) + "\n" for user in range(40))
    folder = write_folder(tmp_path / "shop", train, test)
    report = tmp_path / "report.json"
    code = main(["evaluate", "--dataset", "lightgcn", "--data-dir", str(folder), "--split", "given",
                 "--baseline", "popularity", "ease", "--k", "5", "--json", str(report)])
    assert code == 0
    result = json.loads(report.read_text())
    assert result["split"]["kind"] == "given" and result["split"]["sizes"]["test"] == 80
    warm = {name: model["segments"]["warm"] for name, model in result["models"].items()}
    assert warm["ease"]["recall@5"] > warm["popularity"]["recall@5"]  # the pattern is in the co-occurrence
