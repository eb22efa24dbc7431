"""lmklib.papers.kaggle_keypoints_he (notebook 05, He & Yang's Kaggle keypoints report): the
profiles and ablation arms, flips, training with missing keypoints, and the data recipe (Kaggle
CSV, the 300-W -> Kaggle-format build, hidden keypoints) into FaceCrops."""

import numpy as np
import pytest
import torch

from lmklib.data.faces import FaceCrops
from lmklib.data.schemes import KAGGLE15
from lmklib.models.kaggle import MODELS
from lmklib.papers.kaggle_keypoints_he import data as kd
from lmklib.papers.kaggle_keypoints_he import experiments as kx


def test_build_is_seeded_and_checks_the_name():
    a, b = kx.build("cnn_tiny", seed=3), kx.build("cnn_tiny", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        kx.build("vgg")


def test_profiles_define_every_size():
    keys = set(kx.PROFILES["quick"])
    for name in ("smoke", "quick", "paper"):
        assert set(kx.get_profile(name)) == keys
        for field in ("mlp", "cnn", "ablation_cnn", "refiner"):
            assert kx.get_profile(name)[field] in MODELS
    with pytest.raises(ValueError, match="profile must be one of"):
        kx.get_profile("huge")


def test_ablation_arms_cover_the_four_studies():
    arms = kx.ablation_arms(kx.get_profile("quick"), seed=3)
    studies = {a["study"] for a in arms}
    assert studies == {"normalisation", "activation", "init", "dropout"}
    init = [a for a in arms if a["study"] == "init"]
    assert len(init) == 2 * kx.get_profile("quick")["init_seeds"]
    assert {a["config"]["seed"] for a in init} == {3, 4, 5}
    assert all(a["config"]["init"] == "xavier" for a in arms if a["study"] == "activation")


# --------------------------------------------------------------------------- data
def _tiny_data(n=12, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, 96, 96), dtype=np.uint8)
    points = rng.uniform(20, 76, (n, 15, 2)).astype(np.float32)
    if missing:
        points[::2, 4:] = np.nan
    faces = kd._faces(images, points, [f"tiny:{i}" for i in range(n)], "tiny")
    return kd.KeypointData(faces, faces.subset(range(4)), faces.subset(range(4, 8)), "synthetic",
                           "")


def test_rows_are_their_own_frame():
    faces = _tiny_data(n=8).train
    assert isinstance(faces, FaceCrops) and faces.scheme == "kaggle15"
    assert faces.images.dtype == torch.uint8 and faces.images.shape == (8, 1, 96, 96)
    assert faces.points.dtype == torch.float32
    assert torch.equal(faces.affines, torch.eye(3, dtype=torch.float64)[:2].expand(8, 2, 3))
    assert faces.boxes.tolist() == [[-0.5, -0.5, 95.5, 95.5]] * 8
    assert torch.equal(torch.isnan(faces.gt), torch.isnan(faces.points))
    assert torch.equal(faces.gt.float().nan_to_num(), faces.points.nan_to_num())
    assert faces.mask[0].tolist() == [True] * 4 + [False] * 11 and faces.mask[1].all()
    assert kd.complete_rows(faces) == 4
    np.testing.assert_array_equal(faces.to_image(faces.points), faces.gt.numpy())


@pytest.mark.slow
def test_training_with_missing_keypoints_stays_finite():
    data = _tiny_data()
    hist = kx.train_regressor(kx.build("cnn_tiny"), data, epochs=2, batch_size=4)
    assert list(hist["epoch"]) == [0, 1]
    assert np.isfinite(hist[["train_rmse", "val_rmse"]].to_numpy()).all()
    r = kx.run_config(data, "mlp_tiny", epochs=1, batch_size=4)
    assert np.isfinite(r["test_rmse"]) and set(r["per_keypoint"]) == set(KAGGLE15.names)
    c = kx.run_cascade(data, kx.run_config(data, "cnn_tiny", epochs=1, batch_size=4),
                       "refiner_tiny", epochs=1, batch_size=4)
    assert np.isfinite(c["test_rmse"]) and c["sigma"] > 0


