"""Imports point one way, from the core up to the CLI (see STYLE.md, "Two layers, one direction").

Every module of hybridrec/, data_builders/, training/ and evaluation/ is parsed (nothing is
imported) and placed in a layer by :data:`LAYER_RULES`; an import anywhere in a module (top level,
inside a function, under ``TYPE_CHECKING``, or ``importlib.import_module`` of a constant name) must
not point to a higher layer, and a module no rule places fails the test, so that a new module is
placed on purpose.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hybridrec", "data_builders", "training", "evaluation")

CORE, CONTENT_AND_MODELS, TRAINING, ESTIMATOR, EVALUATION, CLI = range(6)
LAYER_NAMES = {CORE: "core", CONTENT_AND_MODELS: "graph/features/models/data_builders", TRAINING: "training",
               ESTIMATOR: "estimator", EVALUATION: "evaluation", CLI: "CLI"}

#: ``(layer, patterns)`` in order; a module takes the layer of the first rule with a pattern
#: (``fnmatch`` over the dotted name; a package is its ``__init__``) that matches it.
LAYER_RULES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (CORE, ("hybridrec.errors", "hybridrec.tables", "hybridrec.load_report", "hybridrec.id_map", "hybridrec.atomic",
            "hybridrec.topk", "hybridrec.topk_table", "hybridrec.device", "hybridrec.toml_config",
            "hybridrec.typed_values", "evaluation.metrics")),
    (CLI, ("hybridrec.cli", "hybridrec.cli.*")),
    (EVALUATION, ("evaluation", "evaluation.*")),
    # The package itself is the estimator's facade (its lazy ``HybridRecommender``).
    (ESTIMATOR, ("hybridrec", "hybridrec.recommender", "hybridrec.recommender_*", "hybridrec.model_loading",
                 "hybridrec.similarity_export", "hybridrec.ray_engine", "hybridrec.tuning", "hybridrec.serving")),
    (TRAINING, ("training", "training.*")),
    (CONTENT_AND_MODELS, ("hybridrec.graph", "hybridrec.features", "hybridrec.features.*", "hybridrec.models",
                          "hybridrec.models.*", "hybridrec.item_content", "hybridrec.ann_index",
                          "data_builders", "data_builders.*")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module in :data:`PACKAGES`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


MODULES = project_modules()


def layer_of(module: str) -> int | None:
    for layer, patterns in LAYER_RULES:
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return layer
    return None


def _target(name: str) -> str | None:
    """The project module an imported dotted ``name`` lives in (None outside the project)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def imports_of(module: str) -> list[tuple[int, str]]:
    """``(line, project module)`` of every import in ``module``, wherever it stands."""
    path = MODULES[module]
    return imports_in(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """:func:`imports_of` for the text ``source`` of ``module``."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from package import submodule`` imports the submodule.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names = [node.args[0].value]
        for name in names:
            target = _target(name)
            if target is not None and target != module:
                found.append((node.lineno, target))
    return found


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(REPO_ROOT)}:{line}"


def test_every_module_has_a_layer():
    unplaced = sorted(module for module in MODULES if layer_of(module) is None)
    assert not unplaced, f"modules no rule of LAYER_RULES places (add them to a layer): {unplaced}"


def test_imports_never_point_to_a_higher_layer():
    upward = []
    for module in MODULES:
        layer = layer_of(module)
        if layer is None:
            continue
        for line, target in imports_of(module):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer > layer:
                upward.append(f"{_where(module, line)}: {module} ({LAYER_NAMES[layer]}) imports {target} "
                              f"({LAYER_NAMES[target_layer]})")
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_the_core_never_imports_data_builders():
    found = [f"{_where(module, line)}: {module} imports {target}" for module in MODULES if layer_of(module) == CORE
             for line, target in imports_of(module) if target.split(".")[0] == "data_builders"]
    assert not found, "\n".join(found)


def test_only_the_cli_imports_the_evaluation_protocol_splitters_baselines_and_reports():
    found = [f"{_where(module, line)}: {module} imports {target}"
             for module in MODULES if module.split(".")[0] == "hybridrec" and layer_of(module) != CLI
             for line, target in imports_of(module)
             if target.split(".")[0] == "evaluation" and layer_of(target) == EVALUATION]
    assert not found, "\n".join(found)


def test_nothing_imports_the_cli():
    found = [f"{_where(module, line)}: {module} imports {target}" for module in MODULES if layer_of(module) != CLI
             for line, target in imports_of(module) if layer_of(target) == CLI]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("module", "layer"), [
    ("hybridrec.errors", CORE), ("evaluation.metrics", CORE), ("hybridrec.features.new_encoder", CONTENT_AND_MODELS),
    ("hybridrec.models.cf_head", CONTENT_AND_MODELS), ("data_builders.new_source", CONTENT_AND_MODELS),
    ("training.new_loop", TRAINING), ("hybridrec.recommender_new", ESTIMATOR), ("evaluation.new_baseline", EVALUATION),
    ("hybridrec.cli.new_command", CLI), ("hybridrec.unplaced_module", None),
])
def test_the_layer_rules_place_new_modules_by_their_folder(module, layer):
    assert layer_of(module) == layer


def test_the_parser_sees_function_level_relative_and_importlib_imports():
    source = ("from . import image_paths\nfrom ..models import cf_head\nimport importlib\n"
              "def f():\n    from evaluation import protocol\n    importlib.import_module('training.trainer')\n")
    targets = {target for _, target in imports_in(source, "hybridrec.features.layering_probe")}
    assert targets == {"hybridrec.features.image_paths", "hybridrec.models.cf_head", "evaluation.protocol",
                       "training.trainer"}
