"""notebooks/03_acn.ipynb (Chen et al. 2020, ACN) in the smoke profile: every table and figure is
produced and the recorded values are sane. Without the real data it runs on synthetic faces."""


import pytest


pytestmark = pytest.mark.slow
FIGURES = {"fig3_training_curves", "fig4_detections", "fig5_kernels", "fig6_feature_maps",
           "fig7_worst_cases"}
TABLES = {"table2", "table3_4", "speed", "speed_layers", "cross_dataset", "data"}
MODELS_SAVED = {"cnn_5pt", "acn_5pt", "acn1bit_5pt", "cpm_cnn_68pt", "cpm_xnor_68pt", "cpm_acn_68pt",
                "cpm_acn1bit_68pt"}


@pytest.fixture
def run(run_smoke_notebook):
    def _run(reports_root, data_root):
        # issue 13: the trained models are in the report, each with its card
        rep = run_smoke_notebook("03_acn", reports_root, data_root).expect(FIGURES, TABLES,
                                                                          MODELS_SAVED)
        return rep.results
    return _run


def check_common(r, key):
    s = "20-40-60-80"
    for mode in ("cnn", "acn", "acn1bit"):
        entry = r[f"nme_{key}_{mode}_{s}"]
        assert entry["value"] > 0 and entry["unit"] == "%" and entry["norm"] == "bbox_width"
        assert entry["paper"]["source"] == "Table 2"
    assert r[f"params_{s}_cnn"]["value"] == pytest.approx(0.08825)
    assert r["bitpacked_equals_emulation"]["value"] == 1.0
    assert r["speedup_acn1bit"]["value"] > 0 and r["speedup_acn1bit"]["paper"]["value"] == 58
    for mode in ("xnor", "acn", "acn1bit"):
        assert r[f"memory_saving_{mode}"]["value"] > 1
        # at the paper's CPM size the binary kernels dominate: close to Table 4's 32x
        assert 20 < r[f"memory_saving_paper_size_{mode}"]["value"] <= 32


@pytest.mark.realdata
def test_acn_notebook_on_real_data(run, tmp_path, real_data_root):
    r = run(tmp_path, real_data_root)
    real_cuhk = (real_data_root / "cuhk_5pt").is_dir()
    check_common(r, "lfw_webface" if real_cuhk else "synthetic")
    if real_cuhk:   # issue 16: the Table 2 numbers name the CUHK protocol they were computed on
        assert "clean protocol" in r["nme_lfw_webface_cnn_20-40-60-80"]["dataset"]
    if (real_data_root / "300w_subset").is_dir():
        assert r["nme_300w_common_acn"]["norm"] == "inter_ocular"
        assert r["nme_300w_common_acn"]["paper"]["value"] == 3.67
        assert r["cross_300w_acn_20-40-60-80"]["value"] > 0


def test_acn_notebook_without_real_data_uses_synthetic_faces(run, tmp_path):
    (tmp_path / "empty").mkdir()   # an empty data root: a missing one is an error
    r = run(tmp_path / "reports", tmp_path / "empty")
    # models trained on synthetic faces are saved too, with no detector calibration (and say so)
    from lmklib.landmarker import Landmarker

    lm = Landmarker.load(tmp_path / "reports" / "03_acn", name="acn_5pt")
    assert lm.calibration is None and "synthetic" in lm.card["dataset"].lower()
    check_common(r, "synthetic")
    assert "synthetic" in r["synthetic68_train_faces"]["dataset"]
    # issue 17: nothing computed on synthetic faces is labelled or keyed as a real dataset
    for key, entry in r.items():
        assert not key.startswith(("nme_lfw_webface_", "nme_300w_", "w300_")), key
        assert not any(w in entry["dataset"] for w in ("LFW", "Webface", "CUHK", "300-W")), key
        if entry["paper"] is not None and entry["dataset"]:
            assert entry["data"] in ("synthetic", "fixture", ""), key
