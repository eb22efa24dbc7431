"""notebooks/06_peers.ipynb in the smoke profile: our saved models and whichever peers are
installed, on real faces or (without data) on drawn fixture faces."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lmklib import reports
from lmklib.papers import ccnn_duan2021 as C
from lmklib.papers import peers

pytestmark = pytest.mark.slow


@pytest.fixture
def reports_with_ccnn(tmp_path, monkeypatch):
    """A reports root holding an (untrained, seeded) CCNN report, as notebook 01 leaves it."""
    from lmklib.data import fixtures

    root = tmp_path / "reports"
    fixtures.write_cuhk_fixture(tmp_path / "fx" / "cuhk_5pt", n_train=3, n_test=2)
    faces = C.load_cuhk(tmp_path / "fx" / "cuhk_5pt", "train", None, 40, 0.25, use_cache=False)
    torch.manual_seed(0)
    model = C.CCNN(C.config_from_profile(C.get_profile("smoke"))).eval()
    monkeypatch.setenv("LMK_REPORT_DIR", str(root / "01_ccnn"))
    reports.init("01_ccnn", profile="smoke", seed=0)
    reports.save_model("ccnn", model.state_dict(), C.model_card(model, faces, 1.0, "fixture"))
    monkeypatch.delenv("LMK_REPORT_DIR")
    return root


def test_peers_notebook_without_data_compares_what_is_there(tmp_path, reports_with_ccnn,
                                                             run_smoke_notebook):
    (tmp_path / "empty").mkdir()
    rep = run_smoke_notebook("06_peers", reports_with_ccnn, tmp_path / "empty")
    table = pd.read_csv(rep.folder / "tables" / "comparison.csv")
    ours = table[table["method"] == "ours: 01_ccnn ccnn"]
    assert len(ours) == 1 and ours["set"].iloc[0].startswith("fixture CUHK")
    assert ours["ms/face"].iloc[0] > 0
    assert rep.results["nme_cuhk_ours_01_ccnn_ccnn"]["data"] == "fixture"
    usable, missing = peers.available_peers()
    assert set(table["method"]) - {"ours: 01_ccnn ccnn"} <= {p.name for p in usable}
    executed = (rep.folder / "06_peers.ipynb").read_text()
    for name in missing:          # every missing peer is named, with how to install it
        assert f"not available: {name}" in executed
    assert "not available: ours: 03_acn cnn_5pt" in executed


@pytest.mark.realdata
def test_peers_notebook_on_real_faces(tmp_path, reports_with_ccnn, cuhk_root, real_data_root,
                                      run_smoke_notebook):
    pytest.importorskip("dlib")
    rep = run_smoke_notebook("06_peers", reports_with_ccnn, real_data_root)
    table = pd.read_csv(rep.folder / "tables" / "comparison.csv")
    cuhk = table[table["set"].str.startswith("CUHK")]
    dlib68 = cuhk[cuhk["method"] == "dlib ERT 68"].iloc[0]
    assert dlib68["NME %"] < 10 and dlib68["points scored"].startswith("5, derived from 68")
    dlib5 = cuhk[cuhk["method"] == "dlib ERT 5"].iloc[0]
    assert dlib5["points scored"].startswith("2 eye centres")   # marked, not scored as CUHK's 5
    assert (table["ms/face"] > 0).all()
