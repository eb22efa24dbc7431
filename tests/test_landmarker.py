"""Models out of a report: save -> load round trips, Landmarker's inputs and errors, the detector
and its calibration, and `lmk predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lmklib import cli, reports
from lmklib.data import detect, fixtures
from lmklib.data.geometry import BoxGeometry
from lmklib.landmarker import Landmarker, NoFaceError
from lmklib.models.ccnn import CCNN
from lmklib.papers import ccnn_duan2021 as C


@pytest.fixture
def ccnn_report(tmp_path, monkeypatch):
    """A report folder holding an (untrained, seeded) CCNN saved from fixture CUHK faces, and
    those faces' test crops."""
    root = tmp_path / "cuhk_5pt"
    fixtures.write_cuhk_fixture(root, n_train=4, n_test=3)
    test = C.load_cuhk(root, "test", None, 40, 0.25, use_cache=False)
    torch.manual_seed(0)
    model = CCNN(C.config_from_profile(C.get_profile("smoke"))).eval()
    report = tmp_path / "reports" / "01_ccnn"
    monkeypatch.setenv("LMK_REPORT_DIR", str(report))
    reports.init("01_ccnn", profile="smoke", seed=0)
    reports.save_model("ccnn", model.state_dict(), C.model_card(model, test, 1.0, "fixture"))
    return report, model, test


def test_save_load_round_trip_gives_the_notebook_prediction_bit_for_bit(ccnn_report):
    report, model, test = ccnn_report
    lm = Landmarker.load(report)
    want = C.to_pixels(test, C.predict(model, test, batch=1)[-1])
    for i, path in enumerate(test.paths):
        box = test.boxes[i].numpy()
        got = lm.predict(path, box[None])
        assert got.shape == (1, 5, 2) and got.dtype == np.float64
        assert np.array_equal(got[0], want[i])
        # untrained, each net answers its window's centre: inside the given box, in image pixels
        assert ((got[0] > box[:2]) & (got[0] < box[2:])).all()


