"""Seeded synthetic e-commerce log at any size: Zipf-like item popularity, users with a few tastes.

The generative model (every draw from one seed, so one seed gives one log):

* **Items** ``0 .. n_items - 1`` fall into taste clusters (about ``sqrt(n_items) / 2`` of them,
  sizes varying log-normally). Each item's popularity weight is ``rank ** -zipf_exponent`` for a
  random popularity rank, so the id order carries no signal and a few items hold most events.
* **Catalog**: ``category`` is the item's cluster (``c00042``), replaced by a random one for a
  ``category_noise`` share of the items; ``brand`` is one of the brands of the item's cluster
  (about 40 items per brand), or any brand for a ``brand_noise`` share. So the attribute path
  of a content-aware model has something to learn from, though not everything.
* **Users**: event counts are log-normal (mean ``events_per_user``, at least ``min_user_events``,
  heavy-tailed), and users are added until the counts reach ``events_per_item x n_items``
  events. Each user has 1-3 tastes (probabilities ``taste_counts``): clusters drawn by their
  popularity mass, mixed with Dirichlet(1) weights.
* **Events**: with probability ``noise`` an item drawn by global popularity; otherwise one of the
  user's clusters by its mixture weight, then an item of that cluster by popularity. A user may
  return to an item (repeated events are kept, as in a real log).
* **Timestamps** (unix seconds): each user starts at a uniform time in a 180-day window and
  their events follow with exponential gaps (mean 6 hours, at least a second); rows are grouped
  by user, in time order, so no two rows are the same event.
* **Split** (column ``split``): per user, a seeded 20% of their *distinct* items (half rounded
  up, at least one item left in training) go to ``"test"`` with all their rows, the rest is
  ``"train"``: no test pair also occurs in training (``SplitConfig(kind="given")`` reads it).

Users are generated in chunks of about ``chunk_events`` events, each chunk from its own child
seed, so memory stays bounded (1M items / 10M events: 14 s and a 0.6 GiB peak on two shared cores).

    python benchmarks/synthetic_log.py --items 1000000 --out runs/synthetic-1m [--seed 0]

writes ``interactions.parquet`` (user_id, item_id, timestamp, split) and ``items.parquet``
(item_id, category, brand) into ``--out``, streamed chunk by chunk. In Python::

    from synthetic_log import generate
    interactions, items = generate(2000, seed=0)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Epoch second of the start of the timestamp window (2024-01-01 00:00 UTC).
WINDOW_START = 1_704_067_200
WINDOW_SECONDS = 180 * 86_400
MEAN_GAP_SECONDS = 6 * 3_600
TEST_SHARE = 0.2

INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
INTERACTION_SCHEMA = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64()),
                                ("split", pa.string())])


@dataclass(frozen=True)
class SyntheticLogConfig:
    """Size and shape of a synthetic log (see the module docstring for the model).

    Attributes:
        n_items: catalog size.
        events_per_item: mean events per item; the log has ``round(events_per_item * n_items)`` rows.
        seed: seeds every draw.
        zipf_exponent: item popularity ``rank ** -zipf_exponent``.
        n_clusters: taste clusters (None: ``max(4, round(sqrt(n_items) / 2))``).
        items_per_brand: catalog items per brand, on average.
        events_per_user: mean events per user (log-normal counts of spread ``user_sigma``).
        min_user_events, max_user_events: bounds of a user's event count.
        taste_counts: probabilities of a user having 1, 2, 3 ... taste clusters.
        noise: share of events drawn by global popularity instead of the user's tastes.
        category_noise, brand_noise: share of items whose category / brand is random.
        chunk_events: events generated at once (bounds memory; part of what a seed produces).
    """

    n_items: int
    events_per_item: float = 10.0
    seed: int = 0
    zipf_exponent: float = 0.9
    n_clusters: int | None = None
    items_per_brand: int = 40
    events_per_user: float = 20.0
    user_sigma: float = 1.0
    min_user_events: int = 3
    max_user_events: int = 2000
    taste_counts: tuple[float, ...] = field(default=(0.5, 0.3, 0.2))
    noise: float = 0.1
    category_noise: float = 0.1
    brand_noise: float = 0.2
    chunk_events: int = 2_000_000

    def __post_init__(self) -> None:
        if self.n_items < 2:
            raise ValueError(f"SyntheticLogConfig.n_items must be >= 2, got {self.n_items}")
        if self.events_per_item <= 0:
            raise ValueError(f"SyntheticLogConfig.events_per_item must be > 0, got {self.events_per_item}")
        if not 1 <= self.min_user_events <= self.max_user_events:
            raise ValueError("SyntheticLogConfig needs 1 <= min_user_events <= max_user_events, got "
                             f"{self.min_user_events} and {self.max_user_events}")
        if self.events_per_user < self.min_user_events:
            raise ValueError(f"SyntheticLogConfig.events_per_user ({self.events_per_user}) must be >= "
                             f"min_user_events ({self.min_user_events})")
        for name in ("noise", "category_noise", "brand_noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticLogConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.taste_counts or min(self.taste_counts) < 0 or not math.isclose(sum(self.taste_counts), 1.0):
            raise ValueError(f"SyntheticLogConfig.taste_counts must be probabilities summing to 1, "
                             f"got {self.taste_counts}")
        if self.chunk_events < self.max_user_events:
            raise ValueError("SyntheticLogConfig.chunk_events must be >= max_user_events")

    @property
    def n_events(self) -> int:
        """Rows of the log."""
        return max(1, int(round(self.events_per_item * self.n_items)))

    @property
    def clusters(self) -> int:
        """Number of taste clusters."""
        if self.n_clusters is not None:
            return int(self.n_clusters)
        return max(4, int(round(math.sqrt(self.n_items) / 2)))


@dataclass(frozen=True)
class Catalog:
    """The item side of a log: popularity, clusters and the sampling tables over them.

    Attributes:
        weight: ``[n_items]`` popularity weights (float64, unnormalised).
        cluster: ``[n_items]`` each item's taste cluster.
        order: item ids sorted by cluster (stable), the rows of ``cumulative``.
        cumulative: ``[n_items]`` running sum of ``weight[order]``.
        cluster_start: ``[n_clusters + 1]`` first position of each cluster in ``order``.
        cluster_mass: ``[n_clusters]`` summed weight of each cluster.
        items: the catalog table (item_id, category, brand).
    """

    weight: np.ndarray
    cluster: np.ndarray
    order: np.ndarray
    cumulative: np.ndarray
    cluster_start: np.ndarray
    cluster_mass: np.ndarray
    items: pd.DataFrame


def _child_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.SeedSequence]:
    """Independent streams for the catalog, the user counts and (spawned per chunk) the events."""
    catalog_seq, counts_seq, events_seq = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(catalog_seq), np.random.default_rng(counts_seq), events_seq


def _labels(prefix: str, codes: np.ndarray, n: int) -> pd.Categorical:
    width = len(str(max(n - 1, 0)))
    return pd.Categorical.from_codes(codes, categories=[f"{prefix}{i:0{width}d}" for i in range(n)])


def make_catalog(config: SyntheticLogConfig, rng: np.random.Generator) -> Catalog:
    """Items, their popularity and clusters, and the catalog table (see the module docstring)."""
    n_items, n_clusters = config.n_items, config.clusters
    ranks = rng.permutation(n_items) + 1
    weight = ranks.astype(np.float64) ** -config.zipf_exponent
    cluster_share = rng.lognormal(0.0, 0.5, n_clusters)
    cluster = rng.choice(n_clusters, size=n_items, p=cluster_share / cluster_share.sum())
    order = np.argsort(cluster, kind="stable")
    cumulative = np.cumsum(weight[order])
    counts = np.bincount(cluster, minlength=n_clusters)
    cluster_start = np.concatenate([[0], np.cumsum(counts)])
    cluster_mass = np.bincount(cluster, weights=weight, minlength=n_clusters)

    category = np.where(rng.random(n_items) < config.category_noise, rng.integers(0, n_clusters, n_items), cluster)
    n_brands = max(n_clusters, n_items // max(1, config.items_per_brand))
    brand_cluster = np.arange(n_brands) % n_clusters          # brand b belongs to cluster b % n_clusters
    brands_in_cluster = np.bincount(brand_cluster, minlength=n_clusters)
    own_brand = cluster + n_clusters * (rng.random(n_items) * brands_in_cluster[cluster]).astype(np.int64)
    brand_ids = rng.permutation(n_brands)                     # brand names carry no cluster order
    brand = np.where(rng.random(n_items) < config.brand_noise, rng.integers(0, n_brands, n_items),
                     brand_ids[own_brand])
    items = pd.DataFrame({"item_id": np.arange(n_items, dtype=np.int64),
                          "category": _labels("c", category, n_clusters),
                          "brand": _labels("b", brand, n_brands)})
    return Catalog(weight=weight, cluster=cluster, order=order, cumulative=cumulative, cluster_start=cluster_start,
                   cluster_mass=cluster_mass, items=items)


def user_event_counts(config: SyntheticLogConfig, rng: np.random.Generator) -> np.ndarray:
    """``[n_users]`` event counts (log-normal, clipped) summing exactly to ``config.n_events``."""
    mu = math.log(config.events_per_user) - config.user_sigma ** 2 / 2
    target, drawn, total = config.n_events, [], 0
    batch = max(1024, int(target / config.events_per_user * 1.1))
    while total < target:
        counts = np.clip(np.rint(rng.lognormal(mu, config.user_sigma, batch)), config.min_user_events,
                         config.max_user_events).astype(np.int64)
        drawn.append(counts)
        total += int(counts.sum())
    counts = np.concatenate(drawn)
    cumulative = np.cumsum(counts)
    n_users = int(np.searchsorted(cumulative, target)) + 1
    counts = counts[:n_users]
    counts[-1] -= int(cumulative[n_users - 1]) - target     # the last user takes what is left (>= 1)
    return counts


def _draw_within(catalog: Catalog, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of ``clusters``, by popularity within that cluster."""
    below = np.where(catalog.cluster_start[clusters] > 0, catalog.cumulative[catalog.cluster_start[clusters] - 1], 0.0)
    target = below + rng.random(len(clusters)) * catalog.cluster_mass[clusters]
    position = np.searchsorted(catalog.cumulative, target, side="right")
    position = np.clip(position, catalog.cluster_start[clusters], catalog.cluster_start[clusters + 1] - 1)
    return catalog.order[position]


