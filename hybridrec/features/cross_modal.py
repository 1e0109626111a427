"""A shared text–image space learned from a catalog's own paired items (regularised CCA).

A product title and a product photo describe the same thing, each with its own noise: the title
names a brand and a gender the photo cannot show, the photo has a pose and a background the title
does not mention. Canonical correlation analysis finds the directions along which the two views of
the *same* items agree (what the item is, its colour), and leaves out what only one view carries.
No labels are used: the catalog's items that have both a text and a photo are the training pairs.

    alignment = CrossModalCCA(n_components=64).fit(text[paired], image[paired])
    text_side = alignment.transform_text(text)      # [n_items, 64], unit rows (zero where no text)
    image_side = alignment.transform_image(image)   # [n_items, 64], same space

Both sides land in one space, so an item without a photo is compared to the others through its
title alone. Measured on the fashion catalog (``benchmarks/fashion_content_similarity.py``), the
10 nearest neighbours share the item's articleType / baseColour 0.91 / 0.64 of the time in this
space, against 0.87 / 0.47 when the same features are concatenated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from data_builders.errors import HybridRecError

#: Training pairs needed per shared dimension.
PAIRS_PER_COMPONENT = 10
#: Rows of a view converted to float64 at a time while the covariances are accumulated.
_COVARIANCE_BLOCK_ROWS = 1 << 16


def _as_float_tensor(values: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if tensor.dim() != 2:
        raise HybridRecError(f"{name} must be a 2-d [n_items, dim] array, got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise HybridRecError(f"{name} holds NaN or infinite values")
    return tensor.float()


def _inverse_sqrt(covariance: torch.Tensor, regularization: float) -> torch.Tensor:
    """``(C + r * mean(diag C) * I)^(-1/2)``: the ridge is relative, so it does not depend on the scale of a view."""
    dim = covariance.shape[0]
    ridge = regularization * float(torch.diagonal(covariance).mean().clamp_min(1e-12))
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance + ridge * torch.eye(dim, dtype=covariance.dtype))
    return (eigenvectors / eigenvalues.clamp_min(1e-12).sqrt()) @ eigenvectors.T


class CrossModalCCA:
    """Regularised CCA between a text view and an image view of the same items.

    Args:
        n_components: dimension of the shared space, capped by the views' dimensions and at one
            per ``PAIRS_PER_COMPONENT`` training pairs: further directions are fitted to noise (on
            300 fashion products, 64 directions found fewer same-articleType neighbours than 30).
        regularization: ridge added to each view's covariance, as a share of its mean variance.
            It keeps the whitening stable when a view has more dimensions than the data supports.
        correlation_power: each shared direction is scaled by its canonical correlation to this
            power before the rows are normalised, so directions the two views agree on strongly
            dominate the cosine (0: all directions equal).

    Attributes (after :meth:`fit`):
        text_mean_, image_mean_: ``[d_text]``, ``[d_image]`` centres of the training pairs.
        text_projection_, image_projection_: ``[d_text, c]``, ``[d_image, c]`` maps into the shared space.
        correlations_: ``[c]`` canonical correlations, in decreasing order.
        n_pairs_: number of training pairs.
    """

    def __init__(self, n_components: int = 64, regularization: float = 0.1, correlation_power: float = 2.0) -> None:
        self.n_components = n_components
        self.regularization = regularization
        self.correlation_power = correlation_power

    def fit(self, text: np.ndarray | torch.Tensor, image: np.ndarray | torch.Tensor) -> "CrossModalCCA":
        """Learn the shared space from paired rows.

        Args:
            text: ``[n_pairs, d_text]`` text-side features of items that have both views.
            image: ``[n_pairs, d_image]`` image-side features of the same items, same row order.

        Returns:
            self.
        """
        if self.n_components < 1:
            raise HybridRecError(f"n_components must be >= 1, got {self.n_components}")
        if not self.regularization > 0:
            raise HybridRecError(f"regularization must be > 0, got {self.regularization}")
        text, image = _as_float_tensor(text, "text"), _as_float_tensor(image, "image")
        if len(text) != len(image):
            raise HybridRecError(f"text has {len(text)} rows but image has {len(image)}: the views must be paired")
        n_pairs = len(text)
        if n_pairs < PAIRS_PER_COMPONENT:
            raise HybridRecError(f"CCA needs at least {PAIRS_PER_COMPONENT} items with both text and image, "
                                 f"got {n_pairs}")
        self.text_mean_ = text.double().mean(dim=0)
        self.image_mean_ = image.double().mean(dim=0)
        text_cov, image_cov, cross_cov = self._covariances(text, image)
        text_whiten = _inverse_sqrt(text_cov, self.regularization)
        image_whiten = _inverse_sqrt(image_cov, self.regularization)
        left, correlations, right_t = torch.linalg.svd(text_whiten @ cross_cov @ image_whiten)
        n_components = min(self.n_components, text.shape[1], image.shape[1], n_pairs // PAIRS_PER_COMPONENT)
        self.text_projection_ = (text_whiten @ left[:, :n_components]).float()
        self.image_projection_ = (image_whiten @ right_t[:n_components].T).float()
        self.correlations_ = correlations[:n_components].clamp(0.0, 1.0).float()
        self.n_pairs_ = n_pairs
        return self

    def _covariances(self, text: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Accumulated over row blocks so that a float64 copy of a large catalog is never held whole.
        d_text, d_image = text.shape[1], image.shape[1]
        text_cov = torch.zeros(d_text, d_text, dtype=torch.float64)
        image_cov = torch.zeros(d_image, d_image, dtype=torch.float64)
        cross_cov = torch.zeros(d_text, d_image, dtype=torch.float64)
        for start in range(0, len(text), _COVARIANCE_BLOCK_ROWS):
            text_block = text[start:start + _COVARIANCE_BLOCK_ROWS].double() - self.text_mean_
            image_block = image[start:start + _COVARIANCE_BLOCK_ROWS].double() - self.image_mean_
            text_cov += text_block.T @ text_block
            image_cov += image_block.T @ image_block
            cross_cov += text_block.T @ image_block
        return text_cov / len(text), image_cov / len(text), cross_cov / len(text)

    def _check_fitted(self) -> None:
        if not hasattr(self, "correlations_"):
            raise HybridRecError("CrossModalCCA is not fitted: call fit() first")

    def _project(self, values: np.ndarray | torch.Tensor, side: str) -> torch.Tensor:
        if not hasattr(self, "correlations_"):
            raise HybridRecError("CrossModalCCA is not fitted: call fit() first")
        mean, projection = getattr(self, f"{side}_mean_"), getattr(self, f"{side}_projection_")
        values = _as_float_tensor(values, side)
        if values.shape[1] != projection.shape[0]:
            raise HybridRecError(f"{side} has {values.shape[1]} columns, the fitted CCA expects {projection.shape[0]}")
        present = values.abs().sum(dim=1) > 0
        shared = ((values - mean.float()) @ projection) * self.correlations_.pow(self.correlation_power)
        return F.normalize(shared, dim=1) * present.unsqueeze(1)

    def transform_text(self, text: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[n, d_text]`` -> ``[n, c]`` unit rows in the shared space; an all-zero row (no text) stays zero."""
        return self._project(text, "text")

    def transform_image(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[n, d_image]`` -> ``[n, c]`` unit rows in the shared space; an all-zero row (no image) stays zero."""
        return self._project(image, "image")
