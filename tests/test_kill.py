"""``train`` and ``export-similar`` killed with SIGKILL at random points: the previous output stays
intact, and the next completed run leaves no scratch litter beside the output."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hybridrec.recommender_base import RecommenderBase
from hybridrec.topk_table import read_table

SEED = 7
#: Kills per command: one at a random moment of the whole run, then ones while the output is
#: being written (after its scratch folder appears).
KILLS_ANYWHERE = 1
KILLS_WHILE_WRITING = 2


@pytest.fixture(scope="module")
def workspace(data_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kill")
    ratings = pd.read_csv(data_dir / "ml-100k" / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    ratings[ratings["user_id"] <= 60][["user_id", "item_id", "timestamp"]].to_csv(folder / "inter.csv", index=False)
    (folder / "model.toml").write_text("[train]\nepochs = 3\ndim = 8\n")
    return folder


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hybridrec.cli", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def litter(out: Path, *, folders_only: bool = False) -> list[str]:
    """Hidden scratch entries ``.NAME.*.tmp`` beside ``out``."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")
                  and p.name.endswith(".tmp") and (p.is_dir() or not folders_only))


def snapshot(out: Path) -> dict[str, bytes]:
    if out.is_file():
        return {"": out.read_bytes()}
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def run_to_end(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - started


def kill_during(argv: list[str], cwd: Path, out: Path, *, delay: float, while_writing: bool) -> bool:
    """Start ``argv``; SIGKILL it ``delay`` s after the start, or after its scratch folder appears.

    Returns whether the process was still running when the signal was sent.
    """
    process = subprocess.Popen(argv, cwd=cwd, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.perf_counter() + 60
        if while_writing:
            while not litter(out, folders_only=True) and process.poll() is None and time.perf_counter() < deadline:
                time.sleep(0.001)
        time.sleep(delay)
        alive = process.poll() is None
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    return alive


def exercise(argv: list[str], cwd: Path, out: Path, is_complete_output) -> None:
    rng = random.Random(SEED)
    duration = run_to_end(argv, cwd)  # the previous output
    before = snapshot(out)
    argv = [*argv, "--overwrite"]
    kills = [(rng.uniform(0.2, 1.0) * duration, False) for _ in range(KILLS_ANYWHERE)]
    kills += [(rng.uniform(0.0, 0.01), True) for _ in range(KILLS_WHILE_WRITING)]
    left_litter = 0
    for delay, while_writing in kills:
        kill_during(argv, cwd, out, delay=delay, while_writing=while_writing)
        left_litter += bool(litter(out))
        after = snapshot(out)
        # Untouched, or (the kill came after the final rename) a complete new output.
        assert after == before or is_complete_output(out), f"damaged output after a kill at {delay:.3f} s"
        before = after
    assert left_litter, "no kill landed while the output was being written"
    run_to_end(argv, cwd)
    assert is_complete_output(out)
    assert litter(out) == []


def complete_model(out: Path) -> bool:
    RecommenderBase.load(out)
    return (out / "train_summary.json").is_file()


def complete_table(out: Path) -> bool:
    return len(read_table(out)) > 0


def test_killed_train_keeps_the_previous_model(workspace):
    argv = command("train", "--interactions", "inter.csv", "--no-images", "--text-cols", "",
                   "--config", "model.toml", "--out", "model")
    exercise(argv, workspace, workspace / "model", complete_model)


def test_killed_export_keeps_the_previous_table(workspace):
    if not (workspace / "model").is_dir():
        run_to_end(command("train", "--interactions", "inter.csv", "--no-images", "--text-cols", "",
                           "--config", "model.toml", "--out", "model"), workspace)
    argv = command("export-similar", "--model", "model", "--out", "similar.parquet", "--k", "5", "--no-progress")
    exercise(argv, workspace, workspace / "similar.parquet", complete_table)