def _draw_global(catalog: Catalog, n: int, rng: np.random.Generator) -> np.ndarray:
    position = np.searchsorted(catalog.cumulative, rng.random(n) * catalog.cumulative[-1], side="right")
    return catalog.order[np.minimum(position, len(catalog.order) - 1)]


def _split_labels(user_of_row: np.ndarray, item: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_rows]`` True for test rows: per user (``user_of_row``: ``0 .. n_users - 1``, each
    present) a random 20% of the distinct items (half up, one item kept in training), with all
    their rows."""
    pairs, row_pair = np.unique(user_of_row * np.int64(n_items) + item, return_inverse=True)
    pair_user = pairs // n_items
    # Distinct pairs come sorted by user: rank them within each user in a random order.
    order = np.lexsort((rng.random(len(pairs)), pair_user))
    distinct = np.bincount(pair_user)
    start = np.concatenate([[0], np.cumsum(distinct)[:-1]])
    rank = np.empty(len(pairs), np.int64)
    rank[order] = np.arange(len(pairs)) - np.repeat(start, distinct)
    n_test = np.minimum(np.floor(distinct * TEST_SHARE + 0.5).astype(np.int64), distinct - 1)
    return (rank < n_test[pair_user])[row_pair]


def _events(catalog: Catalog, counts: np.ndarray, first_user: int, config: SyntheticLogConfig,
            rng: np.random.Generator) -> pd.DataFrame:
    """The rows of the users ``first_user ..`` with event ``counts`` (one chunk)."""
    n_users, n_rows = len(counts), int(counts.sum())
    n_tastes = len(config.taste_counts)
    user_tastes = rng.choice(np.arange(1, n_tastes + 1), size=n_users, p=config.taste_counts)
    mass = catalog.cluster_mass / catalog.cluster_mass.sum()
    tastes = rng.choice(len(mass), size=(n_users, n_tastes), p=mass)
    mixture = rng.gamma(1.0, size=(n_users, n_tastes)) * (np.arange(n_tastes) < user_tastes[:, None])
    cumulative_mixture = np.cumsum(mixture / mixture.sum(1, keepdims=True), axis=1)

    user = np.repeat(np.arange(n_users), counts)
    which = (rng.random(n_rows)[:, None] > cumulative_mixture[user]).sum(1)
    which = np.minimum(which, user_tastes[user] - 1)
    item = _draw_within(catalog, tastes[user, which], rng)
    noisy = rng.random(n_rows) < config.noise
    item[noisy] = _draw_global(catalog, int(noisy.sum()), rng)

    start = WINDOW_START + rng.integers(0, WINDOW_SECONDS, n_users)
    gaps = 1 + rng.exponential(MEAN_GAP_SECONDS, n_rows).astype(np.int64)   # strictly increasing
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gaps[row_start] = 0
    running = np.cumsum(gaps)
    timestamp = start[user] + running - np.repeat(running[row_start], counts)
    test = _split_labels(user, item, config.n_items, rng)
    return pd.DataFrame({"user_id": (user + first_user).astype(np.int64), "item_id": item.astype(np.int64),
                         "timestamp": timestamp.astype(np.int64),
                         "split": pd.Categorical.from_codes(test.astype(np.int8), categories=["train", "test"])})


def iter_log(config: SyntheticLogConfig) -> tuple[pd.DataFrame, Iterator[pd.DataFrame]]:
    """The catalog table and an iterator over the log's chunks (whole users each, in user order)."""
    catalog_rng, counts_rng, events_seq = _child_rngs(config.seed)
    catalog = make_catalog(config, catalog_rng)
    counts = user_event_counts(config, counts_rng)
    ends = np.cumsum(counts)
    bounds = [0]
    while bounds[-1] < len(counts):
        done = int(ends[bounds[-1] - 1]) if bounds[-1] else 0
        bounds.append(max(bounds[-1] + 1, int(np.searchsorted(ends, done + config.chunk_events, side="right"))))
    bounds[-1] = len(counts)
    chunk_seqs = events_seq.spawn(len(bounds) - 1)

    def chunks() -> Iterator[pd.DataFrame]:
        for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            yield _events(catalog, counts[lo:hi], lo, config, np.random.default_rng(chunk_seqs[index]))

    return catalog.items, chunks()


