"""Find (or, when online, download and verify) public datasets on disk.

Lookup order for a dataset folder such as ``ml-100k``: an explicit ``data_dir`` argument, the
``HYBRIDREC_DATA_DIR`` environment variable, then the user cache ``~/.cache/hybridrec`` (or
``$XDG_CACHE_HOME/hybridrec``). If none holds it and ``download=True``, the official archive is
fetched, checked against its published MD5 and unpacked into the cache with an atomic rename.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "HYBRIDREC_DATA_DIR"


@dataclass(frozen=True)
class DatasetSource:
    """Where a public dataset comes from: its folder name, archive URL and archive checksum."""

    folder: str
    url: str
    md5: str | None  # GroupLens publishes MD5s; None where the archive is re-released over time
    marker: str  # a file that must exist inside ``folder``


SOURCES = {
    "movielens-100k": DatasetSource(
        folder="ml-100k", url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723", marker="u.data"),
    "movielens-1m": DatasetSource(
        folder="ml-1m", url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906", marker="ratings.dat"),
    "movielens-latest-small": DatasetSource(
        folder="ml-latest-small", url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        md5=None, marker="ratings.csv"),
}


def cache_dir() -> Path:
    """The user cache folder for hybridrec data."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hybridrec"


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Candidate parent folders, in lookup order."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]))
    candidates.append(cache_dir())
    return candidates


def locate_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """Folder holding dataset ``name`` (e.g. ``"movielens-100k"`` -> ``.../ml-100k``).

    ``data_dir`` may be the dataset folder itself or its parent.

    Raises:
        HybridRecError: not found and the download failed or was not allowed.
    """
    if name not in SOURCES:
        raise HybridRecError(f"unknown dataset {name!r}; known: {sorted(SOURCES)}")
    source = SOURCES[name]
    for parent in search_dirs(data_dir):
        for folder in (parent, parent / source.folder):
            if (folder / source.marker).is_file():
                return folder
    tried = ", ".join(str(p / source.folder) for p in search_dirs(data_dir))
    if not download:
        raise HybridRecError(f"dataset {name!r} not found (looked in {tried}); set {DATA_DIR_ENV} or pass --data-dir")
    try:
        return download_dataset(source, cache_dir())
    except (OSError, urllib.error.URLError) as err:
        raise HybridRecError(
            f"dataset {name!r} not found (looked in {tried}) and download from {source.url} failed: {err}. "
            f"Set {DATA_DIR_ENV} to a folder holding {source.folder}/ or pass --data-dir") from None


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_dataset(source: DatasetSource, target_parent: Path) -> Path:
    """Download ``source``'s archive, verify its MD5 and unpack it atomically under ``target_parent``."""
    target_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_parent) as scratch:
        archive = Path(scratch) / "archive.zip"
        logger.info("downloading %s", source.url)
        with urllib.request.urlopen(source.url, timeout=60) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        digest = md5_of(archive)
        if source.md5 is None:
            logger.warning("%s has no pinned checksum (md5 of this download: %s)", source.url, digest)
        elif digest != source.md5:
            raise HybridRecError(f"{source.url}: checksum mismatch (md5 {digest}, expected {source.md5})")
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(scratch)
        final = target_parent / source.folder
        if not final.exists():
            os.replace(Path(scratch) / source.folder, final)
    return final
