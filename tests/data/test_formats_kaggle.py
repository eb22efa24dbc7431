"""Kaggle Facial Keypoints CSVs: round trips, submissions, and the errors malformed files give."""

import numpy as np
import pytest

from lmklib.data.fixtures import write_kaggle_fixture
from lmklib.data.formats.kaggle import (KaggleFacialKeypoints, read_kaggle_csv, read_submission,
                                        write_kaggle_csv, write_submission)
from lmklib.data.sample import AnnotationError
from lmklib.data.schemes import KAGGLE15_COLUMNS


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle")
    return root, write_kaggle_fixture(root, n=5, seed=0)


def test_training_round_trip_with_missing_keypoints(kaggle):
    root, truth = kaggle
    ds = KaggleFacialKeypoints(root, "train")
    assert len(ds) == 5 and ds.scheme.name == "kaggle15"
    np.testing.assert_array_equal(ds.landmarks_array(), truth["train"])  # exact, NaN included
    s = ds[1]
    assert s["image"].shape == (1, 96, 96) and s["image"].dtype.__str__() == "torch.uint8"
    np.testing.assert_array_equal(s["image"][0].numpy(), truth["train_images"][1])
    assert s["mask"].tolist() == np.isfinite(truth["train"][1]).all(1).tolist()
    assert not s["mask"].all() and s["box"].tolist() == [0, 0, 96, 96]
    assert len(KaggleFacialKeypoints(root, "train", complete_only=True)) == 3


def test_test_split_has_no_keypoints(kaggle):
    root, truth = kaggle
    ds = KaggleFacialKeypoints(root, "test")
    assert len(ds) == 5 and np.isnan(ds.landmarks_array()).all()
    assert ds[0]["meta"]["image_id"] == 1
    np.testing.assert_array_equal(ds.images_array(), truth["test_images"])


def test_submission_round_trip(kaggle, tmp_path):
    root, truth = kaggle
    pred = truth["test_points"]
    n = write_submission(tmp_path / "sub.csv", pred, root / "IdLookupTable.csv")
    assert n == 30 + 4 * 4
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert lines[0] == "RowId,Location" and lines[1].startswith("1,")
    back = read_submission(tmp_path / "sub.csv", root / "IdLookupTable.csv")
    np.testing.assert_array_equal(back[0], pred[0])           # all 30 asked for image 1
    np.testing.assert_array_equal(back[1:, 0], pred[1:, 0])    # left eye centre
    np.testing.assert_array_equal(back[1:, 10], pred[1:, 10])  # nose tip
    assert np.isnan(back[1:, 1]).all()                         # never asked


def test_submission_clips_and_rejects_missing_predictions(kaggle, tmp_path):
    root, truth = kaggle
    pred = truth["test_points"].copy()
    pred[0, 0, 0] = 120.0
    write_submission(tmp_path / "s.csv", pred, root / "IdLookupTable.csv")
    assert read_submission(tmp_path / "s.csv", root / "IdLookupTable.csv")[0, 0, 0] == 96.0
    with pytest.raises(ValueError, match="asks for ImageId 5, which has no prediction"):
        write_submission(tmp_path / "t.csv", pred[:4], root / "IdLookupTable.csv")
    pred[1, 10, 0] = np.nan
    with pytest.raises(ValueError, match="ImageId 2 nose_tip_x is not finite"):
        write_submission(tmp_path / "u.csv", pred, root / "IdLookupTable.csv")


def test_writer_builds_a_training_csv_from_arrays(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 96, 96), dtype=np.uint8)
    lm = rng.uniform(0, 95, (3, 15, 2))
    lm[2, 4] = np.nan
    write_kaggle_csv(tmp_path / "training.csv", images, lm)
    header = (tmp_path / "training.csv").read_text().splitlines()[0].split(",")
    assert header == [*KAGGLE15_COLUMNS, "Image"]
    ids, imgs, back = read_kaggle_csv(tmp_path / "training.csv")
    np.testing.assert_array_equal(imgs, images)
    np.testing.assert_array_equal(back, lm)
    assert ids.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"landmarks must be \[3, 15, 2\]"):
        write_kaggle_csv(tmp_path / "x.csv", images, lm[:, :5])


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"training\.csv.*kaggle\.com/c/facial-keypoints"):
        KaggleFacialKeypoints(tmp_path, "train")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        KaggleFacialKeypoints(tmp_path, "val")


def _write(path, header, rows):
    path.write_text("\n".join([",".join(header)] + rows) + "\n")


PIXELS = " ".join(["7"] * 9216)


@pytest.mark.parametrize("row,message", [
    ([""] * 30 + [" ".join(["7"] * 100)], r"line 2: Image has 100 pixel values, expected 96\*96"),
    (["1"] * 30 + [PIXELS.replace("7", "300", 1)], "line 2: Image: pixel values must be integers"),
    (["1"] * 29 + [PIXELS], "line 2: expected 31 comma-separated fields, found 30"),
    (["abc"] + ["1"] * 29 + [PIXELS], "line 2: left_eye_center_x: not a number 'abc'"),
    (["inf"] + ["1"] * 29 + [PIXELS], "line 2: left_eye_center_x: non-finite coordinate 'inf'"),
    (["1", ""] + ["1"] * 28 + [PIXELS], "line 2: keypoint left_eye_center has one coordinate"),
])
def test_malformed_training_rows(tmp_path, row, message):
    _write(tmp_path / "training.csv", [*KAGGLE15_COLUMNS, "Image"], [",".join(row)])
    with pytest.raises(AnnotationError, match=message):
        KaggleFacialKeypoints(tmp_path, "train")


def test_bad_header(tmp_path):
    _write(tmp_path / "test.csv", ["Id", "Pixels"], ["1," + PIXELS])
    with pytest.raises(AnnotationError, match=r"test\.csv, line 1: unexpected header"):
        KaggleFacialKeypoints(tmp_path, "test")


def test_csv_encoding_and_points_outside_the_96px_image(tmp_path):
    header = ",".join([*KAGGLE15_COLUMNS, "Image"])
    row = ",".join(["10"] * 30 + [PIXELS])
    (tmp_path / "training.csv").write_bytes(b"\xef\xbb\xbf" + f"{header}\n{row}\n".encode())
    assert len(KaggleFacialKeypoints(tmp_path, "train")) == 1     # a BOM before the header: fine
    (tmp_path / "training.csv").write_bytes(f"{header}\n{row}\n".encode() + b"\xc3\x28\n")
    with pytest.raises(AnnotationError, match=r"training\.csv, line 3: not UTF-8 text: byte 0xc3 "
                                              r"at column 1"):
        KaggleFacialKeypoints(tmp_path, "train")
    far = ",".join(["10"] * 5 + ["150"] + ["10"] * 24 + [PIXELS])  # left_eye_inner_corner_y
    _write(tmp_path / "training.csv", [*KAGGLE15_COLUMNS, "Image"], [row, far])
    with pytest.raises(AnnotationError, match=r"training\.csv, line 3: point 2 at \(10, 150\) lies "
                                              r"0.56 image sizes outside the 96x96 image"):
        KaggleFacialKeypoints(tmp_path, "train")
