"""Text and json formats: WFLW, BioID, CelebA, COCO keypoints, and the CUHK / 300-W fixtures:
round trips and the error each malformed file gives."""

from pathlib import Path

import numpy as np
import pytest

from lmklib.data.fixtures import (write_300w_fixture, write_bioid_fixture, write_celeba_fixture,
                                  write_cuhk_fixture, write_wflw_fixture)
from lmklib.data.formats.bioid import BioID
from lmklib.data.formats.celeba import CelebA
from lmklib.data.formats.coco import CocoKeypoints
from lmklib.data.formats.cuhk import CUHK5Point
from lmklib.data.formats.w300 import W300
from lmklib.data.formats.wflw import ATTRIBUTES, WFLW
from lmklib.data.sample import AnnotationError
from lmklib.data.schemes import BIOID20, CUHK5, convert_points

# --- WFLW ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wflw(tmp_path_factory):
    root = tmp_path_factory.mktemp("wflw")
    return root, write_wflw_fixture(root, n_train=3, n_test=6, seed=0)


def test_wflw_round_trip_and_subsets(wflw):
    root, truth = wflw
    for split in ("train", "test"):
        ds = WFLW(root, split)
        np.testing.assert_allclose(ds.landmarks_array(), truth[split], atol=1e-6)
    ds = WFLW(root, "test")
    assert ds.attribute_counts() == dict.fromkeys(ATTRIBUTES, 1)
    assert ds[0]["meta"]["attributes"]["pose"] and ds[0]["image"].shape == (3, 140, 160)
    occ = WFLW(root, "test", subset="occlusion")
    assert len(occ) == 1
    np.testing.assert_allclose(occ.landmarks_array()[0], truth["test"][4], atol=1e-6)


def test_wflw_errors(wflw, tmp_path):
    root, _ = wflw
    with pytest.raises(FileNotFoundError, match=r"list_98pt_rect_attr_train\.txt not found.*wywu"):
        WFLW(tmp_path, "train")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        WFLW(root, "val")
    with pytest.raises(ValueError, match="subset must be None or one of"):
        WFLW(root, "test", subset="large_pose")
    lst = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_test.txt"
    good = lst.read_text().splitlines()
    bad = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_test.txt"
    bad.parent.mkdir(parents=True)
    (tmp_path / "WFLW_images").symlink_to(root / "WFLW_images")
    cases = [
        (good[0].split(" ", 2)[2], "line 1: expected 207 fields .* found 205"),
        (good[0].replace(good[0].split()[7], "nan", 1), "line 1: point 3 has a non-finite"),
        (" ".join(good[0].split()[:200] + ["2"] + good[0].split()[201:]),
         r"line 1: attributes must be 0 or 1, got \[2,"),
        (good[0].rsplit(" ", 1)[0] + " 0--Event_0/absent.jpg", "line 1: image not found"),
    ]
    for text, message in cases:
        bad.write_text(text + "\n")
        with pytest.raises((AnnotationError, FileNotFoundError), match=message):
            WFLW(tmp_path, "test")

# --- BioID ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bioid(tmp_path_factory):
    root = tmp_path_factory.mktemp("bioid")
    return root, write_bioid_fixture(root, n=3, seed=0)


def test_bioid_markups(bioid):
    root, truth = bioid
    ds20 = BioID(root, markup="fgnet20")
    assert ds20.scheme is BIOID20 and len(ds20) == 3
    np.testing.assert_allclose(ds20.landmarks_array(), truth["all"], atol=1e-6)
    ds5 = BioID(root, markup="cuhk5")
    np.testing.assert_allclose(ds5.landmarks_array(), convert_points(truth["all"], BIOID20, CUHK5),
                               atol=1e-6)
    eyes = BioID(root, markup="eyes")
    s = eyes[0]
    assert eyes.scheme is CUHK5 and s["mask"].tolist() == [True, True, False, False, False]
    np.testing.assert_array_equal(s["landmarks"][:2].numpy(), truth["eyes"][0])  # image-left first
    assert s["image"].shape == (1, 286, 384)


