"""Content features: text and image encoders and their on-disk cache."""
