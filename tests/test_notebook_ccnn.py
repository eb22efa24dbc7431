"""The CCNN notebook runs end to end in the smoke profile and records every number it promises."""

from __future__ import annotations

import json

import pytest

from lmklib.paths import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "01_ccnn.ipynb"
EXPECTED = ["nme_stage1", "nme_stage2", "nme_stage3", "nme_stage1_windows_minus",
            "nme_stage1_windows_plus", "nme_stage1_shake_minus", "nme_stage1_shake_plus",
            "params_total", "size_mb", "speed_ms"]


@pytest.mark.slow
def test_ccnn_notebook_smoke(tmp_path):
    from lmklib.runner import run_notebook

    result = run_notebook(NOTEBOOK, reports_root=tmp_path, profile="smoke", progress=False)
    assert result.ok, result.error
    results = json.loads((tmp_path / "01_ccnn" / "results.json").read_text())["results"]
    for key in EXPECTED:
        assert key in results, key
        assert results[key]["paper"] is not None and results[key]["paper"]["source"]
    assert results["params_total"]["value"] == 643_920
    assert results["size_mb"]["value"] == pytest.approx(2.456, abs=1e-3)
    for key in ("nme_stage1", "nme_stage2", "nme_stage3"):
        assert 0 < results[key]["value"] < 100
    figures = {p.stem for p in (tmp_path / "01_ccnn" / "figures").glob("*.png")}
    assert {"fig4_stage_errors", "fig5_windows", "fig6_shake", "fig7_comparison",
            "fig8_examples", "ced", "widget_stage2"} <= figures
    tables = {p.stem for p in (tmp_path / "01_ccnn" / "tables").glob("*.csv")}
    assert {"table2_parameters", "table3_size_speed", "summary"} <= tables


@pytest.mark.slow
@pytest.mark.realdata
def test_ccnn_notebook_smoke_real_data(tmp_path, cuhk_root, real_data_root):
    from lmklib.runner import run_notebook

    result = run_notebook(NOTEBOOK, reports_root=tmp_path, profile="smoke",
                          data_root=real_data_root, progress=False)
    assert result.ok, result.error
    report = json.loads((tmp_path / "01_ccnn" / "results.json").read_text())
    assert report["params"]["real_data"] is True
    results = report["results"]
    assert results["nme_stage3"]["dataset"].startswith("CUHK")
    if (real_data_root / "300w_subset").is_dir():
        assert any(k.startswith("xdata_w300") for k in results)
