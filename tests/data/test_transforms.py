"""Every geometric transform moves the landmarks exactly as it moves the pixels.

The "dots" test draws landmark ``i`` as a Gaussian dot in image channel ``i`` (so dots never mix),
transforms the sample, finds each dot again as the intensity centroid of its channel and compares
it with the transformed landmark.
"""

import numpy as np
import pytest
import torch

from lmklib.data import transforms as T
from lmklib.data.schemes import CUHK5, IBUG68, KAGGLE15

H, W = 90, 110
POINTS = np.array([[30.0, 35.0], [72.3, 33.6], [51.0, 52.5], [36.7, 68.0], [66.0, 67.2]])
BOX = np.array([22.0, 20.0, 82.0, 80.0])


def dot_sample(points=POINTS, h=H, w=W, sigma=3.0, box=BOX) -> dict:
    """A sample whose channel i holds a Gaussian dot (peak 255) at points[i]."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
                    for x, y in points])
    k = len(points)
    return {"image": torch.from_numpy(np.round(img).astype(np.uint8)),
            "landmarks": torch.tensor(points, dtype=torch.float32),
            "mask": torch.ones(k, dtype=torch.bool), "visible": torch.ones(k, dtype=torch.bool),
            "box": torch.tensor(box, dtype=torch.float32), "meta": {"index": 0}}


def find_dots(image: torch.Tensor) -> np.ndarray:
    """Intensity centroid (x, y) of each channel: [C, 2]."""
    img = image.double().numpy()
    yy, xx = np.mgrid[0:img.shape[1], 0:img.shape[2]]
    mass = img.sum(axis=(1, 2))
    return np.stack([(img * xx).sum(axis=(1, 2)) / mass, (img * yy).sum(axis=(1, 2)) / mass], 1)


GEOMETRIC = {
    "crop": T.CropToBox(64, scale=1.3),
    "crop_jitter_rect": T.CropToBox((48, 40), scale=1.5, jitter=0.1, square=False, seed=1),
    "crop_down": T.CropToBox(24, scale=1.2),
    "resize_up": T.Resize((120, 150)),
    "resize_down": T.Resize((45, 55)),
    "rotate_-15": T.Rotate(-15),
    "rotate_12_image": T.Rotate(12, centre="image"),
    "random_rotate": T.RandomRotate(30, seed=3),
    "random_rotate_choice": T.RandomRotate(choices=(-15, 12), seed=4),
    "random_scale": T.RandomScale(0.75, 1.25, seed=5),
    "similarity": T.RandomSimilarity(30, (0.75, 1.25), shift=0.05, seed=9),
    "chain": T.Compose([T.CropToBox(80, scale=1.4, jitter=0.05, seed=6),
                        T.RandomRotate(30, seed=7), T.RandomScale(seed=8)]),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_points_follow_pixels(name):
    s = dot_sample()
    out = GEOMETRIC[name](s)
    found = find_dots(out["image"])
    assert np.abs(found - out["landmarks"].numpy()).max() < 0.5, name
    # the recorded affine sends the points back to the original image
    back = T.invert_points(out["landmarks"], out["meta"]["affine"]).numpy()
    np.testing.assert_allclose(back, POINTS, atol=1e-4)
    assert out["image"].dtype == torch.uint8
    assert torch.equal(s["image"], dot_sample()["image"])  # input untouched


def test_flip_swaps_indices_and_follows_pixels():
    s = dot_sample()
    out = T.HorizontalFlip(CUHK5)(s)
    perm = list(CUHK5.flip_perm)
    # channel c still holds the dot of original point c; new point i is old point perm[i]
    found = find_dots(out["image"])
    assert np.abs(found[perm] - out["landmarks"].numpy()).max() < 0.5
    np.testing.assert_allclose(out["landmarks"][0].numpy(), [W - 1 - POINTS[1, 0], POINTS[1, 1]],
                               atol=1e-5)
    # left eye stays at the image left after a flip: that is what the index swap is for
    assert out["landmarks"][0, 0] < out["landmarks"][1, 0]
    np.testing.assert_allclose(out["box"].numpy(), [W - 1 - BOX[2], BOX[1], W - 1 - BOX[0], BOX[3]])
    assert out["meta"]["flipped"] is True


def test_flip_twice_is_identity():
    s = dot_sample()
    s["visible"] = torch.tensor([True, False, True, True, False])
    s["landmarks"][4] = float("nan")
    s["mask"] = torch.tensor([True, True, True, True, False])
    f = T.HorizontalFlip(CUHK5)
    twice = f(f(s))
    assert torch.equal(twice["image"], s["image"])
    torch.testing.assert_close(twice["landmarks"], s["landmarks"], equal_nan=True)
    assert torch.equal(twice["visible"], s["visible"]) and torch.equal(twice["mask"], s["mask"])
    np.testing.assert_allclose(twice["meta"]["affine"], np.eye(3)[:2])
    assert twice["meta"]["flipped"] is False
    with pytest.raises(ValueError, match="68"):
        T.HorizontalFlip(IBUG68)(s)


def test_random_flip_probability_and_seed():
    s = dot_sample()
    flips = [T.RandomHorizontalFlip(CUHK5, p=0.5, seed=0) for _ in range(2)]
    s["image"] = s["image"][:, :8, :8]
    a = [flips[0](s)["meta"]["flipped"] for _ in range(24)]
    b = [flips[1](s)["meta"]["flipped"] for _ in range(24)]
    assert a == b and 3 < sum(a) < 21
    same = T.RandomHorizontalFlip(CUHK5, p=0.0)(s)
    assert same["image"] is s["image"] and same["meta"]["flipped"] is False  # collate-friendly


def test_random_rotate_choices_and_range():
    r = T.RandomRotate(choices=(0, -15, 12), seed=0)
    assert {r.sample_angle() for _ in range(60)} == {0.0, -15.0, 12.0}
    r = T.RandomRotate(30, seed=0)
    angles = [r.sample_angle() for _ in range(200)]
    assert -30 <= min(angles) < -20 and 20 < max(angles) <= 30


def test_rotation_direction_is_counter_clockwise():
    # a point right of the centre moves up (smaller y) under a positive angle
    a = T.rotation_affine(90, (10.0, 10.0))
    np.testing.assert_allclose(T.apply_affine(np.array([[15.0, 10.0]]), a), [[10.0, 5.0]],
                               atol=1e-12)


def test_crop_to_box_geometry():
    s = dot_sample()
    out = T.CropToBox(61, scale=1.0)(s)
    # box centre -> output centre, box edges -> output area edges [-0.5, 60.5]
    np.testing.assert_allclose(out["box"].numpy(), [-0.5, -0.5, 60.5, 60.5], atol=1e-5)
    centre = T.apply_affine(np.array([[52.0, 50.0]]), out["meta"]["affine"])
    np.testing.assert_allclose(centre, [[30.0, 30.0]], atol=1e-9)


def test_crop_batch_matches_crop_to_box():
    samples = [dot_sample(), dot_sample(POINTS + [5, -3], box=BOX + [5, -3, 10, 2])]
    images = torch.stack([s["image"] for s in samples])
    boxes = np.stack([s["box"].numpy() for s in samples])
    crops, affines = T.crop_batch(images, boxes, 48, scale=1.2, antialias=False)
    for i, s in enumerate(samples):
        one = T.CropToBox(48, scale=1.2, antialias=False)(s)
        assert (crops[i].int() - one["image"].int()).abs().max() <= 1
        np.testing.assert_allclose(affines[i], one["meta"]["affine"], atol=1e-9)
        found = find_dots(crops[i])
        pts = T.apply_affine(s["landmarks"].numpy(), affines[i])
        assert np.abs(found - pts).max() < 0.5


def test_crop_windows_geometry():
    # on a linear ramp bilinear sampling is exact, so window pixel values reveal their positions
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(50.0), indexing="ij")
    img = torch.stack([xx, yy])[None].repeat(2, 1, 1, 1)              # [2, 2, 40, 50]
    centres = torch.tensor([[[20.0, 15.0], [30.5, 22.25]], [[10.0, 30.0], [25.0, 20.0]]])
    half = torch.tensor([[7.0, 3.5], [4.0, 10.0]])
    out = T.crop_windows(img, centres, half, 15)
    assert out.shape == (2, 2, 2, 15, 15)
    # window centre -> output (out-1)/2 = 7; corners at c -+ h
    torch.testing.assert_close(out[:, :, 0, 7, 7], centres[..., 0])
    torch.testing.assert_close(out[:, :, 1, 7, 7], centres[..., 1])
    torch.testing.assert_close(out[:, :, 0, 0, 0], centres[..., 0] - half)
    torch.testing.assert_close(out[:, :, 1, 14, 14], centres[..., 1] + half)
    # half 7, out 15 around an integer centre is an exact 15x15 copy
    torch.testing.assert_close(out[0, 0], img[0, :, 8:23, 13:28])
    # coordinate helpers agree with the sampling and invert each other
    uv = torch.tensor([[[[0.0, 0.0], [3.0, 11.0]]] * 2] * 2)            # [2, 2, 2, 2]
    xy = T.window_to_image(uv, centres, half, 15)
    torch.testing.assert_close(xy[0, 0, 1], out[0, 0, :, 11, 3].double())
    torch.testing.assert_close(T.image_to_window(xy, centres, half, 15), uv.double())


def test_crop_windows_find_dots():
    s = dot_sample(sigma=1.5)
    img = s["image"][None].float()
    centres = torch.tensor(POINTS + [[1.3, -0.7]] * 5)[None]             # off-centre windows
    win = T.crop_windows(img, centres, torch.full((1, 5), 6.0), 13)       # [1, 5, 5, 13, 13]
    for i in range(5):
        found = find_dots(win[0, i, i:i + 1])[0]
        expect = T.image_to_window(torch.tensor(POINTS[i])[None, None], centres[:, i:i + 1],
                                   torch.full((1, 1), 6.0), 13)[0, 0]
        assert np.abs(found - expect.numpy()).max() < 0.5


def test_photometric_changes_pixels_only():
    s = dot_sample()
    s["image"] = s["image"][:3] // 2 + 40
    t = T.Photometric(brightness=0.3, contrast=0.3, saturation=0.3, gamma=0.2, noise=5, seed=0)
    out = t(s)
    assert out["image"].dtype == torch.uint8 and not torch.equal(out["image"], s["image"])
    assert out["landmarks"] is s["landmarks"] and out["box"] is s["box"]
    again = T.Photometric(brightness=0.3, contrast=0.3, saturation=0.3, gamma=0.2, noise=5,
                          seed=0)(s)
    assert torch.equal(again["image"], out["image"])
    with pytest.raises(TypeError, match="uint8"):
        t(T.ToFloat()(s))


def test_random_occlusion_hides_covered_points():
    for seed in range(8):
        s = dot_sample()
        s["image"] = torch.full((3, H, W), 7, dtype=torch.uint8)
        s["landmarks"][4] = float("nan")
        s["mask"][4] = False
        s["visible"][4] = False
        out = T.RandomOcclusion(p=1.0, max_frac=0.6, min_frac=0.3, fill="constant",
                                seed=seed)(s)
        rows, cols = torch.nonzero((out["image"] != 7).any(0), as_tuple=True)
        r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
        x, y = s["landmarks"][:, 0].round(), s["landmarks"][:, 1].round()
        inside = (x >= c0) & (x <= c1) & (y >= r0) & (y <= r1)
        assert torch.equal(out["visible"], s["mask"] & ~inside)
        assert torch.equal(out["mask"], s["mask"])
    assert T.RandomOcclusion(p=0.0)(s) is s


def test_to_float():
    s = dot_sample()
    s["image"] = torch.tensor([[[0, 255]], [[51, 102]]], dtype=torch.uint8)
    out = T.ToFloat(mean=[0.5, 0.2], std=[0.5, 0.1])(s)["image"]
    torch.testing.assert_close(out, torch.tensor([[[-1.0, 1.0]], [[0.0, 2.0]]]))
    z = T.ToFloat(per_image=True)(s)["image"]
    assert abs(z.mean().item()) < 1e-6 and abs(z.std().item() - 1) < 1e-5


def test_workers_get_distinct_reproducible_streams(monkeypatch):
    from types import SimpleNamespace
    import torch.utils.data as tud

    def draws(worker):
        monkeypatch.setattr(tud, "get_worker_info", lambda: worker)
        t = T.RandomRotate(30, seed=0)
        return [t.sample_angle() for _ in range(3)]

    main, w0, w1 = draws(None), draws(SimpleNamespace(id=0, seed=10)), \
        draws(SimpleNamespace(id=1, seed=11))
    assert main != w0 and w0 != w1 and w0 == draws(SimpleNamespace(id=0, seed=10))


def test_same_seed_different_transforms_are_independent():
    a = T.RandomRotate(30, seed=0).rng.random(4)
    b = T.RandomScale(seed=0).rng.random(4)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, T.RandomRotate(10, seed=0).rng.random(4))
    flip = T.RandomHorizontalFlip(CUHK5, p=1.0, seed=np.random.default_rng(0))
    s = dot_sample()
    assert torch.equal(flip(s)["image"], T.HorizontalFlip(CUHK5)(s)["image"])


# --- batch augmentation ---------------------------------------------------------------------
def test_random_flip_batch_mirrors_points_and_swaps_sides():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 96, 96, dtype=torch.uint8)
    images[:, 0, 10, 5] = 255                                  # a dot at x = 5
    points = torch.rand(64, 15, 2) * 95
    out_images, out_points = T.random_flip(images, points, KAGGLE15.flip_perm)
    flipped = out_images[:, 0, 10, 90] == 255                  # (96 - 1) - 5
    assert 0 < flipped.sum() < 64
    perm = list(KAGGLE15.flip_perm)
    assert torch.allclose(out_points[flipped, :, 0], 95 - points[flipped][:, perm, 0])
    assert torch.allclose(out_points[flipped, :, 1], points[flipped][:, perm, 1])
    assert torch.equal(out_points[~flipped], points[~flipped])


def test_random_similarity_batch_identity_and_dots_follow_points():
    images = torch.zeros(3, 1, 96, 96, dtype=torch.uint8)
    points = torch.tensor([[[30.0, 40.0], [60.0, 50.0]]] * 3)
    points[2, 1] = float("nan")
    for i in range(3):
        for x, y in points[i].nan_to_num(-10).round().long().tolist():
            if x >= 0:
                images[i, 0, y - 1:y + 2, x - 1:x + 2] = 255
    same, p = T.random_similarity(images, points, angle=0.0, scale=(1.0, 1.0), shift=0.0)
    assert torch.equal(same, images)
    torch.testing.assert_close(p, points, equal_nan=True)
    torch.manual_seed(0)
    warped, moved = T.random_similarity(images, points, angle=15.0, scale=(0.9, 1.1), shift=0.05)
    assert torch.isnan(moved[2, 1]).all() and not torch.equal(moved[0], points[0])
    for i in range(3):
        im = warped[i, 0].double().numpy()
        for x, y in moved[i].numpy():
            if np.isnan(x):
                continue
            yi, xi = int(round(y)), int(round(x))
            ys, xs = np.mgrid[yi - 3:yi + 4, xi - 3:xi + 4]
            patch = im[yi - 3:yi + 4, xi - 3:xi + 4]
            centroid = np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()
            np.testing.assert_allclose(centroid, [x, y], atol=0.35)