def test_hide_keypoints_keeps_kaggles_four_points():
    data = _tiny_data(n=200, missing=False)
    hidden = kd.hide_keypoints(data.train, 0.5, seed=1)
    keep = [KAGGLE15.names.index(n) for n in kd.KAGGLE_ALWAYS]
    assert torch.isfinite(hidden.points[:, keep]).all()
    partial = ~torch.isfinite(hidden.points).all(dim=(1, 2))
    assert 60 < int(partial.sum()) < 140
    assert torch.isnan(hidden.points[partial][:, [i for i in range(15) if i not in keep]]).all()
    assert torch.equal(hidden.mask, torch.isfinite(hidden.points).all(-1))
    assert torch.equal(torch.isnan(hidden.gt), torch.isnan(hidden.points))
    assert kd.complete_rows(hidden) == 200 - int(partial.sum())
    assert torch.isfinite(data.train.points).all() and data.train.mask.all()  # input unchanged


def test_resolve_source(tmp_path):
    assert kd.resolve_source("auto", tmp_path) == "synthetic"
    with pytest.raises(FileNotFoundError, match="training.csv"):
        kd.resolve_source("kaggle", tmp_path)
    with pytest.raises(FileNotFoundError, match="300-W"):
        kd.resolve_source("300w", tmp_path)
    with pytest.raises(ValueError, match="dataset must be one of"):
        kd.resolve_source("mnist", tmp_path)


