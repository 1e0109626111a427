"""Content-only item similarity on a real catalog: do an item's 10 nearest neighbours share its
articleType and baseColour, when only its title and photo are used?

Data: ``fashion-products/`` (Myntra catalog): the 9,583 products of ``styles.csv`` that have a photo
in ``images/{id}.jpg``. Features: ``productDisplayName`` (the title) and the photo; articleType and
baseColour are only used to score the neighbours. Prints, side by side, text-only (all-MiniLM-L6-v2),
TF-IDF text-only (scikit-learn), image-only (EfficientNet-Lite0) and the fused vectors of
``hybridrec.features.content_fusion.fuse_content_features`` (text, CNN image features and the photo's
colour histogram), concatenated and aligned by CCA, for a range of weights and shared dimensions
(how the defaults were chosen); the fused result for items whose photo is hidden; and the CCA
learned on one half of the catalog, scored on the other half.

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
from sklearn.feature_extraction.text import TfidfVectorizer

from hybridrec.features.colour_histogram import colour_histograms
from hybridrec.features.content_fusion import ContentWeights, fuse_content_features
from hybridrec.features.feature_cache import encode_items
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


def neighbour_agreement(vectors: torch.Tensor | np.ndarray, labels: dict[str, np.ndarray],
                        query_index: np.ndarray | None = None) -> dict[str, float]:
    """Share of each query's ``K`` nearest neighbours (cosine, self excluded) with the same label."""
    _, neighbours = exact_top_k(vectors, K, metric="cosine", query_index=query_index, device="auto")
    queries = np.arange(len(neighbours)) if query_index is None else query_index
    valid = neighbours >= 0
    return {name: float((values[neighbours] == values[queries][:, None])[valid].mean())
            for name, values in labels.items()}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` (``$HYBRIDREC_DATA_DIR``, else ``../shared/data``) and ``--cache-dir`` of the
    fashion benchmarks."""
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("HYBRIDREC_DATA_DIR",
                                                    Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/hybridrec-fashion-features"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
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

    started = time.perf_counter()
    colour, _ = colour_histograms(products["image_path"].tolist(), progress=False)
    print(f"colour histograms {colour.shape} in {time.perf_counter() - started:.0f} s")
    rows = [("text only: all-MiniLM-L6-v2", neighbour_agreement(features.text, labels)),
            ("text only: TF-IDF (1-2 grams)", neighbour_agreement(tfidf_dense, labels)),
            ("image only: EfficientNet-Lite0", neighbour_agreement(features.image, labels)),
            ("image only: colour histogram", neighbour_agreement(colour, labels)),
            ("image only: EfficientNet-Lite0 0.5 + colour 0.5",
             neighbour_agreement(fuse_content_features(image=features.image, colour=colour,
                                                       weights=ContentWeights(text=0, image=0.5, colour=0.5)), labels))]
    defaults = ContentWeights()
    for fusion in ("concat", "cca"):
        grid = [(0.6, 0.4, 0.0), (0.6, 0.4, 0.15), (0.6, 0.4, 0.3), (0.6, 0.4, 0.6), (0.8, 0.4, 0.15), (0.5, 0.4, 0.3)]
        for text_weight, image_weight, colour_weight in grid:
            weights = ContentWeights(text=text_weight, image=image_weight, colour=colour_weight)
            fused = fuse_content_features(text=features.text, image=features.image, colour=colour, weights=weights,
                                          fusion=fusion)
            default = " (default)" if weights == defaults and fusion == "cca" else ""
            rows.append((f"{fusion}: MiniLM {text_weight:.2f} + image {image_weight:.2f} + colour "
                         f"{colour_weight:.2f}{default}", neighbour_agreement(fused, labels)))
    for n_components in (32, 48, 96, 128):
        fused = fuse_content_features(text=features.text, image=features.image, colour=colour, weights=defaults,
                                      cca_components=n_components)
        rows.append((f"cca: default weights, {n_components} shared dimensions", neighbour_agreement(fused, labels)))
    for fusion in ("concat", "cca"):
        fused_tfidf = fuse_content_features(text=tfidf_dense.numpy(), image=features.image, colour=colour,
                                            weights=defaults, fusion=fusion)
        rows.append((f"{fusion}: TF-IDF instead of MiniLM, default weights", neighbour_agreement(fused_tfidf, labels)))

    hidden = np.sort(np.random.default_rng(0).choice(len(products), int(args.hidden_image_share * len(products)),
                                                     replace=False))
    image_with_gaps = features.image.copy()
    image_with_gaps[hidden] = 0.0
    colour_with_gaps = colour.copy()
    colour_with_gaps[hidden] = 0.0
    for fusion, missing in (("concat", "zero"), ("concat", "impute"), ("cca", "impute")):
        fused_gaps = fuse_content_features(text=features.text, image=image_with_gaps, colour=colour_with_gaps,
                                           weights=defaults, fusion=fusion, missing=missing)
        how = f"missing={missing!r}" if fusion == "concat" else "placed by its title"
        rows.append((f"{fusion}: {len(hidden):,} photos hidden, {how}: those items",
                     neighbour_agreement(fused_gaps, labels, query_index=hidden)))

    # The CCA is learned from the catalog itself; fitted on one half, does it carry to unseen items?
    halves = np.random.default_rng(1).permutation(len(products))
    fit_half, held_out = np.sort(halves[:len(products) // 2]), np.sort(halves[len(products) // 2:])
    held_out_labels = {name: values[held_out] for name, values in labels.items()}
    for fitted_on, fit_rows in (("the other half", fit_half), ("the same half", held_out)):
        rows.append((f"cca learned on {fitted_on}: neighbours among a held-out half",
                     neighbour_agreement(fuse_content_features(text=features.text, image=features.image,
                                                               colour=colour, weights=defaults,
                                                               cca_fit_rows=fit_rows)[held_out], held_out_labels)))
    concat_half = fuse_content_features(text=features.text[held_out], image=features.image[held_out],
                                        colour=colour[held_out], weights=defaults, fusion="concat")
    rows.append(("concat: neighbours among the held-out half", neighbour_agreement(concat_half, held_out_labels)))
    for n_products in (300, 800, 2000):  # how many items the CCA needs (MIN_CCA_PAIRS)
        first = np.arange(n_products)
        first_labels = {name: values[first] for name, values in labels.items()}
        for fusion in ("concat", "cca"):
            fused = fuse_content_features(text=features.text[first], image=features.image[first],
                                          colour=colour[first], weights=defaults, fusion=fusion)
            rows.append((f"{fusion}: the first {n_products:,} products only", neighbour_agreement(fused, first_labels)))

    print(f"\n{'features':<66}{'same articleType':>18}{'same baseColour':>17}")
    for name, scores in rows:
        print(f"{name:<66}{scores['articleType']:>18.3f}{scores['baseColour']:>17.3f}")
    print(f"\ntargets: articleType >= 0.90, baseColour >= 0.60 (default: fusion 'cca', weights {defaults})")


if __name__ == "__main__":
    main()