def test_bioid_errors(bioid, tmp_path):
    root, _ = bioid
    with pytest.raises(FileNotFoundError, match=r"BioID images .* not found.*bioid\.com"):
        BioID(tmp_path)
    with pytest.raises(ValueError, match=r"markup must be one of \['fgnet20', 'cuhk5', 'eyes'\]"):
        BioID(root, markup="68")
    with pytest.raises(ValueError, match=r"split must be one of \['all'\]"):
        BioID(root, split="test")
    (tmp_path / "BioID_0000.pgm").write_bytes((root / "BioID_0000.pgm").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"FGNet points for BioID_0000\.pgm not found"):
        BioID(tmp_path, markup="fgnet20")
    (tmp_path / "BioID_0000.eye").write_text("#LX\tLY\tRX\tRY\n232\t110\t161\n")
    with pytest.raises(AnnotationError, match=r"BioID_0000\.eye, line 2: expected 4 numbers"):
        BioID(tmp_path, markup="eyes")
    (tmp_path / "points_20").mkdir()
    (tmp_path / "points_20" / "bioid_0000.pts").write_text("version: 1\nn_points: 20\n{\n1 2\n}\n")
    with pytest.raises(AnnotationError, match="header says n_points: 20 but 1 points follow"):
        BioID(tmp_path, markup="fgnet20")

# --- CelebA --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return root, write_celeba_fixture(root, n=6, seed=0)


def test_celeba_round_trip_and_splits(celeba):
    root, truth = celeba
    for split in ("train", "valid", "test", "all"):
        ds = CelebA(root, split)
        np.testing.assert_array_equal(ds.landmarks_array(), truth[split])
    assert len(CelebA(root, "test")) == 2 and CelebA(root, "all")[0]["image"].shape == (3, 218, 178)
    wild = CelebA(root, "all", aligned=False)
    np.testing.assert_array_equal(wild.landmarks_array(), truth["wild"])
    np.testing.assert_array_equal(wild.boxes_array(), truth["wild_boxes"])
    assert wild[0]["image"].shape == (3, 256, 256)


def test_celeba_errors(celeba, tmp_path):
    root, _ = celeba
    with pytest.raises(FileNotFoundError, match=r"list_landmarks_align_celeba\.txt not found"):
        CelebA(tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'valid', 'test', 'all'\]"):
        CelebA(root, "val")
    anno = tmp_path / "Anno"
    anno.mkdir()
    (tmp_path / "Img" / "img_align_celeba").mkdir(parents=True)
    lines = (root / "Anno" / "list_landmarks_align_celeba.txt").read_text().splitlines()
    for text, message in [
        (lines[:3], "header says 6 images but 1 lines follow"),
        (lines[:2] + [lines[2] + " 5"], "line 3: expected an image name and 10 numbers, found 11"),
        (["6", "x y"] + lines[2:], "line 2: expected the header 'lefteye_x"),
        (lines[:2] + [lines[2].replace(lines[2].split()[3], "nan")] + lines[3:],
         "line 3: point 1 has a non-finite"),
    ]:
        (anno / "list_landmarks_align_celeba.txt").write_text("\n".join(text) + "\n")
        with pytest.raises(AnnotationError, match=message):
            CelebA(tmp_path, "all")
    (anno / "list_landmarks_align_celeba.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(FileNotFoundError, match=r"6 images missing from .*000001\.jpg"):
        CelebA(tmp_path, "all")

# --- COCO keypoints (real mmpose fixture files) ----------------------------------------------------

MMPOSE = {"300w/test_300w.json": (2, "ibug68"), "300wlp/test_300wlp.json": (2, "ibug68"),
          "aflw/test_aflw.json": (2, "aflw19"), "cofw/test_cofw.json": (2, "cofw29"),
          "wflw/test_wflw.json": (4, "wflw98"), "300vw/anno_300vw.json": (3, "ibug68"),
          "lapa/test_lapa.json": (2, None)}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(MMPOSE))
def test_coco_on_mmpose_fixtures(real_data_root, name):
    path = real_data_root / "fixtures" / "mmpose_coco" / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    n, scheme = MMPOSE[name]
    ds = CocoKeypoints(path)
    assert len(ds) == n and (ds.scheme.name if ds.scheme else None) == scheme
    s = ds[0]
    assert s["image"].shape[0] == 3 and s["mask"].all()
    assert s["landmarks"].shape == (ds.records[0].landmarks.shape[0], 2)


