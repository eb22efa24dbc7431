"""The package metadata, the conda environment and the notebooks agree with each other."""

import json
import re
import tomllib
from pathlib import Path

from lmklib.paths import REPO_ROOT

CONDA_NAMES = {"torch": "pytorch", "opencv-python-headless": "opencv"}  # PyPI name -> conda-forge name where they differ


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pyproject = {CONDA_NAMES.get(_name(d), _name(d)): re.sub(r"^[A-Za-z0-9_.\-\[\]]+", "", d)
                 for d in deps}
    conda, in_deps = {}, False
    for line in (REPO_ROOT / "environment.yml").read_text().splitlines():
        in_deps = in_deps or line.startswith("dependencies:")
        m = in_deps and re.match(r"^\s{2}- ([A-Za-z0-9_.\-]+)(.*)$", line)
        if m and m.group(1) not in ("python", "pip"):
            conda[m.group(1).lower()] = m.group(2).strip()
    assert conda == pyproject


def test_design_packages_are_declared():
    deps = {_name(d) for d in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
            ["project"]["dependencies"]}
    assert {"torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "jupyterlab",
            "papermill", "ipywidgets", "scikit-image", "pytest", "nbval"} <= deps


def test_notebooks_are_committed_without_outputs_and_have_parameters():
    for nb_path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") for c in code), f"{nb_path.name} has outputs"
        params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, f"{nb_path.name}: needs exactly one 'parameters' cell"
        src = "".join(params[0]["source"])
        for name in ("profile", "seed", "data_root"):
            assert re.search(rf"^{name} = ", src, re.M), f"{nb_path.name}: no `{name}` parameter"


def test_every_notebook_has_a_smoke_test():
    tests = "\n".join(p.read_text() for p in (REPO_ROOT / "tests").rglob("test_*.py"))
    for nb_path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        assert nb_path.stem in tests, f"no test runs notebooks/{nb_path.name}"
