"""Malformed input through the command line: a clean one-line error or a counted skip, never a traceback.

A corpus of broken event logs, catalogs, configs and model folders is generated from a small real
MovieLens-100K slice; each case runs through ``hybridrec.cli.main`` and must

* end with exit code != 0 and a one-line ``hybridrec CMD: error: ...`` naming what is wrong, or with
  exit code 0 and the bad rows reported as skipped;
* never raise out of ``main`` (a traceback) and never report an internal error (exit 70: a bug);
* leave every file outside the command's output path as it was.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hybridrec.cli import INTERNAL_ERROR, main

SLICE_USERS = 60


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory, data_dir) -> Path:
    """Valid inputs: a MovieLens slice as CSV (log and catalog) and two saved model folders."""
    root = tmp_path_factory.mktemp("fuzz")
    ratings = pd.read_csv(data_dir / "ml-100k" / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    ratings = ratings[ratings.user_id <= SLICE_USERS]
    ratings.to_csv(root / "log.csv", index=False)
    items = pd.read_csv(data_dir / "ml-100k" / "u.item", sep="|", encoding="latin-1", header=None,
                        usecols=[0, 1, 2], names=["item_id", "title", "released"])
    items = items[items.item_id.isin(ratings.item_id)]
    items.to_csv(root / "items.csv", index=False)

    from evaluation.popularity import PopularityRecommender
    from hybridrec.recommender import HybridRecommender

    positives = ratings[ratings.rating >= 4]
    PopularityRecommender().fit(positives).save(root / "popularity_model")
    HybridRecommender(epochs=2, dim=8, seed=0, progress=False).fit(positives).save(root / "hybrid_model")
    return root


def snapshot(root: Path, exclude: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file under ``root`` outside ``exclude``."""
    files = {}
    for path in root.rglob("*"):
        if path == exclude or exclude in path.parents or not path.is_file():
            continue
        stat = path.stat()
        files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return files


def run_case(workdir: Path, argv: list[str], out: Path, capsys, caplog) -> tuple[int, str]:
    """Run ``argv``; check the contract of the module docstring; return (code, stderr + stdout + log)."""
    before = snapshot(workdir, out)
    caplog.clear()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse rejects bad flags with exit 2 and a usage line
        code = exit_.code
    captured = capsys.readouterr()
    text = captured.err + captured.out + caplog.text
    assert "Traceback" not in text, f"{argv}: traceback\n{text}"
    assert code != INTERNAL_ERROR, f"{argv}: internal error\n{text}"
    if code == 0:
        warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert warnings, f"{argv}: exit 0 without reporting what was wrong with the input\n{text}"
    else:
        errors = [line for line in captured.err.splitlines() if ": error:" in line]
        assert len(errors) == 1, f"{argv}: expected one error line\n{text}"
    assert snapshot(workdir, out) == before, f"{argv}: files outside {out} changed"
    return code, text


