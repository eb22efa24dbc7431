"""The Fast DHM heat-map explorer, driven without a browser: slider values in, maps/points out,
checked against the models and the profiling they wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmklib.data.faces import FaceCrops
from lmklib.data.formats.bfm import template_shape_model
from lmklib.data.heatmaps import diffusion_heatmaps
from lmklib.data.synthetic import generate
from lmklib.data.transforms import standardise
from lmklib.models.fast_dhm import POSE_PARAMS, dhm_tiny, fast_dhm_tiny
from lmklib.widgets.fast_dhm import DHMExplorer, ExplorerState, overlay

SIZE = 32
DHM_STEPS, FAST_STEPS = 3, 2     # different T: Fast DHM's read-out is clamped to its own


@pytest.fixture(scope="module")
def shape_model():
    return template_shape_model()


@pytest.fixture(scope="module")
def faces() -> FaceCrops:
    d = generate(3, size=SIZE, scheme="ibug68")
    return FaceCrops.from_images(d["images"].transpose(0, 3, 1, 2), d["landmarks"], d["boxes"],
                                 scheme="ibug68")


def _models(sm):
    """Tiny untrained nets whose steps differ: DHM on the template model with its mean face in
    the crop, and the zero-initialised output layers (step 0 = every step) given random weights."""
    torch.manual_seed(0)
    k = SIZE / 1.3 / np.ptp(sm.mean[:, :2], 0).max()
    pose = np.c_[k * np.eye(3), [(SIZE - 1) / 2, (SIZE - 1) / 2, 0.0]].reshape(-1)
    n = sm.n_id + sm.n_exp
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    dhm = dhm_tiny(shape_mean=t(sm.mean), id_basis=t(sm.id_basis), exp_basis=t(sm.exp_basis),
                   param_mean=t(np.r_[pose, np.zeros(n)]),
                   param_std=t(np.r_[np.ones(POSE_PARAMS), np.full(n, 0.3)]), steps=DHM_STEPS)
    torch.nn.init.normal_(dhm.w_ho.weight, std=1.0)
    mean = (sm.mean[:, :2] * k + (SIZE - 1) / 2) / SIZE
    fast = fast_dhm_tiny(mean=t(mean), steps=FAST_STEPS)
    torch.nn.init.normal_(fast.fc.weight, std=0.01)
    return dhm.eval(), fast.eval()


@pytest.fixture(scope="module")
def explorer(faces, shape_model) -> DHMExplorer:
    torch.set_num_threads(1)
    return DHMExplorer(*_models(shape_model), faces, shape_model)


def _reference(explorer, image_chw):
    """What the models say about one image ``[C, S, S]`` uint8, every step (crop px)."""
    x = standardise(torch.as_tensor(image_chw)[None])
    with torch.no_grad():
        shapes = [s[0] for s in explorer.dhm.steps_shapes(x)]
        fast = [p[0] * SIZE for p in explorer.fast.steps_points(x)]
    return shapes, fast


def test_view_at_each_step_is_the_models_step(explorer, faces):
    shapes, fast = _reference(explorer, faces.images[1])
    assert explorer.n_faces == 3 and explorer.n_steps == DHM_STEPS
    assert len(shapes) == DHM_STEPS + 1 and len(fast) == FAST_STEPS + 1
    # the test models really move between steps (else step indexing would go unchecked)
    assert (shapes[1] - shapes[0]).abs().max() > 0.3 and (fast[1] - fast[0]).abs().max() > 0.1
    for t in range(DHM_STEPS + 1):
        v = explorer.view(ExplorerState(face=1, step=t))
        np.testing.assert_array_equal(v["dhm_points"], shapes[t][:, :2].numpy())
        np.testing.assert_array_equal(v["dhm_shape"], shapes[t].numpy())
        want = diffusion_heatmaps(shapes[t][:, :2], shapes[t], SIZE, sigma=1.0).numpy()
        assert v["dhm_maps"].shape == (3, SIZE, SIZE)
        np.testing.assert_allclose(v["dhm_maps"], want, atol=1e-5)
        ft = min(t, FAST_STEPS)                                   # clamped to Fast DHM's T
        np.testing.assert_array_equal(v["fast_points"], fast[ft].numpy())
        assert (v["step"], v["dhm_step"], v["fast_step"]) == (t, t, ft)
        np.testing.assert_array_equal(v["image"], faces.images[1].permute(1, 2, 0).numpy())
        np.testing.assert_array_equal(v["truth"], faces.points[1].numpy())
        assert v["yaw"] is None and v["pose_yaw"] is None
        err = np.linalg.norm(v["dhm_points"] - v["truth"], axis=1).mean()
        assert v["dhm_error"] == pytest.approx(err, rel=1e-6)
    last = explorer.view(ExplorerState(face=1))                   # step -1 = the output
    assert last["step"] == DHM_STEPS
    np.testing.assert_array_equal(last["dhm_points"], explorer.view(
        ExplorerState(face=1, step=DHM_STEPS))["dhm_points"])


def test_unselected_channels_are_zero(explorer):
    full = explorer.view(ExplorerState(face=2, step=2))["dhm_maps"]
    assert all(full[c].max() > 0.5 for c in range(3))
    v = explorer.view(ExplorerState(face=2, step=2, channels=(True, False, True)))
    assert not v["dhm_maps"][1].any()
    np.testing.assert_array_equal(v["dhm_maps"][[0, 2]], full[[0, 2]])
    none = explorer.view(ExplorerState(face=2, step=2, channels=(False, False, False)))
    assert not none["dhm_maps"].any()


def test_model_runs_are_cached_per_face_and_yaw(faces, shape_model, monkeypatch):
    dhm, fast = _models(shape_model)
    calls = {"dhm": 0, "fast": 0}

    def counting(name, fn):
        def wrapped(x):
            calls[name] += 1
            return fn(x)
        return wrapped

    monkeypatch.setattr(dhm, "steps_shapes", counting("dhm", dhm.steps_shapes))
    monkeypatch.setattr(fast, "steps_points", counting("fast", fast.steps_points))
    ex = DHMExplorer(dhm, fast, faces, shape_model, cache_size=2)
    for t in range(DHM_STEPS + 1):                                 # sliding steps and channels
        for ch in [(True, True, True), (False, True, False)]:
            ex.view(ExplorerState(face=0, step=t, channels=ch))
    assert calls == {"dhm": 1, "fast": 1}
    ex.view(ExplorerState(face=1))
    ex.view(ExplorerState(face=0, step=0))                         # back: still cached
    assert calls == {"dhm": 2, "fast": 2}
    ex.view(ExplorerState(face=0, yaw=45))                         # a turn is a new run
    ex.view(ExplorerState(face=0, step=1, yaw=45.0))
    assert calls == {"dhm": 3, "fast": 3}
    ex.view(ExplorerState(face=1))                                 # dropped (cache_size 2)
    assert calls == {"dhm": 4, "fast": 4}


def test_yaw_turns_the_face_before_the_models(explorer, faces, shape_model):
    from lmklib.data.profiling import profile_faces

    v = explorer.view(ExplorerState(face=0, step=1, yaw=60))
    image = faces.images[0].permute(1, 2, 0).numpy()
    prof = profile_faces(image[None], faces.points[0:1].double().numpy(), (60,), shape_model)
    assert np.abs(v["image"].astype(int) - image).max() > 50       # the face moved
    np.testing.assert_array_equal(v["image"], prof["images"][0])
    np.testing.assert_allclose(v["truth"], prof["points"][0])
    assert abs(v["pose_yaw"]) == pytest.approx(60, abs=1e-6) and v["yaw"] == 60.0
    shapes, fast = _reference(explorer, torch.as_tensor(prof["images"][0]).permute(2, 0, 1))
    np.testing.assert_allclose(v["dhm_points"], shapes[1][:, :2].numpy(), atol=1e-5)
    np.testing.assert_allclose(v["fast_points"], fast[1].numpy(), atol=1e-5)


def test_invalid_states_and_sizes_are_rejected(explorer, faces, shape_model):
    with pytest.raises(ValueError, match=r"face must be in \[0, 2\]"):
        explorer.view(ExplorerState(face=3))
    with pytest.raises(ValueError, match=r"step must be in \[0, 3\]"):
        explorer.view(ExplorerState(step=4))
    with pytest.raises(ValueError, match="yaw must be None"):
        explorer.view(ExplorerState(yaw=120))
    dhm, _ = _models(shape_model)
    with pytest.raises(ValueError, match="one crop size"):
        DHMExplorer(dhm, fast_dhm_tiny(size=48), faces, shape_model)


def test_overlay_colours_channels():
    image = np.full((4, 4, 3), 255, np.uint8)
    maps = np.zeros((3, 4, 4), np.float32)
    maps[0, 1, 2] = 1.0                     # x channel -> red
    maps[2, 3, 0] = 2.0                     # z channel, clipped -> blue
    out = overlay(image, maps, dim=0.5)
    np.testing.assert_allclose(out[0, 0], [0.5, 0.5, 0.5])          # no map: dimmed grey
    np.testing.assert_allclose(out[1, 2], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[3, 0], [0.0, 0.0, 1.0])


def test_static_figure_is_one_row_of_steps(explorer):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lmklib.widgets.fast_dhm import show_static

    fig = show_static(explorer, ExplorerState(face=2, step=1, channels=(False, True, False)))
    assert len(fig.axes) == DHM_STEPS + 1
    titles = [a.get_title() for a in fig.axes]
    assert titles[0].startswith("t=0 (mean init)") and titles[-1].startswith("t=3 (output)")
    bold = [a.title.get_fontweight() for a in fig.axes]
    assert bold == ["normal", "bold", "normal", "normal"]
    assert "face 2 (as is), DHM channels y" in fig._suptitle.get_text()
    # each panel: truth, DHM and Fast DHM points over the overlaid image
    assert all(len(a.lines) == 3 and len(a.images) == 1 for a in fig.axes)
    v = explorer.view(ExplorerState(face=2, step=3))
    np.testing.assert_allclose(fig.axes[3].lines[1].get_xydata(), v["dhm_points"])
    plt.close(fig)


def test_headless_build_returns_none(explorer, monkeypatch, capsys):
    from lmklib.widgets import HEADLESS_ENV
    from lmklib.widgets.fast_dhm import build_widget

    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert build_widget(explorer) is None
    assert "open this notebook in Jupyter" in capsys.readouterr().out


def test_build_widget_controls_drive_the_state(explorer, monkeypatch):
    w = pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lmklib.widgets import HEADLESS_ENV
    from lmklib.widgets.fast_dhm import build_widget

    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    state = ExplorerState(face=1)
    box = build_widget(explorer, state)
    assert isinstance(box, w.VBox) and box.state is state
    controls = {c.description: c for row in box.children[:3] for c in row.children}
    assert set(controls) == {"face", "step t", "x channel", "y channel", "z channel",
                             "yaw as is", "|yaw|"}
    assert controls["step t"].max == DHM_STEPS and controls["step t"].value == DHM_STEPS
    assert controls["|yaw|"].disabled
    controls["step t"].value = 1
    assert state.step == 1
    controls["z channel"].value = False
    assert state.channels == (True, True, False)
    controls["face"].value = 2
    controls["yaw as is"].value = False                      # the slider's 30 degrees
    assert state.yaw == 30.0 and not controls["|yaw|"].disabled
    controls["|yaw|"].value = 45.0
    assert (state.face, state.yaw) == (2, 45.0)
    assert explorer.view(state)["pose_yaw"] is not None
    plt.close("all")
