"""Loading a saved model folder is safe: only known recommender classes are built, their parameters
are checked against the constructor, and every truncated or corrupt folder gives one clean
``HybridRecError`` naming the file (through the Python API and through the CLI)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from evaluation.ease import EASERecommender
from evaluation.item_knn import ItemKNNRecommender
from evaluation.matrix_factorization import BPRMFRecommender
from evaluation.popularity import PopularityRecommender
from hybridrec.cli import main
from hybridrec.errors import HybridRecError
from hybridrec.recommender import HybridRecommender
from hybridrec.recommender_base import RecommenderBase

REPO_ROOT = Path(__file__).resolve().parents[1]
SLICE_USERS = 40


@pytest.fixture(scope="module")
def interactions(movielens) -> pd.DataFrame:
    return movielens.interactions.loc[movielens.interactions["user_id"] <= SLICE_USERS].reset_index(drop=True)


@pytest.fixture(scope="module")
def saved_hybrid(interactions, tmp_path_factory) -> Path:
    """A tiny fitted HybridRecommender (CF head and GNN, no content) saved to a folder."""
    model = HybridRecommender(dim=8, epochs=2, eval_every=1, tune_ease_l2=False, tune_block_weights=False,
                              progress=False, device="cpu")
    return model.fit(interactions).save(tmp_path_factory.mktemp("models") / "hybrid")


BASELINES = {
    "popularity": lambda: PopularityRecommender(),
    "ease": lambda: EASERecommender(l2=100.0),
    "itemknn": lambda: ItemKNNRecommender(n_neighbors=20),
    "mf": lambda: BPRMFRecommender(n_factors=4, epochs=1),
}


@pytest.fixture(scope="module")
def saved_baselines(interactions, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("baselines")
    return {name: make().fit(interactions).save(folder / name) for name, make in BASELINES.items()}


def copy_model(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "model"))


def write_config(folder: Path, config: object) -> None:
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def load_error(folder: Path) -> str:
    """The message of the HybridRecError that loading ``folder`` raises (asserted one line)."""
    with pytest.raises(HybridRecError) as caught:
        RecommenderBase.load(folder)
    message = str(caught.value)
    assert "\n" not in message.strip(), message
    return message


def cli_error(folder: Path, tmp_path: Path, capsys) -> str:
    """``hybridrec recommend --model folder`` in-process: exit code != 0 and one line on stderr."""
    capsys.readouterr()
    code = main(["recommend", "--model", str(folder), "--out", str(tmp_path / "recs.parquet")])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


# -- code execution through config.json ----------------------------------------------------------
def pwned_config(marker: Path) -> dict:
    return {"class": "run", "module": "subprocess", "params": {"args": ["touch", str(marker)]}}


def test_config_cannot_run_code_through_the_api(saved_hybrid, tmp_path):
    folder = copy_model(saved_hybrid, tmp_path)
    marker = tmp_path / "pwned"
    write_config(folder, pwned_config(marker))
    for loader in (RecommenderBase.load, HybridRecommender.load):
        with pytest.raises(HybridRecError, match=r"config\.json.*'class'.*'run'"):
            loader(folder)
    assert not marker.exists()


def test_config_cannot_run_code_through_the_cli(saved_hybrid, tmp_path):
    folder = copy_model(saved_hybrid, tmp_path)
    marker = tmp_path / "pwned"
    write_config(folder, pwned_config(marker))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-m", "hybridrec.cli", "recommend", "--model", str(folder),
                                "--out", str(tmp_path / "recs.parquet")],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert "config.json" in completed.stderr
    assert not marker.exists()


def test_the_module_key_is_never_imported(saved_hybrid, tmp_path, monkeypatch):
    folder = copy_model(saved_hybrid, tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = read_config(folder)
    write_config(folder, {**config, "class": "Evil", "module": "planted_module"})
    assert "'Evil'" in load_error(folder)
    # A known class loads whatever the (informational) module key says, without importing it.
    write_config(folder, {**config, "module": "planted_module"})
    assert type(RecommenderBase.load(folder)) is HybridRecommender
    assert not marker.exists()


def test_a_saved_baseline_loads_once_its_module_is_imported(saved_baselines, tmp_path):
    """Through the Python API, a saved baseline loads once ``evaluation.baselines`` is imported (the
    core never imports ``evaluation``); before that, the error names the module to import."""
    folder = str(saved_baselines["ease"])
    script = ("import sys; import evaluation.baselines; from hybridrec.recommender_base import RecommenderBase; "
              f"model = RecommenderBase.load({folder!r}); print(type(model).__module__)")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "evaluation.ease"
    script = ("import sys; from hybridrec.errors import HybridRecError; "
              "from hybridrec.recommender_base import RecommenderBase\n"
              f"try:\n    RecommenderBase.load({folder!r})\nexcept HybridRecError as err:\n    print(err)\n"
              "print('evaluation.ease' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert completed.returncode == 0, completed.stderr
    message, imported = completed.stdout.strip().splitlines()
    assert "'EASERecommender'" in message and "import evaluation.ease" in message
    assert imported == "False"


def test_a_saved_baseline_loads_through_the_cli(saved_baselines, tmp_path):
    """``hybridrec recommend --model`` on a saved baseline, in a fresh process."""
    out = tmp_path / "recs.csv"
    completed = subprocess.run([sys.executable, "-m", "hybridrec.cli", "recommend", "--model",
                                str(saved_baselines["ease"]), "--user-ids", "1", "2", "--k", "3", "--out", str(out),
                                "--no-progress"],
                               capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert completed.returncode == 0, completed.stderr
    assert len(pd.read_csv(out)) == 6


def test_a_name_two_classes_share_is_refused(saved_hybrid, tmp_path):
    for module in ("first_plugin", "second_plugin"):
        type("SharedNameRecommender", (RecommenderBase,), {"__module__": module})
    folder = copy_model(saved_hybrid, tmp_path)
    write_config(folder, {"class": "SharedNameRecommender", "module": "first_plugin", "params": {}})
    assert "ambiguous" in load_error(folder)


def test_a_class_of_another_kind_is_refused(saved_baselines, tmp_path):
    folder = copy_model(saved_baselines["ease"], tmp_path)
    with pytest.raises(HybridRecError, match=r"EASERecommender.*not a HybridRecommender"):
        HybridRecommender.load(folder)


@pytest.mark.parametrize(("params", "pattern"), [
    ({"dim": "abc"}, r"params\.dim.*int.*'abc'"),
    ({"dim": True}, r"params\.dim"),
    ({"dim": 8.5}, r"params\.dim"),
    ({"block_weights": [1, 2]}, r"params\.block_weights"),
    ({"not_a_param": 1}, r"params\.not_a_param.*unknown"),
    ({"block_validation_folds": 0}, r"config\.json.*block_validation_folds must be >= 1"),
])
def test_bad_params_are_refused(saved_hybrid, tmp_path, params, pattern):
    folder = copy_model(saved_hybrid, tmp_path)
    config = read_config(folder)
    write_config(folder, {**config, "params": {**config["params"], **params}})
    message = load_error(folder)
    assert "config.json" in message
    assert re.search(pattern, message), message


def test_valid_params_of_every_kind_still_load(saved_hybrid, tmp_path):
    folder = copy_model(saved_hybrid, tmp_path)
    config = read_config(folder)
    write_config(folder, {**config, "params": {**config["params"], "lr": 1, "block_weights": {"text": 0.5},
                                               "text_encoder": None}})
    model = RecommenderBase.load(folder)
    assert model.lr == 1 and model.block_weights == {"text": 0.5}


# -- corrupt model folders -------------------------------------------------------------------------
def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def edit_state(folder: Path, change) -> None:
    state = torch.load(folder / "state.pt", weights_only=True)
    state = change(state)
    torch.save(state, folder / "state.pt")


class NotATensor:
    """Pickled into a state file: ``weights_only`` loading must refuse it."""


def drop_ids(folder: Path, name: str, n: int = 5) -> None:
    frame = pd.read_parquet(folder / name)
    frame.iloc[:-n].to_parquet(folder / name, index=False)


def without(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


CORRUPTIONS = {
    "truncated state": ("state.pt", lambda f: truncate(f / "state.pt")),
    "empty state": ("state.pt", lambda f: (f / "state.pt").write_bytes(b"")),
    "garbage state": ("state.pt", lambda f: (f / "state.pt").write_bytes(b"\x80\x02not a zip file at all" * 50)),
    "missing state": ("state.pt", lambda f: (f / "state.pt").unlink()),
    "state with an object": ("state.pt", lambda f: torch.save({"x": NotATensor()}, f / "state.pt")),
    "state not a dict": ("state.pt", lambda f: torch.save(torch.zeros(3), f / "state.pt")),
    "state without model key": ("state.pt", lambda f: edit_state(f, lambda s: without(s, "model.item_weights_"))),
    "state without matrix key": ("state.pt", lambda f: edit_state(f, lambda s: without(s, "user_items_row"))),
    "state with unknown key": ("state.pt", lambda f: edit_state(f, lambda s: {**s, "model.extra": torch.zeros(1)})),
    "state with a non-tensor": ("state.pt", lambda f: edit_state(f, lambda s: {**s, "model.item_degree_": 3})),
    "embedding of the wrong dim": ("state.pt", lambda f: edit_state(
        f, lambda s: {**s, "model.item_embeddings_": s["model.item_embeddings_"][:, :4]})),
    "weights of an integer dtype": ("state.pt", lambda f: edit_state(
        f, lambda s: {**s, "model.item_popularity_": s["model.item_popularity_"].long()})),
    "matrix index out of range": ("state.pt", lambda f: edit_state(
        f, lambda s: {**s, "user_items_row": s["user_items_row"] + 1000})),
    "matrix arrays of unequal length": ("state.pt", lambda f: edit_state(
        f, lambda s: {**s, "user_items_col": s["user_items_col"][:-1]})),
    "truncated config": ("config.json", lambda f: truncate(f / "config.json")),
    "config not utf-8": ("config.json", lambda f: (f / "config.json").write_bytes(b"\xff\xfe{\x00")),
    "config a list": ("config.json", lambda f: write_config(f, ["HybridRecommender"])),
    "config without params": ("config.json", lambda f: write_config(f, without(read_config(f), "params"))),
    "config without class": ("config.json", lambda f: write_config(f, without(read_config(f), "class"))),
    "params not an object": ("config.json", lambda f: write_config(f, {**read_config(f), "params": [1]})),
    "truncated item ids": ("item_ids.parquet", lambda f: truncate(f / "item_ids.parquet")),
    "truncated user ids": ("user_ids.parquet", lambda f: truncate(f / "user_ids.parquet", keep=0.9)),
    "missing item ids": ("item_ids.parquet", lambda f: (f / "item_ids.parquet").unlink()),
    "id table without id column": ("user_ids.parquet", lambda f: pd.DataFrame({"index": [0, 1]}).to_parquet(
        f / "user_ids.parquet")),
    "duplicate ids": ("item_ids.parquet", lambda f: pd.DataFrame({"index": [0, 1], "id": [7, 7]}).to_parquet(
        f / "item_ids.parquet")),
    "fewer item ids than weight rows": ("item_ids.parquet", lambda f: drop_ids(f, "item_ids.parquet")),
    "fewer user ids than embedding rows": ("user_ids.parquet", lambda f: drop_ids(f, "user_ids.parquet")),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_hybrid_folder_gives_one_clean_error(saved_hybrid, tmp_path, capsys, case):
    file_name, corrupt = CORRUPTIONS[case]
    folder = copy_model(saved_hybrid, tmp_path)
    corrupt(folder)
    assert file_name in load_error(folder)
    assert file_name in cli_error(folder, tmp_path, capsys)


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("case", ["fewer item ids than weight rows", "state without a model key",
                                  "state with unknown key", "truncated state"])
def test_corrupt_baseline_folder_gives_one_clean_error(saved_baselines, tmp_path, capsys, name, case):
    folder = copy_model(saved_baselines[name], tmp_path)
    if case == "state without a model key":
        edit_state(folder, lambda s: without(s, next(k for k in s if k.startswith("model."))))
    else:
        CORRUPTIONS[case][1](folder)
    file_name = "item_ids.parquet" if "ids" in case else "state.pt"
    assert file_name in load_error(folder)
    assert file_name in cli_error(folder, tmp_path, capsys)


def test_intact_baselines_still_load(saved_baselines):
    for name, folder in saved_baselines.items():
        assert type(RecommenderBase.load(folder)).__name__ == type(BASELINES[name]()).__name__


@pytest.mark.parametrize("case", ["empty folder", "no such folder", "a file"])
def test_a_path_that_is_not_a_model_folder(tmp_path, capsys, case):
    path = tmp_path / "model"
    if case == "empty folder":
        path.mkdir()
    elif case == "a file":
        path.write_text("hello")
    assert str(path) in load_error(path)
    assert str(path) in cli_error(path, tmp_path, capsys)


# -- torch.load is always weights_only -----------------------------------------------------------
def test_every_torch_load_passes_weights_only_true():
    calls = []
    for package in ("hybridrec", "evaluation", "training", "data_builders", "benchmarks"):
        for source in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), filename=str(source))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    weights_only = [k.value for k in node.keywords if k.arg == "weights_only"]
                    calls.append((f"{source.relative_to(REPO_ROOT)}:{node.lineno}", weights_only))
    assert calls, "no torch.load call found: the scan is broken"
    unsafe = [where for where, value in calls
              if len(value) != 1 or not (isinstance(value[0], ast.Constant) and value[0].value is True)]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
    # No other spelling of torch.load sneaks past the scan.
    for package in ("hybridrec", "evaluation", "training", "data_builders"):
        for source in (REPO_ROOT / package).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            assert "from torch import load" not in text and "torch.serialization.load" not in text, source
