"""The house rules the package keeps: imports run one way down the pipeline, modules and functions stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cityseg"
# the pipeline, lowest first: a module may import from its own layer or any layer below, never above
LAYERS = (
    ("errors", "defaults", "__version__"),
    # the classes: the Cityscapes table, ClassSet and the built-in sets, a user's table file, class_set()
    ("cityscapes", "class_sets", "user_classes", "classes", "class_tables"),
    ("files", "optim", "loss_registry", "loss_modules", "process_errors", "extras"),
    ("config", "run_folders", "images", "plots", "report", "metrics"),
    ("pairs", "synth", "label_formats", "layouts"),
    ("labels",),
    ("splits", "transforms"),
    ("datasets", "models", "devices"),
    ("inference", "backends", "engine", "outputs"),  # the engine (Segmenter) and what a prediction writes
    ("training", "evaluation", "transfer"),
    ("video", "onnx_graphs"),
    ("predict", "export", "serve"),  # predict sends photos to its loop and videos to cityseg.video
    ("demo",),
    ("cli",),
)
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# the tables that are data, not logic (the class table, the synth materials) may be longer
LONG_TABLES = {"cityscapes.py", "synth/materials.py"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def stage(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if parts[0] != "__init__" else "__version__"


def imported_stages(path: Path) -> set[str]:
    """The cityseg stages a module imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cityseg"):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("cityseg.")}
    return found - {stage(path)}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_pipeline(path):
    own = stage(path)
    assert own in LAYER, f"{own} has no place in LAYERS; add it where it belongs in the pipeline"
    upward = {name for name in imported_stages(path) if LAYER.get(name, len(LAYERS)) > LAYER[own]}
    assert not upward, f"{path.name} ({own}) imports {sorted(upward)}, which sit above it"


def test_only_the_command_line_and_the_demo_import_training():
    importers = {stage(path) for path in modules() if "training" in imported_stages(path)}
    assert importers <= {"cli", "demo"}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    name = str(path.relative_to(PACKAGE))
    source = path.read_text()
    if name not in LONG_TABLES:
        assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{name} has over {MAX_MODULE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: {', '.join(long)}"
