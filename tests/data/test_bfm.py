"""3D shape models (lmklib.data.formats.bfm): the bfm68 text format on a tmp fixture (frame
conversion, scaling, errors), the real 3DDFA model when present, the synthetic template."""

import numpy as np
import pytest

from lmklib.data.formats.bfm import ShapeModel, load_bfm68, template_shape_model


def _write_bfm68(root, mean, ids, exps, std):
    """The bfm68/ text layout: one number per line for vectors, one row per line for bases."""
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "u_base.txt", mean.reshape(-1), fmt="%.6f")
    np.savetxt(root / "w_shp_base.txt", ids.reshape(204, -1), fmt="%.6f")
    np.savetxt(root / "w_exp_base.txt", exps.reshape(204, -1), fmt="%.6f")
    np.savetxt(root / "param_std.txt", std, fmt="%.6f")


@pytest.fixture
def bfm_fixture(tmp_path):
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 1000, (68, 3)) + [5000, 7000, 3000]      # BFM frame, off-centre
    mean[36], mean[45] = [-30000, 20000, 1000], [30000, 20000, 1000]  # inter-ocular 60000
    ids, exps = rng.normal(0, 100, (68, 3, 40)), rng.normal(0, 100, (68, 3, 10))
    std = np.arange(62, dtype=float) + 1
    _write_bfm68(tmp_path / "bfm68", mean, ids, exps, std)
    return tmp_path / "bfm68", mean, ids, exps, std


def test_fixture_loads_to_the_documented_frame(bfm_fixture):
    root, mean, ids, exps, std = bfm_fixture
    m = load_bfm68(root)
    assert isinstance(m, ShapeModel) and m.name == "bfm68"
    assert (m.n_points, m.n_id, m.n_exp) == (68, 40, 10)
    assert m.mean.shape == (68, 3) and m.id_basis.shape == (68, 3, 40)
    assert m.exp_basis.shape == (68, 3, 10)
    flip = np.array([1.0, -1.0, -1.0])       # y up -> down, z towards -> away from the viewer
    expected = (mean - mean.mean(0)) * flip / 60000
    np.testing.assert_allclose(m.mean, expected, atol=1e-9)
    np.testing.assert_allclose(m.id_basis, ids * flip[:, None] / 60000, atol=1e-9)
    np.testing.assert_allclose(m.exp_basis, exps * flip[:, None] / 60000, atol=1e-9)
    np.testing.assert_allclose(m.id_std, std[12:52])
    np.testing.assert_allclose(m.exp_std, std[52:])
    # Eq. 1: S = mean + id_basis a + exp_basis b, batched
    a, b = np.zeros((2, 40)), np.zeros((2, 10))
    a[1, 3], b[1, 7] = 2.0, -1.0
    s = m.shapes(a, b)
    assert s.shape == (2, 68, 3)
    np.testing.assert_allclose(s[0], m.mean)
    np.testing.assert_allclose(s[1], m.mean + 2 * m.id_basis[..., 3] - m.exp_basis[..., 7])
    assert m.shapes().shape == (1, 68, 3) and m.shapes(b=b).shape == (2, 68, 3)


def test_errors_name_the_file(bfm_fixture):
    root = bfm_fixture[0]
    np.savetxt(root / "w_exp_base.txt", np.zeros((204, 9)))
    with pytest.raises(ValueError, match=r"w_exp_base\.txt: expected 204 x 10 = 2040 finite "
                                         r"values, got 1836"):
        load_bfm68(root)
    (root / "u_base.txt").write_text("1.0\nabc\n")
    with pytest.raises(ValueError, match=r"u_base\.txt: expected 204 numbers"):
        load_bfm68(root)
    (root / "u_base.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"u_base\.txt: not found .*3DDFA"):
        load_bfm68(root)


def _check_face_geometry(m: ShapeModel):
    np.testing.assert_allclose(m.mean.mean(0), 0, atol=1e-12)
    assert np.linalg.norm(m.mean[36] - m.mean[45]) == pytest.approx(1.0)
    assert m.mean[36, 0] < m.mean[45, 0] and m.mean[8, 1] > m.mean[27, 1]   # x right, y down
    nose, cheeks = m.mean[30, 2], m.mean[[0, 1, 15, 16], 2]
    assert (nose < cheeks - 0.5).all()                   # the nose is nearer the viewer (z away)


def test_real_bfm68(real_data_root):
    root = real_data_root / "bfm68"
    if not (root / "u_base.txt").is_file():
        pytest.skip(f"bfm68 not found under {real_data_root}")
    m = load_bfm68(root)
    _check_face_geometry(m)
    assert (m.id_std > 0).all() and (m.exp_std > 0).all()
    # one std of the first identity component moves some landmark by 1-10 % of the IOD
    assert 0.01 < np.abs(m.id_basis[..., 0] * m.id_std[0]).max() < 0.1


def test_template_model_matches_the_synthetic_faces():
    from lmklib.data import face_template as ft

    m = template_shape_model()
    _check_face_geometry(m)
    assert (m.n_id, m.n_exp) == (len(ft.IDENTITY_NAMES), len(ft.EXPRESSION_NAMES))
    a = np.random.default_rng(1).uniform(-1, 1, (3, m.n_id))
    b = np.random.default_rng(2).uniform(0, 1, (3, m.n_exp))
    raw = ft.shapes(a, b)[:, :68] * [1, 1, -1]           # template z is towards
    raw = raw - ft.LM.mean(0) * [1, 1, -1]
    scale = 1 / np.linalg.norm(ft.LM[36] - ft.LM[45])
    np.testing.assert_allclose(m.shapes(a, b), raw * scale, atol=1e-12)
