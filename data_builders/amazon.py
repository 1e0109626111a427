"""Amazon product reviews + metadata (JSON Lines, gzip allowed) -> RecDataset.

Reviews need ``reviewerID``, ``asin``, ``overall`` (1-5 stars) and ``unixReviewTime``. Metadata
needs ``asin``; ``title``, ``description`` (string or list of paragraphs), ``categories`` (list of
category paths, flattened) or ``category`` (one path), ``brand``, ``price`` (number or text such
as "$12.99") and ``imUrl`` (or the newer ``image``/``imageURL`` lists) are used when present.
Older metadata dumps hold Python dict literals instead of JSON; both are read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.catalog import build_catalog
from data_builders.event_log import ColumnMapping, assemble_dataset, interactions_from_table
from data_builders.parsing import LINE, read_json_lines, require_columns, require_rows
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport
from hybridrec.tables import RecDataset

logger = logging.getLogger(__name__)

REVIEW_COLUMNS = ColumnMapping(user_id="reviewerID", item_id="asin", timestamp="unixReviewTime", event=None,
                               weight="overall", rating="overall")
TEXT_COLUMNS = ["title", "description"]
IMAGE_URL_FIELDS = ("imUrl", "image", "imageURLHighRes", "imageURL")


def _first_url(value: object) -> object:
    """The first entry of a list of image URLs, or the value itself."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return value[0] if len(value) else None
    return value


def _metadata_table(raw: pd.DataFrame) -> pd.DataFrame:
    """Rename the metadata's variants onto one set of columns (absent ones are all-missing)."""
    table = pd.DataFrame({"asin": raw["asin"], LINE: raw[LINE]})
    for column in ("title", "description", "brand", "price"):
        table[column] = raw[column] if column in raw.columns else None
    if "categories" in raw.columns:
        table["categories"] = raw["categories"]
    elif "category" in raw.columns:
        table["categories"] = raw["category"]
    else:
        table["categories"] = None
    urls = pd.Series(None, index=raw.index, dtype=object)
    for column in IMAGE_URL_FIELDS:
        if column in raw.columns:
            urls = urls.where(urls.notna(), raw[column].map(_first_url))
    table["image_url"] = urls
    return table


def load_amazon(reviews_path: str | Path, metadata_path: str | Path | None = None, *,
                image_dir: str | Path | None = None, strict: bool = False, dedupe: str = "exact") -> RecDataset:
    """Read Amazon reviews (and product metadata) into canonical tables.

    Args:
        reviews_path: review JSON Lines (``.json``/``.jsonl``, optionally ``.gz``).
        metadata_path: product metadata JSON Lines or Python-literal lines; reviews of products
            missing from it are counted skips.
        image_dir: folder holding ``<asin>.jpg`` images; sets ``image_path`` where the file exists.
        strict: raise on the first skipped row instead of counting it.
        dedupe: duplicate-review policy (see :func:`data_builders.filters.deduplicate`).

    Returns:
        RecDataset with interactions (user_id=reviewerID, item_id=asin, weight=rating=overall,
        timestamp), items (item_id, title, description, brand, categories: list[str], price,
        image_url, and image_path with ``image_dir``) and users (user_id).
    """
    report = LoadReport(strict=strict)
    reviews_file = Path(reviews_path)
    raw_reviews = read_json_lines(reviews_file, report=report, allow_python_literals=True)
    interactions = interactions_from_table(raw_reviews, file=reviews_file, report=report, columns=REVIEW_COLUMNS)
    require_rows(interactions, file=reviews_file, report=report)

    items = item_roles = None
    if metadata_path is not None:
        metadata_file = Path(metadata_path)
        raw_metadata = read_json_lines(metadata_file, report=report, allow_python_literals=True)
        require_columns(raw_metadata, ["asin"], file=metadata_file)
        items, item_roles = build_catalog(_metadata_table(raw_metadata), file=metadata_file, report=report,
                                          id_col="asin", text_cols=TEXT_COLUMNS, categorical_cols=["brand"],
                                          multi_cols=["categories"], numeric_cols=["price"],
                                          keep_cols=["image_url"], image_dir=image_dir,
                                          base_dir=metadata_file.parent)
        require_rows(items, file=metadata_file, report=report)
    elif image_dir is not None:
        raise HybridRecError("image_dir needs metadata_path (images belong to catalog items)")
    dataset = assemble_dataset(interactions, items=items, users=None, item_roles=item_roles, log_file=reviews_file,
                               item_column="asin", dedupe=dedupe, report=report, name="amazon")
    report.log()
    return dataset