@pytest.mark.realdata
def test_coco_cofw_occlusion_flags_and_boxes(real_data_root):
    path = real_data_root / "fixtures" / "mmpose_coco" / "cofw" / "test_cofw.json"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    s = CocoKeypoints(path)[0]
    assert s["visible"][:22].all() and not s["visible"][22:28].any() and s["visible"][28]
    assert s["box"].tolist() == [38.0, 102.0, 143.0, 282.0]  # bbox [x, y, w, h] -> (x0, y0, x1, y1)


def _coco(tmp_path, anns, images=None):
    import json

    images = images if images is not None else [{"id": 1, "file_name": "a.png"}]
    p = tmp_path / "ann.json"
    p.write_text(json.dumps({"images": images, "annotations": anns}))
    return p


def test_coco_written_file_round_trip_and_errors(tmp_path):
    from lmklib.data.fixtures import _save, draw_image

    _save(tmp_path / "a.png", draw_image(20, 20))
    kp = [1.0, 2.0, 2, 3.0, 4.0, 1, 0.0, 0.0, 0, 5.0, 6.0, 2, 7.0, 8.0, 2]
    ds = CocoKeypoints(_coco(tmp_path, [{"id": 7, "image_id": 1, "keypoints": kp,
                                         "bbox": [0, 0, 10, 12]}]))
    s = ds[0]
    assert ds.scheme is CUHK5 and s["mask"].tolist() == [True, True, False, True, True]
    assert s["visible"].tolist() == [True, False, False, True, True]
    assert s["box"].tolist() == [0, 0, 10, 12]
    with pytest.raises(AnnotationError, match=r"annotation 0 \(id 7\): keypoints must be"):
        CocoKeypoints(_coco(tmp_path, [{"id": 7, "image_id": 1, "keypoints": kp[:-1]}]))
    with pytest.raises(AnnotationError, match="annotation 0 .*: expected 68 keypoints, found 5"):
        CocoKeypoints(_coco(tmp_path, [{"id": 7, "image_id": 1, "keypoints": kp}]), scheme="ibug68")
    with pytest.raises(AnnotationError, match="image_id 9 not in images"):
        CocoKeypoints(_coco(tmp_path, [{"id": 7, "image_id": 9, "keypoints": kp}]))
    with pytest.raises(FileNotFoundError, match=r"image not found: .*b\.png"):
        CocoKeypoints(_coco(tmp_path, [{"id": 7, "image_id": 1, "keypoints": kp}],
                            [{"id": 1, "file_name": "b.png"}]))
    (tmp_path / "broken.json").write_text("{\n\"images\": [,]}")
    with pytest.raises(AnnotationError, match=r"broken\.json, line 2: not valid json"):
        CocoKeypoints(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="COCO keypoint json not found"):
        CocoKeypoints(tmp_path / "absent.json")

# --- CUHK and 300-W fixtures through the existing loaders ------------------------------------------


def test_cuhk_fixture_round_trip(tmp_path):
    truth = write_cuhk_fixture(tmp_path, n_train=4, n_test=2)
    assert (tmp_path / "trainImageList.txt").read_bytes().count(b"\r\n") == 4
    for split in ("train", "test"):
        ds = CUHK5Point(tmp_path, f"{split}_official")
        np.testing.assert_allclose(ds.landmarks_array(), truth[split], atol=1e-6)
    assert CUHK5Point(tmp_path, "train_official", image_mode="L")[0]["image"].shape == (1, 250, 250)
    # the clean protocol: the same faces, the LFW ones in their 80 px frames (v' = (v + .5) .32 - .5)
    clean, official = CUHK5Point(tmp_path, "train"), CUHK5Point(tmp_path, "train_official")
    assert [r.meta["source"] for r in clean.records] == ["lfw_5590_80px", "net_7876"] * 2
    lfw = [i for i, r in enumerate(official.records) if r.meta["source"] == "lfw_5590"]
    np.testing.assert_allclose(clean.landmarks_array()[lfw],
                               (truth["train"][lfw] + 0.5) * 0.32 - 0.5, atol=1e-6)
    assert clean[0]["image"].shape == (3, 80, 80)
    assert [r.meta["source"] for r in CUHK5Point(tmp_path, "test").records] == ["net_7876"]