def generate(n_items: int, seed: int = 0, events_per_item: float = 10, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A whole synthetic log in memory.

    Args:
        n_items: catalog size; the log has about ``events_per_item x n_items`` rows.
        seed: same seed, same tables.
        options: other :class:`SyntheticLogConfig` fields.

    Returns:
        ``(interactions, items)``: ``user_id, item_id, timestamp, split`` (``"train"`` / ``"test"``,
        categorical) and ``item_id, category, brand`` (categorical strings).
    """
    config = SyntheticLogConfig(n_items=n_items, seed=seed, events_per_item=events_per_item, **options)
    items, chunks = iter_log(config)
    interactions = pd.concat(list(chunks), ignore_index=True)
    interactions["split"] = interactions["split"].astype(pd.CategoricalDtype(["train", "test"]))
    return interactions, items


def write_log(config: SyntheticLogConfig, out: str | Path) -> dict:
    """Stream the log into ``out/interactions.parquet`` and ``out/items.parquet``.

    Returns:
        Sizes and timings: ``n_items, n_users, n_events, n_train, n_test, items_with_events, seconds``.
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items, chunks = iter_log(config)
    items.to_parquet(out / ITEMS_FILE, index=False)
    n_users = n_events = n_test = 0
    touched = np.zeros(config.n_items, dtype=bool)
    scratch = out / f".{INTERACTIONS_FILE}.tmp"
    with pq.ParquetWriter(scratch, INTERACTION_SCHEMA) as writer:
        for chunk in chunks:
            table = pa.Table.from_pandas(chunk.assign(split=chunk["split"].astype(str)), schema=INTERACTION_SCHEMA,
                                         preserve_index=False)
            writer.write_table(table, row_group_size=1_000_000)
            n_users = int(chunk["user_id"].iloc[-1]) + 1
            n_events += len(chunk)
            n_test += int((chunk["split"] == "test").sum())
            touched[chunk["item_id"].to_numpy()] = True
    scratch.replace(out / INTERACTIONS_FILE)
    return {"n_items": config.n_items, "n_users": n_users, "n_events": n_events, "n_train": n_events - n_test,
            "n_test": n_test, "items_with_events": int(touched.sum()), "seed": config.seed,
            "seconds": time.perf_counter() - started}


def read_log(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(interactions, items)`` as :func:`write_log` wrote them (plain pyarrow, typed ids)."""
    folder = Path(folder)
    # The split column read as a dictionary: no 10M Python strings on the way to a categorical.
    interactions = pq.read_table(folder / INTERACTIONS_FILE, read_dictionary=["split"]).to_pandas()
    interactions["split"] = interactions["split"].cat.set_categories(["train", "test"])
    return interactions, pd.read_parquet(folder / ITEMS_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, required=True, help="catalog size (events: about 10 x this)")
    parser.add_argument("--out", required=True, help="folder for interactions.parquet and items.parquet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events-per-item", type=float, default=10.0)
    args = parser.parse_args(argv)
    summary = write_log(SyntheticLogConfig(n_items=args.items, seed=args.seed, events_per_item=args.events_per_item),
                        args.out)
    peak_mb = _peak_rss_mb()
    print(f"{summary['n_events']:,} events ({summary['n_test']:,} test) of {summary['n_users']:,} users on "
          f"{summary['n_items']:,} items ({summary['items_with_events']:,} with events) in {summary['seconds']:.1f} s, "
          f"peak RSS {peak_mb:,.0f} MB -> {args.out}")
    return 0


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
