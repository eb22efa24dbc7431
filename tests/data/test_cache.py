"""The decoded-sample cache: round trip, no decoding on a second pass, invalidation."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import lmklib.data.sample as sample_mod
from lmklib.data import transforms as T
from lmklib.data.cache import CachedDataset
from lmklib.data.sample import LandmarkDataset, Record
from lmklib.data.schemes import CUHK5


class TinyFaces(LandmarkDataset):
    scheme = CUHK5
    image_mode = "RGB"


def write_faces(root, n=4):
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        h, w = 40 + 5 * i, 50 + 3 * i                      # different sizes: the crop unifies them
        path = root / f"face{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        pts = rng.uniform(10, 35, (5, 2))
        if i == 1:
            pts[2] = np.nan
        records.append(Record(path, pts, np.array([5.0, 6.0, 38.0, 39.0]), meta={"source": "x"}))
    return records


@pytest.fixture
def faces(tmp_path):
    (tmp_path / "img").mkdir()
    return TinyFaces(write_faces(tmp_path / "img"))


@pytest.fixture
def decodes(monkeypatch):
    count = {"n": 0}
    real = sample_mod.load_image

    def counting(*a, **k):
        count["n"] += 1
        return real(*a, **k)
    monkeypatch.setattr(sample_mod, "load_image", counting)
    return count


def test_round_trip_and_second_pass_decodes_nothing(faces, tmp_path, decodes):
    crop = T.CropToBox(24, scale=1.2)
    cached = CachedDataset(faces, tmp_path / "cache", pre_transform=crop)
    assert cached.built and decodes["n"] == len(faces) and len(cached) == len(faces)
    for i in range(len(faces)):
        want, got = crop(faces[i]), cached[i]
        assert torch.equal(got["image"], want["image"]) and got["image"].shape == (3, 24, 24)
        torch.testing.assert_close(got["landmarks"], want["landmarks"], equal_nan=True)
        for k in ("mask", "visible", "box"):
            assert torch.equal(got[k], want[k]), k
        np.testing.assert_allclose(got["meta"]["affine"], want["meta"]["affine"])
        assert got["meta"]["path"] == want["meta"]["path"] and got["meta"]["index"] == i
    decodes["n"] = 0
    again = CachedDataset(faces, tmp_path / "cache", pre_transform=crop)
    _ = [again[i] for i in range(len(again))]
    assert not again.built and decodes["n"] == 0
    assert isinstance(again.arrays["image"], np.memmap)
    assert len(pickle.dumps(again)) < 20_000                          # no arrays in the pickle
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [again.path.name]  # no temp left


def test_stale_cache_is_rebuilt(faces, tmp_path):
    crop = T.CropToBox(24)
    kw = dict(cache_dir=tmp_path / "c", key="tiny", pre_transform=crop)
    assert CachedDataset(faces, **kw).built
    assert not CachedDataset(faces, **kw).built
    # an image changes on disk
    p = faces.records[2].image_path
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 10**9))
    assert CachedDataset(faces, **kw).built
    # an annotation changes
    faces.records[0].landmarks = faces.records[0].landmarks + 1
    c = CachedDataset(faces, **kw)
    assert c.built and torch.allclose(c[0]["landmarks"], crop(faces[0])["landmarks"])
    # other crop parameters
    assert CachedDataset(faces, cache_dir=tmp_path / "c", key="tiny",
                         pre_transform=T.CropToBox(24, scale=1.5)).built
    assert CachedDataset(faces, **kw, rebuild=True).built
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["tiny"]


def test_mixed_shapes_fail_clearly_and_leave_nothing(faces, tmp_path):
    with pytest.raises(ValueError, match=r"sample 1 .*face1\.png.*CropToBox"):
        CachedDataset(faces, tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
    with pytest.raises(TypeError, match="uint8"):
        CachedDataset(faces, tmp_path / "c", pre_transform=T.Compose([T.CropToBox(8), T.ToFloat()]))


def test_augmentation_after_cache_and_collate(faces, tmp_path):
    aug = T.Compose([T.RandomHorizontalFlip(CUHK5, seed=0), T.RandomRotate(15, seed=1),
                     T.ToFloat()])
    cached = CachedDataset(faces, tmp_path / "c", pre_transform=T.CropToBox(24), transform=aug)
    a, b = cached[0], cached[0]
    assert a["image"].dtype == torch.float32 and not torch.equal(a["image"], b["image"])
    batch = next(iter(torch.utils.data.DataLoader(cached, batch_size=4)))
    assert batch["image"].shape == (4, 3, 24, 24) and batch["meta"]["affine"].shape == (4, 2, 3)
    # predictions in the augmented crop map back to the original image
    back = T.invert_points(batch["landmarks"].double(), batch["meta"]["affine"])
    orig = torch.from_numpy(np.stack([faces[i]["landmarks"].numpy() for i in range(4)])).double()
    flipped = batch["meta"]["flipped"]
    for i in range(4):
        want = orig[i][list(CUHK5.flip_perm)] if flipped[i] else orig[i]
        torch.testing.assert_close(back[i], want, equal_nan=True, atol=1e-4, rtol=0)


@pytest.mark.realdata
def test_real_cuhk_crops(cuhk_root, tmp_path):
    from lmklib.data.formats.cuhk import CUHK5Point

    ds = CUHK5Point(cuhk_root, "test", image_mode="RGB")
    ds.records = ds.records[:12]                 # lfw_5590 (grayscale files) as RGB: one shape
    crop = T.CropToBox(40, scale=1.2)
    cached = CachedDataset(ds, tmp_path, pre_transform=crop)
    lm = torch.from_numpy(np.array(cached.arrays["landmarks"]))
    assert cached.arrays["image"].shape == (12, 3, 40, 40)
    assert ((lm > -0.5) & (lm < 39.5)).all()      # the points lie inside the cropped face
    back = T.invert_points(lm.double(), cached.arrays["affine"])
    torch.testing.assert_close(back, torch.from_numpy(ds.landmarks_array()), atol=1e-4, rtol=0)


def test_build_with_worker_processes(faces, tmp_path):
    crop = T.CropToBox(24)
    a = CachedDataset(faces, tmp_path / "a", pre_transform=crop)
    b = CachedDataset(faces, tmp_path / "b", pre_transform=crop, num_workers=1)
    for k in ("image", "landmarks", "affine"):
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])


def test_fingerprint_follows_the_code_that_made_the_samples(monkeypatch):
    from lmklib.data import cache, transforms

    before = cache.code_fingerprint(transforms.CropToBox(32))
    real_open = open

    def edited_open(path, *args, **kwargs):
        f = real_open(path, *args, **kwargs)
        if str(path).endswith("geometry.py"):
            import io

            return io.BytesIO(f.read() + b"\n# an edit\n")
        return f

    monkeypatch.setattr("builtins.open", edited_open)
    assert cache.code_fingerprint(transforms.CropToBox(32)) != before


# --- issue 14: stale and damaged caches ----------------------------------------------------------


def test_ccnn_crops_follow_an_edited_annotation_and_a_replaced_image(tmp_path):
    """The CCNN's faces go through the fingerprinted cache: an annotation edit and an image
    replaced by one of the same size, with its old mtime put back (``cp -p``), both reach the
    crops (its old cache was keyed by source/root/n/size/margin and served the old ones)."""
    from lmklib import paths
    from lmklib.data.fixtures import write_cuhk_fixture
    from lmklib.papers.ccnn_duan2021 import load_cuhk

    write_cuhk_fixture(tmp_path, n_train=2, n_test=4, seed=0)
    image = tmp_path / "net_7876" / "test_0001.jpg"          # the first clean test face
    pixels = np.asarray(Image.open(image).convert("RGB"))
    Image.fromarray(pixels).save(image, format="BMP")         # BMP: the size follows the shape
    load = lambda **kw: load_cuhk(tmp_path, "test", None, size=24, margin=0.25, **kw)  # noqa: E731
    before = load()
    folders = [p.name for p in paths.cache_root().iterdir()]
    assert len(before) == 2 and len(folders) == 1

    # an annotation edit: the first point of the first face moves 4 px right
    lst = tmp_path / "testImageList.txt"
    lines = lst.read_bytes().decode().split("\r\n")
    tokens = lines[1].split()
    tokens[5] = f"{float(tokens[5]) + 4:.6f}"
    lines[1] = " ".join(tokens)
    lst.write_bytes("\r\n".join(lines).encode())
    edited = load()
    assert edited.gt[0, 0, 0].item() == pytest.approx(before.gt[0, 0, 0].item() + 4)
    shift = (edited.points[0, 0, 0] - before.points[0, 0, 0]).item()
    assert shift == pytest.approx(4 * edited.affines[0, 0, 0].item(), abs=1e-4)  # in crop pixels
    now = [p.name for p in paths.cache_root().iterdir()]
    assert len(now) == 1 and now != folders                  # the superseded folder is removed

    # the image replaced by other pixels: same size, same mtime
    st = os.stat(image)
    Image.fromarray(255 - pixels).save(image, format="BMP")
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(image).st_size, os.stat(image).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    replaced = load()
    assert torch.equal(replaced.images, load(use_cache=False).images)
    assert not torch.equal(replaced.images[0], edited.images[0])
    assert torch.equal(replaced.images[1], edited.images[1])


def _truncate(p):
    p.write_bytes(p.read_bytes()[:60])


def _drop_tail(p):
    p.write_bytes(p.read_bytes()[:-8])


def _reshape(p):
    np.save(p, np.zeros((4, 5), np.float32))


def _overwrite_same_size_and_mtime(p):
    st = os.stat(p)
    with open(p, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("name,damage,message", [
    ("image.npy", _truncate, r"image\.npy has no readable \.npy header"),
    ("landmarks.npy", _drop_tail, r"landmarks\.npy is \d+ bytes, expected \d+ \(truncated"),
    ("mask.npy", os.remove, r"mask\.npy is missing"),
    ("box.npy", _reshape, r"box\.npy holds float32 \[4, 5\], expected float32 \[4, 4\]"),
    ("image.npy", _overwrite_same_size_and_mtime, r"image\.npy has checksum crc32:\w+, expected"),
    ("meta.json", lambda p: p.write_text("{garbage"), r"meta\.json is 8 bytes, expected"),
    ("manifest.json", lambda p: p.write_text("{garbage"), r"manifest\.json is not valid JSON"),
])
def test_a_damaged_cache_warns_once_and_is_rebuilt(faces, tmp_path, name, damage, message):
    import warnings

    from lmklib.data.cache import CacheWarning

    crop = T.CropToBox(24)
    first = CachedDataset(faces, tmp_path, pre_transform=crop)
    want = {k: np.array(v) for k, v in first.arrays.items()}
    damage(first.path / name)
    with pytest.warns(CacheWarning, match=rf"cache .*{first.path.name}: {message}") as record:
        again = CachedDataset(faces, tmp_path, pre_transform=crop)
    ours = [w for w in record if issubclass(w.category, CacheWarning)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    assert again.built and again.path == first.path
    for k, v in want.items():
        np.testing.assert_array_equal(again.arrays[k], v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not CachedDataset(faces, tmp_path, pre_transform=crop).built


def test_checksums_are_taken_once_per_process(faces, tmp_path, monkeypatch):
    from lmklib.data import cache

    sums = []
    real = cache.file_checksum
    monkeypatch.setattr(cache, "file_checksum", lambda p: sums.append(p.name) or real(p))
    built = CachedDataset(faces, tmp_path, pre_transform=T.CropToBox(24))
    assert len(sums) == 7                                  # 6 fields + meta.json, at build
    CachedDataset(faces, tmp_path, pre_transform=T.CropToBox(24))
    assert len(sums) == 7                                  # verified files: a stat each
    monkeypatch.setattr(cache, "_VERIFIED", {})            # as in a new process
    CachedDataset(faces, tmp_path, pre_transform=T.CropToBox(24))
    assert len(sums) == 14
    p = built.path / "box.npy"                             # touched, bytes unchanged: one sum, kept
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 10**9))
    assert not CachedDataset(faces, tmp_path, pre_transform=T.CropToBox(24)).built
    assert sums[14:] == ["box.npy"]


def test_a_build_removes_the_caches_it_supersedes(faces, tmp_path):
    root = tmp_path / "c"
    crop = T.CropToBox(24)
    first = CachedDataset(faces, root, pre_transform=crop)
    other_crop = CachedDataset(faces, root, pre_transform=T.CropToBox(16))
    subset = CachedDataset(TinyFaces(faces.records[:2]), root, pre_transform=crop)
    fixed = CachedDataset(faces, root, key="mine", pre_transform=crop)
    for name in ("TinyFaces-0123456789abcdef", "OtherFaces-0123456789abcdef",  # version-1 names
                 f".{first.path.name}.old-1234abcd"):                         # a removal cut short
        (root / name).mkdir()
    cls, identity, digest = first.path.name.split("-")
    assert (cls, len(identity), len(digest)) == ("TinyFaces", 12, 16)
    faces.records[0].landmarks = faces.records[0].landmarks + 1    # an annotation edit
    second = CachedDataset(faces, root, pre_transform=crop)
    assert second.built and second.path.name.startswith(f"TinyFaces-{identity}-")
    assert sorted(p.name for p in root.iterdir()) == sorted([
        second.path.name, other_crop.path.name, subset.path.name, fixed.path.name,
        "OtherFaces-0123456789abcdef"])
