"""Free-text query search over item content: the query goes through the items' own text encoder,
and through the catalog's text–image alignment to reach items by their photo.

A :class:`QuerySearchIndex` holds, per item, what a query is compared with:

- **text**: the item's text embeddings (one per text column, same encoder, same mean pooling and
  L2 normalisation as the item features); the query's cosine with the best-matching column.
- **product**: when the query names colours, the same cosine with the colour names taken out of
  both sides (:func:`~hybridrec.features.colour_names.remove_colour_names`: "Navy Blue Tshirts" ->
  "tshirts"), so the product type is judged apart from the colour. Only the items whose text names
  a colour need a second embedding; for the others it is their text embedding.
- **image**: the item's photo in the shared text–image space of a
  :class:`~hybridrec.features.cross_modal.CrossModalCCA` learned, without labels, from the catalog's
  items that have both a text and a photo; the query's text embedding is projected into the same
  space (``transform_text``), so an item without a title is matched through its photo.
- **colour**: when the query names colours (:func:`~hybridrec.features.colour_names.find_colour_names`):
  how close the colours the item's text names are to the query's in CIELAB
  (:func:`~hybridrec.features.colour_names.named_colour_match`: "Navy Blue" is not "Blue", a word
  a sentence embedding blurs), and the share of its photo's pixels close to them
  (:func:`~hybridrec.features.colour_names.colour_match`, the same kernel); the mean of the two
  where an item has both. A lexicon word in a title may be a material or a brand ("leather",
  "Indigo Nation"): for an item with a photo, only the names the catalog's photos confirm
  (:func:`~hybridrec.features.colour_names.confirmed_colour_names`, decided when the index is
  built) join the photo's match; an item without a photo keeps every name its text gives.

Fusion, per query: each channel is z-scored over the items that have it and mapped through
``log(sigmoid(z))`` (a soft AND: an item must do well on every channel it has, not only on one),
and an item's score is the mean over the channels; a channel an item lacks counts as average for
it (z = 0), so lacking a modality neither favours nor penalises an item. ``extra`` channels (a user's personal scores) enter the mean the same way.

    index = build_search_index(items, text_columns=["title"], image_column="image_path", cache_dir=cache)
    scores = index.score(index.encode_query("red running shoes"))      # [n_items]
    index.save("search-index/"); QuerySearchIndex.load("search-index/")
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hybridrec.atomic import OutputKind, atomic_path
from hybridrec.errors import HybridRecError
from hybridrec.features.colour_names import (colour_match, confirmed_colour_names, find_colour_names,
                                             named_colour_match, remove_colour_names)
from hybridrec.features.content_fusion import MIN_CCA_PAIRS
from hybridrec.features.cross_modal import CrossModalCCA
from hybridrec.features.search_texts import confirmed_mask, encode_texts
from hybridrec.features.text_encoder import TextCheckpoint, TextEncoder, resolve_text_checkpoint
from hybridrec.id_map import IdMap

logger = logging.getLogger(__name__)

INDEX_FILE = "search_index.json"
ARRAYS_FILE = "search_index.npz"
IDS_FILE = "item_ids.parquet"
#: A saved search index folder (what :meth:`QuerySearchIndex.save` may replace).
SEARCH_INDEX_FOLDER = OutputKind("search index", marker=INDEX_FILE, key="search_index_format")
#: 2: the product channel and the colours named by item texts (format 1 had neither);
#: 3: which of those names the catalog's photos confirm.
INDEX_FORMAT = 3
#: The attributes of the CCA a query needs (its text side) and an added item's photo (its image side).
ALIGNMENT_ARRAYS = ("text_mean_", "text_projection_", "image_mean_", "image_projection_", "correlations_")


def soft_and(channels: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Fuse channel scores: the mean over channels of ``log(sigmoid(z))``.

    Args:
        channels: ``(scores [n], present [n] bool)`` pairs; ``z`` is the score standardised over
            the present items (a constant channel gives z = 0). An item without a channel counts
            as an average item there (z = 0): missing evidence neither helps nor hurts it.

    Returns:
        ``[n]`` float32 in (-inf, 0]; ``-inf`` for items with no channel at all.
    """
    n = len(channels[0][0])
    total, count = torch.zeros(n), torch.zeros(n)
    for scores, present in channels:
        values = scores[present].float()
        z = torch.zeros(n)
        if len(values) > 1 and float(values.std()) > 0:
            z[present] = (values - values.mean()) / values.std()
        total += F.logsigmoid(z)
        count += present.float()
    return torch.where(count > 0, total / len(channels), torch.full_like(total, -torch.inf))


