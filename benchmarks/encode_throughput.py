"""Throughput of the content encoders on real data: ML-100K titles + genres, TMDB posters, and
optionally fashion product photos; then a cached re-run through ``encode_items``.

    HYBRIDREC_DATA_DIR=../shared/data python3 benchmarks/encode_throughput.py [--fashion 500]

Prints items/s per modality (model loading excluded, reported apart) and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDREC_DATA_DIR", "../shared/data"))
    parser.add_argument("--limit", type=int, help="only the first N MovieLens items")
    parser.add_argument("--fashion", type=int, default=0, help="also encode N fashion product photos")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--text-batch-size", type=int, default=64)
    parser.add_argument("--image-batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=None)
    args = parser.parse_args(argv)

    from data_builders.movielens import load_movielens_100k
    from hybridrec.features.feature_cache import encode_items
    from hybridrec.features.image_encoder import ImageEncoder
    from hybridrec.features.text_assembly import assemble_texts
    from hybridrec.features.text_encoder import TextEncoder

    data_dir = Path(args.data_dir)
    items = load_movielens_100k(data_dir, download=False).items
    if args.limit:
        items = items.head(args.limit)
    texts, _ = assemble_texts(items, template="{title}. Genres: {genres}")
    posters = [path for path in items["image_path"] if path]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}, cuda {torch.cuda.is_available()}, load average {os.getloadavg()[0]:.1f}")
    rows = []
    text_encoder, load = _timed(lambda: TextEncoder(device=args.device, batch_size=args.text_batch_size,
                                                    progress=False))
    text_encoder.encode(texts[:8])  # warm-up
    _, seconds = _timed(text_encoder.encode, texts)
    rows.append(("text: ML-100K title + genres", len(texts), load, seconds))

    image_encoder, load = _timed(lambda: ImageEncoder(device=args.device, batch_size=args.image_batch_size,
                                                      num_workers=args.num_workers, progress=False))
    image_encoder.encode(posters[:4])  # warm-up
    _, seconds = _timed(image_encoder.encode, posters)
    rows.append((f"image: ML-100K posters 92x138 ({image_encoder.num_workers} workers)", len(posters), load, seconds))
    if args.fashion:
        folder = data_dir / "fashion-products" / "images"
        photos = sorted(folder.glob("*.jpg"))[: args.fashion]
        _, seconds = _timed(image_encoder.encode, photos)
        rows.append(("image: fashion photos 224x224", len(photos), 0.0, seconds))

    with tempfile.TemporaryDirectory() as cache_dir:
        options = dict(text_template="{title}. Genres: {genres}", image_col="image_path", cache_dir=cache_dir,
                       text_encoder=text_encoder, image_encoder=image_encoder, progress=False)
        encode_items(items, **options)
        _, seconds = _timed(lambda: encode_items(items, **options))
        rows.append(("cached re-run (text + image, nothing encoded)", len(items), 0.0, seconds))

    print(f"{'what':<52} {'items':>6} {'load s':>7} {'encode s':>9} {'items/s':>9}")
    for name, count, load, seconds in rows:
        print(f"{name:<52} {count:>6} {load:>7.1f} {seconds:>9.2f} {count / seconds:>9.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
