"""Item content features cached on disk, encoded incrementally.

Layout, one folder per modality and model (a different model or setting never reads another's
vectors), and for text also per template, so several text views of the same items (title, overview)
live side by side::

    cache_dir/
      text/<model>-<hash of model identity + template>/  manifest.json  text.npy [items, dim]  items.parquet
      image/<model>-<hash of model identity>/            manifest.json  image.npy [items, dim] items.parquet

``items.parquet`` holds the row order: ``item_id``, ``content_hash`` and the per-item mask
(``empty`` for text, ``present`` for images). The content hash is a BLAKE2 hash of the assembled
text, or of the image file's bytes (re-read only when the file's size or mtime changed), so a later
run encodes only new or changed items, and nothing at all when nothing changed. Items absent from
a later call stay in the cache. Each modality folder is replaced atomically.

Several processes may encode into one cache at once: a store is re-read, merged with the new
vectors and written while holding an exclusive ``fcntl.flock`` on ``<model>-<hash>.lock`` beside its
folder (reads take the lock shared), so no writer's items are lost and no reader sees a half-swapped
folder. The lock is advisory and local: processes on several machines sharing the cache over a
network filesystem without working ``flock`` are not serialised.

:func:`encode_items` is the entry point the models call.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hybridrec.atomic import OutputKind, atomic_path
from hybridrec.errors import HybridRecError
from hybridrec.features.image_encoder import ImageCheckpoint, ImageEncoder, ImageWeights, resolve_image_checkpoint
from hybridrec.features.text_assembly import assemble_texts, default_template
from hybridrec.features.text_encoder import TextCheckpoint, TextEncoder, TextWeights, resolve_text_checkpoint

logger = logging.getLogger(__name__)

#: A modality folder of the cache: the one kind of folder :meth:`FeatureStore.save` replaces.
CACHE_FOLDER = OutputKind("feature cache", marker="manifest.json", key="modality")

CACHE_FORMAT = 1
MASK_COLUMN = {"text": "empty", "image": "present"}


def text_digest(text: str) -> str:
    """BLAKE2b-128 hex digest of a text (UTF-8)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def file_digest(path: str | Path) -> str:
    """BLAKE2b-128 hex digest of a file's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_signature(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _folder_name(identity: dict, view: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(identity["model"]).split("/")[-1]).strip("-") or "model"
    keyed = json.dumps({"identity": identity, "view": view}, sort_keys=True)
    key = hashlib.sha256(keyed.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{key}"


@contextlib.contextmanager
def store_lock(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``<folder>.lock`` beside a store folder: exclusive to write, shared to read.

    The lock file lives beside the folder, not in it, because saving replaces the folder. A read of a
    cache that does not exist yet, or that this user cannot write (so no writer of ours can be
    changing it), takes no lock.

    Raises:
        HybridRecError: the lock file cannot be created for a write.
    """
    lock_path = folder.parent / f"{folder.name}.lock"
    try:
        if exclusive:
            folder.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+b")
    except OSError as err:
        if exclusive:
            raise HybridRecError(f"{lock_path}: cannot create the feature cache lock ({err.strerror or err})") from None
        logger.debug("%s: reading without a lock (%s)", folder, err.strerror or err)
        yield
        return
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with handle:
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("%s: waiting for another process using this feature cache", folder)
            fcntl.flock(handle.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class FeatureStore:
    """One modality's vectors from one model: the rows of ``<cache_dir>/<modality>/<model>-<hash>/``.

    Attributes:
        folder: where the store lives.
        modality: ``"text"`` or ``"image"``.
        identity: what decides the vectors (model, weights hash, settings); see the encoders.
        view: what the vectors are of, beyond the model (the text template; ``""`` for images).
        table: one row per item: ``item_id``, ``content_hash``, the mask column, extra columns.
        vectors: ``[len(table), dim]`` float32.
    """

    folder: Path
    modality: str
    identity: dict
    table: pd.DataFrame
    vectors: np.ndarray
    view: str = ""
    manifest: dict = field(default_factory=dict)

    @classmethod
    def open(cls, cache_dir: str | Path, modality: str, identity: dict, view: str = "") -> "FeatureStore":
        """The store for ``identity`` and ``view`` under ``cache_dir``; empty when absent or unreadable (logged).

        Read under the store's shared lock, so never half-way through another process's save.
        """
        folder = Path(cache_dir) / modality / _folder_name(identity, view)
        with store_lock(folder, exclusive=False):
            return cls._read(folder, modality, identity, view)

    @classmethod
    def _read(cls, folder: Path, modality: str, identity: dict, view: str) -> "FeatureStore":
        empty = cls(folder=folder, modality=modality, identity=identity, view=view,
                    table=pd.DataFrame({"item_id": [], "content_hash": []}), vectors=np.zeros((0, 0), np.float32))
        if not (folder / "manifest.json").is_file():
            return empty
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            table = pd.read_parquet(folder / "items.parquet")
            vectors = np.load(folder / f"{modality}.npy")
            found = (manifest.get("format"), manifest.get("identity"), manifest.get("view"))
            if found != (CACHE_FORMAT, identity, view):
                raise ValueError("manifest does not match the model")
            if not (len(table) == vectors.shape[0] == manifest.get("count")) or vectors.dtype != np.float32:
                raise ValueError(f"{len(table)} ids, {vectors.shape[0]} vectors, count {manifest.get('count')}")
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            logger.warning("%s: ignoring unreadable feature cache (%s); it will be rebuilt", folder, err)
            return empty
        return cls(folder=folder, modality=modality, identity=identity, table=table, vectors=vectors, view=view,
                   manifest=manifest)

    def positions(self, item_ids: Sequence, content_hashes: Sequence[str]) -> np.ndarray:
        """Row of each item in the store, ``-1`` where absent or its content hash changed; ``[n]`` int64."""
        if not len(self.table):
            return np.full(len(item_ids), -1, dtype=np.int64)
        rows = pd.Index(self.table["item_id"]).get_indexer(pd.Index(item_ids))
        stored = self.table["content_hash"].to_numpy(dtype=object)
        fresh = np.asarray(content_hashes, dtype=object)
        match = (rows >= 0) & (stored[np.maximum(rows, 0)] == fresh)
        return np.where(match, rows, -1).astype(np.int64)

    def upsert(self, rows: pd.DataFrame, vectors: np.ndarray) -> None:
        """Add or replace items (``rows`` has the table's columns, ``vectors`` is ``[len(rows), dim]``)."""
        if not len(rows):
            return
        if len(self.table) and self.vectors.shape[1] != vectors.shape[1]:
            raise HybridRecError(f"{self.folder}: cached vectors have dim {self.vectors.shape[1]}, "
                                 f"new ones {vectors.shape[1]}")
        stored_kind = pd.api.types.infer_dtype(self.table["item_id"]) if len(self.table) else None
        if stored_kind is not None and stored_kind != pd.api.types.infer_dtype(rows["item_id"]):
            logger.warning("%s: item ids changed type (%s -> %s); the cached rows are dropped", self.folder,
                           stored_kind, pd.api.types.infer_dtype(rows["item_id"]))
            stored_kind = None
        if stored_kind is None:
            self.table, self.vectors = rows.reset_index(drop=True), vectors.astype(np.float32)
            return
        keep = ~pd.Index(self.table["item_id"]).isin(pd.Index(rows["item_id"]))
        self.table = pd.concat([self.table.loc[keep], rows], ignore_index=True)
        self.vectors = np.concatenate([self.vectors[keep], vectors.astype(np.float32)], axis=0)

    def merge_and_save(self, rows: pd.DataFrame, vectors: np.ndarray,
                       extra_manifest: dict | None = None) -> "FeatureStore":
        """Add ``rows`` to the store as it is on disk now and write it, under the exclusive lock.

        The store is re-read first, so items that another process saved since this one was opened
        are kept (an item in both takes this call's vector). Returns the merged store.
        """
        with store_lock(self.folder, exclusive=True):
            current = self._read(self.folder, self.modality, self.identity, self.view)
            current.upsert(rows, vectors)
            current._write(extra_manifest)
        return current

    def save(self, extra_manifest: dict | None = None) -> None:
        """Write the store (vectors, id table, manifest) atomically, under the exclusive lock.

        This replaces what is on disk with this object's rows; to add rows while other processes
        may be writing, use :meth:`merge_and_save`.
        """
        with store_lock(self.folder, exclusive=True):
            self._write(extra_manifest)

    def _write(self, extra_manifest: dict | None) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest = {
            "format": CACHE_FORMAT, "modality": self.modality, "model": self.identity.get("model"),
            "weight_hash": self.identity.get("weight_hash"), "dim": int(self.vectors.shape[1]),
            "count": int(len(self.table)), "mask": MASK_COLUMN[self.modality],
            "created": self.manifest.get("created", now), "updated": now, "identity": self.identity,
            "view": self.view,
            **(extra_manifest or {}),
        }
        try:
            with atomic_path(self.folder, kind=CACHE_FOLDER) as scratch:
                scratch.mkdir()
                np.save(scratch / f"{self.modality}.npy", np.ascontiguousarray(self.vectors, dtype=np.float32))
                self.table.to_parquet(scratch / "items.parquet", index=False)
                (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        except (OSError, ValueError, TypeError) as err:  # pyarrow raises ArrowTypeError (a TypeError) for mixed ids
            raise HybridRecError(f"{self.folder}: cannot write the feature cache: {err}") from None
        self.manifest = manifest


@dataclass
class ModalityStats:
    """What one modality cost and found in a call to :func:`encode_items`."""

    modality: str
    model: str
    items: int
    encoded: int
    reused: int
    absent: int  # empty texts, or images not present
    truncated: int
    load_seconds: float
    encode_seconds: float
    folder: str

    @property
    def items_per_second(self) -> float | None:
        """Newly encoded items per second of encoding (None when nothing was encoded)."""
        return self.encoded / self.encode_seconds if self.encoded and self.encode_seconds > 0 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "items_per_second": self.items_per_second}

    def line(self) -> str:
        """One human-readable summary line."""
        speed = f"{self.items_per_second:.1f} items/s" if self.items_per_second else "nothing to encode"
        absent = "empty" if self.modality == "text" else "without image"
        extra = f", {self.truncated} truncated" if self.truncated else ""
        return (f"{self.modality}: {self.items} items, {self.encoded} encoded, {self.reused} reused from cache "
                f"({speed}; model load {self.load_seconds:.1f} s), {self.absent} {absent}{extra}; "
                f"model {self.model} -> {self.folder}")


@dataclass
class ItemFeatures:
    """Content features in the order of ``item_ids``.

    Attributes:
        item_ids: ``[n]`` external ids.
        text: ``[n, d_text]`` float32 unit vectors (zero rows where ``text_empty``), or None.
        image: ``[n, d_image]`` float32 (zero rows where not ``image_present``), or None.
        text_empty: ``[n]`` bool, or None without text.
        image_present: ``[n]`` bool, or None without images.
        stats: per modality (``"text"``, ``"image"``): counts, timings and cache folder.
    """

    item_ids: np.ndarray
    text: np.ndarray | None = None
    image: np.ndarray | None = None
    text_empty: np.ndarray | None = None
    image_present: np.ndarray | None = None
    stats: dict[str, ModalityStats] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item_ids)


