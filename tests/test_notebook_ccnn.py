"""The CCNN notebook runs end to end in the smoke profile and records every number it promises."""

from __future__ import annotations

import pytest

EXPECTED = ["nme_stage1", "nme_stage2", "nme_stage3", "nme_stage1_windows_minus",
            "nme_stage1_windows_plus", "nme_stage1_shake_minus", "nme_stage1_shake_plus",
            "params_total", "size_mb", "speed_ms"]


@pytest.mark.slow
def test_ccnn_notebook_smoke(tmp_path, run_smoke_notebook):
    rep = run_smoke_notebook("01_ccnn", tmp_path)
    results = rep.results
    for key in EXPECTED:
        assert key in results, key
        assert results[key]["paper"] is not None and results[key]["paper"]["source"]
    assert results["params_total"]["value"] == 643_920
    assert results["size_mb"]["value"] == pytest.approx(2.456, abs=1e-3)
    for key in ("nme_stage1", "nme_stage2", "nme_stage3"):
        assert 0 < results[key]["value"] < 100
    assert {"fig4_stage_errors", "fig5_windows", "fig6_shake", "fig7_comparison",
            "fig8_examples", "ced", "widget_stage2"} <= rep.figures
    assert {"table2_parameters", "table3_size_speed", "summary"} <= rep.tables
    assert rep.report["models"] == {"ccnn": "CCNN cascade (3 stages, 23 nets)"}
    assert (rep.folder / "models" / "ccnn.pt").is_file()


@pytest.mark.slow
@pytest.mark.realdata
def test_ccnn_notebook_smoke_real_data(tmp_path, cuhk_root, real_data_root, run_smoke_notebook):
    rep = run_smoke_notebook("01_ccnn", tmp_path, real_data_root)
    report = rep.report
    assert report["params"]["real_data"] is True
    results = report["results"]
    assert results["nme_stage3"]["dataset"].startswith("CUHK")
    assert "clean protocol" in results["nme_stage3"]["dataset"]   # issue 16
    if (real_data_root / "300w_subset").is_dir():
        assert any(k.startswith("xdata_w300") for k in results)
    # issue 13: the saved cascade, run by Landmarker on a test image with its box, gives the
    # notebook's own prediction for that face, bit for bit, inside the crop (box + margin)
    import numpy as np
    import pandas as pd

    from lmklib.landmarker import Landmarker

    lm = Landmarker.load(rep.folder)
    assert lm.card["detector"]["faces_matched"] > 0.5 * lm.card["detector"]["faces_tried"]
    table = pd.read_csv(rep.folder / "tables" / "test_predictions.csv")
    for _, row in table.head(3).iterrows():
        box = row[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float)
        got = lm.predict(real_data_root / row["image"], [box])[0]
        assert np.array_equal(got, row[[f"{a}{k}" for k in range(5) for a in "xy"]]
                              .to_numpy(float).reshape(5, 2))
        side = box[2:] - box[:2]
        assert ((got > box[:2] - 0.25 * side) & (got < box[2:] + 0.25 * side)).all()
