"""notebooks/00_quickstart.ipynb in the smoke profile: on real data when present, and on the
package's own fixtures when the data root is empty."""

import pytest

pytestmark = pytest.mark.slow


def test_quickstart_without_real_data_uses_fixtures(tmp_path, run_smoke_notebook):
    (tmp_path / "empty").mkdir()   # an empty data root: a missing one is an error
    rep = run_smoke_notebook("00_quickstart", tmp_path / "reports", tmp_path / "empty")
    keys = set(rep.results)
    assert "baseline_nme_cuhk_5_point_fixture" in keys and "baseline_nme_300_w_fixture" in keys
    cnn = rep.results["synthetic_nme_cnn"]["value"]
    mean = rep.results["synthetic_nme_mean_shape"]["value"]
    assert 0 < cnn and 0 < mean
    assert rep.results["synthetic_improvement_over_mean_shape"]["value"] == pytest.approx(mean / cnn)
    assert {"baseline_ced", "synthetic_faces", "synthetic_cnn"} <= rep.figures


@pytest.mark.realdata
def test_quickstart_on_real_data(tmp_path, real_data_root, run_smoke_notebook):
    rep = run_smoke_notebook("00_quickstart", tmp_path, real_data_root)
    if (real_data_root / "cuhk_5pt").is_dir():
        cuhk = rep.results["baseline_nme_cuhk_5_point_lfw_webface_clean_protocol"]
        assert "clean protocol" in cuhk["dataset"]
        # the mean shape in the face box is a weak but sane predictor: 3-15 % of the box width
        assert 0.03 < cuhk["value"] < 0.15 and cuhk["norm"] == "bbox_width"
    assert any(f.startswith("faces_cuhk") for f in rep.figures)
