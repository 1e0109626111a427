"""MovieLens readers: 100K (``u.data``/``u.item``/``u.user``, with TMDB overviews and posters when
``ml-100k-tmdb/`` sits beside ``ml-100k/``), 1M (``ratings.dat``/``movies.dat``/``users.dat``) and
ml-latest-small (``ratings.csv``/``movies.csv``, optional ``tags.csv``).

All return integer ids, ``rating`` = ``weight`` (explicit stars) and unix-second timestamps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.catalog import multi_values
from data_builders.event_log import assemble_dataset
from data_builders.locate import locate_dataset
from data_builders.parsing import LINE, parse_numeric, read_delimited, read_text, require_columns, skip_rows
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport
from hybridrec.tables import ColumnRoles, RecDataset

logger = logging.getLogger(__name__)

ML100K_ITEM_FIELDS = ["item_id", "title", "release_date", "video_release_date", "imdb_url"]
TMDB_FOLDER = "ml-100k-tmdb"
RATING_FIELDS = ["user_id", "item_id", "rating", "timestamp"]
MOVIE_ROLES = ColumnRoles(text=["title"], multi=["genres"], numeric=["year"])

# Codes of users.dat in MovieLens-1M, from the data set's README.
ML1M_AGE_GROUPS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = {
    0: "other", 1: "academic/educator", 2: "artist", 3: "clerical/admin", 4: "college/grad student",
    5: "customer service", 6: "doctor/health care", 7: "executive/managerial", 8: "farmer", 9: "homemaker",
    10: "K-12 student", 11: "lawyer", 12: "programmer", 13: "retired", 14: "sales/marketing", 15: "scientist",
    16: "self-employed", 17: "technician/engineer", 18: "tradesman/craftsman", 19: "unemployed", 20: "writer",
}
NO_GENRES = "(no genres listed)"


def _read_lines(path: Path, encoding: str = "latin-1") -> list[str]:
    return [line.strip() for line in read_text(path, encoding).splitlines() if line.strip()]


def _ratings(path: Path, *, sep: str, report: LoadReport, header: dict[str, str] | None = None) -> pd.DataFrame:
    """Rating rows with int ids, float rating, int timestamp and ``__line__``.

    ``header`` maps the file's header names to canonical ones; ``None`` means no header.
    """
    if header is None:
        table = read_delimited(path, sep=sep, names=RATING_FIELDS, report=report, quoted=False, encoding="latin-1")
    else:
        table = read_delimited(path, sep=sep, report=report, encoding="latin-1")
        require_columns(table, list(header), file=path)
        table = table[[*header, LINE]].rename(columns=header)
    for column in RATING_FIELDS:
        table = parse_numeric(table, column, file=path, report=report, integer=column != "rating")
    table = skip_rows(table, (table["rating"] <= 0).to_numpy(), "rating must be > 0", file=path, report=report,
                      column="rating")
    return pd.DataFrame({
        "user_id": table["user_id"].to_numpy(np.int64),
        "item_id": table["item_id"].to_numpy(np.int64),
        "rating": table["rating"].to_numpy(np.float32),
        "weight": table["rating"].to_numpy(np.float32),
        "timestamp": table["timestamp"].to_numpy(np.int64),
        LINE: table[LINE].to_numpy(),
    })


def _title_years(titles: pd.Series) -> np.ndarray:
    """Release year from a trailing "(1995)" (or "(2006-2007)") in the title; NaN where absent."""
    years = titles.str.extract(r"\((\d{4})(?:[-\u2013]\d{4})?\)\s*$", expand=False)
    return pd.to_numeric(years, errors="coerce").to_numpy(np.float64)


def _movies(table: pd.DataFrame, path: Path, report: LoadReport) -> pd.DataFrame:
    """Items (item_id, title, year, genres) from movies.dat / movies.csv columns item_id, title, genres."""
    table = parse_numeric(table, "item_id", file=path, report=report, integer=True)
    table = skip_rows(table, table["item_id"].duplicated().to_numpy(), "duplicate item_id (its first row is kept)",
                      file=path, report=report, column="item_id")
    titles = table["title"].astype("str").str.strip()
    genres = table["genres"].astype("str").str.replace(NO_GENRES, "", regex=False)
    return pd.DataFrame({
        "item_id": table["item_id"].to_numpy(np.int64),
        "title": titles.to_numpy(),
        "year": _title_years(titles),
        "genres": multi_values(genres.reset_index(drop=True), "|").to_numpy(),
        LINE: table[LINE].to_numpy(),
    }).astype({"title": "str"})


def load_movielens_100k(path: str | Path | None = None, *, tmdb_path: str | Path | None = None,
                        strict: bool = False, download: bool = True) -> RecDataset:
    """Read MovieLens-100K into canonical tables.

    Args:
        path: the ``ml-100k`` folder or its parent; ``None`` looks in ``HYBRIDREC_DATA_DIR`` and the
            user cache, and downloads the official archive (MD5-checked) when online.
        tmdb_path: folder with ``overviews.csv`` and ``posters/{movie_id}.jpg``; by default
            ``ml-100k-tmdb/`` beside ``ml-100k/`` is used when present.
        strict: raise on the first skipped row instead of counting it.
        download: allow downloading when the folder is not found.

    Returns:
        RecDataset with interactions (user_id, item_id, rating, weight=rating, timestamp), items
        (item_id, title, year, genres: list[str], release_date, imdb_url, and overview/image_path
        with TMDB), and users (user_id, age, gender, occupation, zip). Ids are ints.
    """
    root = locate_dataset("movielens-100k", path, download=download)
    report = LoadReport(strict=strict)

    genre_names = [line.split("|")[0] for line in _read_lines(root / "u.genre") if "|" in line]
    occupations = set(_read_lines(root / "u.occupation"))
    rating_file = root / "u.data"
    ratings = _ratings(rating_file, sep="\t", report=report)

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

    item_roles = MOVIE_ROLES
    tmdb_root = Path(tmdb_path) if tmdb_path is not None else root.parent / TMDB_FOLDER
    if tmdb_path is not None or tmdb_root.is_dir():
        items = _add_tmdb(items, tmdb_root, report)
        item_roles = ColumnRoles(text=["title", "overview"], multi=["genres"], numeric=["year"], image="image_path")

    dataset = assemble_dataset(ratings, items=items, users=users, item_roles=item_roles,
                               user_roles=ColumnRoles(categorical=["gender", "occupation"], numeric=["age"]),
                               log_file=rating_file, dedupe="none", report=report, name="movielens-100k")
    report.log()
    return dataset


def _add_tmdb(items: pd.DataFrame, tmdb_root: Path, report: LoadReport) -> pd.DataFrame:
    """Add ``overview`` ("" when missing) and ``image_path`` (None when missing) columns."""
    overview_file = tmdb_root / "overviews.csv"
    if not tmdb_root.is_dir():
        raise HybridRecError(f"{tmdb_root}: TMDB folder not found")
    overviews = read_delimited(overview_file, sep=",", report=report)
    require_columns(overviews, ["movie_id", "overview"], file=overview_file)
    overviews = parse_numeric(overviews, "movie_id", file=overview_file, report=report, integer=True)
    by_id = dict(zip(overviews["movie_id"], overviews["overview"].fillna("").str.strip()))
    items = items.copy()
    items["overview"] = pd.Series([by_id.get(item_id, "") for item_id in items["item_id"]], index=items.index,
                                  dtype="str")
    poster_dir = tmdb_root / "posters"
    present = {p.stem for p in poster_dir.glob("*.jpg")} if poster_dir.is_dir() else set()
    items["image_path"] = pd.Series([str(poster_dir / f"{item_id}.jpg") if str(item_id) in present else None
                                     for item_id in items["item_id"]], index=items.index, dtype=object)
    n_text = int((items["overview"] != "").sum())
    n_image = int(items["image_path"].notna().sum())
    report.note(f"{tmdb_root}: {n_text} of {len(items)} items have an overview, {n_image} have a poster")
    return items


def load_movielens_1m(path: str | Path | None = None, *, strict: bool = False, download: bool = True) -> RecDataset:
    """Read MovieLens-1M (``::``-separated, Latin-1) into canonical tables.

    Args:
        path: the ``ml-1m`` folder or its parent; ``None`` looks in ``HYBRIDREC_DATA_DIR`` and the
            user cache, and downloads the official archive (MD5-checked) when online.
        strict: raise on the first skipped row instead of counting it.
        download: allow downloading when the folder is not found.

    Returns:
        RecDataset with interactions (user_id, item_id, rating, weight=rating, timestamp), items
        (item_id, title, year, genres: list[str]) and users (user_id, gender, age, occupation, zip)
        where age and occupation codes are replaced by their README names (e.g. "25-34",
        "programmer"). Ids are ints.
    """
    root = locate_dataset("movielens-1m", path, download=download)
    report = LoadReport(strict=strict)
    rating_file = root / "ratings.dat"
    ratings = _ratings(rating_file, sep="::", report=report)

    movie_file = root / "movies.dat"
    movies = read_delimited(movie_file, sep="::", names=["item_id", "title", "genres"], encoding="latin-1",
                            report=report, quoted=False)
    items = _movies(movies, movie_file, report)

    user_file = root / "users.dat"
    users = None
    if user_file.is_file():
        users = _ml1m_users(user_file, report)
    else:
        report.note(f"{user_file}: not found; users have no attributes")
    dataset = assemble_dataset(ratings, items=items, users=users, item_roles=MOVIE_ROLES,
                               user_roles=ColumnRoles(categorical=["gender", "age", "occupation"]),
                               log_file=rating_file, dedupe="none", report=report, name="movielens-1m")
    report.log()
    return dataset


def _ml1m_users(user_file: Path, report: LoadReport) -> pd.DataFrame:
    """users.dat with age and occupation codes mapped to names; unknown codes become None (noted)."""
    users = read_delimited(user_file, sep="::", names=["user_id", "gender", "age", "occupation", "zip"],
                           encoding="latin-1", report=report, quoted=False)
    users = parse_numeric(users, "user_id", file=user_file, report=report, integer=True)
    users = skip_rows(users, users["user_id"].duplicated().to_numpy(), "duplicate user_id (its first row is kept)",
                      file=user_file, report=report, column="user_id")
    table = pd.DataFrame({"user_id": users["user_id"].to_numpy(np.int64),
                          "gender": users["gender"].str.strip().replace("", None).to_numpy(dtype=object)})
    for column, names in (("age", ML1M_AGE_GROUPS), ("occupation", ML1M_OCCUPATIONS)):
        codes = pd.to_numeric(users[column], errors="coerce").to_numpy(np.float64)
        labels = [names.get(int(code)) if np.isfinite(code) else None for code in codes]
        unknown = sum(label is None for label in labels)
        if unknown:
            report.note(f"{user_file}: {unknown} user(s) with an unknown {column} code (set to None)")
        table[column] = pd.Series(labels, dtype=object)
    table["zip"] = users["zip"].str.strip().to_numpy()
    return table


def load_movielens_latest_small(path: str | Path | None = None, *, strict: bool = False,
                                download: bool = True) -> RecDataset:
    """Read ml-latest-small (CSV, UTF-8) into canonical tables.

    Args:
        path: the ``ml-latest-small`` folder or its parent; ``None`` looks in ``HYBRIDREC_DATA_DIR``
            and the user cache, and downloads the official archive when online.
        strict: raise on the first skipped row instead of counting it.
        download: allow downloading when the folder is not found.

    Returns:
        RecDataset with interactions (user_id, item_id, rating in half stars, weight=rating,
        timestamp), items (item_id, title, year, genres: list[str], and tags: list[str] of the
        lower-cased user tags when ``tags.csv`` exists) and users (user_id only). Ids are ints.
    """
    root = locate_dataset("movielens-latest-small", path, download=download)
    report = LoadReport(strict=strict)
    rating_file = root / "ratings.csv"
    ratings = _ratings(rating_file, sep=",", report=report,
                       header={"userId": "user_id", "movieId": "item_id", "rating": "rating",
                               "timestamp": "timestamp"})

    movie_file = root / "movies.csv"
    movies = read_delimited(movie_file, sep=",", report=report)
    require_columns(movies, ["movieId", "title", "genres"], file=movie_file)
    items = _movies(movies.rename(columns={"movieId": "item_id"}), movie_file, report)
    item_roles = MOVIE_ROLES
    tag_file = root / "tags.csv"
    if tag_file.is_file():
        items["tags"] = _movie_tags(tag_file, items["item_id"], report)
        item_roles = ColumnRoles(text=["title"], multi=["genres", "tags"], numeric=["year"])
    dataset = assemble_dataset(ratings, items=items, users=None, item_roles=item_roles, log_file=rating_file,
                               item_column="movieId", dedupe="none", report=report,
                               name="movielens-latest-small")
    report.log()
    return dataset


def _movie_tags(tag_file: Path, item_ids: pd.Series, report: LoadReport) -> list[list[str]]:
    """Per item, its distinct lower-cased tags in first-use order (tags of unknown movies are skips)."""
    tags = read_delimited(tag_file, sep=",", report=report)
    require_columns(tags, ["movieId", "tag"], file=tag_file)
    tags = parse_numeric(tags, "movieId", file=tag_file, report=report, integer=True)
    tags = skip_rows(tags, ~tags["movieId"].isin(item_ids).to_numpy(), "item not in movies.csv", file=tag_file,
                     report=report, column="movieId")
    tags = tags.assign(tag=tags["tag"].str.strip().str.lower())
    tags = skip_rows(tags, (tags["tag"] == "").to_numpy(), "empty tag", file=tag_file, report=report, column="tag")
    by_item = tags.drop_duplicates(["movieId", "tag"]).groupby("movieId", sort=False)["tag"].agg(list)
    return [by_item.get(item_id, []) for item_id in item_ids]
