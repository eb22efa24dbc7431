"""scripts/compare_results.py: the check that a refactor left every headline number alone."""

import importlib.util
import json

import pytest

from lmklib.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("compare_results",
                                              REPO_ROOT / "scripts" / "compare_results.py")
cr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cr)


def _report(root, name, results):
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps({"results": results}))


def _entry(value, dataset="LFW+Webface", unit="%"):
    return {"value": value, "unit": unit, "dataset": dataset, "norm": "bbox_width"}


@pytest.fixture
def old(tmp_path):
    _report(tmp_path / "old", "01_ccnn", {"nme": _entry(4.94), "train_seconds": _entry(450, unit="s"),
                                          "nan": _entry(float("nan"))})
    return tmp_path / "old"


def test_identical_reports_pass_and_timings_are_skipped(old, tmp_path, capsys):
    _report(tmp_path / "new", "01_ccnn", {"nme": _entry(4.94), "train_seconds": _entry(9, unit="s"),
                                          "nan": _entry(float("nan"))})
    assert cr.compare(old, tmp_path / "new") == []
    assert cr.main([str(old), str(tmp_path / "new")]) == 0
    assert "1 notebooks compared: identical" in capsys.readouterr().out


def test_a_changed_value_dataset_or_missing_key_fails(old, tmp_path):
    _report(tmp_path / "new", "01_ccnn", {"nme": _entry(4.9400001, dataset="synthetic"),
                                          "train_seconds": _entry(9, unit="s")})
    problems = cr.compare(old, tmp_path / "new")
    assert "01_ccnn.nme.value: 4.94 -> 4.9400001" in problems
    assert "01_ccnn.nme.dataset: 'LFW+Webface' -> 'synthetic'" in problems
    assert "01_ccnn.nan: only in old" in problems
    assert cr.main([str(old), str(tmp_path / "new")]) == 1


def test_a_renamed_key_is_compared_under_its_new_name(old, tmp_path):
    _report(tmp_path / "new", "01_ccnn", {"nme_renamed": _entry(4.94), "train_seconds": _entry(1, unit="s"),
                                          "nan": _entry(float("nan"))})
    assert cr.compare(old, tmp_path / "new", {"01_ccnn.nme": "nme_renamed"}) == []
    assert cr.compare(old, tmp_path / "new", {"01_ccnn.nme": "other"}) != []


def test_a_notebook_missing_from_the_new_side_is_reported(old, tmp_path):
    (tmp_path / "new").mkdir()
    assert cr.compare(old, tmp_path / "new") == [f"01_ccnn: missing in {tmp_path / 'new'}"]
