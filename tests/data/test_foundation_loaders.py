"""CUHK 5-point lists and 300-W .pts folders: round trips, errors, and the real data's counts."""

import numpy as np
import pytest
from PIL import Image

from lmklib.data.formats.cuhk import CUHK5Point, read_cuhk_list
from lmklib.data.formats.w300 import W300, read_pts, write_pts
from lmklib.data.sample import AnnotationError, load_image

LINE = "lfw_5590\\a.jpg 10 50 20 70 20.5 30.25 40 30 30 45 22 58 38 58\r\n"


def write_image(path, size=(80, 90), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def make_cuhk(root, lines=(LINE,)):
    write_image(root / "lfw_5590" / "a.jpg")
    (root / "trainImageList.txt").write_text("".join(lines), newline="")
    return root


def test_cuhk_parses_windows_paths_box_and_points(tmp_path):
    ds = CUHK5Point(make_cuhk(tmp_path), "train_official")
    assert len(ds) == 1
    s = ds[0]
    assert s["image"].shape == (3, 90, 80)          # grayscale file read as RGB by default
    np.testing.assert_allclose(s["box"].numpy(), [10, 20, 50, 70])  # left right top bottom -> x0 y0 x1 y1
    np.testing.assert_allclose(s["landmarks"][0].numpy(), [20.5, 30.25])
    assert s["mask"].all() and s["meta"]["source"] == "lfw_5590"


def test_cuhk_line_with_13_numbers_names_file_and_line(tmp_path):
    bad = LINE.replace(" 38 58", " 38")
    make_cuhk(tmp_path, [LINE, bad])
    with pytest.raises(AnnotationError, match=r"trainImageList.txt, line 2: expected an image path "
                                              r"and 14 numbers .* found 13"):
        CUHK5Point(tmp_path, "train_official")


def test_cuhk_non_finite_and_bad_token(tmp_path):
    make_cuhk(tmp_path, [LINE.replace("20.5", "nan")])
    with pytest.raises(AnnotationError, match="line 1: point 0 has a non-finite coordinate"):
        CUHK5Point(tmp_path, "train_official")
    make_cuhk(tmp_path, [LINE.replace("20.5", "x1")])
    with pytest.raises(AnnotationError, match="line 1: not a number"):
        CUHK5Point(tmp_path, "train_official")


def test_cuhk_missing_image_and_list(tmp_path):
    make_cuhk(tmp_path, [LINE.replace("a.jpg", "b.jpg")])
    with pytest.raises(FileNotFoundError, match=r"line 1: image not found: .*b.jpg"):
        CUHK5Point(tmp_path, "train_official")
    with pytest.raises(FileNotFoundError, match="testImageList.txt.*Sun et al"):
        CUHK5Point(tmp_path, "test")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'test_official', "
                                         r"'train', 'train_official'\]"):
        CUHK5Point(tmp_path, "val")


def test_clean_cuhk_train_needs_the_80px_frames(tmp_path):
    make_cuhk(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"trainImageList_lfw_5590_80px.txt not found: "
                                                r"the clean CUHK training split .*train_official"):
        CUHK5Point(tmp_path, "train")
    (tmp_path / "trainImageList_lfw_5590_80px.txt").write_text("")  # no line for a.jpg
    with pytest.raises(FileNotFoundError, match=r"no line for a.jpg"):
        CUHK5Point(tmp_path, "train")


def pts_text(points, header=True):
    body = "\n".join(f"{x} {y}" for x, y in points)
    return f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n" if header else body + "\n"


