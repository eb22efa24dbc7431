"""The SD-HRNet heat-map explorer, driven without a browser: the occluder's pixels, each model's
maps and decoded points, the students' ensemble (Eq. 4's P_E), checked against the models run
directly and the paper module's decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmklib.data.transforms import standardise
from lmklib.models.hrnet import tiny_supernet
from lmklib.papers.sd_hrnet_lin2023 import decode, resolve_profile, synthetic_faces
from lmklib.widgets.sd_hrnet import ENSEMBLE, occlude, panel, panel_key

LANDMARK = 30        # nose tip


@pytest.fixture(scope="module")
def cfg():
    return resolve_profile("smoke")                                      # 32 px, 8 px maps


@pytest.fixture(scope="module")
def faces(cfg):
    return synthetic_faces(2, cfg, seed=0)


def _net(seed: int):
    """A tiny untrained supernet whose maps are positive (so every point decodes)."""
    torch.manual_seed(seed)
    m = tiny_supernet(num_points=68, stages=3)
    torch.nn.init.constant_(m.head[-1].bias, 1.0)
    return m.eval()


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return {"teacher": _net(0), "student 1": _net(1), "student 2": _net(2)}


def _direct(model, image_chw):
    with torch.no_grad():
        return model(standardise(image_chw[None]))                      # [1, 68, 8, 8]


# --------------------------------------------------------------------------- occlude
def test_occlude_paints_the_square():
    img = torch.full((3, 10, 10), 7, dtype=torch.uint8)
    out = occlude(img, (4.0, 5.0), 4)                   # columns 2..5, rows 3..6
    want = img.clone()
    want[:, 3:7, 2:6] = 0
    assert torch.equal(out, want) and int((out[0] == 0).sum()) == 16
    assert torch.equal(img, torch.full((3, 10, 10), 7, dtype=torch.uint8))   # input untouched
    odd = occlude(img, (4.0, 5.0), 3, value=200)        # centred: columns 3..5, rows 4..6
    assert int((odd[0] == 200).sum()) == 9
    assert (odd[:, 4:7, 3:6] == 200).all() and (odd[:, 4:7, 3:6] == 200).sum() == 27


def test_occlude_clips_at_the_border_and_none_is_a_copy():
    img = torch.full((3, 10, 10), 7, dtype=torch.uint8)
    out = occlude(img, (0.5, 9.0), 4, value=255)        # columns -1..2 -> 0..2, rows 7..10 -> 7..9
    rows, cols = np.nonzero(out[0].numpy() == 255)
    assert len(rows) == 9 and set(rows) == {7, 8, 9} and set(cols) == {0, 1, 2}
    assert (out[:, 7:, :3] == 255).all()
    off = occlude(img, (-5.0, -5.0), 4)                 # wholly outside: nothing
    assert torch.equal(off, img)
    same = occlude(img, None, 4)
    assert torch.equal(same, img) and same.data_ptr() != img.data_ptr()
    assert torch.equal(occlude(img, (5.0, 5.0), 0), img)
    with pytest.raises(ValueError, match="value"):
        occlude(img, (5.0, 5.0), 2, value=300)


# --------------------------------------------------------------------------- panel
def test_panel_maps_points_and_ensemble_are_the_models(models, faces, cfg):
    for index in range(len(faces)):
        r = panel(models, faces, cfg, index, LANDMARK)
        assert list(r["maps"]) == ["teacher", "student 1", "student 2", ENSEMBLE]
        assert list(r["points"]) == list(r["maps"])
        full = {n: _direct(m, faces.images[index]) for n, m in models.items()}
        full[ENSEMBLE] = (full["student 1"] + full["student 2"]) / 2          # Eq. 4's P_E
        assert (full["student 1"] - full["student 2"]).abs().max() > 0.1    # students differ
        for name, maps in full.items():
            assert r["maps"][name].shape == (8, 8)
            np.testing.assert_allclose(r["maps"][name], maps[0, LANDMARK].numpy(), atol=1e-6)
            p = decode(maps, cfg)[0, LANDMARK]
            assert np.isfinite(p).all()
            np.testing.assert_allclose(r["points"][name], p, atol=1e-9)
            assert r["errors"][name] == pytest.approx(np.linalg.norm(p - r["truth"]))
        np.testing.assert_allclose(r["maps"][ENSEMBLE],
                                   (r["maps"]["student 1"] + r["maps"]["student 2"]) / 2,
                                   atol=1e-7)
        np.testing.assert_array_equal(r["truth"], faces.points[index, LANDMARK].numpy())
        np.testing.assert_array_equal(r["image"], faces.images[index].permute(1, 2, 0).numpy())
        assert r["image"].dtype == np.uint8 and r["key"] == (index, None, 0.0)


def test_panel_order_and_no_ensemble_without_both_students(models, faces, cfg):
    r = panel({"student 2": models["student 2"], "teacher": models["teacher"],
               "student 1": models["student 1"]}, faces, cfg, 0, 0)
    assert list(r["maps"]) == ["student 2", "teacher", "student 1", ENSEMBLE]
    r = panel({"teacher": models["teacher"], "student 1": models["student 1"]}, faces, cfg, 0, 0)
    assert list(r["maps"]) == ["teacher", "student 1"]
    with pytest.raises(ValueError, match="landmark must be in"):
        panel(models, faces, cfg, 0, 68)
    with pytest.raises(ValueError, match="index must be in"):
        panel(models, faces, cfg, 2, 0)
    with pytest.raises(ValueError, match="computed from"):
        panel({ENSEMBLE: models["teacher"]}, faces, cfg, 0, 0)


def test_panel_occluder_changes_only_the_square(models, faces, cfg):
    centre, side = (14.0, 20.0), 8.0                     # columns 10..17, rows 16..23
    r = panel(models, faces, cfg, 1, LANDMARK, centre, side)
    orig = faces.images[1].permute(1, 2, 0).numpy()
    inside = np.zeros(orig.shape[:2], bool)
    inside[16:24, 10:18] = True
    assert (r["image"][inside] == 0).all() and (orig[inside] != 0).any()
    np.testing.assert_array_equal(r["image"][~inside], orig[~inside])
    assert r["key"] == (1, (14.0, 20.0), 8.0) and r["centre"] == centre
    seen = torch.from_numpy(r["image"]).permute(2, 0, 1)
    for name, model in models.items():                  # the models read the occluded face
        np.testing.assert_allclose(r["maps"][name], _direct(model, seen)[0, LANDMARK].numpy(),
                                   atol=1e-6)
    clean = panel(models, faces, cfg, 1, LANDMARK)
    assert np.abs(r["maps"]["teacher"] - clean["maps"]["teacher"]).max() > 1e-3


def test_panel_cache_reruns_only_new_keys(models, faces, cfg):
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in models.values()]
    try:
        cache: dict = {}
        a = panel(models, faces, cfg, 0, LANDMARK, cache=cache)
        b = panel(models, faces, cfg, 0, 8, cache=cache)                # other landmark: cached
        assert len(calls) == 3 and list(cache) == [(0, None, 0.0)]
        assert b["maps"]["teacher"].shape == a["maps"]["teacher"].shape
        panel(models, faces, cfg, 1, LANDMARK, cache=cache, cache_size=2)
        panel(models, faces, cfg, 0, 3, (5.0, 5.0), 0.0, cache=cache, cache_size=2)  # side 0
        assert len(calls) == 6 and list(cache) == [(1, None, 0.0), (0, None, 0.0)]
        panel(models, faces, cfg, 0, 3, (5.0, 5.0), 4.0, cache=cache, cache_size=2)
        assert len(calls) == 9 and list(cache) == [(0, None, 0.0), (0, (5.0, 5.0), 4.0)]
        cached = panel(models, faces, cfg, 0, 8, cache=cache)
        np.testing.assert_array_equal(cached["maps"]["student 2"], b["maps"]["student 2"])
        assert len(calls) == 9
    finally:
        for h in hooks:
            h.remove()
    assert panel_key(3, (1, 2), 0) == (3, None, 0.0) and panel_key(3, None, 5) == (3, None, 0.0)


# --------------------------------------------------------------------------- drawing, widget
def test_draw_titles_each_model_with_its_error(models, faces, cfg):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lmklib.widgets.sd_hrnet import draw

    r = panel(models, faces, cfg, 0, LANDMARK, (10.0, 10.0), 6.0)
    fig, axes = plt.subplots(1, 5)
    draw(r, axes)
    assert all(len(a.images) == 1 for a in axes)
    assert len(axes[0].lines) == 1 + 4                  # truth and each model's point
    np.testing.assert_allclose(axes[0].lines[0].get_xydata()[0], r["truth"])
    np.testing.assert_allclose(axes[0].lines[4].get_xydata()[0], r["points"][ENSEMBLE])
    assert [a.get_title() for a in axes[1:]] == [f"{n}: {r['errors'][n]:.1f} px"
                                                for n in r["maps"]]
    np.testing.assert_array_equal(axes[2].images[0].get_array(), r["maps"]["student 1"])
    assert len(axes[0].patches) == 1                    # the occluder's outline
    with pytest.raises(ValueError, match="need 5 axes"):
        draw(r, axes[:3])
    plt.close("all")


def test_explorer_headless_returns_none(models, faces, cfg, monkeypatch, capsys):
    from lmklib.widgets import HEADLESS_ENV
    from lmklib.widgets.sd_hrnet import explorer

    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert explorer(models, faces, cfg) is None
    assert "open this notebook in Jupyter" in capsys.readouterr().out


def test_explorer_controls_drive_the_cached_panel(models, faces, cfg, monkeypatch):
    w = pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lmklib.widgets import HEADLESS_ENV
    from lmklib.widgets.sd_hrnet import explorer

    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    box = explorer(models, faces, cfg)
    assert isinstance(box, w.VBox)
    c = box.controls
    assert set(c) == {"face", "landmark", "occluder", "occluder x", "occluder y", "side"}
    assert (c["face"].max, c["landmark"].min, c["landmark"].max) == (1, 0, 67)
    assert c["side"].disabled and box.result["key"] == (0, None, 0.0)
    assert list(box.cache) == [(0, None, 0.0)]
    c["face"].value = 1
    assert box.result["key"] == (1, None, 0.0) and box.result["index"] == 1
    assert list(box.cache) == [(0, None, 0.0), (1, None, 0.0)]
    c["landmark"].value = 8                                   # same run, other map
    assert box.result["landmark"] == 8 and len(box.cache) == 2
    np.testing.assert_array_equal(box.result["truth"], faces.points[1, 8].numpy())
    c["occluder"].value = True
    assert not c["side"].disabled
    key = (1, (c["occluder x"].value, c["occluder y"].value), c["side"].value)
    assert box.result["key"] == key and key in box.cache
    c["side"].value = 4.0
    assert box.result["key"] == key[:2] + (4.0,)
    assert (box.result["image"] == 0).sum() >= 3 * 16
    plt.close("all")
