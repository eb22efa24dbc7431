"""The layering that ARCHITECTURE.md promises, checked on the source (AST, no imports run).

- nothing under lmklib/ imports lmklib.papers except the runner, the CLI and the widgets;
- lmklib/models/ holds architectures only: no DataLoader, no file reading, no loading or
  training code (the pure maths of lmklib.data, e.g. heatmaps, may be used);
- one face-tensor container (lmklib.data.faces.FaceCrops) and one box-from-points function
  (lmklib.data.geometry.boxes_from_points) in the whole package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lmklib.paths import PACKAGE_DIR

SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))
MAY_IMPORT_PAPERS = {"runner.py", "cli.py", "landmarker.py", "widgets"}


def _module(path: Path) -> str:
    return ".".join(("lmklib",) + path.relative_to(PACKAGE_DIR).with_suffix("").parts)


def _imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return out


def test_the_tree_has_the_layers():
    for sub in ("data", "models", "papers", "widgets"):
        assert (PACKAGE_DIR / sub / "__init__.py").is_file(), sub
    top = {p.stem for p in PACKAGE_DIR.glob("*.py")}
    assert top == {"__init__", "metrics", "profile", "train", "reports", "runner", "cli", "paths",
                   "plots", "landmarker", "export"}, f"paper code at the top level: {sorted(top)}"


@pytest.mark.parametrize("path", [p for p in SOURCES if "papers" not in p.parts],
                         ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_only_runner_cli_and_widgets_import_papers(path):
    rel = path.relative_to(PACKAGE_DIR)
    if rel.parts[0] in MAY_IMPORT_PAPERS:
        return
    bad = [m for m in _imports(path) if m.startswith("lmklib.papers")]
    assert not bad, f"{rel} imports {bad}: imports go down (papers -> models/data), never up"


@pytest.mark.parametrize("path", sorted((PACKAGE_DIR / "models").glob("*.py")),
                         ids=lambda p: p.name)
def test_models_are_architectures_only(path):
    imports = _imports(path)
    # pure maths of lmklib.data (geometry, heatmaps, schemes) is fine; loading and training not
    banned = [m for m in imports if m.startswith((
        "torch.utils.data", "lmklib.papers", "lmklib.train", "lmklib.reports", "lmklib.runner",
        "lmklib.data.formats", "lmklib.data.cache", "lmklib.data.faces", "lmklib.data.catalog",
        "lmklib.data.sample", "lmklib.data.synthetic", "lmklib.data.fixtures"))]
    assert not banned, f"models/{path.name} imports {banned}"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
             for n in ast.walk(tree) if isinstance(n, ast.Call)}
    reads = calls & {"open", "read_text", "read_bytes", "loadtxt", "imread", "load_image"}
    assert not reads, f"models/{path.name} reads files ({sorted(reads)})"


def _classes_with_images_field() -> list[str]:
    """Classes whose body annotates an ``images`` attribute: in-memory face containers."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(s, ast.AnnAssign) and getattr(s.target, "id", "") == "images"
                    for s in node.body):
                found.append(f"{_module(path)}.{node.name}")
    return found


def test_one_face_tensor_container():
    assert _classes_with_images_field() == ["lmklib.data.faces.FaceCrops"]


def test_one_box_from_points_function():
    defs = [f"{_module(p)}.{n.name}" for p in SOURCES for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.FunctionDef) and "box" in n.name and "points" in n.name
            and n.name.startswith(("box", "boxes"))]
    assert defs == ["lmklib.data.geometry.boxes_from_points"]
