"""Metrics against hand-computed answers."""

import numpy as np
import pytest
import torch

from lmklib import metrics
from lmklib.data.schemes import IBUG68

# A 5-point face: eyes at (0,0) and (10,0); box 10 wide, 8 high.
GT5 = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 4.0], [2.0, 8.0], [8.0, 8.0]]])
PRED5 = GT5 + np.array([3.0, 4.0])  # every point 5 px off


def face68() -> np.ndarray:
    g = np.zeros((1, 68, 2))
    g[0, :, 0] = np.linspace(0, 40, 68)
    g[0, :, 1] = np.linspace(0, 30, 68)
    g[0, 36] = [10, 10]     # outer corners 30 px apart
    g[0, 45] = [40, 10]
    g[0, 36:42] = [[10, 10], [12, 9], [14, 9], [16, 10], [14, 11], [12, 11]]  # centre (13, 10)
    g[0, 42:48] = [[34, 10], [36, 9], [38, 9], [40, 10], [38, 11], [36, 11]]  # centre (37, 10)
    return g


@pytest.mark.parametrize("norm, expected", [
    ("inter_ocular", 5 / 10),
    ("inter_pupil", 5 / 10),
    ("bbox", 5 / np.sqrt(10 * 8)),
    ("face_size", 5 / np.sqrt(10 * 8)),
    ("bbox_width", 5 / 10),
    ("diagonal", 5 / np.sqrt(10**2 + 8**2)),
])
def test_nme_every_normalisation_5pt(norm, expected):
    assert metrics.nme(PRED5, GT5, norm=norm, scheme="cuhk5") == pytest.approx(expected)


def test_nme_68_inter_ocular_vs_inter_pupil():
    g = face68()
    p = g + np.array([0.0, 3.0])
    assert metrics.nme(p, g, norm="inter_ocular", scheme=IBUG68) == pytest.approx(3 / 30)
    assert metrics.nme(p, g, norm="inter_pupil", scheme=IBUG68) == pytest.approx(3 / 24)
    # the scheme is found from the point count when not given
    assert metrics.nme(p, g) == pytest.approx(3 / 30)


def test_nme_given_boxes_and_array_norm():
    boxes = np.array([[0, 0, 20, 5]])
    assert metrics.nme(PRED5, GT5, norm="bbox", boxes=boxes) == pytest.approx(5 / 10)
    assert metrics.nme(PRED5, GT5, norm="bbox_width", boxes=boxes) == pytest.approx(5 / 20)
    assert metrics.nme(PRED5, GT5, norm=np.array([2.5])) == pytest.approx(2.0)


def test_nan_points_are_skipped_not_zero():
    g = GT5.copy()
    p = PRED5.copy()
    p[0, 0] = g[0, 0] + [30.0, 40.0]   # 50 px error on point 0 ...
    g[0, 2] = np.nan                    # ... point 2 unannotated
    err = metrics.point_errors(p, g)
    assert np.isnan(err[0, 2])
    # mean over the 4 annotated points: (50 + 5 + 5 + 5) / 4, normalised by the eye distance 10
    assert metrics.nme(p, g, scheme="cuhk5") == pytest.approx(65 / 4 / 10)
    # a mask has the same effect as NaN
    mask = np.ones((1, 5), bool)
    mask[0, 2] = False
    assert metrics.nme(p, GT5, scheme="cuhk5", mask=mask) == pytest.approx(65 / 4 / 10)


def test_faces_without_annotation_are_skipped_in_the_mean():
    g = np.concatenate([GT5, np.full_like(GT5, np.nan)])
    p = np.concatenate([PRED5, PRED5])
    per_face = metrics.nme(p, g, norm="bbox_width", boxes=[[0, 0, 10, 8]] * 2, reduce="none")
    assert per_face[0] == pytest.approx(0.5) and np.isnan(per_face[1])
    assert metrics.nme(p, g, norm="bbox_width", boxes=[[0, 0, 10, 8]] * 2) == pytest.approx(0.5)


def test_torch_inputs_and_single_face():
    assert metrics.nme(torch.tensor(PRED5[0]), torch.tensor(GT5[0]), scheme="cuhk5") == pytest.approx(0.5)


def test_per_landmark_error():
    p = PRED5.copy()
    p[0, 4] += [6.0, 8.0]  # point 4 now (3+6, 4+8) -> 15 px off
    per = metrics.per_landmark_error(p, GT5, scheme="cuhk5")
    np.testing.assert_allclose(per, [0.5, 0.5, 0.5, 0.5, 1.5])


def test_failure_rate_ced_auc():
    errors = np.array([0.01, 0.03, 0.05, 0.2, np.nan])
    assert metrics.failure_rate(errors, 0.1) == pytest.approx(1 / 4)
    assert metrics.failure_rate(errors, 0.04) == pytest.approx(2 / 4)
    t, f = metrics.ced(errors, max_threshold=0.1, steps=11)
    np.testing.assert_allclose(t, np.linspace(0, 0.1, 11))
    np.testing.assert_allclose(f, [0, .25, .25, .5, .5, .75, .75, .75, .75, .75, .75])
    # AUC@0.1 of steps at 0.01, 0.03, 0.05 (each 1/4): (0.09 + 0.07 + 0.05) / 4 / 0.1
    assert metrics.auc(errors, 0.1) == pytest.approx((0.09 + 0.07 + 0.05) / 4 / 0.1, abs=1e-3)


def test_rmse_counts_each_coordinate_and_skips_nan():
    g = np.zeros((1, 2, 2))
    p = np.array([[[3.0, 4.0], [1.0, np.nan]]])
    g[0, 1, 1] = np.nan
    # entries: 3, 4, 1 (the NaN coordinate is skipped)
    assert metrics.rmse(p, g) == pytest.approx(np.sqrt((9 + 16 + 1) / 3))


def test_invalid_arguments_list_valid_choices():
    with pytest.raises(ValueError, match="valid: .*inter_ocular.*bbox_width"):
        metrics.nme(PRED5, GT5, norm="eyes")
    with pytest.raises(ValueError, match=r"\[N, K, 2\]"):
        metrics.nme(PRED5[:, :3], GT5)
    with pytest.raises(ValueError, match="reduce"):
        metrics.nme(PRED5, GT5, scheme="cuhk5", reduce="sum")
    with pytest.raises(ValueError, match="one value per face"):
        metrics.nme(PRED5, GT5, norm=np.array([1.0, 2.0]))


def test_yaw_binned_nme_is_the_mean_of_the_bin_means():
    # three faces: two frontal (2 % and 4 %), one at 95 degrees (10 %: beyond 90 -> last bin)
    b = metrics.yaw_binned_nme([0.02, 0.04, 0.10], [5.0, -30.0, 95.0])
    assert b["0-30"] == pytest.approx(0.03) and b["n_0-30"] == 2
    assert np.isnan(b["30-60"]) and b["n_30-60"] == 0
    assert b["60-90"] == pytest.approx(0.10) and b["n_60-90"] == 1
    assert np.isnan(b["mean"])                      # an empty bin: no bin mean to report
    b = metrics.yaw_binned_nme([0.02, 0.04, 0.06, 0.10], [5.0, -30.0, 30.5, -61.0])
    assert b["mean"] == pytest.approx((0.03 + 0.06 + 0.10) / 3)
    assert b["all"] == pytest.approx(0.055)
    with pytest.raises(ValueError, match="same length"):
        metrics.yaw_binned_nme([0.1], [1.0, 2.0])
