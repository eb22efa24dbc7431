"""MATLAB-file formats: COFW (v7.3 / HDF5), AFLW2000-3D and 300W-LP (v5): fixture round trips
(1-based on disk, 0-based in lmklib), pose and yaw bins, and the errors of malformed files."""

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from lmklib.data.fixtures import (write_300wlp_fixture, write_aflw2000_fixture,
                                  write_cofw_fixture)
from lmklib.data.formats.aflw import AFLW2000_3D, W300LP, yaw_bin, yaw_bin_counts
from lmklib.data.formats.cofw import COFW
from lmklib.data.sample import AnnotationError


@pytest.fixture(scope="module")
def cofw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cofw")
    return root, write_cofw_fixture(root, n_train=4, n_test=3, seed=0)


def test_cofw_round_trip(cofw):
    root, truth = cofw
    for split, n in (("train", 4), ("test", 3)):
        ds = COFW(root, split)
        assert len(ds) == n and ds.scheme.name == "cofw29"
        np.testing.assert_allclose(ds.landmarks_array(), truth[split], atol=1e-9)
        np.testing.assert_allclose(ds.boxes_array(), truth[f"{split}_boxes"], atol=1e-9)
        s = ds[0]
        assert s["visible"].tolist() == (~truth[f"{split}_occluded"][0]).tolist()
        assert s["mask"].all()
    s = COFW(root, "test")[0]  # the grayscale image, repeated to RGB
    img = truth["test_images"][0]
    assert s["image"].shape == (3, *img.shape)
    np.testing.assert_array_equal(s["image"][1].numpy(), img)
    rgb = truth["train_images"][1]
    np.testing.assert_array_equal(COFW(root, "train")[1]["image"].numpy().transpose(1, 2, 0), rgb)


def test_cofw_file_is_hdf5_with_matlab_layout(cofw):
    root, _ = cofw
    with h5py.File(root / "COFW_train_color.mat", "r") as f:
        assert f["phisTr"].shape == (87, 4) and f["bboxesTr"].shape == (4, 4)
        assert f["IsTr"].shape == (1, 4)
    assert (root / "COFW_train_color.mat").read_bytes()[:10] == b"MATLAB 7.3"


def test_cofw_errors(cofw, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"COFW_train_color\.mat.*xpburgos"):
        COFW(tmp_path, "train")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        COFW(tmp_path, "val")
    with h5py.File(tmp_path / "COFW_test_color.mat", "w") as f:
        f["IsT"] = np.zeros((1, 2))
        f["phisT"] = np.zeros((80, 2))
        f["bboxesT"] = np.zeros((4, 2))
    with pytest.raises(AnnotationError, match=r"COFW_test_color\.mat: phisT: expected 87 columns"):
        COFW(tmp_path, "test")
    phis = np.ones((87, 2))
    phis[3, 1] = np.inf
    with h5py.File(tmp_path / "COFW_test_color.mat", "w") as f:
        f["IsT"] = np.zeros((1, 2))
        f["phisT"] = phis
        f["bboxesT"] = np.ones((4, 2))
    with pytest.raises(AnnotationError, match="point 3 has a non-finite coordinate"):
        COFW(tmp_path, "test")
    with h5py.File(tmp_path / "COFW_test_color.mat", "w") as f:
        f["IsT"] = np.zeros((1, 1))
        f["phisT"] = np.ones((87, 2))
        f["bboxesT"] = np.ones((4, 2))
    with pytest.raises(AnnotationError, match="1 images but 2 point rows"):
        COFW(tmp_path, "test")


def test_yaw_bins():
    assert [yaw_bin(y) for y in (0, -30, 30.01, 60, -75, 90, 90.5)] == \
        ["0-30", "0-30", "30-60", "30-60", "60-90", "60-90", ">90"]
    assert yaw_bin_counts([5, -45, 100]) == {"0-30": 1, "30-60": 1, "60-90": 0, ">90": 1}
    with pytest.raises(ValueError, match="yaw must be finite"):
        yaw_bin(np.nan)


