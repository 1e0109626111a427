"""hybridrec: graph-based hybrid recommendation.

Heavy submodules (torch, transformers) are imported lazily so that ``import hybridrec`` and the
CLI's ``--help`` stay fast.
"""

from __future__ import annotations

import importlib

from hybridrec.errors import HybridRecError

__version__ = "0.1.0"

_LAZY = {
    "IdMap": "hybridrec.id_map",
    "RecGraph": "hybridrec.graph",
    "GraphConfig": "hybridrec.graph",
    "build_graph": "hybridrec.graph",
    "RecommenderBase": "hybridrec.recommender_base",
    "HybridRecommender": "hybridrec.recommender",
}

__all__ = ["HybridRecError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hybridrec' has no attribute {name!r}")
