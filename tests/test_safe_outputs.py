"""Outputs never destroy what is not a previous output of the same kind, refuse cleanly, and clean up
after interrupted writes (``hybridrec.atomic`` and the commands that write)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evaluation.ease import EASERecommender
from evaluation.popularity import PopularityRecommender
from hybridrec.atomic import FILE, OutputKind, atomic_path, check_writable, reap_stale_scratch, write_text_atomic
from hybridrec.cli import main
from hybridrec.errors import HybridRecError
from hybridrec.recommender_base import RecommenderBase

FOLDER = OutputKind("thing", marker="thing.json", key="thing")


@pytest.fixture(scope="module")
def small_interactions(movielens):
    return movielens.interactions[movielens.interactions["user_id"] <= 40]


@pytest.fixture(scope="module")
def saved_model(small_interactions, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "ease"
    EASERecommender().fit(small_interactions).save(path)
    return path


def foreign_folder(path):
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "f").write_text("x")
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- the rules, in atomic.py -------------------------------------------------------------------

def test_a_file_output_refuses_an_existing_directory(tmp_path):
    out = foreign_folder(tmp_path / "v")
    with pytest.raises(HybridRecError, match="is a directory"):
        write_text_atomic(out, "text")
    assert (out / "sub" / "f").read_text() == "x"


def test_a_file_output_refuses_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(HybridRecError, match="not a regular file"):
        write_text_atomic(tmp_path / "pipe", "text")


def test_a_file_output_replaces_a_file_unless_overwrite_is_false(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "one")
    write_text_atomic(tmp_path / "a.txt", "two")
    with pytest.raises(HybridRecError, match="overwrite=True"):
        write_text_atomic(tmp_path / "a.txt", "three", overwrite=False)
    assert (tmp_path / "a.txt").read_text() == "two"


def write_folder(path, text, **options):
    with atomic_path(path, kind=FOLDER, **options) as tmp:
        tmp.mkdir()
        (tmp / "thing.json").write_text(json.dumps({"thing": text}))


def test_a_folder_output_replaces_only_its_own_kind(tmp_path):
    write_folder(tmp_path / "empty", "ok")  # nothing there
    (tmp_path / "made").mkdir()
    write_folder(tmp_path / "made", "ok")  # an empty folder holds nothing to lose
    write_folder(tmp_path / "made", "again")  # a previous output of the same kind
    assert json.loads((tmp_path / "made" / "thing.json").read_text()) == {"thing": "again"}
    out = foreign_folder(tmp_path / "v")
    with pytest.raises(HybridRecError, match="not a previous thing folder"):
        write_folder(out, "no", overwrite=True)
    assert (out / "sub" / "f").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(HybridRecError, match="not a folder"):
        write_folder(tmp_path / "file", "no")
    with pytest.raises(HybridRecError, match="already holds a thing"):
        write_folder(tmp_path / "made", "no", overwrite=False)


def test_stale_scratch_of_a_dead_writer_is_reaped_on_the_next_write(tmp_path):
    stale = tmp_path / f".out.txt.{dead_pid()}.abc123.tmp"
    (stale / "out.txt").mkdir(parents=True)
    (stale / "out.txt" / "partial").write_text("half")
    live = tmp_path / f".out.txt.{os.getppid()}.def456.tmp"  # the parent process is alive
    live.mkdir()
    other = tmp_path / f".other.txt.{dead_pid()}.abc123.tmp"  # another output's scratch
    other.mkdir()
    write_text_atomic(tmp_path / "out.txt", "done")
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.txt", live.name, other.name])


def test_a_previous_folder_moved_aside_by_a_dead_writer_is_put_back(tmp_path):
    stale = tmp_path / f".box.{dead_pid()}.abc123.tmp"
    (stale / "box.old").mkdir(parents=True)
    (stale / "box.old" / "thing.json").write_text(json.dumps({"thing": "previous"}))
    assert reap_stale_scratch(tmp_path / "box") == [stale]
    assert json.loads((tmp_path / "box" / "thing.json").read_text()) == {"thing": "previous"}
    assert not stale.exists()


def test_check_writable_names_the_argument(tmp_path):
    with pytest.raises(HybridRecError, match=r"--out /proc/x: cannot be written"):
        check_writable("/proc/x", arg="--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HybridRecError, match="is not a folder"):
        check_writable(tmp_path / "file" / "out.parquet", arg="--out")
    with pytest.raises(HybridRecError, match="--json .*pass --overwrite"):
        check_writable(tmp_path / "file", arg="--json", kind=FILE)
    assert check_writable(tmp_path / "new" / "deeper" / "out.parquet", arg="--out")
    assert not (tmp_path / "new").exists()


# -- library savers ----------------------------------------------------------------------------

def test_model_save_replaces_a_model_but_not_another_folder(small_interactions, tmp_path):
    model = PopularityRecommender().fit(small_interactions)
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")
    assert isinstance(RecommenderBase.load(tmp_path / "m"), PopularityRecommender)
    with pytest.raises(HybridRecError, match="overwrite"):
        model.save(tmp_path / "m", overwrite=False)
    out = foreign_folder(tmp_path / "v")
    with pytest.raises(HybridRecError, match="not a previous model folder"):
        model.save(out)
    assert (out / "sub" / "f").read_text() == "x"


def test_graph_save_refuses_a_foreign_folder(movielens, tmp_path):
    from hybridrec.graph import build_graph

    graph = build_graph(movielens)
    graph.save(tmp_path / "g")
    graph.save(tmp_path / "g")
    out = foreign_folder(tmp_path / "v")
    with pytest.raises(HybridRecError, match="not a previous graph folder"):
        graph.save(out)
    assert (out / "sub" / "f").read_text() == "x"


# -- the commands ------------------------------------------------------------------------------

def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_recommend_refuses_an_existing_directory_as_out(saved_model, tmp_path, capsys):
    out = foreign_folder(tmp_path / "v")
    code, err = run_cli(["recommend", "--model", str(saved_model), "--out", str(out), "--k", "5",
                         "--no-progress"], capsys)
    assert code == 1 and f"--out {out}: is a directory" in err
    assert (out / "sub" / "f").read_text() == "x"


def test_recommend_replaces_a_table_only_with_overwrite(saved_model, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    argv = ["recommend", "--model", str(saved_model), "--out", str(out), "--k", "5", "--no-progress"]
    assert run_cli(argv, capsys)[0] == 0
    before = out.read_bytes()
    code, err = run_cli(argv, capsys)
    assert code == 1 and "pass --overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0


@pytest.mark.parametrize("command", ["recommend", "export-similar"])
def test_unwritable_out_is_one_line(saved_model, command, capsys):
    code, err = run_cli([command, "--model", str(saved_model), "--out", "/proc/x", "--no-progress"], capsys)
    assert code == 1 and err.count("\n") == 1 and "--out /proc/x" in err


def test_export_similar_refuses_a_directory_and_an_existing_table(saved_model, tmp_path, capsys):
    out = foreign_folder(tmp_path / "v")
    code, err = run_cli(["export-similar", "--model", str(saved_model), "--out", str(out), "--no-progress"], capsys)
    assert code == 1 and "is a directory" in err
    table = tmp_path / "sim.csv"
    argv = ["export-similar", "--model", str(saved_model), "--out", str(table), "--k", "3", "--no-progress"]
    assert run_cli(argv, capsys)[0] == 0
    assert run_cli(argv, capsys)[0] == 1
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0


def forbid_loading(monkeypatch, module_name):
    import importlib

    def fail(args):
        raise AssertionError("the dataset was loaded before the output was checked")

    monkeypatch.setattr(importlib.import_module(module_name), "load_dataset_from_args", fail)


def test_train_checks_out_before_fitting(monkeypatch, saved_model, tmp_path, capsys):
    forbid_loading(monkeypatch, "hybridrec.cli.train")
    code, err = run_cli(["train", "--out", "/proc/x"], capsys)
    assert code == 1 and "--out /proc/x: cannot be written" in err
    code, err = run_cli(["train", "--out", str(foreign_folder(tmp_path / "v"))], capsys)
    assert code == 1 and "not a previous model folder" in err
    code, err = run_cli(["train", "--out", str(saved_model)], capsys)
    assert code == 1 and "pass --overwrite" in err


def test_build_graph_checks_out_before_building(monkeypatch, tmp_path, capsys):
    forbid_loading(monkeypatch, "hybridrec.cli.build_graph")
    code, err = run_cli(["build-graph", "--out", str(foreign_folder(tmp_path / "v"))], capsys)
    assert code == 1 and "not a previous graph folder" in err


def test_evaluate_checks_json_and_report_before_work(monkeypatch, tmp_path, capsys):
    forbid_loading(monkeypatch, "hybridrec.cli.evaluate")
    code, err = run_cli(["evaluate", "--baseline", "popularity", "--json", "/proc/x.json"], capsys)
    assert code == 1 and "--json /proc/x.json: cannot be written" in err
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("previous")
    code, err = run_cli(["evaluate", "--baseline", "popularity", "--report", str(tmp_path / "report")], capsys)
    assert code == 1 and "pass --overwrite" in err
    assert (tmp_path / "report" / "report.md").read_text() == "previous"


def test_scratch_of_an_output_with_a_longer_name_is_not_reaped(tmp_path):
    other = tmp_path / f".out.txt.5.{dead_pid()}.abc123.tmp"  # the scratch of "out.txt.5"
    other.mkdir()
    write_text_atomic(tmp_path / "out.txt", "done")
    assert other.exists()


def test_a_model_folder_is_swapped_in_one_step(small_interactions, tmp_path, monkeypatch):
    import hybridrec.atomic as atomic

    model = PopularityRecommender().fit(small_interactions)
    model.save(tmp_path / "m")
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (moves.append((a, b)), real_replace(a, b)))
    model.save(tmp_path / "m")
    assert moves == []  # renameat2(RENAME_EXCHANGE): the folder is never missing
    assert isinstance(RecommenderBase.load(tmp_path / "m"), PopularityRecommender)


def test_train_checks_the_checkpoint_dir_before_fitting(monkeypatch, tmp_path, capsys):
    forbid_loading(monkeypatch, "hybridrec.cli.train")
    (tmp_path / "file").write_text("x")
    code, err = run_cli(["train", "--out", str(tmp_path / "m"), "--checkpoint-dir", str(tmp_path / "file")], capsys)
    assert code == 1 and f"--checkpoint-dir {tmp_path / 'file' / 'last.pt'}: cannot be written" in err
