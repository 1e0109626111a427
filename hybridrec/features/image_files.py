"""Reading image files for the encoders: any PIL image as RGB, and a dataset that never raises.

:class:`ImageFileDataset` yields ``(pixels, status)`` per path; ``status`` is ``"ok"`` or why there is
no image (no path, missing file, unreadable, too large), and the pixels are then zeros, so one bad
file never stops a run. :func:`to_rgb` converts grayscale, 16-bit, CMYK, palette and alpha images to
8-bit RGB (transparent areas become white).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

# Why an item has no image vector; "ok" items are present.
STATUS_OK = "ok"
STATUS_NO_PATH = "no path"
STATUS_MISSING = "missing file"
STATUS_UNREADABLE = "unreadable"
STATUS_TOO_LARGE = "too large"
STATUSES = (STATUS_OK, STATUS_NO_PATH, STATUS_MISSING, STATUS_UNREADABLE, STATUS_TOO_LARGE)


class _TooLarge(Exception):
    """The image has more pixels than allowed (a possible decompression bomb)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: EXIF orientation applied, alpha composited on white, 16-bit and
    float grayscale rescaled, CMYK and palette converted."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block only loses the orientation
        pass
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), mode="L")
    elif image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa") or (image.mode != "RGBA" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


class ImageFileDataset(Dataset):
    """Reads and preprocesses image files; every item yields ``(tensor [3, crop, crop], status)``.

    ``status`` is ``"ok"`` or why there is no image (then the tensor is zeros). Failures never raise.
    """

    def __init__(self, paths: Sequence[str | Path | None], transform, crop_size: int,
                 max_pixels: int | None = None) -> None:
        self.paths = [None if path is None or (isinstance(path, float) and math.isnan(path)) or str(path) == ""
                      else str(path) for path in paths]
        self.transform = transform
        self.crop_size = crop_size
        self.max_pixels = int(max_pixels or Image.MAX_IMAGE_PIXELS or 89_478_485)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        path = self.paths[index]
        blank = torch.zeros(3, self.crop_size, self.crop_size)
        if path is None:
            return blank, STATUS_NO_PATH
        if not os.path.isfile(path):
            return blank, STATUS_MISSING
        try:
            return self.transform(self.read(path)), STATUS_OK
        except _TooLarge:
            return blank, STATUS_TOO_LARGE
        except Exception as err:  # any decoder error (truncated, corrupt, not an image) is a counted skip
            logger.debug("cannot read image %s: %s", path, err)
            return blank, STATUS_UNREADABLE

    def read(self, path: str) -> Image.Image:
        """Decode ``path`` as RGB, refusing images over ``max_pixels`` (decompression bombs)."""
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as image:
                    if image.format == "JPEG":
                        image.draft(None, (self.crop_size * 2, self.crop_size * 2))  # decode big JPEGs scaled down
                    if image.size[0] * image.size[1] > self.max_pixels:
                        raise _TooLarge()
                    image.load()
                    return to_rgb(image)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise _TooLarge() from None