def test_the_card_says_what_the_model_is(ccnn_report):
    report, model, test = ccnn_report
    card = json.loads((report / "models" / "ccnn.json").read_text())
    assert card["format"] == reports.MODEL_FORMAT and card["notebook"] == "01_ccnn"
    assert card["scheme"] == "cuhk5" and card["crop"]["size"] == 40 and card["crop"]["scale"] == 1.5
    assert card["profile"] == "smoke" and card["seed"] == 0 and "commit" in card
    assert card["weights"] == "ccnn.pt" and len(card["sha256"]) == 64
    assert card["detector"] is None            # fixture faces are drawn, not detectable
    state = torch.load(report / "models" / "ccnn.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()


def test_image_kinds_give_the_same_points(ccnn_report):
    report, _, test = ccnn_report
    lm = Landmarker.load(report)
    box = test.boxes[:1].numpy()
    ref = lm.predict(test.paths[0], box)
    pil = Image.open(test.paths[0])
    arr = np.array(pil.convert("RGB"))
    for image in (pil, arr, torch.from_numpy(arr).permute(2, 0, 1)):
        assert np.array_equal(lm.predict(image, box), ref)
    two = lm.predict(arr, np.concatenate([box, box]))   # batched over faces
    assert two.shape == (2, 5, 2) and np.allclose(two[0], ref[0], atol=1e-3)


def test_errors_name_what_is_wrong(ccnn_report, tmp_path):
    report, _, test = ccnn_report
    with pytest.raises(FileNotFoundError, match="no report 'nope' under .*lmk reproduce nope"):
        Landmarker.load("nope", reports_root=report.parent)
    (tmp_path / "reports" / "00_empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        Landmarker.load("00_empty", reports_root=tmp_path / "reports")
    lm = Landmarker.load("01_ccnn", reports_root=report.parent)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.jpg: cannot decode image"):
        lm.predict(bad, [[0, 0, 10, 10]])
    with pytest.raises(FileNotFoundError, match="image not found"):
        lm.predict(tmp_path / "missing.jpg", [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="cannot read this image"):
        lm.predict(np.zeros((8, 8), np.float32), [[0, 0, 4, 4]])
    with pytest.raises(ValueError, match="boxes must be finite"):
        lm.predict(test.paths[0], [[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="no detector calibration"):
        lm.predict(test.paths[0])


def test_no_face_and_tampered_weights(ccnn_report):
    report, _, _ = ccnn_report
    card_path = report / "models" / "ccnn.json"
    card = json.loads(card_path.read_text())
    card["detector"] = detect.DetectorCalibration(BoxGeometry(0, 0, 1), 10, 10).to_dict()
    card_path.write_text(json.dumps(card))
    lm = Landmarker.load(report)
    with pytest.raises(NoFaceError, match="<array>: no face found"):
        lm.predict(np.full((120, 120, 3), 128, np.uint8))
    weights = report / "models" / "ccnn.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="contents differ from what ccnn.json recorded"):
        Landmarker.load(report)


def test_detector_finds_the_one_face_of_a_real_photo():
    import skimage.data

    image = skimage.data.astronaut()            # a real photograph inside scikit-image
    boxes = detect.detect_faces(image)
    assert boxes.shape == (1, 4)
    x0, y0, x1, y1 = boxes[0]
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 190 and 0.8 < (x1 - x0) / (y1 - y0) < 1.25


def test_calibration_recovers_a_known_box_placement(monkeypatch):
    found = np.array([[100.0, 50.0, 200.0, 150.0]])
    monkeypatch.setattr(detect, "detect_faces", lambda image: found)
    # the training box: 80 % of the detection's side, 10 px lower, 5 px left
    target = np.array([[115.0, 70.0, 195.0, 150.0]])
    cal = detect.calibrate([np.zeros((1, 1), np.uint8)] * 12, np.repeat(target, 12, 0))
    assert cal.faces_matched == 12
    assert cal.geometry.ratio == pytest.approx(0.8)
    assert (cal.geometry.dx, cal.geometry.dy) == pytest.approx((0.05, 0.1))
    assert np.allclose(detect.adapt(found, cal), target)
    assert detect.calibrate([np.zeros((1, 1), np.uint8)] * 3, np.repeat(target, 3, 0)) is None


def test_iou_by_hand():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]])
    assert np.allclose(detect.iou(a, b), [[1 / 7, 0.0]])


def test_predict_cli_writes_points_and_drawing(ccnn_report, tmp_path, capsys):
    report, model, test = ccnn_report
    box = ",".join(repr(float(v)) for v in test.boxes[0].tolist())
    out = tmp_path / "out"
    second = tmp_path / ("copy" + test.paths[0][-4:])
    second.write_bytes(open(test.paths[0], "rb").read())
    code = cli.main(["predict", test.paths[0], str(second), "--model", str(report), "--box", box,
                     "--out", str(out), "--no-progress"])
    assert code == 0
    import pandas as pd

    rows = pd.read_csv(out / (test.paths[0].rsplit("/", 1)[-1].rsplit(".", 1)[0] + ".csv"))
    want = C.to_pixels(test, C.predict(model, test, batch=1)[-1])[0]
    got = rows.filter(regex="_x$|_y$").to_numpy().reshape(5, 2)
    assert np.array_equal(got, want)
    assert list(rows.columns[:5]) == ["face", "x0", "y0", "x1", "y1"]
    assert len(list(out.glob("*.png"))) == 2
    assert cli.main(["predict", test.paths[0], str(second), test.paths[0], "--model", str(report),
                     "--box", box, "--out", str(out)]) == 2
    assert "several images are called" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["predict", test.paths[0], "--model", str(report), "--box", "1,2,3"])
    assert "expected x0,y0,x1,y1" in capsys.readouterr().err