def test_kaggle_csv_is_loaded_and_split(tmp_path):
    from lmklib.data.fixtures import write_kaggle_fixture

    truth = write_kaggle_fixture(tmp_path / "kaggle", n=10, n_test=3)
    assert kd.resolve_source("auto", tmp_path) == "kaggle"
    data = kd.load_keypoint_data("auto", tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    assert data.train.images.shape[1:] == (1, 96, 96) and data.train.images.dtype == torch.uint8
    assert data.test_csv.name == "test.csv" and data.lookup_csv.name == "IdLookupTable.csv"
    rows = [int(p.rsplit(":", 1)[1]) for s in (data.train, data.val, data.test) for p in s.paths]
    assert sorted(rows) == list(range(1, 11))
    assert all(p.startswith(str(data.folder / "training.csv")) for p in data.train.paths)
    row = int(data.train.paths[0].rsplit(":", 1)[1])           # 1-based row of training.csv
    np.testing.assert_array_equal(data.train.points[0].numpy(),
                                  truth["train"][row - 1].astype(np.float32))
    np.testing.assert_array_equal(data.train.images[0, 0].numpy(), truth["train_images"][row - 1])
    summary = data.summary()
    assert summary["n_train"] == 6 and summary["complete_train"] == kd.complete_rows(data.train)
    assert data.test.name.endswith(": test")


def test_crop_faces_keeps_points_on_their_pixels():
    """A bright dot drawn at a 68-point landmark is found again at the mapped Kaggle point."""
    from lmklib.data.schemes import convert_points

    rng = np.random.default_rng(0)
    pts68 = np.stack([rng.uniform(30, 100, (68, 2)) for _ in range(2)])
    images = torch.zeros(2, 1, 128, 128, dtype=torch.uint8)
    nose = pts68[:, 30].round()
    pts68[:, 30] = nose
    for i, (x, y) in enumerate(nose.astype(int)):
        images[i, 0, y - 2:y + 3, x - 2:x + 3] = 255
    crops, pts15 = kd.crop_faces(images, pts68, size=96, crop_scale=1.2, jitter=0.05)
    assert crops.shape == (2, 1, 96, 96) and pts15.shape == (2, 15, 2)
    assert np.allclose(convert_points(pts68, "ibug68", "kaggle15")[:, 10] - pts68[:, 30], 0)
    yy, xx = np.mgrid[:96, :96]
    for i in range(2):
        w = crops[i, 0].numpy().astype(np.float64)
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()   # the dot's centroid
        assert abs(cx - pts15[i, 10, 0]) < 0.3 and abs(cy - pts15[i, 10, 1]) < 0.3


def test_build_from_w300_writes_a_kaggle_format_set(tmp_path):
    from lmklib.data.fixtures import write_300w_fixture
    from lmklib.data.formats.kaggle import read_id_lookup, read_kaggle_csv

    write_300w_fixture(tmp_path / "300w_subset", n_per_folder=2,
                       folders=("afw", "helen/trainset", "helen/testset"))
    assert kd.resolve_source("auto", tmp_path) == "300w"
    out = kd.build_from_w300(tmp_path / "300w_subset", tmp_path / "built")
    ids, images, points = read_kaggle_csv(out / "training.csv")
    assert images.shape == (4, 96, 96) and points.shape == (4, 15, 2)
    assert np.isfinite(points).all() and (points > 0).all() and (points < 95).all()
    _, test_images, test_points = read_kaggle_csv(out / "test.csv")
    assert test_images.shape == (2, 96, 96) and np.isnan(test_points).all()
    assert len(read_id_lookup(out / "IdLookupTable.csv")) == 2 * 30
    stamp = (out / "training.csv").stat().st_mtime_ns
    kd.build_from_w300(tmp_path / "300w_subset", tmp_path / "built")   # cached: not rewritten
    assert (out / "training.csv").stat().st_mtime_ns == stamp
    data = kd.load_keypoint_data("300w", tmp_path, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 2)
    assert "NOT Kaggle" in data.description
    # the rows built from 300-W name their source image (issue 13: models cut faces as they were)
    assert all(p.startswith(str(tmp_path / "300w_subset" / "helen" / "testset"))
               for p in data.test.paths)


# --------------------------------------------------------------------------- models out (#13)
def test_a_fixed_prescale_cuts_each_face_as_its_batch_did():
    """crop_batch pre-shrinks a whole batch once, by its smallest face's shrink, so a face's
    crop depends on the faces cropped with it; that factor as ``prescale`` (CropPolicy, through
    load_face_crops, one face at a time) gives every face its batch crop again, bit for bit
    (boxes exact in float32, as every sample's box is; shrinks within 1.5x of the smallest, as
    all of the 300-W build's are, so that no face is antialiased again)."""
    from dataclasses import replace
    from pathlib import Path

    from lmklib.data.faces import CropPolicy, load_face_crops
    from lmklib.data.geometry import antialias_prescale, box_affine, crop_batch
    from lmklib.data.sample import LandmarkDataset, Record

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 1, 200, 200), dtype=np.uint8))
    boxes = np.array([[40.0, 30.0, 150.5, 141.0], [20.25, 10.0, 150.25, 140.0],
                      [60.0, 50.0, 160.0, 150.0]])
    batch, affines = crop_batch(images, boxes, 48, scale=1.2, padding="border")
    f = antialias_prescale(affines)
    assert f == pytest.approx(100 * 1.2 / 48)   # the smallest face sets the batch's shrink
    alone = [crop_batch(images[i:i + 1], boxes[i:i + 1], 48, scale=1.2, padding="border")[0]
             for i in range(3)]
    assert not torch.equal(alone[1][0], batch[1])   # its own shrink: another crop
    ds = LandmarkDataset([Record(Path(f"img{i}"), np.full((15, 2), np.nan), box=b,
                                 image=images[i, 0].numpy()) for i, b in enumerate(boxes)])
    policy = CropPolicy(48, "L", scale=1.2, padding="border", prescale=f)
    crops = load_face_crops(ds, policy, cache=False)
    assert torch.equal(crops.images, batch)
    np.testing.assert_array_equal(crops.affines.numpy(), box_affine(boxes, 48, 1.2))
    with pytest.raises(ValueError, match="prescale must be None or > 1"):
        replace(policy, prescale=0.5)
    with pytest.raises(ValueError, match="need resample='torch'"):
        CropPolicy(48, "L", resample="pil", padding="border")


@pytest.fixture
def w300_models(tmp_path, monkeypatch):
    """The CNN and the cascade trained one epoch on a Kaggle-format set built from fixture
    300-W faces, saved with their cards into a report folder."""
    from lmklib import reports
    from lmklib.data.fixtures import write_300w_fixture

    write_300w_fixture(tmp_path / "300w_subset", n_per_folder=3,
                       folders=("afw", "helen/trainset", "helen/testset"))
    data = kd.load_keypoint_data("300w", tmp_path, val_fraction=0.2)
    kw = dict(batch_size=4, lr=1e-3, similarity=kx.SIMILARITY)
    runs = {"cnn": kx.run_config(data, "cnn_tiny", epochs=1, **kw)}
    runs["cascade"] = kx.run_cascade(data, runs["cnn"], "refiner_tiny", epochs=1, **kw)
    report = tmp_path / "reports" / "05_kaggle_keypoints"
    monkeypatch.setenv("LMK_REPORT_DIR", str(report))
    reports.init("05_kaggle_keypoints", profile="smoke", seed=0)
    for name, run in runs.items():
        reports.save_model(name, run["net"].state_dict(), kx.model_card(run, data))
    return report, data, runs