# -- the corpus ---------------------------------------------------------------------------------
def broken_logs(log: str) -> dict[str, bytes]:
    """Event logs broken in the ways real exports break (bytes, written as given)."""
    lines = log.splitlines()
    header, rows = lines[0], lines[1:]
    rng = random.Random(0)
    truncated_row = rows[5][: len(rows[5]) // 2]
    return {
        "empty.csv": b"",
        "header_only.csv": (header + "\n").encode(),
        "binary.csv": bytes(rng.randrange(256) for _ in range(600)),
        "latin1_ids.csv": (header + "\n" + "\n".join(rows[:20]) + "\nb\xe9b\xe9,1,5,881250949\n").encode("latin-1"),
        "no_user_column.csv": ("uid,item_id,rating,timestamp\n" + "\n".join(rows[:50]) + "\n").encode(),
        "ragged.csv": (header + "\n" + "\n".join(rows[:50]) + "\n1,2\n3,4,5,6,7,8\n" + truncated_row + "\n").encode(),
        "empty_ids.csv": (header + "\n" + "\n".join(rows[:50]) + "\n,242,3,881250949\n196,,3,881250949\n").encode(),
        "bad_numbers.csv": (header + "\n" + "\n".join(rows[:50]) + "\n196,242,five,881250949\n196,242,3,soon\n"
                            "196,242,inf,881250949\n196,242,nan,1e300\n").encode(),
        "mixed_timestamp_units.csv": (header + "\n" + "\n".join(rows[:50]) + "\n" + "\n".join(
            f"{i},{i},4,{881250949000 + i}" for i in range(1, 30)) + "\n").encode(),
        "unbalanced_quote.csv": (header + "\n" + "\n".join(rows[:30]) + '\n"196,242,3,881250949\n'
                                 + "\n".join(rows[30:60]) + "\n").encode(),
        "only_bad_rows.csv": (header + "\n" + "\n".join(f"x{i},,,," for i in range(20)) + "\n").encode(),
        "bad_lines.jsonl": ("\n".join(json.dumps(dict(zip(["user_id", "item_id", "rating", "timestamp"],
                                                          row.split(",")))) for row in rows[:40])
                            + "\n{not json\n[1, 2]\n\"a string\"\n{\"user_id\": null, \"item_id\": 3}\n").encode(),
        "truncated.parquet": b"PAR1\x15\x04\x15\x10\x15\x14L\x15\x02\x15\x00\x12\x00\x00",
    }


def broken_catalogs(items: str) -> dict[str, bytes]:
    lines = items.splitlines()
    header, rows = lines[0], lines[1:]
    return {
        "items_empty.csv": b"",
        "items_header_only.csv": (header + "\n").encode(),
        "items_no_id.csv": ("id_of_item,title,released\n" + "\n".join(rows) + "\n").encode(),
        "items_duplicate_ids.csv": (header + "\n" + "\n".join(rows) + "\n" + "\n".join(rows[:5]) + "\n").encode(),
        "items_binary.csv": bytes(range(256)) * 3,
    }


BROKEN_CONFIGS = {
    "syntax.toml": "[train\nepochs = 3\n",
    "wrong_type.toml": '[train]\nepochs = "two"\n',
    "negative.toml": "[train]\nepochs = -3\n",
    "unknown_key.toml": "[train]\nepoch = 3\n",
    "unknown_model_key.toml": "[model]\ngnn_wieght = 1.0\n",
    "table_as_value.toml": "train = 3\n",
    "binary.toml": "\x00\x01\x02[[[",
}


def test_broken_event_logs_through_build_graph(corpus_root, tmp_path, capsys, caplog):
    log = (corpus_root / "log.csv").read_text()
    codes = {}
    for name, content in broken_logs(log).items():
        path = tmp_path / name
        path.write_bytes(content)
        out = tmp_path / f"{name}.summary.json"
        codes[name], text = run_case(tmp_path, ["build-graph", "--interactions", str(path), "--json", str(out)],
                                     out, capsys, caplog)
        if codes[name] != 0:
            assert name in text, f"{name}: the error does not name the file\n{text}"
    # A file with no usable row at all can never succeed.
    for name in ("empty.csv", "header_only.csv", "binary.csv", "no_user_column.csv", "only_bad_rows.csv",
                 "truncated.parquet"):
        assert codes[name] != 0, name


def test_bom_and_crlf_log_reads_cleanly(corpus_root, tmp_path, capsys, caplog):
    lines = (corpus_root / "log.csv").read_text().splitlines()[:81]
    path = tmp_path / "bom_and_crlf.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    out = tmp_path / "summary.json"
    assert main(["build-graph", "--interactions", str(path), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert sum(summary["edges"].values()) >= 80  # all 80 rows, read through the BOM and the CRLFs
    assert "Traceback" not in capsys.readouterr().err


def test_broken_event_logs_strict_never_succeed_with_skips(corpus_root, tmp_path, capsys, caplog):
    log = (corpus_root / "log.csv").read_text()
    for name in ("ragged.csv", "empty_ids.csv", "bad_numbers.csv", "mixed_timestamp_units.csv", "bad_lines.jsonl"):
        path = tmp_path / name
        path.write_bytes(broken_logs(log)[name])
        out = tmp_path / f"{name}.summary.json"
        code, text = run_case(tmp_path, ["build-graph", "--interactions", str(path), "--strict", "--json", str(out)],
                              out, capsys, caplog)
        assert code != 0, f"{name}: --strict accepted bad rows\n{text}"


def test_broken_catalogs_through_build_graph_and_export(corpus_root, tmp_path, capsys, caplog):
    shutil.copy(corpus_root / "log.csv", tmp_path / "log.csv")
    for name, content in broken_catalogs((corpus_root / "items.csv").read_text()).items():
        path = tmp_path / name
        path.write_bytes(content)
        out = tmp_path / f"{name}.graph.json"
        run_case(tmp_path, ["build-graph", "--interactions", str(tmp_path / "log.csv"), "--items", str(path),
                            "--item-text-cols", "title", "--json", str(out)], out, capsys, caplog)
        out = tmp_path / f"{name}.similar.parquet"
        code, _ = run_case(tmp_path, ["export-similar", "--items", str(path), "--attr-cols", "released",
                                      "--out", str(out), "--k", "5", "--no-progress"], out, capsys, caplog)
        if name in ("items_empty.csv", "items_header_only.csv", "items_no_id.csv", "items_binary.csv"):
            assert code != 0, name


def test_broken_configs_through_train_and_build_graph(corpus_root, tmp_path, capsys, caplog):
    shutil.copy(corpus_root / "log.csv", tmp_path / "log.csv")
    for name, content in BROKEN_CONFIGS.items():
        config = tmp_path / name
        config.write_text(content)
        out = tmp_path / f"{name}.model"
        code, text = run_case(tmp_path, ["train", "--interactions", str(tmp_path / "log.csv"), "--no-images",
                                         "--config", str(config), "--out", str(out)], out, capsys, caplog)
        assert code != 0, f"{name}: a broken config trained a model\n{text}"
        assert name in text, f"{name}: the error does not name the config file\n{text}"
        assert not out.exists(), f"{name}: a model was written from a broken config"
    for name in ("syntax.toml", "binary.toml", "table_as_value.toml"):
        out = tmp_path / f"{name}.graph.json"
        code, _ = run_case(tmp_path, ["build-graph", "--interactions", str(tmp_path / "log.csv"), "--config",
                                      str(tmp_path / name), "--json", str(out)], out, capsys, caplog)
        assert code != 0, name


def corrupt_model_folders(model: Path, target: Path) -> list[Path]:
    """Copies of ``model`` broken one way each."""
    cases = {}

    def copy(name: str) -> Path:
        folder = target / name
        shutil.copytree(model, folder)
        cases[name] = folder
        return folder

    state = (model / "state.pt").read_bytes()
    config = (model / "config.json").read_text()
    (copy("truncated_state") / "state.pt").write_bytes(state[: len(state) // 2])
    (copy("empty_state") / "state.pt").write_bytes(b"")
    (copy("garbage_state") / "state.pt").write_bytes(b"\x80\x04not a pickle at all" * 20)
    (copy("truncated_config") / "config.json").write_text(config[: len(config) // 2])
    (copy("config_not_object") / "config.json").write_text("[1, 2, 3]")
    (copy("config_no_class") / "config.json").write_text(json.dumps({"params": {}}))
    (copy("config_foreign_code") / "config.json").write_text(json.dumps(
        {"class": "run", "module": "subprocess", "params": {"args": ["touch", str(target / "pwned")]}}))
    params = json.loads(config)["params"]
    typed = next(name for name, value in params.items() if isinstance(value, (bool, int, float)))
    (copy("config_bad_param_type") / "config.json").write_text(
        json.dumps({**json.loads(config), "params": {**params, typed: "abc"}}))
    (copy("config_unknown_param") / "config.json").write_text(
        json.dumps({**json.loads(config), "params": {**params, "no_such_param": 1}}))
    for table in ("item_ids.parquet", "user_ids.parquet"):
        data = (model / table).read_bytes()
        (copy(f"truncated_{table}") / table).write_bytes(data[: len(data) // 2])
        (copy(f"missing_{table}") / table).unlink()
    (copy("missing_state") / "state.pt").unlink()
    items = pd.read_parquet(model / "item_ids.parquet")
    items.iloc[: len(items) // 2].to_parquet(copy("fewer_item_ids") / "item_ids.parquet", index=False)
    users = pd.read_parquet(model / "user_ids.parquet")
    users.iloc[: len(users) // 2].to_parquet(copy("fewer_user_ids") / "user_ids.parquet", index=False)
    (target / "not_a_model").mkdir()
    cases["not_a_model"] = target / "not_a_model"
    return list(cases.values())


@pytest.mark.parametrize("model_name", ["popularity_model", "hybrid_model"])
def test_corrupt_model_folders_through_recommend_export_evaluate(corpus_root, tmp_path, capsys, caplog, model_name):
    folders = corrupt_model_folders(corpus_root / model_name, tmp_path / "models")
    shutil.copy(corpus_root / "log.csv", tmp_path / "log.csv")
    for folder in folders:
        commands = {
            "recommend": ["recommend", "--model", str(folder), "--k", "5", "--no-progress"],
            "export-similar": ["export-similar", "--model", str(folder), "--k", "5", "--no-progress"],
            "evaluate": ["evaluate", "--model", str(folder), "--interactions", str(tmp_path / "log.csv")],
        }
        for command, argv in commands.items():
            out = tmp_path / f"{folder.name}.{command}.out"
            argv = argv + (["--json", str(out)] if command == "evaluate" else ["--out", str(out)])
            code, text = run_case(tmp_path, argv, out, capsys, caplog)
            assert code != 0, f"{command} accepted the model folder {folder.name}\n{text}"
            assert folder.name in text, f"{command} {folder.name}: the error does not name the folder\n{text}"
    assert not (tmp_path / "models" / "pwned").exists(), "a config.json ran code"
