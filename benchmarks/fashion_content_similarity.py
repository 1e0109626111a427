"""Content-only item similarity on a real catalog: do an item's 10 nearest neighbours share its
articleType and baseColour, when only its title and photo are used?

Data: ``fashion-products/`` (Myntra catalog): the 9,583 products of ``styles.csv`` that have a photo
in ``images/{id}.jpg``. Features: ``productDisplayName`` (the title) and the photo; articleType and
baseColour are only used to score the neighbours. Prints, side by side, text-only (all-MiniLM-L6-v2),
TF-IDF text-only (scikit-learn), image-only (EfficientNet-Lite0) and the fused vectors of
``hybridrec.similarity_export.fuse_content_features`` for a range of text/image weights (how the
defaults were chosen), plus the fused result for items whose photo is hidden (both strategies for a
missing image) and, as a benchmark-only probe, the fused vectors with a colour histogram of the photo.

    python benchmarks/fashion_content_similarity.py --cache-dir /tmp/fashion-features
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer

from hybridrec.features.feature_cache import encode_items
from hybridrec.similarity_export import ContentWeights, fuse_content_features
from hybridrec.topk import exact_top_k

K = 10
STYLES_COLUMNS = 10  # the title is last and may itself contain commas


def load_products(data_dir: Path) -> pd.DataFrame:
    """Products with a photo: id, articleType, baseColour, productDisplayName, image_path."""
    root = data_dir / "fashion-products"
    styles = pd.read_csv(root / "styles.csv", engine="python", dtype=str, keep_default_na=False,
                         on_bad_lines=lambda fields: fields[:STYLES_COLUMNS - 1] + [",".join(fields[STYLES_COLUMNS - 1:])])
    styles["image_path"] = [str(root / "images" / f"{item_id}.jpg") for item_id in styles["id"]]
    with_photo = styles[[os.path.isfile(path) for path in styles["image_path"]]].reset_index(drop=True)
    return with_photo.rename(columns={"id": "item_id"})


def colour_histograms(paths: pd.Series) -> np.ndarray:
    """``[n, 168]`` square-rooted HSV histograms of each photo's foreground (near-white background
    dropped): 18 hues x 3 saturations x 3 values for coloured pixels, 6 grey levels. A benchmark-only
    probe of how much colour the learned image features miss; not part of hybridrec."""
    histograms = np.zeros((len(paths), 168), dtype=np.float32)
    for row, path in enumerate(paths):
        with Image.open(path) as image:
            image.draft("RGB", (56, 56))
            hsv = np.asarray(image.convert("RGB").resize((48, 48)).convert("HSV"), dtype=np.float32) / 255.0
        hue, saturation, value = (hsv[..., channel].ravel() for channel in range(3))
        foreground = ~((value > 0.92) & (saturation < 0.08))
        if foreground.sum() >= 20:
            hue, saturation, value = hue[foreground], saturation[foreground], value[foreground]
        bins = np.where(saturation > 0.2,
                        np.minimum((hue * 18).astype(int), 17) * 9
                        + np.minimum(((saturation - 0.2) / 0.8 * 3).astype(int), 2) * 3
                        + np.minimum((value * 3).astype(int), 2),
                        162 + np.minimum((value * 6).astype(int), 5))
        counts = np.bincount(bins, minlength=168).astype(np.float32)
        histograms[row] = np.sqrt(counts / counts.sum())
    return histograms


def neighbour_agreement(vectors: torch.Tensor | np.ndarray, labels: dict[str, np.ndarray],
                        query_index: np.ndarray | None = None) -> dict[str, float]:
    """Share of each query's ``K`` nearest neighbours (cosine, self excluded) with the same label."""
    _, neighbours = exact_top_k(vectors, K, metric="cosine", query_index=query_index, device="auto")
    queries = np.arange(len(neighbours)) if query_index is None else query_index
    valid = neighbours >= 0
    return {name: float((values[neighbours] == values[queries][:, None])[valid].mean())
            for name, values in labels.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("HYBRIDREC_DATA_DIR",
                                                    Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/hybridrec-fashion-features"))
    parser.add_argument("--hidden-image-share", type=float, default=0.2,
                        help="share of items whose photo is hidden in the last check")
    args = parser.parse_args()

    products = load_products(args.data_dir)
    labels = {"articleType": products["articleType"].to_numpy(), "baseColour": products["baseColour"].to_numpy()}
    print(f"{len(products):,} products with a photo; {products['articleType'].nunique()} articleTypes, "
          f"{products['baseColour'].nunique()} baseColours; k={K}, cosine, item itself excluded")

    started = time.perf_counter()
    features = encode_items(products, text_cols=["productDisplayName"], image_col="image_path",
                            cache_dir=args.cache_dir, progress=False)
    print(f"features: text {features.text.shape}, image {features.image.shape} "
          f"({int(features.image_present.sum()):,} photos read) in {time.perf_counter() - started:.0f} s "
          f"(cache {args.cache_dir})")
    tfidf = TfidfVectorizer(min_df=2, ngram_range=(1, 2), sublinear_tf=True).fit_transform(
        products["productDisplayName"])
    tfidf_dense = torch.from_numpy(tfidf.astype(np.float32).toarray())

    rows = [("text only: all-MiniLM-L6-v2", neighbour_agreement(features.text, labels)),
            ("text only: TF-IDF (1-2 grams)", neighbour_agreement(tfidf_dense, labels)),
            ("image only: EfficientNet-Lite0", neighbour_agreement(features.image, labels))]
    defaults = ContentWeights()
    for text_weight in (0.8, 0.7, defaults.text, 0.5, 0.35):
        weights = ContentWeights(text=text_weight, image=1 - text_weight)
        fused = fuse_content_features(text=features.text, image=features.image, weights=weights)
        default = " (default)" if text_weight == defaults.text else ""
        rows.append((f"fused MiniLM {text_weight:.2f} + image {1 - text_weight:.2f}{default}",
                     neighbour_agreement(fused, labels)))
    fused_tfidf = fuse_content_features(text=tfidf_dense.numpy(), image=features.image, weights=defaults)
    rows.append((f"fused TF-IDF {defaults.text:.2f} + image {defaults.image:.2f}", neighbour_agreement(fused_tfidf, labels)))
    colour = colour_histograms(products["image_path"])
    fused_colour = torch.cat([fuse_content_features(text=features.text, image=features.image, weights=defaults)
                              * np.sqrt(0.7), torch.from_numpy(colour) * np.sqrt(0.3)], dim=1)
    rows.append(("fused (default) 0.7 + photo colour histogram 0.3 [bench only]",
                 neighbour_agreement(fused_colour, labels)))

    hidden = np.sort(np.random.default_rng(0).choice(len(products), int(args.hidden_image_share * len(products)),
                                                     replace=False))
    image_with_gaps = features.image.copy()
    image_with_gaps[hidden] = 0.0
    for missing in ("zero", "impute"):
        fused_gaps = fuse_content_features(text=features.text, image=image_with_gaps, weights=defaults, missing=missing)
        rows.append((f"{len(hidden):,} photos hidden, missing={missing!r}: those items",
                     neighbour_agreement(fused_gaps, labels, query_index=hidden)))

    print(f"\n{'features':<66}{'same articleType':>18}{'same baseColour':>17}")
    for name, scores in rows:
        print(f"{name:<66}{scores['articleType']:>18.3f}{scores['baseColour']:>17.3f}")
    print(f"\ntargets: articleType >= 0.90, baseColour >= 0.60 (default weights: text {defaults.text}, "
          f"image {defaults.image})")


if __name__ == "__main__":
    main()
