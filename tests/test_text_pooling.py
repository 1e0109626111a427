"""A text checkpoint is pooled as its own sentence-transformers configuration says (mean for
all-MiniLM-L6-v2, CLS for a BGE-style config), and the pooling is part of the cache identity."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from hybridrec.errors import HybridRecError
from hybridrec.features.text_encoder import TextEncoder, TextWeights
from hybridrec.features.text_pooling import checkpoint_pooling, pool_tokens

TEXTS = ["Star Wars (1977) space opera", "Toy Story (1995) animated toys come alive", "a short one"]


def _checkpoint_copy(tmp_path: Path, pooling: dict | None) -> Path:
    """The offline MiniLM folder, linked file by file, with its pooling config replaced (or removed)."""
    source = TextWeights.DEFAULT.value.source()
    folder = tmp_path / "model"
    folder.mkdir()
    for path in source.iterdir():
        if path.name not in ("modules.json", "1_Pooling"):
            (folder / path.name).symlink_to(path)
    if pooling is not None:
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384, **pooling}))
    return folder


@pytest.fixture(scope="module")
def default_encoder():
    return TextEncoder(device="cpu", progress=False)


def test_default_model_declares_mean_pooling(default_encoder):
    assert TextWeights.DEFAULT.value.pooling() == "mean" == default_encoder.pooling
    assert default_encoder.describe()["pooling"] == "mean"


def _hidden_states(encoder: TextEncoder, texts):
    tokens = encoder.tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_tokens, return_tensors="pt")
    with torch.inference_mode():
        return encoder.model(**tokens).last_hidden_state, tokens["attention_mask"]


def test_a_cls_config_is_pooled_by_its_first_token(tmp_path, default_encoder):
    folder = _checkpoint_copy(tmp_path, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    encoder = TextEncoder(folder, device="cpu", progress=False)
    assert encoder.pooling == "cls" and encoder.describe()["pooling"] == "cls"
    vectors = torch.from_numpy(encoder.encode(TEXTS))
    hidden, _ = _hidden_states(encoder, TEXTS)
    expected = torch.nn.functional.normalize(hidden[:, 0], dim=1)
    assert torch.allclose(vectors, expected, atol=1e-5)
    mean_vectors = torch.from_numpy(default_encoder.encode(TEXTS))
    assert (vectors - mean_vectors).abs().max() > 0.1  # a different pooling, not the same vectors relabelled


def test_no_config_means_mean_pooling_and_says_so(tmp_path, caplog):
    folder = _checkpoint_copy(tmp_path, None)
    with caplog.at_level(logging.INFO, logger="hybridrec.features.text_pooling"):
        assert checkpoint_pooling(folder, "plain") == "mean"
    assert "no sentence-transformers pooling configuration: mean pooling" in caplog.text


@pytest.mark.parametrize("config, fragment", [
    ({"pooling_mode_mean_sqrt_len_tokens": True}, "pooling_mode_mean_sqrt_len_tokens"),
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, "exactly one of"),
])
def test_unsupported_pooling_is_refused(tmp_path, config, fragment):
    folder = _checkpoint_copy(tmp_path, config)
    with pytest.raises(HybridRecError, match=fragment):
        checkpoint_pooling(folder, "odd")


def test_pooling_modes_on_padded_batches():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]],
                           [[0.0, 2.0], [5.0, 1.0], [2.0, 6.0]]])
    right_padded = torch.tensor([[1, 1, 0], [1, 1, 1]])
    norm = torch.nn.functional.normalize
    assert torch.allclose(pool_tokens(hidden, right_padded, "mean"), norm(torch.tensor([[2.0, 2.0], [7 / 3, 3.0]]), dim=1))
    assert torch.allclose(pool_tokens(hidden, right_padded, "cls"), norm(hidden[:, 0], dim=1))
    assert torch.allclose(pool_tokens(hidden, right_padded, "max"), norm(torch.tensor([[3.0, 4.0], [5.0, 6.0]]), dim=1))
    assert torch.allclose(pool_tokens(hidden, right_padded, "lasttoken"), norm(torch.tensor([[3.0, 4.0], [2.0, 6.0]]), dim=1))
    left_padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert torch.allclose(pool_tokens(hidden, left_padded, "lasttoken"), norm(hidden[:, 2], dim=1))
    with pytest.raises(HybridRecError, match="unknown pooling"):
        pool_tokens(hidden, right_padded, "median")
