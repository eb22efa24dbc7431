"""The one face-tensor set (lmklib.data.faces) and the one box-from-points function (geometry)."""

import numpy as np
import pytest
import torch

from lmklib.data import fixtures
from lmklib.data.faces import CropPolicy, FaceCrops, fixed_subset, load_face_crops
from lmklib.data.formats.cuhk import CUHK5Point
from lmklib.data.geometry import BoxGeometry, boxes_from_points, fit_box_geometry
from lmklib.data.sample import LandmarkDataset, Record


# --------------------------------------------------------------------------- boxes from points
def test_tight_box_by_hand():
    p = np.array([[0.0, 0.0], [4.0, 2.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(boxes_from_points(p), [0, 0, 4, 2])
    np.testing.assert_array_equal(boxes_from_points(p[None]), [[0, 0, 4, 2]])
    assert np.isnan(boxes_from_points(np.full((3, 2), np.nan))).all()


def test_placed_box_by_hand():
    p = np.array([[[0.0, 0.0], [4.0, 2.0]]])   # tight box 4 x 2, centre (2, 1)
    # side "mean": s = 3 -> centre (2 + 0.5 * 3, 1), side 2 * 3 = 6
    np.testing.assert_allclose(boxes_from_points(p, BoxGeometry(0.5, 0.0, 2.0, "mean")),
                               [[0.5, -2.0, 6.5, 4.0]])
    # side "max": s = 4 -> centre (4, 1 - 0.25 * 4), side 8
    np.testing.assert_allclose(boxes_from_points(p, BoxGeometry(0.5, -0.25, 2.0, "max")),
                               [[0.0, -4.0, 8.0, 4.0]])


@pytest.mark.parametrize("side", ["mean", "max"])
@pytest.mark.parametrize("stat", ["mean", "median"])
def test_fit_box_geometry_recovers_the_geometry(side, stat):
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (20, 5, 2))
    g = BoxGeometry(0.1, 0.3, 1.8, side)
    fitted = fit_box_geometry(pts, boxes_from_points(pts, g), side=side, stat=stat)
    assert fitted.side == side
    np.testing.assert_allclose([fitted.dx, fitted.dy, fitted.ratio], [g.dx, g.dy, g.ratio])


def test_box_geometry_rejects_unknown_side():
    with pytest.raises(ValueError, match="side must be"):
        BoxGeometry(0, 0, 1, "median")


# --------------------------------------------------------------------------- the face set
@pytest.fixture
def cuhk(tmp_path):
    fixtures.write_cuhk_fixture(tmp_path / "cuhk", n_train=6, n_test=2)
    return tmp_path / "cuhk"


@pytest.mark.parametrize("resample", ["torch", "pil"])
def test_crops_map_points_and_back(cuhk, tmp_path, resample):
    ds = CUHK5Point(cuhk, "train_official")
    boxes = ds.boxes_array()
    crops = load_face_crops(ds, CropPolicy(48, "RGB", scale=1.5, square=False, resample=resample),
                            name="cuhk", cache_dir=tmp_path / "cache")
    assert crops.images.shape == (6, 3, 48, 48) and crops.images.dtype == torch.uint8
    assert crops.points.dtype == torch.float32 and crops.gt.dtype == torch.float64
    np.testing.assert_array_equal(crops.boxes.numpy(), boxes)
    np.testing.assert_array_equal(crops.gt.numpy(), ds.landmarks_array())
    assert crops.image_hw.tolist() == [[250, 250]] * 6
    # the box (+ 25 % margin each side) fills the crop: box corners land at 48 * (0.25 .. 1.25) / 1.5
    x0 = crops.to_crop(boxes[:, None, :2])[:, 0]
    np.testing.assert_allclose(x0, np.full((6, 2), 48 * 0.25 / 1.5 - 0.5), atol=1e-9)
    np.testing.assert_allclose(crops.to_crop(crops.gt), crops.points, atol=1e-4)
    np.testing.assert_allclose(crops.to_image(crops.points), crops.gt, atol=1e-3)
    assert crops.paths[0].endswith("train_0000.jpg") and crops.scheme == "cuhk5"


def test_pixels_follow_the_points(tmp_path):
    """A bright dot drawn at a landmark is found at that landmark's crop position."""
    img = np.zeros((200, 300), np.uint8)
    pts = np.array([[120.0, 80.0], [170.0, 130.0]])
    for x, y in pts.astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    ds = LandmarkDataset([Record(tmp_path / "a.png", pts, np.array([100.0, 60.0, 200.0, 160.0]),
                                 image=img)])
    for resample in ("torch", "pil"):
        crops = load_face_crops(ds, CropPolicy(50, "L", scale=1.2, resample=resample), cache=False)
        im = crops.images[0, 0].double().numpy()
        for x, y in crops.points[0].numpy():
            yi, xi = int(round(y)), int(round(x))
            patch = im[yi - 3:yi + 4, xi - 3:xi + 4]
            ys, xs = np.mgrid[yi - 3:yi + 4, xi - 3:xi + 4]
            centroid = np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()
            np.testing.assert_allclose(centroid, [x, y], atol=0.3, err_msg=resample)


def test_cache_and_memory_paths_agree_and_subset_keeps_faces_together(cuhk, tmp_path):
    policy = CropPolicy(32, "L")
    a = load_face_crops(CUHK5Point(cuhk, "train_official"), policy, cache_dir=tmp_path / "c")
    b = load_face_crops(CUHK5Point(cuhk, "train_official"), policy, cache=False)
    for f in ("images", "points", "mask", "affines", "gt", "boxes", "image_hw"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    s = a.subset([4, 1])
    assert len(s) == 2 and s.paths == [a.paths[4], a.paths[1]]
    assert torch.equal(s.images[0], a.images[4]) and torch.equal(s.gt[1], a.gt[1])
    assert s.policy == policy


def test_indices_and_placed_boxes(cuhk, tmp_path):
    g = BoxGeometry(0.0, 0.1, 2.0, "max")
    crops = load_face_crops(CUHK5Point(cuhk, "train_official"), CropPolicy(32, "L", box="points", geometry=g),
                            indices=[5, 0, 2], cache_dir=tmp_path / "c")
    full = CUHK5Point(cuhk, "train_official")
    gt = full.landmarks_array()[[5, 0, 2]]
    np.testing.assert_array_equal(crops.gt.numpy(), gt)
    np.testing.assert_allclose(crops.boxes.numpy(), boxes_from_points(gt, g))


def test_resize_policy_keeps_the_whole_image(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    ds = LandmarkDataset([Record(tmp_path / "a.png", np.array([[31.5, 31.5]]), image=img)])
    crops = load_face_crops(ds, CropPolicy(32, "RGB", box="image"), cache=False)
    np.testing.assert_allclose(crops.points[0].numpy(), [[15.5, 15.5]])


def test_policy_errors():
    with pytest.raises(ValueError, match="needs a BoxGeometry"):
        CropPolicy(32, box="points")
    with pytest.raises(ValueError, match="mode must be"):
        CropPolicy(32, mode="CMYK")
    with pytest.raises(ValueError, match="resample must be"):
        CropPolicy(32, resample="cv2")


def test_from_images_wraps_ready_crops():
    images = np.zeros((2, 96, 96), np.uint8)
    pts = np.array([[[10.0, 20.0], [np.nan, np.nan]], [[1.0, 2.0], [3.0, 4.0]]])
    f = FaceCrops.from_images(images, pts, [[-0.5, -0.5, 95.5, 95.5]] * 2, name="k")
    assert f.images.shape == (2, 1, 96, 96) and f.mask.tolist() == [[True, False], [True, True]]
    torch.testing.assert_close(f.points, f.gt.float(), equal_nan=True)
    np.testing.assert_array_equal(f.to_image(f.points)[1], pts[1])


def test_fixed_subset():
    assert fixed_subset(5, None).tolist() == [0, 1, 2, 3, 4]
    s = fixed_subset(100, 10, seed=3)
    assert len(s) == 10 and (np.diff(s) > 0).all()
    assert fixed_subset(100, 10, seed=3).tolist() == s.tolist()
