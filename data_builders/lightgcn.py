"""Reader for the LightGCN papers' data format: a given train/test pair of implicit feedback.

Folders such as Gowalla, Yelp2018 and Amazon-Book as published with the LightGCN code hold
``train.txt`` and ``test.txt``, one line per user: ``user_id item_id item_id ...`` (0-based ints;
a user may have no item on a line). The reader keeps the split as given: every interaction gets a
``split`` column (``"train"`` or ``"test"``), which ``SplitConfig(kind="given")`` reads, so a model
is scored exactly on the published test set.

Malformed tokens (not a non-negative integer) are counted skips with their line and position;
``strict`` makes them errors. A duplicate (user, item) pair within one file is a counted skip too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.locate import search_dirs
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport
from hybridrec.tables import RecDataset

#: The files of one folder, in the order their rows are read.
SPLIT_FILES = (("train", "train.txt"), ("test", "test.txt"))
#: ``--dataset`` names of the folders in this format and the folder each is looked up as.
LIGHTGCN_DATASETS = {"gowalla": "gowalla", "yelp2018": "yelp2018", "amazon-book": "amazon-book"}


def locate_lightgcn_folder(name: str | None, data_dir: str | Path | None) -> Path:
    """The folder holding ``train.txt`` and ``test.txt``: ``data_dir`` itself, or ``<parent>/<name>``
    in ``data_dir``, ``$HYBRIDREC_DATA_DIR`` and the user cache.

    Raises:
        HybridRecError: listing where it looked (these files are not downloaded automatically).
    """
    folder_name = LIGHTGCN_DATASETS.get(name or "", name or "")
    tried = []
    for parent in search_dirs(data_dir):
        for folder in (parent, parent / folder_name) if folder_name else (parent,):
            if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
                return folder
            tried.append(str(folder))
    raise HybridRecError(f"no train.txt + test.txt of the LightGCN format found (looked in {', '.join(tried)}); "
                         "pass --data-dir FOLDER or set HYBRIDREC_DATA_DIR to the folder above it")


def _read_split_file(path: Path, split: str, report: LoadReport) -> pd.DataFrame:
    """``user_id, item_id`` rows of one file, in file order (duplicates within the file skipped)."""
    users, items = [], []
    with open(path, encoding="ascii", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if not tokens[0].isdigit():
                report.skip("user id is not a non-negative integer", file=path, line=line_number,
                            count=len(tokens))
                continue
            user = int(tokens[0])
            bad = [position for position, token in enumerate(tokens[1:], start=2) if not token.isdigit()]
            for position in bad:
                report.skip("item id is not a non-negative integer", file=path, line=line_number,
                            column=f"token {position}")
            good = [int(token) for token in tokens[1:] if token.isdigit()]
            users.extend([user] * len(good))
            items.extend(good)
    frame = pd.DataFrame({"user_id": np.asarray(users, dtype=np.int64), "item_id": np.asarray(items, dtype=np.int64)})
    duplicated = frame.duplicated(["user_id", "item_id"])
    if duplicated.any():
        report.skip("duplicate (user, item) pair", file=path, count=int(duplicated.sum()))
        frame = frame[~duplicated]
    return frame.assign(split=split)


def load_lightgcn(data_dir: str | Path | None = None, *, name: str | None = "gowalla",
                  strict: bool = False) -> RecDataset:
    """Read a LightGCN-format folder into canonical tables with the given train/test split.

    Args:
        data_dir: the folder itself, or a folder holding ``<name>/`` (then ``$HYBRIDREC_DATA_DIR``
            and the user cache are searched too).
        name: the dataset (``"gowalla"``, ``"yelp2018"``, ``"amazon-book"``), or None for
            ``data_dir`` itself.
        strict: malformed tokens and duplicates are errors instead of counted skips.

    Returns:
        RecDataset: interactions ``user_id, item_id, weight (1.0), split``; items and users are
        the ids seen in either file (no attributes).
    """
    folder = locate_lightgcn_folder(name, data_dir)
    report = LoadReport(strict=strict)
    parts = [_read_split_file(folder / file_name, split, report) for split, file_name in SPLIT_FILES]
    interactions = pd.concat(parts, ignore_index=True)
    if not len(interactions):
        raise HybridRecError(f"{folder}: train.txt and test.txt hold no interactions")
    interactions["weight"] = np.float32(1.0)
    interactions = interactions[["user_id", "item_id", "weight", "split"]]
    items = pd.DataFrame({"item_id": np.sort(interactions["item_id"].unique())})
    users = pd.DataFrame({"user_id": np.sort(interactions["user_id"].unique())})
    return RecDataset(interactions=interactions, items=items, users=users, name=name or folder.name, report=report)