def test_300w_fixture_round_trip(tmp_path):
    truth = write_300w_fixture(tmp_path, n_per_folder=2)
    ds = W300(tmp_path, "train")
    expected = np.concatenate([truth[f] for f in ("afw", "helen/trainset", "lfpw/trainset")])
    np.testing.assert_allclose(ds.landmarks_array(), expected, atol=1e-5)
    text = next(Path(tmp_path, "afw").glob("*.pts")).read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"]
    assert float(text[3].split()[0]) == pytest.approx(truth["afw"][0, 0, 0] + 1)  # 1-based on disk
    assert len(W300(tmp_path, "full")) == 6

# --- issue 14: encodings, paths leaving the root, points outside the image ---------------------------


def test_list_files_that_leave_the_root_or_are_not_utf8(tmp_path, wflw, celeba):
    wroot, _ = wflw
    lst = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt"
    good = (wroot / lst).read_text().splitlines()[0]
    (tmp_path / "w" / lst).parent.mkdir(parents=True)
    (tmp_path / "w" / "WFLW_images").symlink_to(wroot / "WFLW_images")
    (tmp_path / "w" / lst).write_text(good.rsplit(" ", 1)[0] + " ../../x.jpg\n")
    with pytest.raises(AnnotationError, match=r"list_98pt_rect_attr_test\.txt, line 1: image path "
                                              r"'\.\./\.\./x\.jpg' leaves the data root"):
        WFLW(tmp_path / "w", "test")
    (tmp_path / "w" / lst).write_bytes(b"\n" + good.encode() + b" \x96\n")
    with pytest.raises(AnnotationError, match=r"test\.txt, line 2: not UTF-8 text: byte 0x96"):
        WFLW(tmp_path / "w", "test")

    croot, _ = celeba
    anno = croot / "Anno" / "list_landmarks_align_celeba.txt"
    text = anno.read_text()
    (tmp_path / "c" / "Anno").mkdir(parents=True)
    (tmp_path / "c" / "Img").mkdir()
    (tmp_path / "c" / "Img" / "img_align_celeba").symlink_to(croot / "Img" / "img_align_celeba")
    (tmp_path / "c" / "Anno" / anno.name).write_text(text.replace("000002.jpg", "../000002.jpg"))
    with pytest.raises(AnnotationError, match=r"list_landmarks_align_celeba\.txt, line 4: image "
                                              r"path '\.\./000002\.jpg' leaves the data root"):
        CelebA(tmp_path / "c", "all")
    (tmp_path / "c" / "Anno" / anno.name).write_bytes(b"\xef\xbb\xbf" + text.encode())
    np.testing.assert_array_equal(CelebA(tmp_path / "c", "all").landmarks_array(),
                                  CelebA(croot, "all").landmarks_array())   # a BOM is skipped


def test_coco_file_names_encoding_and_points_outside(tmp_path):
    from lmklib.data.fixtures import _save, draw_image

    _save(tmp_path / "a.png", draw_image(20, 20))
    _save(tmp_path.parent / "outside.png", draw_image(20, 20))
    kp = [1.0, 2.0, 2, 3.0, 4.0, 2, 5.0, 6.0, 2, 7.0, 8.0, 2, 9.0, 10.0, 2]
    ann = [{"id": 7, "image_id": 1, "keypoints": kp}]
    with pytest.raises(AnnotationError, match=r"ann\.json: image path '\.\./outside\.png' leaves"):
        CocoKeypoints(_coco(tmp_path, ann, [{"id": 1, "file_name": "../outside.png"}]))
    far = [{"id": 7, "image_id": 1, "keypoints": kp[:12] + [31.0, 10.0, 2]}]
    with pytest.raises(AnnotationError, match=r"ann\.json: annotation 0 \(id 7\): point 4 at "
                                              r"\(31, 10\) lies 0.55 image sizes outside the "
                                              r"20x20 image a\.png"):
        CocoKeypoints(_coco(tmp_path, far))                   # size from the image header
    with pytest.raises(AnnotationError, match=r"point 4 at \(31, 10\) lies 2.10 image sizes "
                                              r"outside the 10x10 image"):
        CocoKeypoints(_coco(tmp_path, far, [{"id": 1, "file_name": "a.png", "width": 10,
                                              "height": 10}]))  # ... or from the json
    p = _coco(tmp_path, ann)
    p.write_bytes(p.read_bytes().replace(b'"a.png"', b'"a\xff.png"'))
    with pytest.raises(AnnotationError, match=r"ann\.json, line 1: not UTF-8 text: byte 0xff"):
        CocoKeypoints(p)