@pytest.fixture(scope="module")
def aflw2000(tmp_path_factory):
    root = tmp_path_factory.mktemp("aflw2000")
    return root, write_aflw2000_fixture(root, n=8, seed=0)


def test_aflw2000_round_trip_pose_and_bins(aflw2000):
    root, truth = aflw2000
    ds = AFLW2000_3D(root)
    assert len(ds) == 8 and ds.scheme.name == "ibug68"
    np.testing.assert_allclose(ds.landmarks_array(), truth["test"], atol=1e-9)
    np.testing.assert_allclose(ds.yaws(), truth["yaw"], atol=1e-9)
    assert ds.yaw_bin_counts() == {"0-30": 3, "30-60": 2, "60-90": 2, ">90": 1}
    meta = ds[6]["meta"]
    assert meta["yaw_bin"] == ">90" and meta["pose"]["pitch"] == pytest.approx(truth["pitch"][6])
    assert len(AFLW2000_3D(root, max_abs_yaw=90)) == 7


def test_aflw2000_pt2d_marks_unannotated_points(aflw2000):
    root, truth = aflw2000
    ds = AFLW2000_3D(root, points="pt2d")
    assert ds.scheme.name == "aflw21"
    np.testing.assert_allclose(ds.landmarks_array(), truth["pt2d"], atol=1e-9)
    s = ds[0]
    assert not s["mask"][12] and not s["mask"][16] and s["mask"].sum() == 19


def test_aflw2000_pt3d_meta(aflw2000):
    from scipy.io import loadmat

    root, truth = aflw2000
    for points in ("pt3d_68", "pt2d"):
        ds = AFLW2000_3D(root, points=points)
        for r, p in zip(ds.records, truth["test"]):
            raw = loadmat(str(r.image_path.with_suffix(".mat")))["pt3d_68"]
            assert r.meta["pt3d"].shape == (68, 3)
            np.testing.assert_allclose(r.meta["pt3d"][:, :2], p, atol=1e-9)   # 0-based x, y
            np.testing.assert_allclose(r.meta["pt3d"][:, 2], raw[2])           # z as stored


def test_aflw2000_reannotated_points(tmp_path):
    truth = write_aflw2000_fixture(tmp_path, n=8, seed=0)
    with pytest.raises(FileNotFoundError, match=r"3ddfa/AFLW2000-3D-Reannotated\.pts68\.npy: not "
                                                 r"found .*cleardusk/3DDFA"):
        AFLW2000_3D(tmp_path, points="reannotated")
    rng = np.random.default_rng(1)
    reann = (truth["test"] + rng.normal(0, 2, truth["test"].shape)).astype(np.float32)
    (tmp_path / "3ddfa").mkdir()
    npy = tmp_path / "3ddfa" / "AFLW2000-3D-Reannotated.pts68.npy"
    np.save(npy, reann.transpose(0, 2, 1))                  # (N, 2, 68), rows in file order
    ds = AFLW2000_3D(tmp_path, points="reannotated")
    assert ds.scheme.name == "ibug68"
    np.testing.assert_allclose(ds.landmarks_array(), reann, atol=1e-6)       # 0-based: no shift
    np.testing.assert_allclose(ds.records[3].meta["pt3d"][:, :2], truth["test"][3], atol=1e-9)
    kept = AFLW2000_3D(tmp_path, points="reannotated", max_abs_yaw=60)
    rows = [0, 1, 2, 3, 7]                                  # yaws 5 -20 45 -50 (75 -80 95) 10
    np.testing.assert_allclose(kept.landmarks_array(), reann[rows], atol=1e-6)
    np.testing.assert_allclose(kept.yaws(), truth["yaw"][rows])
    np.save(npy, reann[:5].transpose(0, 2, 1))
    with pytest.raises(ValueError, match=r"Reannotated\.pts68\.npy: expected a finite \(8, 2, 68\) "
                                         r"array .* got \(5, 2, 68\)"):
        AFLW2000_3D(tmp_path, points="reannotated")
    with pytest.raises(ValueError, match="points must be 'pt3d_68', 'pt2d' or 'reannotated'"):
        AFLW2000_3D(tmp_path, points="pts68")


