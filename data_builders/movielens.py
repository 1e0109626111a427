"""MovieLens readers: 100K (``u.data``/``u.item``/``u.user``), with TMDB overviews and posters
when ``ml-100k-tmdb/`` sits beside ``ml-100k/``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.errors import HybridRecError
from data_builders.locate import locate_dataset
from data_builders.parsing import LINE, parse_numeric, read_delimited
from data_builders.report import LoadReport
from data_builders.tables import ColumnRoles, RecDataset

logger = logging.getLogger(__name__)

ML100K_ITEM_FIELDS = ["item_id", "title", "release_date", "video_release_date", "imdb_url"]
TMDB_FOLDER = "ml-100k-tmdb"


def _read_lines(path: Path, encoding: str = "latin-1") -> list[str]:
    return [line for line in read_delimited(path, sep="\n", names=["value"], encoding=encoding,
                                            report=LoadReport(), quoted=False)["value"]]


def load_movielens_100k(path: str | Path | None = None, *, tmdb_path: str | Path | None = None,
                        strict: bool = False, download: bool = True) -> RecDataset:
    """Read MovieLens-100K into canonical tables.

    Args:
        path: the ``ml-100k`` folder or its parent; ``None`` looks in ``HYBRIDREC_DATA_DIR`` and the
            user cache, and downloads the official archive (MD5-checked) when online.
        tmdb_path: folder with ``overviews.csv`` and ``posters/{movie_id}.jpg``; by default
            ``ml-100k-tmdb/`` beside ``ml-100k/`` is used when present.
        strict: raise on the first skipped row instead of counting it.

    Returns:
        RecDataset with interactions (user_id, item_id, rating, weight=rating, timestamp), items
        (item_id, title, year, genres: list[str], release_date, imdb_url, and overview/image_path
        with TMDB), and users (user_id, age, gender, occupation, zip). Ids are ints.
    """
    root = locate_dataset("movielens-100k", path, download=download)
    report = LoadReport(strict=strict)

    genre_names = [line.split("|")[0] for line in _read_lines(root / "u.genre") if "|" in line]
    occupations = [line.strip() for line in _read_lines(root / "u.occupation") if line.strip()]

    ratings = read_delimited(root / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"],
                             report=report, quoted=False)
    for column, integer in (("user_id", True), ("item_id", True), ("rating", False), ("timestamp", True)):
        ratings = parse_numeric(ratings, column, file=root / "u.data", report=report, integer=integer)

    item_file = root / "u.item"
    items = read_delimited(item_file, sep="|", names=ML100K_ITEM_FIELDS + genre_names, encoding="latin-1",
                           report=report, quoted=False)
    items = parse_numeric(items, "item_id", file=item_file, report=report, integer=True)
    flags = items[genre_names].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=bool)
    items["genres"] = [[genre_names[j] for j in np.flatnonzero(row)] for row in flags]
    # Item 267 ("unknown") has no date: year stays NaN rather than the row being dropped.
    items["year"] = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year.astype(float)
    items = items[["item_id", "title", "year", "genres", "release_date", "imdb_url", LINE]]

    user_file = root / "u.user"
    users = read_delimited(user_file, sep="|", names=["user_id", "age", "gender", "occupation", "zip"],
                           report=report, quoted=False)
    users = parse_numeric(users, "user_id", file=user_file, report=report, integer=True)
    users = parse_numeric(users, "age", file=user_file, report=report, required=False)
    unknown_occupation = ~users["occupation"].isin(occupations)
    if unknown_occupation.any():
        report.note(f"{user_file}: {int(unknown_occupation.sum())} user(s) with an occupation not in u.occupation")

    known_items = set(items["item_id"].tolist())
    unknown_item = ~ratings["item_id"].isin(known_items)
    for line in ratings.loc[unknown_item, LINE].head(report.max_examples):
        report.skip("item id not in u.item", file=root / "u.data", line=int(line), column="item_id")
    ratings = ratings.loc[~unknown_item]

    interactions = pd.DataFrame({
        "user_id": ratings["user_id"].to_numpy(np.int64),
        "item_id": ratings["item_id"].to_numpy(np.int64),
        "rating": ratings["rating"].to_numpy(np.float32),
        "weight": ratings["rating"].to_numpy(np.float32),
        "timestamp": ratings["timestamp"].to_numpy(np.int64),
    })
    item_roles = ColumnRoles(text=["title"], multi=["genres"], numeric=["year"])

    tmdb_root = Path(tmdb_path) if tmdb_path is not None else root.parent / TMDB_FOLDER
    if tmdb_path is not None or tmdb_root.is_dir():
        items = _add_tmdb(items, tmdb_root, report)
        item_roles = ColumnRoles(text=["title", "overview"], multi=["genres"], numeric=["year"], image="image_path")

    dataset = RecDataset(
        interactions=interactions,
        items=items.drop(columns=[LINE]).reset_index(drop=True),
        users=users.drop(columns=[LINE]).reset_index(drop=True),
        item_roles=item_roles,
        user_roles=ColumnRoles(categorical=["gender", "occupation"], numeric=["age"]),
        name="movielens-100k",
        report=report,
    )
    report.log()
    return dataset


def _add_tmdb(items: pd.DataFrame, tmdb_root: Path, report: LoadReport) -> pd.DataFrame:
    """Add ``overview`` ("" when missing) and ``image_path`` (None when missing) columns."""
    overview_file = tmdb_root / "overviews.csv"
    if not tmdb_root.is_dir():
        raise HybridRecError(f"{tmdb_root}: TMDB folder not found")
    overviews = read_delimited(overview_file, sep=",", report=report)
    overviews = parse_numeric(overviews, "movie_id", file=overview_file, report=report, integer=True)
    by_id = dict(zip(overviews["movie_id"], overviews["overview"].fillna("").str.strip()))
    items = items.copy()
    items["overview"] = [by_id.get(item_id, "") for item_id in items["item_id"]]
    poster_dir = tmdb_root / "posters"
    present = {p.stem for p in poster_dir.glob("*.jpg")} if poster_dir.is_dir() else set()
    items["image_path"] = [str(poster_dir / f"{item_id}.jpg") if str(item_id) in present else None
                           for item_id in items["item_id"]]
    n_text = int((items["overview"] != "").sum())
    n_image = int(items["image_path"].notna().sum())
    report.note(f"{tmdb_root}: {n_text} of {len(items)} items have an overview, {n_image} have a poster")
    return items