def encode_items(items: pd.DataFrame, *, text_cols: Sequence[str] | None = None, text_template: str | None = None,
                 image_col: str | None = None, cache_dir: str | Path,
                 text_encoder: TextEncoder | TextCheckpoint | TextWeights | str | Path | None = None,
                 image_encoder: ImageEncoder | ImageCheckpoint | ImageWeights | str | None = None,
                 item_id_col: str = "item_id", device: str = "auto", batch_size: int | None = None,
                 num_workers: int | None = None, progress: bool = True) -> ItemFeatures:
    """Text and/or image features for every row of ``items``, encoding only what the cache lacks.

    Args:
        items: catalog table with ``item_id_col`` (unique) and the content columns.
        text_cols: columns for the text (joined with ``". "`` unless ``text_template`` is given).
        text_template: e.g. ``"{title}. Genres: {genres}"``; lists are joined with ``", "``.
        image_col: column with local image paths (None / "" for no image).
        cache_dir: folder of the feature cache (created when missing).
        text_encoder, image_encoder: a ready encoder, or a checkpoint / name to build one only when
            something needs encoding; None is the offline default model.
        item_id_col: id column.
        device, batch_size, num_workers, progress: used when an encoder is built here.

    Returns:
        :class:`ItemFeatures` with one row per item of ``items``, in its order. Text is computed
        when ``text_cols`` or ``text_template`` is given, images when ``image_col`` is.

    Raises:
        HybridRecError: nothing to encode, a missing column, duplicate ids, or a model that cannot load.
    """
    if item_id_col not in items.columns:
        raise HybridRecError(f"items table has no id column {item_id_col!r}; it has {list(items.columns)}")
    ids = pd.Index(items[item_id_col])
    if not ids.is_unique:
        raise HybridRecError(f"duplicate item ids in column {item_id_col!r}: "
                             f"{ids[ids.duplicated()].unique()[:10].tolist()}")
    want_text = bool(text_cols) or text_template is not None
    if not want_text and image_col is None:
        raise HybridRecError("nothing to encode: give text_cols / text_template and/or image_col")
    if image_col is not None and image_col not in items.columns:
        raise HybridRecError(f"items table has no image column {image_col!r}; it has {list(items.columns)}")
    features = ItemFeatures(item_ids=ids.to_numpy())
    options = {"device": device, "progress": progress, **({"batch_size": batch_size} if batch_size else {})}
    if want_text:
        features.text, features.text_empty, features.stats["text"] = _encode_texts(
            items, ids, text_cols, text_template, Path(cache_dir), text_encoder, options)
    if image_col is not None:
        features.image, features.image_present, features.stats["image"] = _encode_images(
            items[image_col].tolist(), ids, Path(cache_dir), image_encoder, {**options, "num_workers": num_workers})
    for stats in features.stats.values():
        logger.info(stats.line())
    return features


