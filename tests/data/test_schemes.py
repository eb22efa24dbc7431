"""Landmark schemes: flip permutations, normalisation indices, conversions on known points."""

import numpy as np
import pytest

from lmklib.data import schemes as S


@pytest.mark.parametrize("name", sorted(S.SCHEMES))
def test_flipping_twice_is_identity(name):
    scheme = S.SCHEMES[name]
    pts = np.random.default_rng(0).uniform(0, 100, (3, scheme.num_points, 2))
    np.testing.assert_allclose(S.flip_points(S.flip_points(pts, 101, scheme), 101, scheme), pts)
    assert len(set(scheme.names)) == scheme.num_points


@pytest.mark.parametrize("name", sorted(S.SCHEMES))
def test_flip_swaps_left_and_right_names(name):
    scheme = S.SCHEMES[name]
    for i, j in enumerate(scheme.flip_perm):
        a, b = scheme.names[i], scheme.names[j]
        if any(c.isdigit() for c in a):  # numbered contours: checked through conversions below
            continue
        if i == j:
            assert "left" not in a and "right" not in a, a
        else:
            assert a.replace("left", "X").replace("right", "left").replace("X", "right") == b


def test_normalisation_indices_match_mmpose():
    assert S.IBUG68.outer_eye_corners == (36, 45)
    assert S.WFLW98.outer_eye_corners == (60, 72)
    assert S.COFW29.outer_eye_corners == (8, 9)
    assert S.WFLW98.eye_centres == ((96,), (97,))
    for s in S.SCHEMES.values():  # the two outer corners are each other's mirror
        a, b = s.outer_eye_corners
        assert s.flip_perm[a] == b


def test_get_scheme_by_name_alias_and_count():
    assert S.get_scheme("celeba5") is S.CUHK5
    assert S.get_scheme("WFLW") is S.WFLW98
    assert S.get_scheme(29) is S.COFW29
    assert S.get_scheme(15) is S.KAGGLE15
    with pytest.raises(ValueError, match="unknown scheme 'nope'; valid"):
        S.get_scheme("nope")
    with pytest.raises(ValueError, match="no unique scheme with 7 points"):
        S.get_scheme(7)


def test_kaggle_columns_are_the_csv_header():
    assert len(S.KAGGLE15_COLUMNS) == 30
    assert S.KAGGLE15_COLUMNS[:4] == ("left_eye_center_x", "left_eye_center_y",
                                      "right_eye_center_x", "right_eye_center_y")
    assert S.KAGGLE15_COLUMNS[-2:] == ("mouth_center_bottom_lip_x", "mouth_center_bottom_lip_y")


def _indexed(k):
    """Points whose x is their index: a conversion then shows which source point it took."""
    return np.stack([np.arange(k, dtype=float), np.zeros(k)], axis=1)


def test_68_to_5_on_known_points():
    out = S.convert_points(_indexed(68), "ibug68", "cuhk5")
    np.testing.assert_allclose(out[:, 0], [38.5, 44.5, 30, 48, 54])
    np.testing.assert_allclose(S.ibug68_to_cuhk5(_indexed(68)), out)


def test_68_to_kaggle15_on_known_points():
    out = S.convert_points(_indexed(68), "ibug68", "kaggle15")
    np.testing.assert_allclose(out[:, 0], [44.5, 38.5, 42, 45, 39, 36, 22, 26, 21, 17, 30, 54, 48,
                                           51, 57])


def test_98_to_68_on_known_points():
    out = S.convert_points(_indexed(98), "wflw98", "ibug68")[:, 0]
    assert out.shape == (68,)
    np.testing.assert_array_equal(out[:17], np.arange(0, 33, 2))      # every other contour point
    np.testing.assert_array_equal(out[17:27], [33, 34, 35, 36, 37, 42, 43, 44, 45, 46])
    np.testing.assert_array_equal(out[36:48], [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75])
    np.testing.assert_array_equal(out[48:], np.arange(76, 96))
    assert out[36] == S.WFLW98.outer_eye_corners[0] and out[45] == S.WFLW98.outer_eye_corners[1]


@pytest.mark.parametrize("src,dst", [(a, b) for a in S.SCHEMES for b in S.SCHEMES
                                     if S._conversion_path(a, b) is not None])
def test_conversions_commute_with_flip(src, dst):
    """Mirroring then converting == converting then mirroring: left/right are mapped right."""
    s, d = S.get_scheme(src), S.get_scheme(dst)
    pts = np.random.default_rng(1).uniform(0, 50, (2, s.num_points, 2))
    np.testing.assert_allclose(S.convert_points(S.flip_points(pts, 51, s), s, d),
                               S.flip_points(S.convert_points(pts, s, d), 51, d))


def test_chained_conversion_agrees_with_direct():
    pts = np.random.default_rng(2).uniform(0, 50, (68, 2))
    via_kaggle = S.convert_points(S.convert_points(pts, "ibug68", "kaggle15"), "kaggle15", "cuhk5")
    np.testing.assert_allclose(via_kaggle, S.convert_points(pts, "ibug68", "cuhk5"))
    assert S.conversion_path("wflw98", "kaggle15") == ["wflw98", "ibug68", "kaggle15"]


def test_identity_conversion_copies():
    pts = _indexed(5)
    out = S.convert_points(pts, "cuhk5", "cuhk5")
    np.testing.assert_array_equal(out, pts)
    assert out is not pts


@pytest.mark.parametrize("src,dst", [("ibug68", "wflw98"), ("cuhk5", "ibug68"),
                                     ("cofw29", "ibug68"), ("kaggle15", "bioid20")])
def test_undefined_conversions_raise_instead_of_nan(src, dst):
    k = S.get_scheme(src).num_points
    with pytest.raises(ValueError, match=f"cannot convert {src} .* does not annotate"):
        S.convert_points(np.zeros((k, 2)), src, dst)


def test_missing_points_stay_missing_and_centres_use_the_rest():
    pts = _indexed(68)
    pts[36] = np.nan
    pts[30] = np.nan
    out = S.convert_points(pts, "ibug68", "cuhk5")
    assert out[0, 0] == pytest.approx(np.mean([37, 38, 39, 40, 41]))
    assert np.isnan(out[2]).all()


def test_wrong_point_count_raises():
    with pytest.raises(ValueError, match=r"expected points of shape \[\.\.\., 68, 2\] for ibug68"):
        S.convert_points(np.zeros((5, 2)), "ibug68", "cuhk5")