def test_pts_round_trip_and_one_based(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    write_pts(tmp_path / "a.pts", pts)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts", 68), pts, atol=1e-6)
    (tmp_path / "b.pts").write_text(pts_text([(1.0, 1.0)] * 68))
    np.testing.assert_allclose(read_pts(tmp_path / "b.pts", 68), 0.0)  # 1-based -> 0-based
    (tmp_path / "c.pts").write_text(pts_text([(1.0, 2.0)] * 68, header=False))
    assert read_pts(tmp_path / "c.pts", 68).shape == (68, 2)


def test_pts_with_67_points_names_file(tmp_path):
    (tmp_path / "x.pts").write_text(pts_text([(1.0, 1.0)] * 67))
    with pytest.raises(AnnotationError, match=r"x.pts: expected 68 points, found 67"):
        read_pts(tmp_path / "x.pts", 68)
    (tmp_path / "y.pts").write_text(pts_text([(1.0, 1.0)] * 67).replace("n_points: 67", "n_points: 68"))
    with pytest.raises(AnnotationError, match="header says n_points: 68 but 67"):
        read_pts(tmp_path / "y.pts")
    (tmp_path / "z.pts").write_text(pts_text([(1.0, 1.0)] * 67 + [("inf", 2.0)]))
    with pytest.raises(AnnotationError, match=r"z.pts, line 71: non-finite"):
        read_pts(tmp_path / "z.pts", 68)


def test_w300_split_with_missing_parts(tmp_path):
    for i in range(3):
        write_image(tmp_path / "helen" / "testset" / f"{i}.jpg", mode="RGB")
        (tmp_path / "helen" / "testset" / f"{i}.pts").write_text(pts_text([(i + 1.0, 2.0)] * 68))
    ds = W300(tmp_path, "common")
    assert len(ds) == 3 and ds.present == ["helen/testset"] and ds.missing == ["lfpw/testset"]
    assert ds[2]["landmarks"][0].tolist() == [2.0, 1.0]
    with pytest.raises(FileNotFoundError, match="lfpw/testset"):
        W300(tmp_path, "common", missing_ok=False)
    (tmp_path / "helen" / "testset" / "0.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"0.pts: no image beside it"):
        W300(tmp_path, "common")


def test_corrupt_image_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: cannot decode image"):
        load_image(tmp_path / "broken.jpg")


@pytest.mark.realdata
def test_real_cuhk_counts(cuhk_root):
    assert len(CUHK5Point(cuhk_root, "train")) == 10_000
    assert len(CUHK5Point(cuhk_root, "train_official")) == 10_000
    assert len(CUHK5Point(cuhk_root, "test_official")) == 3_466
    test = CUHK5Point(cuhk_root, "test")
    assert len(test) == 2_027 and {r.meta["source"] for r in test.records} == {"net_7876"}
    s = test[0]
    assert s["image"].shape[0] == 3 and s["landmarks"].shape == (5, 2)
    # points lie inside their face box, give or take a few pixels
    lm, box = s["landmarks"].numpy(), s["box"].numpy()
    assert (lm[:, 0] > box[0] - 5).all() and (lm[:, 0] < box[2] + 5).all()


@pytest.mark.realdata
def test_real_300w_subset_counts(w300_root):
    assert len(W300(w300_root, "afw")) == 337
    assert len(W300(w300_root, "helen/testset")) == 330
    train = W300(w300_root, "train")
    # the data README: afw 337 + helen/trainset 870 + lfpw/trainset 805 = 2,012 training faces
    assert train.missing == [] and len(train) == 337 + 870 + 805 == 2012


@pytest.mark.realdata
def test_real_clean_cuhk_protocol(cuhk_root):
    """Issue 16: the clean training split's 4,151 LFW faces are all the 80x80 original frames, and
    the mean shape scores alike (within 1.5x) on every source folder of the clean protocol."""
    from PIL import Image

    from lmklib import metrics
    from lmklib.models.baseline import MeanShape

    train, test = CUHK5Point(cuhk_root, "train"), CUHK5Point(cuhk_root, "test")
    lfw = [r for r in train.records if r.meta["source"] == "lfw_5590_80px"]
    assert len(lfw) == 4_151
    for r in lfw:
        with Image.open(r.image_path) as im:
            assert im.size == (80, 80), r.image_path
    model = MeanShape().fit(train.landmarks_array(), train.boxes_array())
    per_folder = {}
    for ds in (train, test):
        gt, boxes = ds.landmarks_array(), ds.boxes_array()
        e = metrics.nme(model.predict(boxes), gt, norm="bbox_width", boxes=boxes, reduce="none")
        folders = np.array([r.meta["source"] for r in ds.records])
        for f in np.unique(folders):
            per_folder[(ds.split, f)] = float(e[folders == f].mean())
    assert set(per_folder) == {("train", "lfw_5590_80px"), ("train", "net_7876"), ("test", "net_7876")}
    assert max(per_folder.values()) < 1.5 * min(per_folder.values()), per_folder


# --- issue 14: encodings, unclosed blocks, paths out of the root, points out of the image ----------


def test_cuhk_list_with_a_byte_order_mark_parses(tmp_path):
    make_cuhk(tmp_path)
    (tmp_path / "trainImageList.txt").write_bytes(b"\xef\xbb\xbf" + LINE.encode())
    ds = CUHK5Point(tmp_path, "train_official")
    assert ds.records[0].image_path == tmp_path / "lfw_5590" / "a.jpg"
    assert ds.records[0].meta["source"] == "lfw_5590"
    np.testing.assert_allclose(ds.landmarks_array()[0, 0], [20.5, 30.25])


def test_cuhk_list_that_is_not_utf8_names_file_line_and_byte(tmp_path):
    make_cuhk(tmp_path)
    lst = tmp_path / "trainImageList.txt"
    lst.write_bytes(LINE.encode() + LINE.replace("a.jpg", "\xe9.jpg").encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"trainImageList\.txt, line 2: not UTF-8 text: "
                                              r"byte 0xe9 at column 10"):
        CUHK5Point(tmp_path, "train_official")
    lst.write_bytes(LINE.encode("utf-16"))
    with pytest.raises(AnnotationError, match=r"trainImageList\.txt, line 1: UTF-16 text"):
        CUHK5Point(tmp_path, "train_official")


def test_pts_without_closing_brace_or_in_latin1_names_file_and_line(tmp_path):
    text = pts_text([(1.0, 1.0)] * 68)
    (tmp_path / "open.pts").write_text(text.replace("}\n", ""))
    with pytest.raises(AnnotationError, match=r"open\.pts, line 71: the point block opened with "
                                              r"'\{' on line 3 has no closing '\}'"):
        read_pts(tmp_path / "open.pts", 68)
    (tmp_path / "latin.pts").write_bytes(text.replace("n_points", "# caf\xe9\nn_points")
                                         .encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"latin\.pts, line 2: not UTF-8 text: byte 0xe9"):
        read_pts(tmp_path / "latin.pts", 68)


@pytest.mark.parametrize("name", ["..\\..\\x.jpg", "../x.jpg", "lfw_5590/../../x.jpg", "ABSOLUTE",
                                  "C:\\x.jpg", "\\\\server\\share\\x.jpg", "/x.jpg"])
def test_cuhk_image_paths_must_stay_in_the_data_root(tmp_path, name):
    root = make_cuhk(tmp_path / "data")
    write_image(tmp_path / "x.jpg")                  # there is a picture outside the root
    name = str(tmp_path / "x.jpg") if name == "ABSOLUTE" else name
    (root / "trainImageList.txt").write_text(LINE.replace("lfw_5590\\a.jpg", name), newline="")
    with pytest.raises(AnnotationError, match=r"trainImageList\.txt, line 1: image path .* leaves "
                                              r"the data root"):
        CUHK5Point(root, "train_official")


def test_cuhk_image_path_with_dots_inside_the_root_is_fine(tmp_path):
    make_cuhk(tmp_path, [LINE.replace("lfw_5590\\a.jpg", "lfw_5590\\..\\lfw_5590\\.\\a.jpg")])
    assert CUHK5Point(tmp_path, "train_official").records[0].image_path.name == "a.jpg"


@pytest.mark.parametrize("old,new,message", [
    ("20.5 30.25", "119 30.25", None),                         # 0.49 widths beyond x = 80: kept
    ("20.5 30.25", "121 30.25", r"line 1: point 0 at \(121, 30.25\) lies 0.51 image sizes "
                                r"outside the 80x90 image lfw_5590\\a\.jpg \(at most 0.5"),
    ("20.5 30.25", "20.5 -46", r"line 1: point 0 at \(20.5, -46\) lies 0.51 image sizes"),
    (" 10 50 20 70 ", " 10 125 20 70 ", r"line 1: box corner 1 at \(125, 70\) lies 0.56 image"),
])
def test_cuhk_points_and_boxes_far_outside_the_image_are_rejected(tmp_path, old, new, message):
    make_cuhk(tmp_path, [LINE.replace(old, new)])              # a.jpg is 80 x 90 pixels
    if message is None:
        assert len(CUHK5Point(tmp_path, "train_official")) == 1
        return
    with pytest.raises(AnnotationError, match=r"trainImageList\.txt, " + message):
        CUHK5Point(tmp_path, "train_official")


def test_w300_point_far_outside_the_image_names_its_line(tmp_path):
    folder = tmp_path / "helen" / "testset"
    write_image(folder / "0.jpg")                               # 80 x 90
    points = [(10.0, 10.0)] * 68
    points[5] = (10.0, 200.0)                                   # 1-based 200 -> 199 > 1.5 * 90
    (folder / "0.pts").write_text(pts_text(points))
    with pytest.raises(AnnotationError, match=r"0\.pts, line 9: point 5 at \(9, 199\) lies 1.21 "
                                              r"image sizes outside the 80x90 image 0\.jpg"):
        W300(tmp_path, "helen/testset")


def test_image_size_reads_headers_without_decoding(tmp_path):
    from lmklib.data.sample import image_size

    for suffix, mode in ((".jpg", "RGB"), (".png", "L"), (".bmp", "RGB"), (".pgm", "L")):
        write_image(tmp_path / f"a{suffix}", size=(37, 23), mode=mode)
        assert image_size(tmp_path / f"a{suffix}") == (23, 37)
    with pytest.raises(FileNotFoundError, match=r"image not found: .*absent\.jpg"):
        image_size(tmp_path / "absent.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg: cannot read the image header"):
        image_size(tmp_path / "broken.jpg")