def _encode_texts(items: pd.DataFrame, ids: pd.Index, text_cols, text_template, cache_dir: Path, encoder,
                  options: dict) -> tuple[np.ndarray, np.ndarray, ModalityStats]:
    template = text_template if text_template is not None else default_template(text_cols)
    texts, empty = assemble_texts(items, text_cols, template)
    hashes = [text_digest(text) for text in texts]
    if isinstance(encoder, TextEncoder):
        identity = encoder.checkpoint.identity(max_tokens=encoder.max_tokens)
    else:
        checkpoint = resolve_text_checkpoint(encoder)
        identity = checkpoint.identity()
    store = FeatureStore.open(cache_dir, "text", identity, view=template)
    rows = store.positions(ids, hashes)
    todo = np.flatnonzero(rows < 0)
    load_seconds = encode_seconds = 0.0
    truncated = 0
    if len(todo):
        if not isinstance(encoder, TextEncoder):
            started = time.perf_counter()
            encoder = TextEncoder(checkpoint, max_tokens=identity["max_tokens"], **options)
            load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = encoder.encode_with_report([texts[i] for i in todo])
        encode_seconds = time.perf_counter() - started
        truncated = int(result.truncated.sum())
        store = store.merge_and_save(
            pd.DataFrame({"item_id": ids[todo], "content_hash": [hashes[i] for i in todo],
                          "empty": result.empty, "truncated": result.truncated}), result.embeddings,
            {"text_template": template, "text_columns": list(text_cols or []), "dim": encoder.dim})
        rows = store.positions(ids, hashes)
    stats = ModalityStats(modality="text", model=identity["model"], items=len(ids), encoded=len(todo),
                          reused=len(ids) - len(todo), absent=int(empty.sum()), truncated=truncated,
                          load_seconds=load_seconds, encode_seconds=encode_seconds, folder=str(store.folder))
    vectors = store.vectors[rows] if len(ids) else np.zeros((0, store.manifest.get("dim", 0)), np.float32)
    return vectors, empty, stats