@dataclass
class QuerySearchIndex:
    """What a query is scored against, per item (see the module docstring).

    Attributes:
        item_ids: the items, in row order.
        text: ``[n_columns, n_items, d_text]`` unit text embeddings (zero rows where absent).
        text_present: ``[n_columns, n_items]`` bool.
        image_shared: ``[n_items, c]`` unit photo vectors in the shared space (zero rows: no photo),
            or None without an alignment.
        alignment: the fitted text–image CCA (what ``transform_text`` and ``transform_image`` need
            is kept: ``ALIGNMENT_ARRAYS`` and ``correlation_power``), or None.
        colour_histograms: ``[n_items, N_BINS]`` photo colour histograms (zero rows: no photo), or None.
        text_colours: ``[n_items, MAX_NAMED_COLOURS, 3]`` CIELAB of the colours the item's texts name
            (NaN past the last; all NaN: its text names none).
        text_colours_confirmed: ``[n_items, MAX_NAMED_COLOURS]`` bool, whether each of those names is
            one the catalog's photos confirm (``summary["confirmed_colour_names"]``).
        product_rows: ``[r]`` sorted rows of the items whose text names a colour.
        product_text: ``[n_columns, r, d_text]`` unit embeddings of those items' texts without their
            colour names (zero rows where nothing is left); the other items' product text is their text.
        product_present: ``[n_columns, r]`` bool.
        text_model: the text encoder's name or folder (:class:`TextCheckpoint` spec) and its identity
            (model, weight hash, pooling...), checked when a query is encoded.
        summary: how the index was built (columns, pairs, dimensions).
    """

    item_ids: IdMap
    text: np.ndarray
    text_present: np.ndarray
    text_model: dict
    image_shared: np.ndarray | None = None
    alignment: CrossModalCCA | None = None
    colour_histograms: np.ndarray | None = None
    text_colours: np.ndarray | None = None
    text_colours_confirmed: np.ndarray | None = None
    product_rows: np.ndarray | None = None
    product_text: np.ndarray | None = None
    product_present: np.ndarray | None = None
    summary: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._encoder: TextEncoder | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    # -- queries -------------------------------------------------------------------------------
    def encoder(self, device: str = "cpu") -> TextEncoder:
        """The text encoder the items were encoded with (loaded once; offline for the default model).

        Raises:
            HybridRecError: the encoder found on this machine has other weights than the index's.
        """
        if self._encoder is None:
            checkpoint = resolve_text_checkpoint(self.text_model["spec"])
            encoder = TextEncoder(checkpoint, device=device, progress=False,
                                  max_tokens=self.text_model["identity"].get("max_tokens"))
            found = encoder.describe()
            expected = self.text_model["identity"]
            differing = sorted(key for key in expected if found.get(key) != expected[key])
            if differing:
                raise HybridRecError(f"text encoder {checkpoint.name!r} on this machine differs from the one the "
                                     f"search index was built with in {differing}: rebuild the index")
            self._encoder = encoder
        return self._encoder

    def encode_query(self, query: str) -> np.ndarray:
        """``[d_text]`` unit embedding of ``query``, exactly as item texts are encoded.

        Raises:
            HybridRecError: ``query`` is not a non-blank string.
        """
        if not isinstance(query, str) or not query.strip():
            raise HybridRecError(f"query must be a non-empty text, got {query!r}")
        return self.encoder().encode([query])[0]

    def channels(self, query: str, query_vector: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Channel name -> ``(scores [n_items], present [n_items])`` for a query (see the module docstring)."""
        vector = torch.from_numpy(np.asarray(query_vector, dtype=np.float32))
        text = torch.from_numpy(self.text)
        present = torch.from_numpy(self.text_present)
        found = {"text": _best_column(text @ vector, present)}
        names = find_colour_names(query)
        rest = remove_colour_names(query) if names else ""
        if rest:
            rest_vector = torch.from_numpy(self.encoder().encode([rest])[0])
            product, product_present = _best_column(text @ rest_vector, present)
            if self.product_rows is not None and len(self.product_rows):
                rows = torch.from_numpy(self.product_rows)
                product[rows], product_present[rows] = _best_column(
                    torch.from_numpy(self.product_text) @ rest_vector, torch.from_numpy(self.product_present))
            found["product"] = (product, product_present)
        if self.image_shared is not None and self.alignment is not None:
            side = self.alignment.transform_text(vector[None])[0]
            image = torch.from_numpy(self.image_shared)
            found["image"] = (image @ side, image.abs().sum(dim=1) > 0)
        if names:
            named = ~np.isnan(self.text_colours[:, :, 0]).all(axis=1)
            colour = named_colour_match(self.text_colours, names)
            colour_present = named.copy()
            if self.colour_histograms is not None:  # with a photo: the confirmed names and the photo
                has_photo = self.colour_histograms.any(axis=1)
                confirmed = self.text_colours_confirmed[has_photo]
                trusted = named_colour_match(np.where(confirmed[:, :, None], self.text_colours[has_photo], np.nan), names)
                photo = colour_match(self.colour_histograms[has_photo], names)
                colour[has_photo] = np.where(confirmed.any(axis=1), (trusted + photo) / 2, photo)
                colour_present |= has_photo
            found["colour"] = (torch.from_numpy(colour), torch.from_numpy(colour_present))
        return found

    def score(self, query: str, query_vector: np.ndarray | None = None,
              extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``[n_items]`` fused scores of ``query`` (higher is better; ``-inf``: no content).

        Args:
            query: the query text (its colour words are read from it).
            query_vector: its embedding (default: :meth:`encode_query`).
            extra: more channels, name -> ``[n_items]`` scores for every item (e.g. a user's scores).
        """
        if query_vector is None:
            query_vector = self.encode_query(query)
        channels = list(self.channels(query, query_vector).values())
        for scores in (extra or {}).values():
            channels.append((scores.float(), torch.ones(len(self), dtype=torch.bool)))
        return soft_and(channels)

    # -- catalog updates -----------------------------------------------------------------------
    def add_items(self, items: pd.DataFrame, *, item_ids: IdMap, cache_dir: str | Path, image_encoder: str | None = None,
                  item_id_column: str = "item_id", device: str = "auto", progress: bool = False) -> None:
        """Give rows to ``items`` (new or known ids) without rebuilding the index: their text
        embeddings (same encoder, cache reused), colour-naming flags and, when the index searches
        photos, their colour histograms and shared-space photo vectors.

        Args:
            items: table with ``item_id_column`` and the index's text (and image) columns.
            item_ids: the index's new row order: its current ids first, in order, then the new
                ones (e.g. a model's grown id map).

        A photo is placed in the shared space by the CCA's image side, which the index keeps and
        saves (an index loaded without it would find the new item by its text only, logged).

        Raises:
            HybridRecError: ``item_ids`` does not start with the index's ids, or a column is missing.
        """
        from hybridrec.features.colour_histogram import colour_histograms
        from hybridrec.features.feature_cache import encode_items

        n_old = len(self.item_ids)
        if len(item_ids) < n_old or not np.array_equal(item_ids.ids[:n_old], self.item_ids.ids):
            raise HybridRecError("search index add_items: item_ids must list the index's items first, in order")
        text_columns, image_column = self.summary["text_columns"], self.summary.get("image_column")
        missing = [c for c in [item_id_column, *text_columns, *([image_column] if image_column else [])]
                   if c not in items.columns]
        if missing:
            raise HybridRecError(f"items table has no column(s) {missing}; found {list(items.columns)}")
        table = items.rename(columns={item_id_column: "item_id"}) if item_id_column != "item_id" else items
        grow = len(item_ids) - n_old
        self.text = np.concatenate([self.text, np.zeros((self.text.shape[0], grow, self.text.shape[2]), np.float32)], 1)
        self.text_present = np.concatenate([self.text_present, np.zeros((self.text.shape[0], grow), bool)], 1)
        self.text_colours = np.concatenate([self.text_colours, np.full((grow, *self.text_colours.shape[1:]), np.nan,
                                                                       np.float32)])
        self.text_colours_confirmed = np.concatenate([self.text_colours_confirmed,
                                                      np.zeros((grow, self.text_colours.shape[1]), bool)])
        self.item_ids = item_ids
        rows = item_ids.to_index(table["item_id"].to_numpy())
        texts = encode_texts(table, text_columns, self.encoder(device), cache_dir, device, progress)
        self.text[:, rows], self.text_present[:, rows], self.text_colours[rows] = texts.text, texts.present, texts.colours
        # New items' names are judged by the names the catalog's photos confirmed when the index was built.
        self.text_colours_confirmed[rows] = confirmed_mask(texts.names, set(self.summary["confirmed_colour_names"]),
                                                            self.text_colours.shape[1])
        kept = ~np.isin(self.product_rows, rows)
        product_rows = np.concatenate([self.product_rows[kept], rows[texts.product_rows]])
        order = np.argsort(product_rows, kind="stable")
        self.product_rows = product_rows[order]
        self.product_text = np.concatenate([self.product_text[:, kept], texts.product_text], axis=1)[:, order]
        self.product_present = np.concatenate([self.product_present[:, kept], texts.product_present], axis=1)[:, order]
        if image_column is None or self.colour_histograms is None:
            return
        paths = [None if not isinstance(p, str) or not p else p for p in table[image_column]]
        histograms, _ = colour_histograms(paths, progress=progress)
        self.colour_histograms = np.concatenate([self.colour_histograms,
                                                 np.zeros((grow, self.colour_histograms.shape[1]), np.float32)])
        self.colour_histograms[rows] = histograms
        if self.image_shared is None:
            return
        self.image_shared = np.concatenate([self.image_shared, np.zeros((grow, self.image_shared.shape[1]), np.float32)])
        self.image_shared[rows] = 0.0
        if getattr(self.alignment, "image_projection_", None) is None:
            logger.warning("search index add_items: the index was loaded without the CCA's image side, so the %d "
                           "added item(s)' photos are not searched (their text is)", len(rows))
            return
        features = encode_items(table.assign(**{image_column: paths}), image_col=image_column, cache_dir=cache_dir,
                                image_encoder=image_encoder, device=device, progress=progress)
        image = features.image / np.maximum(np.linalg.norm(features.image, axis=1, keepdims=True), 1e-12)
        self.image_shared[rows] = self.alignment.transform_image(image).numpy()

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the index to folder ``path`` atomically (a previous index there is replaced)."""
        arrays = {"text": self.text, "text_present": self.text_present}
        arrays.update(text_colours=self.text_colours, text_colours_confirmed=self.text_colours_confirmed,
                      product_rows=self.product_rows, product_text=self.product_text,
                      product_present=self.product_present)
        for name in ("image_shared", "colour_histograms"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        if self.alignment is not None:
            for name in ALIGNMENT_ARRAYS:
                arrays[f"alignment_{name}"] = getattr(self.alignment, name).numpy()
        manifest = {"search_index_format": INDEX_FORMAT, "n_items": len(self), "text_model": self.text_model,
                    "correlation_power": None if self.alignment is None else self.alignment.correlation_power,
                    "summary": self.summary}
        with atomic_path(path, kind=SEARCH_INDEX_FOLDER, overwrite=overwrite) as tmp:
            tmp.mkdir()
            np.savez(tmp / ARRAYS_FILE, **arrays)
            self.item_ids.to_frame().to_parquet(tmp / IDS_FILE, index=False)
            (tmp / INDEX_FILE).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "QuerySearchIndex":
        """Read an index written by :meth:`save`.

        Raises:
            HybridRecError: naming the folder, when it is not a search index or is damaged.
        """
        path = Path(path)
        if not (path / INDEX_FILE).is_file():
            raise HybridRecError(f"{path}: not a search index (no {INDEX_FILE}); build one with "
                                 "`hybridrec export-similar --items ... --search-index DIR` or `hybridrec train`")
        try:
            manifest = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
            if manifest.get("search_index_format") != INDEX_FORMAT:
                raise HybridRecError(f"{path}: search index format {manifest.get('search_index_format')!r}, this "
                                     f"hybridrec reads format {INDEX_FORMAT}; rebuild the index (`hybridrec train` or "
                                     "`hybridrec export-similar --items ... --search-index DIR`)")
            with np.load(path / ARRAYS_FILE, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            item_ids = IdMap.from_frame(pd.read_parquet(path / IDS_FILE), kind="item")
            alignment = None
            if "alignment_text_projection_" in arrays:  # save() writes "alignment_" + the attribute name
                alignment = CrossModalCCA(correlation_power=float(manifest["correlation_power"]))
                for name in ALIGNMENT_ARRAYS:
                    setattr(alignment, name, torch.from_numpy(arrays.pop(f"alignment_{name}")))
            index = cls(item_ids=item_ids, text=arrays["text"], text_present=arrays["text_present"],
                        text_model=manifest["text_model"], image_shared=arrays.get("image_shared"),
                        alignment=alignment, colour_histograms=arrays.get("colour_histograms"),
                        text_colours=arrays["text_colours"], text_colours_confirmed=arrays["text_colours_confirmed"],
                        product_rows=arrays["product_rows"],
                        product_text=arrays["product_text"], product_present=arrays["product_present"],
                        summary=manifest.get("summary", {}))
            if index.text.shape[1] != len(item_ids) or index.text_present.shape != index.text.shape[:2]:
                raise ValueError(f"text {index.text.shape} does not fit {len(item_ids)} items")
        except HybridRecError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise HybridRecError(f"{path}: damaged search index ({type(err).__name__}: {err})") from None
        return index


def build_search_index(items: pd.DataFrame, *, text_columns: list[str], image_column: str | None = None,
                       item_ids: IdMap | None = None, item_id_column: str = "item_id",
                       cache_dir: str | Path, text_encoder: TextCheckpoint | str | Path | None = None,
                       image_encoder: str | None = None, cca_components: int = 64, seed: int = 0,
                       device: str = "auto", progress: bool = True) -> QuerySearchIndex:
    """Encode ``items`` (cache reused) and build their :class:`QuerySearchIndex`.

    Args:
        items: item table with ``item_id_column``, the text columns and (optionally) a column of
            local image paths.
        text_columns: text columns, each encoded alone (at least one).
        item_ids: the index's rows (e.g. a model's item id map; ids missing from ``items`` get no
            content); default the table's ids in order.
        cache_dir: the feature cache (the model's, so nothing is encoded twice).
        text_encoder, image_encoder: encoder names or folders (None: the offline defaults).
        cca_components: dimension of the shared text–image space.

    Raises:
        HybridRecError: no text column, or a column missing from ``items``.
    """
    from hybridrec.features.colour_histogram import colour_histograms
    from hybridrec.features.feature_cache import encode_items

    if not text_columns:
        raise HybridRecError("query search needs at least one item text column (the query is compared with it)")
    missing = [c for c in [item_id_column, *text_columns, *([image_column] if image_column else [])]
               if c not in items.columns]
    if missing:
        raise HybridRecError(f"items table has no column(s) {missing}; found {list(items.columns)}")
    table = items.rename(columns={item_id_column: "item_id"}) if item_id_column != "item_id" else items
    item_ids = item_ids if item_ids is not None else IdMap(table["item_id"].to_numpy(), kind="item")
    rows = item_ids.to_index(table["item_id"].to_numpy())
    checkpoint = resolve_text_checkpoint(text_encoder)
    encoder = TextEncoder(checkpoint, device=device, progress=progress)
    texts = encode_texts(table, text_columns, encoder, cache_dir, device, progress)
    n_columns = len(text_columns)
    text = np.zeros((n_columns, len(item_ids), encoder.dim), dtype=np.float32)
    text_present = np.zeros((n_columns, len(item_ids)), dtype=bool)
    text_colours = np.full((len(item_ids), *texts.colours.shape[1:]), np.nan, dtype=np.float32)
    text[:, rows], text_present[:, rows], text_colours[rows] = texts.text, texts.present, texts.colours
    text_colours_confirmed = np.zeros(text_colours.shape[:2], dtype=bool)
    product_rows = rows[texts.product_rows]
    order = np.argsort(product_rows, kind="stable")
    spec = str(checkpoint.local_dir) if checkpoint.local_dir is not None else checkpoint.name
    index = QuerySearchIndex(item_ids=item_ids, text=text, text_present=text_present,
                             text_model={"spec": spec, "identity": encoder.describe()}, text_colours=text_colours,
                             text_colours_confirmed=text_colours_confirmed,
                             product_rows=product_rows[order], product_text=texts.product_text[:, order],
                             product_present=texts.product_present[:, order],
                             summary={"text_columns": list(text_columns), "image_column": image_column,
                                      "texts_naming_colours": int(len(product_rows))})
    if image_column is not None:
        paths = [None if not isinstance(p, str) or not p else p for p in table[image_column]]
        features = encode_items(table.assign(**{image_column: paths}), image_col=image_column, cache_dir=cache_dir,
                                image_encoder=image_encoder, device=device, progress=progress)
        image = np.zeros((len(item_ids), features.image.shape[1]), dtype=np.float32)
        image[rows] = features.image / np.maximum(np.linalg.norm(features.image, axis=1, keepdims=True), 1e-12)
        histograms, _ = colour_histograms(paths, progress=progress)
        index.colour_histograms = np.zeros((len(item_ids), histograms.shape[1]), dtype=np.float32)
        index.colour_histograms[rows] = histograms
        _confirm_colour_names(index, texts.names, rows, histograms)
        _align(index, image, cca_components, seed)
    else:
        index.summary["confirmed_colour_names"] = []
    logger.info("search index: %d items, %s", len(item_ids), index.summary)
    return index


def _best_column(scores: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n_columns, n]`` scores -> the best present column's score ``[n]`` and whether any is present."""
    return torch.where(present, scores, torch.full_like(scores, -torch.inf)).max(dim=0).values, present.any(dim=0)


def _confirm_colour_names(index: QuerySearchIndex, names: list[list[str]], rows: np.ndarray,
                          histograms: np.ndarray) -> None:
    """Mark the colour names of the table's texts that its photos confirm (``rows``: the table's index rows)."""
    confirmed, p_values = confirmed_colour_names(names, histograms)
    index.text_colours_confirmed[rows] = confirmed_mask(names, confirmed, index.text_colours.shape[1])
    index.summary["confirmed_colour_names"] = sorted(confirmed)
    doubtful = sorted(set(p_values) - confirmed) + sorted({n for item in names for n in item} - set(p_values))
    if doubtful:
        logger.info("query search: %d of the colour names in item texts are not confirmed by the photos, so items "
                    "with a photo are matched by its colour there: %s", len(doubtful), ", ".join(doubtful[:30]))


def _align(index: QuerySearchIndex, image: np.ndarray, n_components: int, seed: int) -> None:
    """Learn the text–image CCA on the items with both (the text column whose held-out correlation
    with the photos is highest) and store the photos' side; kept absent below ``MIN_CCA_PAIRS`` pairs."""
    has_image = np.abs(image).sum(axis=1) > 0
    fits = {}
    for position, column in enumerate(index.summary["text_columns"]):
        paired = has_image & index.text_present[position]
        if paired.sum() >= MIN_CCA_PAIRS:
            alignment = CrossModalCCA(n_components=n_components, seed=seed).fit(index.text[position][paired],
                                                                                image[paired])
            fits[column] = (max(alignment.regularization_trials_.values()), alignment, int(paired.sum()))
    if not fits:
        logger.warning("query search: fewer than %d items have both a text and a photo; photos are not searched",
                       MIN_CCA_PAIRS)
        return
    column = max(fits, key=lambda name: fits[name][0])
    _, alignment, pairs = fits[column]
    index.image_shared = alignment.transform_image(image).numpy()
    index.alignment = alignment
    index.summary.update(aligned_column=column, pairs=pairs, shared_dims=int(len(alignment.correlations_)))
