"""Image features: EfficientNet-Lite0 from torchvision blocks, real photos, and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import find_data_dir as real_data_dir
import torch
from PIL import Image

from hybridrec.errors import HybridRecError
from hybridrec.features.efficientnet_lite import EfficientNetLite, convert_lite_state_dict
from hybridrec.features.image_encoder import ImageCheckpoint, ImageEncoder, ImageWeights, resolve_image_checkpoint
from hybridrec.features.image_files import ImageFileDataset, to_rgb

# ImageNet classes a fashion product photo of each article type may plausibly get.
PLAUSIBLE = {
    "Watches": {"analog clock", "digital watch", "stopwatch", "wall clock", "magnetic compass", "digital clock"},
    "Sports Shoes": {"running shoe", "Loafer", "clog", "sandal", "cowboy boot"},
    "Tshirts": {"jersey", "sweatshirt", "cardigan", "bulletproof vest", "maillot"},
    "Sunglasses": {"sunglass", "sunglasses"},
    "Jeans": {"jean"},
    "Backpacks": {"backpack", "mailbag"},
}


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return ImageEncoder(ImageWeights.DEFAULT, device="cpu", batch_size=16, num_workers=0, progress=False)


@pytest.fixture(scope="module")
def posters() -> list[Path]:
    folder = real_data_dir() / "ml-100k-tmdb" / "posters"
    return [folder / f"{movie_id}.jpg" for movie_id in range(1, 60) if (folder / f"{movie_id}.jpg").is_file()]


@pytest.fixture()
def bad_files(tmp_path, posters) -> dict[str, Path | None]:
    """Real poster bytes damaged in every usual way, plus valid odd modes; name -> path."""
    jpeg = posters[0].read_bytes()
    photo = Image.open(posters[0]).convert("RGB")
    files: dict[str, Path | None] = {}

    def put(name: str, payload: bytes | None = None, image: Image.Image | None = None, fmt: str = "PNG") -> None:
        path = tmp_path / name
        if image is not None:
            image.save(path, format=fmt)
        else:
            path.write_bytes(payload)
        files[name] = path

    put("empty.jpg", b"")
    put("truncated.jpg", jpeg[: len(jpeg) // 2])
    put("text.jpg", b"this is not an image\n")
    put("png_named.jpg", image=photo)
    put("gray.jpg", image=photo.convert("L"), fmt="JPEG")
    put("cmyk.jpg", image=photo.convert("CMYK"), fmt="JPEG")
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    put("rgba.png", image=rgba)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    put("palette.png", image=palette)
    put("sixteen_bit.png", image=Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257)))
    files["missing.jpg"] = tmp_path / "missing.jpg"
    files["none"] = None
    return files


# -- EfficientNet-Lite0 -------------------------------------------------------------------------

def test_lite0_checkpoint_loads_strictly_into_torchvision_blocks():
    path = ImageWeights.EFFICIENTNET_LITE0.value.weights_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = EfficientNetLite().load_state_dict(convert_lite_state_dict(state), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in EfficientNetLite().parameters()) == sum(
        v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked") and "running" not in k)


def test_unexpected_checkpoint_key_is_reported():
    with pytest.raises(HybridRecError, match="_blocks.99"):
        convert_lite_state_dict({"_conv_stem.weight": torch.zeros(1), "_blocks.99._bn1.weight": torch.zeros(1)})


def test_lite0_classifies_fashion_photos_plausibly():
    root = real_data_dir() / "fashion-products"
    styles = pd.read_csv(root / "styles.csv", on_bad_lines="skip")
    styles = styles[[(root / "images" / f"{i}.jpg").is_file() for i in styles["id"]]]
    picks = [(kind, root / "images" / f"{i}.jpg") for kind in PLAUSIBLE
             for i in styles.loc[styles["articleType"] == kind, "id"].head(3)]
    checkpoint = ImageWeights.DEFAULT.value
    model, transform, categories = checkpoint.classifier(), checkpoint.transforms(), checkpoint.categories
    pixels = torch.stack([transform(to_rgb(Image.open(path))) for _, path in picks])
    with torch.inference_mode():
        top1 = model(pixels).argmax(dim=1).tolist()
    predicted = [(kind, categories[j]) for (kind, _), j in zip(picks, top1)]
    hits = [label in PLAUSIBLE[kind] for kind, label in predicted]
    assert len(picks) == 18 and sum(hits) >= 16, predicted


# -- encoding real files ------------------------------------------------------------------------

def test_real_posters_give_unit_1280_d_vectors(encoder, posters):
    result = encoder.encode_with_report(posters[:8])
    assert result.embeddings.shape == (8, 1280) and result.embeddings.dtype == np.float32
    assert result.present.all()
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)


def test_dataloader_workers_give_the_same_vectors(encoder, posters, monkeypatch):
    paths = posters[:20]
    single = encoder.encode(paths)
    monkeypatch.setattr(encoder, "num_workers", 2)
    monkeypatch.setattr(encoder, "batch_size", 8)
    np.testing.assert_allclose(single, encoder.encode(paths), atol=1e-5)


def test_bad_files_give_zero_vectors_and_flags_without_crashing(encoder, bad_files, caplog):
    result = encoder.encode_with_report(list(bad_files.values()))
    status = dict(zip(bad_files, result.status.tolist()))
    assert status == {
        "empty.jpg": "unreadable", "truncated.jpg": "unreadable", "text.jpg": "unreadable",
        "png_named.jpg": "ok", "gray.jpg": "ok", "cmyk.jpg": "ok", "rgba.png": "ok", "palette.png": "ok",
        "sixteen_bit.png": "ok", "missing.jpg": "missing file", "none": "no path"}
    assert not result.embeddings[~result.present].any()
    np.testing.assert_allclose(np.linalg.norm(result.embeddings[result.present], axis=1), 1.0, atol=1e-5)
    assert result.problems == {"unreadable": 3, "missing file": 1, "no path": 1}
    assert "3 of 11 images: unreadable" in caplog.text


def test_png_bytes_named_jpg_encode_like_the_original(encoder, bad_files, posters):
    vectors = encoder.encode([posters[0], bad_files["png_named.jpg"]])
    assert float(vectors[0] @ vectors[1]) > 0.99


def test_images_over_the_pixel_limit_are_refused(posters, monkeypatch):
    transform = ImageWeights.DEFAULT.value.transforms()
    assert ImageFileDataset([posters[0]], transform, 224, max_pixels=1000)[0][1] == "too large"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's own decompression-bomb check
    assert ImageFileDataset([posters[0]], transform, 224, max_pixels=10**9)[0][1] == "too large"


def test_transparent_pixels_become_white():
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)


# -- other backbones ----------------------------------------------------------------------------

def test_torchvision_backbone_from_a_local_weights_file(tmp_path, posters):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    checkpoint = resolve_image_checkpoint(f"mobilenet_v3_small:{path}")
    assert checkpoint.mean == (0.485, 0.456, 0.406) and checkpoint.crop_size == 224
    encoder = ImageEncoder(checkpoint, device="cpu", num_workers=0, progress=False)
    assert encoder.dim == 576 and encoder.encode(posters[:2]).shape == (2, 576)


def test_unknown_architecture_raises():
    with pytest.raises(HybridRecError, match="unknown torchvision"):
        ImageCheckpoint.from_torchvision("resnet_9000")


def test_weights_that_do_not_fit_raise(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(HybridRecError, match="do not fit"):
        ImageCheckpoint.from_torchvision("resnet18", path).classifier()