def _image_hashes(paths: list, store: FeatureStore) -> tuple[list[str], list[str | None], list[str | None]]:
    """Content hash, source path and stat signature per item; unchanged files are not re-read."""
    known = {}
    if len(store.table) and "source" in store.table:
        for source, stat, digest in zip(store.table["source"], store.table["stat"], store.table["content_hash"]):
            if source is not None and stat is not None:
                known[(source, stat)] = digest
    hashes, sources, stats = [], [], []
    for path in paths:
        source = None if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "" \
            else str(path)
        stat = _stat_signature(source) if source is not None else None
        if source is None:
            digest = "no-path"
        elif stat is None:
            digest = "missing"
        elif (source, stat) in known:
            digest = known[(source, stat)]
        else:
            try:
                digest = file_digest(source)
            except OSError:
                digest, stat = "unreadable", None
        hashes.append(digest)
        sources.append(source)
        stats.append(stat)
    return hashes, sources, stats


def _encode_images(paths: list, ids: pd.Index, cache_dir: Path, encoder, options: dict
                   ) -> tuple[np.ndarray, np.ndarray, ModalityStats]:
    if isinstance(encoder, ImageEncoder):
        identity = encoder.checkpoint.identity(normalize=encoder.normalize)
    else:
        checkpoint = resolve_image_checkpoint(encoder)
        identity = checkpoint.identity()
    store = FeatureStore.open(cache_dir, "image", identity)
    hashes, sources, stat_signatures = _image_hashes(paths, store)
    rows = store.positions(ids, hashes)
    todo = np.flatnonzero(rows < 0)
    load_seconds = encode_seconds = 0.0
    if len(todo):
        if not isinstance(encoder, ImageEncoder):
            started = time.perf_counter()
            encoder = ImageEncoder(checkpoint, **options)
            load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = encoder.encode_with_report([sources[i] for i in todo])
        encode_seconds = time.perf_counter() - started
        store = store.merge_and_save(
            pd.DataFrame({"item_id": ids[todo], "content_hash": [hashes[i] for i in todo],
                          "present": result.present, "status": result.status, "source": [sources[i] for i in todo],
                          "stat": [stat_signatures[i] for i in todo]}), result.embeddings,
            {"image_transform": identity["transform"], "dim": encoder.dim})
        rows = store.positions(ids, hashes)
    present = store.table["present"].to_numpy(dtype=bool)[rows] if len(ids) else np.zeros(0, dtype=bool)
    stats = ModalityStats(modality="image", model=identity["model"], items=len(ids), encoded=len(todo),
                          reused=len(ids) - len(todo), absent=int((~present).sum()), truncated=0,
                          load_seconds=load_seconds, encode_seconds=encode_seconds, folder=str(store.folder))
    vectors = store.vectors[rows] if len(ids) else np.zeros((0, store.manifest.get("dim", 0)), np.float32)
    return vectors, present, stats
