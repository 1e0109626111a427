"""``--json`` and ``--device`` mean the same on every command: ``--json`` alone puts a parsable
summary, and nothing else, on stdout; ``--json PATH`` writes the same JSON there; a device name
outside ``auto|cpu|cuda|cuda:N`` is refused while parsing."""

from __future__ import annotations

import json

import pytest

from hybridrec.cli import main


@pytest.fixture
def movielens_args(data_dir):
    return ["--dataset", "movielens-100k", "--data-dir", str(data_dir), "--no-download"]


def test_build_graph_json_on_stdout_alone(movielens_args, capsys, tmp_path):
    assert main(["build-graph", *movielens_args, "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["nodes"]["user"] == 943 and summary["nodes"]["item"] == 1682
    assert "dataset: movielens-100k" in captured.err  # the human-readable lines moved to stderr
    assert main(["build-graph", *movielens_args, "--json", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text()) == summary
    assert "dataset: movielens-100k" in capsys.readouterr().out


def test_evaluate_json_on_stdout_alone(movielens_args, capsys):
    assert main(["evaluate", "--baseline", "popularity", *movielens_args, "--min-rating", "4", "--k", "10",
                 "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert 0.05 < report["models"]["popularity"]["segments"]["warm"]["recall@10"] < 0.5
    assert "popularity" in captured.err


def test_encode_json_on_stdout_alone(movielens_args, capsys, tmp_path):
    assert main(["encode", *movielens_args[:4], "--limit", "8", "--no-images", "--out", str(tmp_path / "cache"),
                 "--device", "cpu", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"] == 8 and stats["text"]["encoded"] == 8


@pytest.mark.parametrize("command", ["encode"])
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU"])
def test_bad_device_names_are_refused_while_parsing(command, device, movielens_args, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([command, *movielens_args[:4], "--out", str(tmp_path), "--device", device])
    assert exit_info.value.code == 2
    assert "is not a device: use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", [["train", "--out", "{tmp}/model"], ["evaluate", "--hybrid"]])
def test_a_gpu_asked_for_on_a_cpu_machine_is_an_error_not_a_switch(command, movielens_args, capsys, tmp_path):
    argv = [part.replace("{tmp}", str(tmp_path)) for part in command]
    assert main([*argv, *movielens_args, "--device", "cuda", "--gnn-epochs", "1"]) == 1
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_training_device_follows_the_one_rule():
    from hybridrec.errors import HybridRecError
    from training.trainer import training_device

    assert str(training_device("cpu")) == "cpu"
    if not __import__("torch").cuda.is_available():
        with pytest.raises(HybridRecError, match="no CUDA GPU is available"):
            training_device("cuda")
