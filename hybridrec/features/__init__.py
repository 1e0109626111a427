"""Content features: text and image encoders and their on-disk cache."""

from __future__ import annotations

import importlib

# Imported lazily: torch and transformers load only when a feature class is first used.
_LAZY = {
    "TextCheckpoint": "hybridrec.features.text_encoder",
    "TextEncoder": "hybridrec.features.text_encoder",
    "TextWeights": "hybridrec.features.text_encoder",
    "EncodedTexts": "hybridrec.features.text_encoder",
    "ImageCheckpoint": "hybridrec.features.image_encoder",
    "ImageEncoder": "hybridrec.features.image_encoder",
    "ImageWeights": "hybridrec.features.image_encoder",
    "EncodedImages": "hybridrec.features.image_encoder",
    "EfficientNetLite": "hybridrec.features.efficientnet_lite",
    "assemble_texts": "hybridrec.features.text_assembly",
    "encode_items": "hybridrec.features.feature_cache",
    "ItemFeatures": "hybridrec.features.feature_cache",
    "ModalityStats": "hybridrec.features.feature_cache",
    "FeatureStore": "hybridrec.features.feature_cache",
    "CrossModalCCA": "hybridrec.features.cross_modal",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hybridrec.features' has no attribute {name!r}")
