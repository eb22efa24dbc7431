"""notebooks/00_quickstart.ipynb in the smoke profile: on real data when present, and on the
package's own fixtures when the data root is empty."""

import json

import pytest

from lmklib import runner

pytestmark = pytest.mark.slow
NOTEBOOK = runner.NOTEBOOKS_DIR / "00_quickstart.ipynb"


def run(tmp_path, data_root):
    result = runner.run_notebook(NOTEBOOK, profile="smoke", seed=0, data_root=data_root,
                                 reports_root=tmp_path, progress=False)
    assert result.ok, result.error
    return json.loads((tmp_path / "00_quickstart" / "results.json").read_text())


def test_quickstart_without_real_data_uses_fixtures(tmp_path):
    res = run(tmp_path / "reports", tmp_path / "empty")
    keys = set(res["results"])
    assert "baseline_nme_cuhk_5_point_fixture" in keys and "baseline_nme_300_w_fixture" in keys
    cnn = res["results"]["synthetic_nme_cnn"]["value"]
    mean = res["results"]["synthetic_nme_mean_shape"]["value"]
    assert 0 < cnn and 0 < mean
    assert res["results"]["synthetic_improvement_over_mean_shape"]["value"] == pytest.approx(mean / cnn)
    figures = {p.stem for p in (tmp_path / "reports" / "00_quickstart" / "figures").glob("*.png")}
    assert {"baseline_ced", "synthetic_faces", "synthetic_cnn"} <= figures


@pytest.mark.realdata
def test_quickstart_on_real_data(tmp_path, real_data_root):
    res = run(tmp_path, real_data_root)
    r = res["results"]
    if (real_data_root / "cuhk_5pt").is_dir():
        cuhk = r["baseline_nme_cuhk_5_point_lfw_webface"]
        # the mean shape in the face box is a weak but sane predictor: 3-15 % of the box width
        assert 0.03 < cuhk["value"] < 0.15 and cuhk["norm"] == "bbox_width"
    figures = {p.stem for p in (tmp_path / "00_quickstart" / "figures").glob("*.png")}
    assert any(f.startswith("faces_cuhk") for f in figures)
