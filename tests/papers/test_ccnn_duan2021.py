"""lmklib.papers.ccnn_duan2021: the face-box-unit view of a FaceCrops, the CUHK / synthetic /
cross-dataset face sets, augmentation, Eq. 6, stage batches and one tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmklib.data import fixtures
from lmklib.data.faces import CropPolicy, FaceCrops, fixed_subset
from lmklib.data.geometry import BoxGeometry, box_affine, boxes_from_points
from lmklib.data.schemes import ibug68_to_cuhk5
from lmklib.models.ccnn import (apply_affine, augmentation_affine, canonical_frame, ccnn,
                                image_frames, sample_windows)
from lmklib.papers import ccnn_duan2021 as C

BASE = torch.tensor([[0.27, 0.26], [0.74, 0.25], [0.5, 0.54], [0.31, 0.77], [0.71, 0.76]])


def _crops(units: torch.Tensor, boxes, image_hw=(80, 80), size: int = 48,
           images: torch.Tensor | None = None, margin: float = 0.25) -> FaceCrops:
    """CCNN crops holding box-unit points ``units [N, 5, 2]`` in the face boxes ``boxes``."""
    n = len(units)
    b = torch.as_tensor(boxes, dtype=torch.float64).expand(n, 4)
    gt = b[:, None, :2] + units.double() * (b[:, None, 2:] - b[:, None, :2])
    if images is None:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 255, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return FaceCrops.from_images(images, gt.numpy(), b.numpy(),
                                 policy=C.crop_policy(size, margin),
                                 affines=box_affine(b.numpy(), size, 1 + 2 * margin, square=False),
                                 image_hw=[list(image_hw)] * n, scheme="cuhk5")


def _random_crops(n: int = 24, size: int = 48) -> FaceCrops:
    g = torch.Generator().manual_seed(0)
    units = BASE + 0.02 * torch.randn(n, 5, 2, generator=g)
    return _crops(units, [10.0, 10.0, 60.0, 60.0], size=size)


# --------------------------------------------------------------------------- box-unit view
def test_box_unit_view_known_answers():
    crops = _crops(torch.tensor([[[0.5, 0.5]] * 5]), [10.0, 20.0, 60.0, 70.0], image_hw=(80, 100),
                   size=64)
    assert C.margin(crops) == 0.25
    torch.testing.assert_close(C.gt_box_units(crops), torch.full((1, 5, 2), 0.5))
    np.testing.assert_allclose(C.gt_pixels(crops), [[[35.0, 45.0]] * 5])
    np.testing.assert_allclose(C.to_pixels(crops, torch.zeros(1, 1, 2)), [[[10.0, 20.0]]])
    # (x0/W, y0/H, w/W, h/H) with W = 100, H = 80
    torch.testing.assert_close(C.absolute(crops), torch.tensor([[0.1, 0.25, 0.5, 0.625]]))
    assert torch.equal(C.frames(crops, 3), canonical_frame(64, 0.25).expand(3, 4))
    with pytest.raises(ValueError, match="no CropPolicy"):
        C.margin(FaceCrops.from_images(crops.images, crops.gt, crops.boxes))


def test_frames_agree_with_the_crop_affines():
    """A point in box units, placed through the cascade's frame, lands where the FaceCrops
    affine (original -> crop pixels) puts it."""
    crops = _random_crops(6)
    fr = C.frames(crops)
    via_frame = fr[:, None, :2] + C.gt_box_units(crops).double() * fr[:, None, 2:]
    np.testing.assert_allclose(via_frame.numpy(), crops.to_crop(crops.gt), atol=1e-4)


def test_pixels_use_float32_boxes_and_units_float64_arithmetic():
    """The numbers of the old FaceCache, kept: box units from the float64 annotation, rounded
    once to float32; pixel conversions and the error normaliser from float32 boxes."""
    box = torch.tensor([[10.1, 20.3, 60.7, 70.9]], dtype=torch.float64)
    gt = torch.tensor([[[33.3, 44.4]] * 5], dtype=torch.float64)
    crops = FaceCrops.from_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), gt, box,
                                  policy=C.crop_policy(8, 0.25))
    want = ((gt - box[:, None, :2]) / (box[:, None, 2:] - box[:, None, :2])).float()
    assert torch.equal(C.gt_box_units(crops), want)
    b32 = box.float().double()
    np.testing.assert_array_equal(C.to_pixels(crops, torch.zeros(1, 1, 2)),
                                  b32[:, None, :2].numpy())


# --------------------------------------------------------------------------- face sets
def test_load_cuhk_fixture_subset_and_cache(tmp_path):
    pts = fixtures.write_cuhk_fixture(tmp_path, n_train=4, n_test=2)["train"]
    crops = C.load_cuhk(tmp_path, "train_official", 3, 32, 0.25)
    idx = fixed_subset(4, 3)
    assert len(crops) == 3 and crops.images.shape == (3, 3, 32, 32)
    assert crops.images.dtype == torch.uint8 and crops.scheme == "cuhk5"
    assert crops.policy == CropPolicy(32, "RGB", scale=1.5, square=False, resample="pil")
    np.testing.assert_allclose(crops.gt.numpy(), pts[idx], atol=1e-6)
    np.testing.assert_allclose(C.gt_pixels(crops), pts[idx], atol=1e-4)
    units = C.gt_box_units(crops)
    assert units.dtype == torch.float32 and ((units > 0) & (units < 1)).all()  # box = points +- 10
    again = C.load_cuhk(tmp_path, "train_official", 3, 32, 0.25)    # from the on-disk cache
    assert torch.equal(again.images, crops.images) and torch.equal(again.boxes, crops.boxes)
    assert len(C.load_cuhk(tmp_path, "test_official", None, 32, 0.25, use_cache=False)) == 2
    clean = C.load_cuhk(tmp_path, "test", None, 32, 0.25, use_cache=False)   # net_7876 only
    assert len(clean) == 1 and clean.name == "CUHK 5-point test (clean protocol)"


def test_load_synthetic_is_the_window_crop_of_the_generated_faces():
    from lmklib.data.synthetic import generate

    crops = C.load_synthetic(4, 32, 0.25, seed=3)
    d = generate(4, size=96, seed=3, scheme="cuhk5")
    pts, boxes = torch.as_tensor(d["landmarks"]), torch.as_tensor(d["boxes"])
    # box units in float32 arithmetic, as this path has always computed them
    units = (pts - boxes[:, None, :2]) / (boxes[:, None, 2:] - boxes[:, None, :2])
    assert torch.equal(C.gt_box_units(crops), units)
    img = torch.as_tensor(d["images"]).permute(0, 3, 1, 2).expand(4, 3, 96, 96)
    window = sample_windows(img, image_frames(boxes), torch.tensor([[0.5, 0.5]]),
                            torch.tensor([[1.5, 1.5]]), 32)[:, 0]
    assert torch.equal(crops.images, window.round().clamp(0, 255).to(torch.uint8))
    assert crops.image_hw.tolist() == [[96, 96]] * 4 and C.margin(crops) == 0.25
    fr = C.frames(crops)
    via_frame = fr[:, None, :2] + C.gt_box_units(crops).double() * fr[:, None, 2:]
    np.testing.assert_allclose(via_frame.numpy(), crops.points.numpy(), atol=1e-3)


def test_box_geometry_recovers_the_placement():
    g = BoxGeometry(0.05, -0.1, 1.9)
    p5 = np.random.default_rng(0).uniform(40, 60, (12, 5, 2))
    boxes = boxes_from_points(p5, g)
    units = torch.as_tensor((p5 - boxes[:, None, :2]) / (boxes[:, None, 2:] - boxes[:, None, :2]))
    crops = _crops(units.float(), boxes)
    got = C.box_geometry(crops)
    assert got.side == "mean"
    np.testing.assert_allclose([got.dx, got.dy, got.ratio], [g.dx, g.dy, g.ratio], atol=1e-5)


def test_cross_dataset_crops_on_a_300w_fixture(tmp_path):
    pts68 = fixtures.write_300w_fixture(tmp_path / "300w", n_per_folder=3, folders=("afw", "ibug"))
    g = BoxGeometry(0.0, 0.02, 2.0)
    sets = C.cross_dataset_crops(tmp_path, g, 32, 0.25, n=2)
    assert list(sets) == ["300-W afw", "300-W ibug"]
    for folder, crops in zip(("afw", "ibug"), sets.values()):
        p5 = ibug68_to_cuhk5(pts68[folder][fixed_subset(3, 2)])
        assert len(crops) == 2 and crops.scheme == "cuhk5" and crops.name == f"300-W {folder}"
        np.testing.assert_allclose(crops.gt.numpy(), p5, atol=1e-5)
        np.testing.assert_allclose(crops.boxes.numpy(), boxes_from_points(crops.gt.numpy(), g))
        assert crops.policy.box == "points" and crops.policy.geometry == g
    assert C.cross_dataset_crops(tmp_path / "nothing", g, 32, 0.25) == {}


# --------------------------------------------------------------------------- augmentation
def _dot_image(x: int, y: int, size: int = 64) -> torch.Tensor:
    img = torch.zeros(1, 3, size, size)
    img[0, :, y, x] = 255.0
    return img


def test_augmented_window_follows_the_augmented_point():
    img = _dot_image(20, 18)                              # box (0,0)-(40,40): (0.5, 0.45)
    frames = image_frames(torch.tensor([[0.0, 0.0, 40.0, 40.0]]))
    for angle, flip in C.AUGMENTATIONS:
        aff = augmentation_affine(torch.tensor([angle]), torch.tensor([float(flip)]))
        q = apply_affine(torch.tensor([[[0.5, 0.45]]]), aff)
        crop = sample_windows(img, frames, q, torch.full((1, 1, 2), 15 / 40), 15, aff)[0, 0, 0]
        iy, ix = divmod(int(crop.argmax()), 15)
        assert (ix, iy) == (7, 7), (angle, flip)


def test_flip_swaps_left_and_right_points():
    pts = torch.tensor([[[0.3, 0.3], [0.7, 0.3], [0.5, 0.5], [0.35, 0.75], [0.65, 0.75]]])
    crops = _crops(pts, [0.0, 0.0, 10.0, 10.0], image_hw=(10, 10), size=8)
    _, gt = C.augment_batch(crops, torch.tensor([0]), torch.tensor([3]))   # (0 deg, flip)
    # the mirrored right eye (0.7 -> 0.3) is the new left eye: a symmetric face is unchanged
    assert torch.allclose(gt, pts, atol=1e-6)


# --------------------------------------------------------------------------- Eq. 6 and batches
def test_stage_loss_is_eq6_per_net_summed():
    out = torch.tensor([[[1.0, 1.0, 9.0], [0.0, 2.0, 9.0]]])     # [B=1, G=2, 3]
    tgt = torch.zeros(1, 2, 3)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    # one point per net, N = 1: net 0: (1 + 1) / 2 = 1.0; net 1: (0 + 4) / 2 = 2.0
    assert float(C.stage_loss(out, tgt, mask)) == pytest.approx(3.0)
    # N counting coordinates (N = 2): net 0: 2 / 4 = 0.5; net 1: 4 / 4 = 1.0
    assert float(C.stage_loss(out, tgt, mask, n="outputs")) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="'points' or 'outputs'"):
        C.stage_loss(out, tgt, mask, n="coords")


def test_stage_targets_are_window_relative():
    crops = _random_crops(4)
    model = ccnn()
    faces, augs = torch.arange(4), torch.zeros(4, dtype=torch.long)
    inputs, targets, mask = C.stage_batch(model, 2, crops, faces, augs, C.gt_box_units(crops), 0.0)
    assert inputs.shape == (4, 10, 3, 15, 15)
    assert torch.allclose(targets, torch.full((4, 10, 2), 0.5), atol=1e-6)  # windows on the gt
    inputs, targets, mask = C.stage_batch(model, 1, crops, faces, augs, None, 0.0)
    assert inputs.shape == (4, 3, 3, 39, 39) and mask.sum().item() == 22


def test_profiles_are_complete():
    for name in ("smoke", "quick", "paper"):
        assert set(C.PROFILES[name]) == set(C.PROFILES["smoke"])
    assert C.get_profile("smoke") == C.PROFILES["smoke"]
    assert C.get_profile("smoke")["iters"] is not C.PROFILES["smoke"]["iters"]      # a copy
    with pytest.raises(ValueError, match="valid"):
        C.get_profile("huge")


@pytest.mark.slow
def test_train_ccnn_runs_and_errors_have_their_shapes():
    crops = _random_crops()
    prof = C.get_profile("smoke") | {"iters": {1: 2, 2: 2, 3: 2}, "batch": 4}
    model, hist = C.train_ccnn(crops, prof, log=lambda *_: None)
    assert list(hist["stage"]) == [1, 2, 3]
    errs = C.stage_errors(model, crops)
    assert errs["per_point"].shape == (3, 5) and np.isfinite(errs["mean"]).all()
    assert errs["per_face"].shape == (3, len(crops))
    assert errs["points"][2].shape == (len(crops), 5, 2)


def _lrs(schedule: str, iters: int, lr: float = 2e-3) -> list[float]:
    """The learning rate used at each of ``iters`` iterations (scheduler stepped as fit does)."""
    net = torch.nn.Linear(2, 2)
    opt, sched, step = C.make_optimizer(net, 0.9, 5e-4, schedule, lr, iters)
    out = []
    for i in range(iters):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if step == "batch" or (i + 1) % C.DECAY_EVERY == 0:
            sched.step()
    return out


def test_paper_schedule_known_answers():
    """Section 3.3: SGD 5e-3, x0.9 every 100 iterations; weights decayed, biases not."""
    net = torch.nn.Linear(2, 2)
    opt, _, step = C.make_optimizer(net, 0.9, 5e-4, "paper", lr=1.0)       # lr ignored
    assert isinstance(opt, torch.optim.SGD) and step == "epoch"
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    lrs = _lrs("paper", 1000)
    assert lrs[0] == lrs[99] == 5e-3
    assert lrs[100] == pytest.approx(4.5e-3) and lrs[999] == pytest.approx(5e-3 * 0.9 ** 9)
    assert lrs[250] == pytest.approx(C.paper_learning_rate(250)) == pytest.approx(5e-3 * 0.81)
    # why it cannot converge: the rates sum to at most 5, and 96 % of that is spent by 3,000
    total = 5e-3 * 100 / (1 - 0.9)
    assert total == pytest.approx(5.0)
    spent = sum(C.paper_learning_rate(i) for i in range(3000))
    assert spent / total == pytest.approx(1 - 0.9 ** 30, rel=1e-9) and spent / total > 0.95
    assert C.paper_learning_rate(9999) < 2e-7


def test_onecycle_schedule_known_answers():
    """Adam, one cycle over the stage's iterations: starts at lr/25, peaks at lr at 30 %,
    ends near zero."""
    net = torch.nn.Linear(2, 2)
    opt, _, step = C.make_optimizer(net, 0.9, 5e-4, "onecycle", 2e-3, 1000)
    assert isinstance(opt, torch.optim.Adam) and step == "batch"
    lrs = _lrs("onecycle", 1000)
    assert lrs[0] == pytest.approx(2e-3 / 25)
    assert max(lrs) == pytest.approx(2e-3, rel=1e-3) and 290 <= int(np.argmax(lrs)) <= 310
    assert lrs[-1] < 1e-6
    with pytest.raises(ValueError, match="schedule"):
        C.make_optimizer(net, 0.9, 5e-4, "cosine")


def test_profiles_use_a_converging_schedule_and_half_extent_windows():
    for name in ("quick", "paper"):
        p = C.get_profile(name)
        assert p["schedule"] == "onecycle" and p["window_extent"] == "half"
        assert p["iters"][1] == max(p["iters"].values()) > p["ablation_iters"]   # headline first
        assert p["shake_std"] > p["paper_shake_std"] == 0.01
    cfg = C.config_from_profile(C.get_profile("quick"), relative=False)
    assert cfg.window_extent == "half" and cfg.shake_std == 0.03 and not cfg.relative
    assert cfg.stage3_windows == (0.08, 0.09)
    full = C.config_from_profile(C.get_profile("quick") | {"window_extent": "full"})
    assert torch.allclose(full.local_window_sizes(3), cfg.local_window_sizes(3) / 2)


@pytest.mark.slow
def test_paper_schedule_trains_through_fit():
    crops = _random_crops()
    prof = C.get_profile("smoke") | {"iters": {1: 200, 2: 2, 3: 2}, "batch": 2,
                                     "schedule": "paper"}
    _, hist = C.train_ccnn(crops, prof, stages=1, log=lambda *_: None)
    assert hist["lr"].tolist() == pytest.approx([4.5e-3, 4.05e-3])       # after each epoch


def test_fast_prediction_path_matches_the_grouped_one():
    crops = _random_crops()
    torch.manual_seed(0)
    model = ccnn()
    a = C.predict_stage(model, 1, crops, augs=(0, 3))
    b = C.predict_stage(model, 1, crops, augs=(0, 3), batched=True)
    assert torch.allclose(a, b, atol=1e-5)
    a2 = C.predict_stage(model, 2, crops, anchors=a, augs=(0, 3))
    b2 = C.predict_stage(model, 2, crops, anchors=a, augs=(0, 3), batched=True)
    assert torch.allclose(a2, b2, atol=1e-5)