def test_real_aflw2000_reannotated_rows_match_pt3d(real_data_root, tmp_path):
    """30 real faces (every 67th, linked into tmp_path with their rows of the .npy): the
    re-annotation is within a few pixels of pt3d_68 on frontal faces, row by row."""
    src = real_data_root / "aflw2000_3d"
    npy = src / "3ddfa" / "AFLW2000-3D-Reannotated.pts68.npy"
    if not npy.is_file():
        pytest.skip(f"AFLW2000-3D re-annotation not found under {real_data_root}")
    mats = sorted(src.glob("*.mat"))
    pick = np.arange(0, len(mats), 67)[:30]
    for i in pick:
        for suffix in (".mat", ".jpg"):
            (tmp_path / mats[i].with_suffix(suffix).name).symlink_to(mats[i].with_suffix(suffix))
    (tmp_path / "3ddfa").mkdir()
    np.save(tmp_path / "3ddfa" / npy.name, np.load(npy)[pick])
    reann = AFLW2000_3D(tmp_path, points="reannotated")
    fitted = AFLW2000_3D(tmp_path)
    a, b = reann.landmarks_array(), fitted.landmarks_array()
    iod = np.linalg.norm(b[:, 36] - b[:, 45], axis=1)
    err = np.linalg.norm(a - b, axis=2)[:, 17:].mean(1)     # inner points (jaw conventions differ)
    frontal = np.abs(fitted.yaws()) < 30
    assert frontal.sum() >= 10 and np.median(err[frontal]) < 6     # px on 450 px images
    assert (err[frontal] / iod[frontal]).mean() < 0.06
    shifted = np.linalg.norm(a - np.roll(b, 1, axis=0), axis=2)[:, 17:].mean(1)
    assert (err < shifted).all()                            # each row belongs to its own face


