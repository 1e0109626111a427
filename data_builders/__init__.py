"""Turn raw logs and public datasets into hybridrec's canonical tables (see :mod:`hybridrec.tables`)."""

from data_builders.amazon import load_amazon
from data_builders.catalog import read_items, read_users
from data_builders.event_log import DEFAULT_EVENT_WEIGHTS, ColumnMapping, load_from_files
from data_builders.filters import DEDUPE_POLICIES, deduplicate, implicit_positives, k_core
from data_builders.movielens import load_movielens_1m, load_movielens_100k, load_movielens_latest_small

__all__ = [
    "ColumnMapping", "DEDUPE_POLICIES", "DEFAULT_EVENT_WEIGHTS", "deduplicate", "implicit_positives", "k_core",
    "load_amazon", "load_from_files",
    "load_movielens_100k", "load_movielens_1m", "load_movielens_latest_small", "read_items", "read_users",
]