def test_300w_rows_carry_their_image_box_and_crop(w300_models):
    import json
    from pathlib import Path

    _, data, _ = w300_models
    test = data.test
    build = json.loads((data.folder / "build.json").read_text())
    assert test.policy == kd.crop_policy(96, 1.15, build["prescale"]) == data.train.policy
    assert all(Path(p).is_file() and "helen/testset" in p for p in test.paths)
    # the rows' points are their image points moved by their affines
    np.testing.assert_allclose(test.to_image(test.points), test.gt.numpy(), atol=1e-4)
    # cut again from the images with their boxes: the rows, up to the float32 box
    again = kd.recrop(test)
    assert torch.equal(again.boxes, test.boxes) and again.paths == test.paths
    assert (again.images.int() - test.images.int()).abs().max() <= 1
    np.testing.assert_allclose(again.affines.numpy(), test.affines.numpy(), atol=1e-4)
    assert kd.recrop(_tiny_data(n=8).train) is None          # CSV rows, no image files


def test_saved_models_round_trip_through_landmarker_bit_for_bit(w300_models):
    import json

    from lmklib.landmarker import Landmarker

    report, data, runs = w300_models
    for name, run in runs.items():
        card = json.loads((report / "models" / f"{name}.json").read_text())
        assert card["paper"] == "kaggle_keypoints_he" and card["scheme"] == "kaggle15"
        assert card["normalisation"] == {"image_scale": 256.0, "centre": 48.0, "half": 48.0}
        assert card["test"]["unit"] == "px" and card["test"]["value"] == run["test_rmse"]
        assert card["crop"]["padding"] == "border" and card["crop"]["scale"] == 1.15
        assert card["detector"] is None                    # drawn fixture faces
        lm = Landmarker.load(report, name=name)
        faces = kd.recrop(data.test, card["crop"])
        want = faces.to_image(kx.predict(run["net"], faces.images, run["norm"],
                                         batch_size=1).numpy())
        for i, path in enumerate(faces.paths):
            got = lm.predict(path, faces.boxes[i:i + 1].numpy())
            assert got.shape == (1, 15, 2) and np.array_equal(got[0], want[i])
    cascade = json.loads((report / "models" / "cascade.json").read_text())
    assert cascade["architecture"] == "CascadeCNN"
    assert cascade["args"]["stage1"] == {"architecture": "cnn_tiny",
                                         "args": {"activation": "relu", "dropout": 0.0}}
    state = torch.load(report / "models" / "cascade.pt", weights_only=True)
    assert state.keys() == runs["cascade"]["net"].state_dict().keys()
    assert {k.split(".")[0] for k in state} == {"stage1", "refiner"}   # stage 1 travels with it


def test_frame_models_take_the_whole_96x96_image(tmp_path, monkeypatch):
    """Kaggle's and synthetic rows are their own frame: the card's box is the frame, and
    Landmarker on the 96x96 image gives the in-memory prediction."""
    from lmklib import reports
    from lmklib.landmarker import Landmarker
    from lmklib.models.kaggle import Normalisation

    data = _tiny_data(n=8)
    run = dict(model="cnn_tiny", activation="relu", dropout=0.0, norm=Normalisation.paper(),
               net=kx.build("cnn_tiny", seed=1, dropout=0.0).eval(), test_rmse=1.0)
    monkeypatch.setenv("LMK_REPORT_DIR", str(tmp_path / "report"))
    reports.init("05_kaggle_keypoints", profile="smoke", seed=0)
    card = kx.model_card(run, data)
    assert card["crop"]["box"] == "image" and card["detector"] is None
    assert "whole 96x96 frame" in card["box_policy"]
    reports.save_model("cnn", run["net"].state_dict(), card)
    lm = Landmarker.load(tmp_path / "report", name="cnn")
    want = kx.predict(run["net"], data.test.images, run["norm"], batch_size=1).numpy()
    for i in range(len(data.test)):
        got = lm.predict(data.test.images[i, 0].numpy(), [[-0.5, -0.5, 95.5, 95.5]])
        assert np.array_equal(got[0], want[i])
