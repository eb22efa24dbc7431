"""The data check (``lmk data --check``): known answers on synthetic folders whose pictures or
labels were moved on purpose, and the real CUHK / 300-W data when present."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from lmklib.data import check, fixtures
from lmklib.data.geometry import apply_affine, rotation_affine, warp_affine
from lmklib.data.sample import LandmarkDataset, Record
from lmklib.data.schemes import CUHK5
from lmklib.data.synthetic import generate

N = 40      # faces per synthetic folder (>= check.MIN_FACES)


def _folder(name: str, seed: int, realign_deg: float = 0.0, label_shift: float = 0.0,
            n: int = N) -> list[Record]:
    """``n`` synthetic 5-point faces in folder ``name``. ``realign_deg``: each PICTURE is rotated
    about its face by +-(realign/2 .. realign) degrees under unchanged labels and boxes (what
    our lfw_5590 copy is); ``label_shift``: the points move down by this fraction of the box
    width, their boxes stay (labels off their boxes and their pictures)."""
    g = generate(n, size=96, seed=seed, scheme="cuhk5", max_yaw=25, max_pitch=10, max_roll=10)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image, p = g["images"][i], g["landmarks"][i].astype(np.float64)
        if realign_deg:
            angle = rng.choice([-1, 1]) * rng.uniform(realign_deg / 2, realign_deg)
            a = rotation_affine(angle, tuple(p.mean(0)))
            image = warp_affine(torch.from_numpy(image).permute(2, 0, 1), a, 96, padding="border")
            image = image.permute(1, 2, 0).numpy()
        box = np.r_[p.min(0) - 10, p.max(0) + 10]
        p = p + [0.0, label_shift * (box[2] - box[0])]
        out.append(Record(Path(f"{name}/{i:03d}.png"), p, box, meta={"source": name},
                          image=image))
    return out


def _dataset(*folders: list[Record]) -> LandmarkDataset:
    ds = LandmarkDataset([r for f in folders for r in f])
    ds.scheme = CUHK5
    return ds


@pytest.fixture(scope="module")
def clean():
    return {name: _folder(name, seed) for name, seed in (("a", 1), ("b", 2), ("c", 3))}


def _by_folder(checks):
    return {c.folder: c for c in checks}


def test_fit_similarity_recovers_a_known_map():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (7, 2))
    a = rotation_affine(17.0, (40.0, 60.0), 1.3)
    a[:, 2] += [5.0, -3.0]
    np.testing.assert_allclose(check._fit_similarity(src, apply_affine(src, a).astype(float)),
                               a, atol=1e-9)
    batch = check._fit_similarity(np.stack([src, src * 2]), apply_affine(src, a).astype(float))
    assert batch.shape == (2, 2, 3)
    np.testing.assert_allclose(batch[0], a, atol=1e-9)


def test_source_folder_from_meta_or_from_the_path_under_the_root(tmp_path):
    assert check.source_folder(Record(tmp_path / "x/1.jpg", np.zeros((5, 2)),
                                      meta={"source": "net_7876"}), tmp_path) == "net_7876"
    r = Record(tmp_path / "helen" / "trainset" / "1.jpg", np.zeros((68, 2)))
    assert check.source_folder(r, tmp_path) == "helen/trainset"
    assert check.source_folder(r, tmp_path / "elsewhere") == "trainset"


def test_clean_folders_are_not_flagged(clean):
    checks = check.check_dataset(_dataset(*clean.values()), "synthetic", "train")
    assert [c.folder for c in checks] == ["a", "b", "c"]
    for c in checks:
        assert c.faces == c.sampled == N and c.siblings == 2
        assert not c.flags, (c.folder, c.flags)
        assert c.agreement > 0.9


def test_a_folder_whose_pictures_were_realigned_is_flagged_by_the_pixels(clean):
    """The lfw_5590 case: pictures rotated under their labels; the labels still agree with their
    boxes, so the mean-shape error does not see it, the image-label agreement does."""
    checks = _by_folder(check.check_dataset(
        _dataset(clean["a"], clean["b"], _folder("c", 3, realign_deg=12.0))))
    bad = checks["c"]
    assert bad.flagged and "labels fit the images worse" in bad.flags[0]
    assert len(bad.flags) == 1                                         # not the mean shape
    assert bad.nme == pytest.approx(_by_folder(check.check_dataset(
        _dataset(*clean.values())))["c"].nme)
    assert bad.agreement < min(checks["a"].agreement, checks["b"].agreement) - 0.05
    assert not checks["a"].flagged and not checks["b"].flagged


def test_labels_moved_off_their_boxes_raise_the_mean_shape_error(clean):
    checks = _by_folder(check.check_dataset(
        _dataset(clean["a"], clean["b"], _folder("c", 3, label_shift=0.15))))
    assert any("mean-shape NME" in f for f in checks["c"].flags)
    assert checks["c"].nme > 1.5 * max(checks["a"].nme, checks["b"].nme)
    assert not checks["a"].flagged and not checks["b"].flagged


def test_no_flag_without_siblings_or_with_too_few_faces(clean):
    alone = check.check_dataset(_dataset(_folder("c", 3, realign_deg=12.0)))
    assert len(alone) == 1 and alone[0].siblings == 0 and not alone[0].flagged
    few = _by_folder(check.check_dataset(_dataset(
        clean["a"], clean["b"], _folder("c", 3, realign_deg=12.0, n=check.MIN_FACES - 1))))
    assert few["c"].sampled == check.MIN_FACES - 1 and not few["c"].flagged


def test_sampling_is_bounded_and_seeded(clean):
    ds = _dataset(*clean.values())
    a = check.check_dataset(ds, per_folder=10, seed=5)
    b = check.check_dataset(ds, per_folder=10, seed=5)
    assert [c.sample for c in a] == [c.sample for c in b]
    assert all(c.sampled == 10 and c.faces == N for c in a)
    assert all(ds.records[i].meta["source"] == c.folder for c in a for i in c.sample)


def test_overlay_png_is_a_grid_of_the_first_faces(clean):
    from PIL import Image

    ds = _dataset(clean["a"])
    png = check.overlay_png(ds, range(N), "a title", n=8, tile=64, columns=4)
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size == (4 * 64, 2 * 64 + 18)
    assert check.overlay_name("300w", "train", "helen/trainset") == "300w_train_helen-trainset.png"


def test_check_data_root_on_fixtures(tmp_path):
    fixtures.write_cuhk_fixture(tmp_path / "cuhk_5pt", n_train=6, n_test=4)
    fixtures.write_300w_fixture(tmp_path / "300w", n_per_folder=3)
    (tmp_path / "cuhk_5pt" / "trainImageList_lfw_5590_80px.txt").unlink()
    splits = {(s.dataset, s.split): s for s in check.check_data_root(tmp_path)}
    assert set(splits) == {("cuhk_5pt", s) for s in check.CHECK_SPLITS["cuhk_5pt"]} | {
        ("300w", "train"), ("300w", "common")}
    assert "FileNotFoundError" in splits["cuhk_5pt", "train"].error   # reported, not raised
    assert [c.folder for c in splits["cuhk_5pt", "train_official"].folders] == ["lfw_5590",
                                                                               "net_7876"]
    assert [c.folder for c in splits["300w", "common"].folders] == ["helen/testset",
                                                                    "lfpw/testset"]
    table = check.to_frame(list(splits.values()))
    assert len(table) == 2 + 2 + 1 + 3 + 2 and not (table["flag"] == "FLAG").any()


# --------------------------------------------------------------------------- the real data
@pytest.fixture(scope="module")
def real_checks(real_data_root):
    return {(s.dataset, s.split): s for s in check.check_data_root(real_data_root)}


@pytest.mark.realdata
def test_real_cuhk_official_lists_flag_lfw_5590_and_only_it(real_checks, cuhk_root):
    for split in ("train_official", "test_official"):
        folders = _by_folder(real_checks["cuhk_5pt", split].folders)
        assert folders["lfw_5590"].flagged, folders["lfw_5590"]
        assert not folders["net_7876"].flagged, folders["net_7876"]
        # the annotations alone do not show it: lfw_5590's mean-shape error is the lower one
        assert folders["lfw_5590"].nme < folders["net_7876"].nme


@pytest.mark.realdata
def test_real_clean_cuhk_and_300w_flag_nothing(real_checks, cuhk_root, w300_root):
    clean = real_checks.get(("cuhk_5pt", "train"))
    if clean is None or clean.error:
        pytest.skip(f"the clean CUHK split is not available: {clean and clean.error}")
    for key in (("cuhk_5pt", "train"), ("cuhk_5pt", "test"), ("300w", "train"),
                ("300w", "common")):
        s = real_checks[key]
        assert not s.error, s.error
        assert not [c.folder for c in s.folders if c.flagged], [c.flags for c in s.folders]
    assert [c.folder for c in real_checks["cuhk_5pt", "train"].folders] == ["lfw_5590_80px",
                                                                             "net_7876"]
