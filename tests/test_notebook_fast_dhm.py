"""notebooks/02_fast_dhm.ipynb (Sun et al., Fast DHM) in the smoke profile: every table and figure
is produced and the recorded values are sane. Without the real data it runs on synthetic faces."""

import pytest

pytestmark = pytest.mark.slow
FIGURES = {"fig2a_dhm", "training_curves", "fig5a_ablation", "fig5_ced", "fig7_fig8_sweeps",
           "fig3_steps", "fig6_examples", "fig9_worst", "widget_static"}
TABLES = {"data", "table1", "schedule", "fig5_summary", "sweeps", "cross_validation"}
KEYS = ("fast_dhm_nme_mean", "fast_dhm_x2_nme_mean", "dhm_nme_mean", "mean_shape_nme_mean",
        "fast_dhm_cv_nme_mean")


@pytest.fixture
def run(run_smoke_notebook):
    def _run(reports_root, data_root):
        return run_smoke_notebook("02_fast_dhm", reports_root, data_root).expect(
            FIGURES, TABLES, {"fast_dhm", "fast_dhm_x2"})
    return _run


@pytest.mark.realdata
def test_fast_dhm_notebook_on_real_data(run, tmp_path, real_data_root):
    rep = run(tmp_path, real_data_root)
    r = rep.results
    if not (real_data_root / "aflw2000_3d").is_dir():
        pytest.skip("AFLW2000-3D not in the data root")
    assert "profiling_examples" in rep.figures
    for key in KEYS + ("fast_dhm_nme_0_30", "fast_dhm_nme_30_60", "fast_dhm_nme_60_90",
                       "fast_dhm_reannotated_nme_mean"):
        assert r[key]["value"] > 0 and r[key]["unit"] == "%", key
        assert "AFLW2000-3D" in r[key]["dataset"]
    assert r["fast_dhm_nme_mean"]["paper"]["value"] == 4.01
    assert r["fast_dhm_nme_60_90"]["paper"]["source"] == "Table I"
    assert r["fast_dhm_params"]["value"] < 1e6 and r["fast_dhm_cpu_fps"]["paper"]["value"] == 81
    assert "cross-validation" in r["fast_dhm_cv_nme_mean"]["dataset"]


def test_fast_dhm_notebook_without_real_data_uses_synthetic_faces(run, tmp_path):
    (tmp_path / "empty").mkdir()
    rep = run(tmp_path / "reports", tmp_path / "empty")
    r = rep.results
    for key in KEYS:
        assert f"synthetic_{key}" in r and key not in r
        assert "synthetic" in r[f"synthetic_{key}"]["dataset"]
        assert r[f"synthetic_{key}"]["paper"] is None
