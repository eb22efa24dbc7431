"""notebooks/04_sd_hrnet.ipynb (Lin et al., SD-HRNet) in the smoke profile: every table and figure
is produced and the recorded values carry the paper's beside them. Without the real data it runs
on synthetic faces and says so in every key."""

import pytest

pytestmark = pytest.mark.slow
FIGURES = {"search_curves", "fig2_architecture", "fig1_nme_flops", "fig6_thresholds", "fig4_fps",
           "fig5_examples", "ced", "occluded_examples", "widget_static"}
TABLES = {"table1_paper_widths", "table2_300w", "table2_runs", "table6_kd_ablation",
          "occluded_300w", "tables3to5_availability", "fig6_thresholds"}
NME_KEYS = ("sd_hrnet_nme_common", "s_hrnet_nme_common", "hrsupernet_nme_common",
            "mean_shape_nme_common")


@pytest.fixture
def run(run_smoke_notebook):
    def _run(reports_root, data_root):
        return run_smoke_notebook("04_sd_hrnet", reports_root, data_root).expect(
            FIGURES, TABLES, {"sd_hrnet", "s_hrnet"})
    return _run


@pytest.mark.realdata
def test_sd_hrnet_notebook_on_real_data(run, tmp_path, real_data_root):
    rep = run(tmp_path, real_data_root)
    r = rep.results
    if not (real_data_root / "300w_subset").is_dir():
        pytest.skip("300-W not in the data root")
    for key in NME_KEYS:
        assert r[key]["value"] > 0 and r[key]["unit"] == "%", key
        assert "300-W common" in r[key]["dataset"]
    assert r["sd_hrnet_nme_common"]["paper"]["value"] == 2.93
    assert r["s_hrnet_nme_common"]["paper"]["source"] == "Table 2"
    assert r["hrnetv2_w18_params"]["value"] == pytest.approx(9.654398)
    assert r["hrnetv2_w18_params"]["paper"]["value"] == 9.3
    assert r["hrsupernet_params"]["value"] == pytest.approx(3.527762)
    assert r["sd_hrnet_params"]["paper"]["value"] == 0.98 and r["sd_hrnet_flops"]["value"] > 0


def test_sd_hrnet_notebook_without_real_data_uses_synthetic_faces(run, tmp_path):
    (tmp_path / "empty").mkdir()
    rep = run(tmp_path / "reports", tmp_path / "empty")
    r = rep.results
    for key in NME_KEYS:
        assert f"synthetic_{key}" in r and key not in r
        assert "synthetic" in r[f"synthetic_{key}"]["dataset"]
        assert r[f"synthetic_{key}"]["paper"] is None