def test_aflw2000_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"AFLW2000-3D annotations .* not found.*3DDFA"):
        AFLW2000_3D(tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \['test'\], got 'train'"):
        AFLW2000_3D(tmp_path, "train")
    savemat(str(tmp_path / "image00001.mat"), {"pt3d_68": np.ones((3, 60)),
                                               "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(FileNotFoundError, match=r"image00001\.mat: image not found"):
        AFLW2000_3D(tmp_path)
    (tmp_path / "image00001.jpg").write_bytes(b"")
    with pytest.raises(AnnotationError, match=r"image00001\.mat: pt3d_68: expected 3x68"):
        AFLW2000_3D(tmp_path)
    savemat(str(tmp_path / "image00001.mat"), {"pt3d_68": np.ones((3, 68))})
    with pytest.raises(AnnotationError, match="variable 'Pose_Para' missing"):
        AFLW2000_3D(tmp_path)
    pts = np.ones((3, 68))
    pts[1, 5] = np.nan
    savemat(str(tmp_path / "image00001.mat"), {"pt3d_68": pts, "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(AnnotationError, match="point 5 has a non-finite coordinate"):
        AFLW2000_3D(tmp_path)


def test_300wlp_round_trip(tmp_path):
    truth = write_300wlp_fixture(tmp_path, n_per_subset=2, seed=0)
    ds = W300LP(tmp_path)
    assert len(ds) == 8 and ds.scheme.name == "ibug68"
    expected = np.concatenate([truth[s] for s in ("AFW", "HELEN", "IBUG", "LFPW")])
    np.testing.assert_allclose(ds.landmarks_array(), expected, atol=1e-9)
    np.testing.assert_allclose(ds.yaws(), np.concatenate([truth[f"{s}_yaw"] for s in
                                                          ("AFW", "HELEN", "IBUG", "LFPW")]))
    d3 = W300LP(tmp_path, "AFW", landmarks="pts_3d")
    np.testing.assert_allclose(d3.landmarks_array(), truth["AFW_pts_3d"], atol=1e-9)
    flips = W300LP(tmp_path, "IBUG", include_flipped=True)  # flips fall back to the .mat pt2d
    np.testing.assert_allclose(flips.landmarks_array()[2:], truth["IBUG_Flip"], atol=1e-9)
    assert [r.meta["subset"] for r in flips.records] == ["IBUG"] * 2 + ["IBUG_Flip"] * 2


def test_300wlp_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"300W-LP folders .* not found.*300W-LP\.zip"):
        W300LP(tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \['all', 'AFW'"):
        W300LP(tmp_path, "train")
    write_300wlp_fixture(tmp_path, n_per_subset=1, subsets=("AFW",), flipped=False)
    (tmp_path / "landmarks" / "AFW" / "AFW_1000_1_0_pts.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"300W-LP landmarks not found: .*AFW_1000_1_0_pts"):
        W300LP(tmp_path, "AFW", landmarks="pts_2d")
    assert len(W300LP(tmp_path, "AFW")) == 1  # "auto" falls back to the image .mat's pt2d


# --- issue 14: variables of the wrong type, points outside the image ---------------------------------


def test_aflw2000_variables_of_the_wrong_type_and_points_outside(tmp_path):
    write_aflw2000_fixture(tmp_path, n=1, seed=0)             # image00002.jpg: 120 x 120
    mat = tmp_path / "image00002.mat"
    pts = np.ones((3, 68)) * 50
    cases = [
        ({"pt3d_68": "not numbers", "Pose_Para": np.zeros((1, 7))},
         r"image00002\.mat: pt3d_68: expected a numeric 3x68 \(or 68x2\) matrix, got a char array"),
        ({"pt3d_68": np.array([[pts]], dtype=object), "Pose_Para": np.zeros((1, 7))},
         r"pt3d_68: expected a numeric 3x68 .* got a cell array"),
        ({"pt3d_68": pts, "Pose_Para": {"yaw": 1.0}},
         r"Pose_Para: expected a numeric 1x7 vector .* got a struct"),
    ]
    for variables, message in cases:
        savemat(str(mat), variables)
        with pytest.raises(AnnotationError, match=message):
            AFLW2000_3D(tmp_path)
    pts[0, 7] = 241.0                                         # 1-based 241 -> 240 = 1.0 width out
    savemat(str(mat), {"pt3d_68": pts, "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(AnnotationError, match=r"image00002\.mat: pt3d_68 point 7 at \(240, 49\) "
                                              r"lies 1.00 image sizes outside the 120x120 image "
                                              r"image00002\.jpg"):
        AFLW2000_3D(tmp_path)
    pts[0, 7] = 179.0                                         # 178: 0.48 widths out, kept
    savemat(str(mat), {"pt3d_68": pts, "Pose_Para": np.zeros((1, 7))})
    assert len(AFLW2000_3D(tmp_path)) == 1


def test_cofw_variables_of_the_wrong_type_and_boxes_outside(cofw, tmp_path):
    root, truth = cofw
    with h5py.File(tmp_path / "COFW_test_color.mat", "w") as f:
        f["IsT"] = np.zeros((1, 2))
        f["phisT"] = np.array([b"abc", b"def"])
        f["bboxesT"] = np.ones((4, 2))
    with pytest.raises(AnnotationError, match=r"COFW_test_color\.mat: phisT: expected a numeric "
                                              r"N x 87 matrix, got a char array"):
        COFW(tmp_path, "test")
    with h5py.File(tmp_path / "COFW_test_color.mat", "w") as f:
        f["IsT"] = np.zeros((1, 2))
        f["phisT"] = np.ones((87, 2))
        f["bboxesT"] = np.ones((4, 2))
    with pytest.raises(AnnotationError, match=r"IsT: expected a cell array of images, got a "
                                              r"float64 array of shape \[1, 2\]"):
        COFW(tmp_path, "test")
    path = tmp_path / "COFW_test_color.mat"
    path.write_bytes((root / "COFW_test_color.mat").read_bytes())
    with h5py.File(path, "r+") as f:                          # face 2's box 1,000 px wide
        f["bboxesT"][2, 1] = 1000.0
    with pytest.raises(AnnotationError, match=r"COFW_test_color\.mat: face 2: box corner 1 .* "
                                              r"image sizes outside the 100x120 image"):
        COFW(tmp_path, "test")
