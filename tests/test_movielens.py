"""MovieLens readers: the real 100K, and 1M / ml-latest-small on small files in the official formats."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from data_builders.movielens import load_movielens_1m, load_movielens_100k, load_movielens_latest_small
from hybridrec.errors import HybridRecError

ML1M_RATINGS = """1::1193::5::978300760
1::661::3::978302109
1::914::3::978301968
2::1193::4::978298413
2::73::5::978299026
3::661::2::978297867
3::3408::4::978300275
4::73::1::978294008
5::914::5::978300760
5::3408::3::978301000
6::1193::4::978302109
6::661::5::978301968
"""
ML1M_MOVIES = """73::Misérables, Les (1995)::Drama|Musical
661::James and the Giant Peach (1996)::Animation|Children's|Musical
914::My Fair Lady (1964)::Musical|Romance
1193::One Flew Over the Cuckoo's Nest (1975)::Drama
3408::Erin Brockovich (2000)::Drama
3952::Contender, The (2000)::Drama|Thriller
"""
ML1M_USERS = """1::F::1::10::48067
2::M::56::16::70072
3::M::25::15::55117
4::M::45::7::02460
5::M::25::20::55455
6::F::50::9::55117
7::M::35::1::06810
"""
LATEST_RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,3,4.0,964981247
1,6,4.0,964982224
1,11,5.0,964982931
2,1,3.5,1445714835
2,6,2.5,1445715081
3,11,0.5,1306463578
3,6,5.0,1306464275
4,1,4.0,986935199
4,3,3.0,986935220
5,11,4.5,847434962
5,1,4.0,847434962
"""
LATEST_MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
3,Grumpier Old Men (1995),Comedy|Romance
6,Heat (1995),Action|Crime|Thriller
11,"American President, The (1995)",Comedy|Drama|Romance
99999,Some Series (2006\u20132007),(no genres listed)
"""
LATEST_TAGS = """userId,movieId,tag,timestamp
2,1,pixar,1445714994
2,1,Pixar,1445714996
2,6,"heist, classic",1445714992
3,11,politics,1306463590
3,424242,orphan tag,1306463600
"""


def write_ml1m(root, ratings=ML1M_RATINGS):
    folder = root / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(ratings, encoding="latin-1")
    (folder / "movies.dat").write_text(ML1M_MOVIES, encoding="latin-1")
    (folder / "users.dat").write_text(ML1M_USERS, encoding="latin-1")
    return folder


def write_latest(root, tags=True):
    folder = root / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text(LATEST_RATINGS)
    (folder / "movies.csv").write_text(LATEST_MOVIES)
    if tags:
        (folder / "tags.csv").write_text(LATEST_TAGS)
    return folder


def copy_ml100k(data_dir, root, n_ratings=2000, extra=""):
    """ml-100k with the first ``n_ratings`` lines of u.data (plus ``extra`` lines), no TMDB beside."""
    folder = root / "ml-100k"
    folder.mkdir()
    for name in ("u.item", "u.user", "u.genre", "u.occupation"):
        shutil.copy(data_dir / "ml-100k" / name, folder / name)
    lines = (data_dir / "ml-100k" / "u.data").read_text().splitlines()[:n_ratings]
    (folder / "u.data").write_text("\n".join(lines) + "\n" + extra)
    return folder


@pytest.fixture(scope="module")
def ml100k(data_dir):
    start = time.perf_counter()
    dataset = load_movielens_100k(data_dir, download=False)
    return dataset, time.perf_counter() - start


def test_ml100k_sizes(ml100k):
    dataset, _ = ml100k
    assert (len(dataset.users), len(dataset.items), len(dataset.interactions)) == (943, 1682, 100_000)


def test_ml100k_has_tmdb_content(ml100k):
    dataset, _ = ml100k
    assert dataset.item_roles.text == ["title", "overview"] and dataset.item_roles.image == "image_path"
    assert (dataset.items["overview"] != "").sum() > 1500
    assert dataset.items["image_path"].notna().sum() > 1500


def test_ml100k_dtypes_and_roles(ml100k):
    dataset, _ = ml100k
    interactions = dataset.interactions
    assert list(interactions.columns) == ["user_id", "item_id", "rating", "weight", "timestamp"]
    assert interactions["weight"].dtype == np.float32 and interactions["timestamp"].dtype == np.int64
    assert (interactions["weight"] > 0).all()
    toy_story = dataset.items.set_index("item_id").loc[1]
    assert toy_story["genres"] == ["Animation", "Children's", "Comedy"] and toy_story["year"] == 1995
    assert dataset.user_roles.categorical == ["gender", "occupation"]


def test_ml100k_loads_fast(ml100k):
    _, seconds = ml100k
    assert seconds < 5.0


def test_ml100k_without_tmdb_has_no_image_role(data_dir, tmp_path):
    dataset = load_movielens_100k(copy_ml100k(data_dir, tmp_path), download=False)
    assert len(dataset.interactions) == 2000 and dataset.item_roles.image is None
    assert len(dataset.items) == 1682  # unrated items are kept as cold items
    assert len(dataset.cold_item_ids) > 0


def test_ml100k_bad_rating_line_is_counted(data_dir, tmp_path):
    folder = copy_ml100k(data_dir, tmp_path, extra="1\tx\t3\t881250949\n1\t99999\t3\t881250949\n")
    dataset = load_movielens_100k(folder, download=False)
    examples = [e for shown in dataset.report.examples.values() for e in shown]
    assert dataset.report.total_skipped == 2
    assert f"{folder / 'u.data'}:2001, column 'item_id': cannot parse value as a number" in examples
    assert f"{folder / 'u.data'}:2002, column 'item_id': item not in the item catalog" in examples


def test_ml100k_strict_raises_on_bad_line(data_dir, tmp_path):
    folder = copy_ml100k(data_dir, tmp_path, extra="1\t2\n")
    with pytest.raises(HybridRecError, match=r"u\.data:2001: expected 4 fields, found 2"):
        load_movielens_100k(folder, strict=True, download=False)


def test_ml1m_tables(tmp_path):
    write_ml1m(tmp_path)
    dataset = load_movielens_1m(tmp_path, download=False)
    assert (len(dataset.users), len(dataset.items), len(dataset.interactions)) == (7, 6, 12)
    assert dataset.report.total_skipped == 0
    assert set(dataset.cold_item_ids) == {3952} and set(dataset.cold_user_ids) == {7}


def test_ml1m_movies_are_latin1_with_split_genres(tmp_path):
    items = load_movielens_1m(write_ml1m(tmp_path), download=False).items.set_index("item_id")
    assert items.loc[73, "title"] == "Misérables, Les (1995)" and items.loc[73, "year"] == 1995
    assert items.loc[661, "genres"] == ["Animation", "Children's", "Musical"]


def test_ml1m_user_codes_become_names(tmp_path):
    dataset = load_movielens_1m(write_ml1m(tmp_path), download=False)
    users = dataset.users.set_index("user_id")
    assert users.loc[1, ["gender", "age", "occupation"]].tolist() == ["F", "Under 18", "K-12 student"]
    assert users.loc[2, ["age", "occupation"]].tolist() == ["56+", "self-employed"]
    assert users.loc[4, "zip"] == "02460"
    assert dataset.user_roles.categorical == ["gender", "age", "occupation"]


def test_ml1m_interactions(tmp_path):
    interactions = load_movielens_1m(write_ml1m(tmp_path), download=False).interactions
    assert interactions.iloc[0].tolist() == [1, 1193, 5.0, 5.0, 978300760]
    assert interactions["user_id"].dtype == np.int64 and interactions["rating"].dtype == np.float32


def test_ml1m_unknown_item_is_counted_skip(tmp_path):
    folder = write_ml1m(tmp_path, ratings=ML1M_RATINGS + "7::5555::3::978300000\n")
    dataset = load_movielens_1m(folder, download=False)
    assert dataset.report.skipped[(str(folder / "ratings.dat"), "item not in the item catalog")] == 1
    assert dataset.report.examples[(str(folder / "ratings.dat"), "item not in the item catalog")] == [
        f"{folder / 'ratings.dat'}:13, column 'item_id': item not in the item catalog"]


def test_ml1m_unknown_occupation_code_is_noted(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "users.dat").write_text(ML1M_USERS + "8::M::25::99::12345\n", encoding="latin-1")
    dataset = load_movielens_1m(folder, download=False)
    assert dataset.users.set_index("user_id").loc[8, "occupation"] is None
    assert any("unknown occupation code" in note for note in dataset.report.notes)


def test_ml1m_missing_folder_without_download_raises(tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRIDREC_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(HybridRecError, match="'movielens-1m' not found"):
        load_movielens_1m(tmp_path, download=False)


def test_latest_small_tables(tmp_path):
    write_latest(tmp_path)
    dataset = load_movielens_latest_small(tmp_path, download=False)
    assert (len(dataset.users), len(dataset.items), len(dataset.interactions)) == (5, 5, 12)
    assert dataset.interactions["rating"].min() == 0.5
    assert dataset.item_roles.multi == ["genres", "tags"]


def test_latest_small_titles_genres_and_years(tmp_path):
    items = load_movielens_latest_small(write_latest(tmp_path), download=False).items.set_index("item_id")
    assert items.loc[11, "title"] == "American President, The (1995)"
    assert items.loc[99999, "genres"] == [] and items.loc[99999, "year"] == 2006
    assert items.loc[6, "genres"] == ["Action", "Crime", "Thriller"]


def test_latest_small_tags_are_a_multi_valued_column(tmp_path):
    folder = write_latest(tmp_path)
    dataset = load_movielens_latest_small(folder, download=False)
    tags = dataset.items.set_index("item_id")["tags"]
    assert tags.loc[1] == ["pixar"] and tags.loc[6] == ["heist, classic"] and tags.loc[3] == []
    assert dataset.report.skipped[(str(folder / "tags.csv"), "item not in movies.csv")] == 1


def test_latest_small_without_tags(tmp_path):
    dataset = load_movielens_latest_small(write_latest(tmp_path, tags=False), download=False)
    assert "tags" not in dataset.items.columns and dataset.item_roles.multi == ["genres"]


def test_latest_small_missing_column_names_file_and_column(tmp_path):
    folder = write_latest(tmp_path)
    (folder / "ratings.csv").write_text(LATEST_RATINGS.replace("movieId", "itemId"))
    with pytest.raises(HybridRecError, match=r"ratings\.csv, column 'movieId': missing required column"):
        load_movielens_latest_small(folder, download=False)
