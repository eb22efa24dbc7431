"""The CCNN window explorer, driven without a browser: slider values in, crops/points/figure out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmklib.data.faces import FaceCrops
from lmklib.models.ccnn import ccnn
from lmklib.papers.ccnn_duan2021 import crop_policy
from lmklib.widgets.ccnn import CCNNExplorer, ExplorerState


def _crops(n: int = 3, size: int = 48) -> FaceCrops:
    """CCNN crops (margin 0.25) of random pixels, every face with the same box-unit points."""
    g = torch.Generator().manual_seed(1)
    base = torch.tensor([[0.27, 0.26], [0.74, 0.25], [0.5, 0.54], [0.31, 0.77], [0.71, 0.76]])
    boxes = torch.tensor([[10.0, 20.0, 60.0, 70.0]] * n, dtype=torch.float64)
    gt = boxes[:, None, :2] + base.double() * (boxes[:, None, 2:] - boxes[:, None, :2])
    return FaceCrops.from_images(torch.randint(0, 255, (n, 3, size, size), generator=g,
                                               dtype=torch.uint8),
                                 gt, boxes, policy=crop_policy(size, 0.25),
                                 image_hw=[[100, 100]] * n)


@pytest.fixture(scope="module")
def explorer() -> CCNNExplorer:
    torch.manual_seed(0)
    return CCNNExplorer(ccnn(), _crops())


def test_update_returns_ten_windows_per_stage(explorer):
    state = explorer.update(face=1)
    assert isinstance(state, ExplorerState)
    for k in (2, 3):
        centres, sizes = state.windows[k]
        assert centres.shape == sizes.shape == (10, 2)
        assert state.crops[k].shape == (10, 15, 15, 3)
        # without shake every window sits on the previous stage's point (two per point)
        np.testing.assert_allclose(centres[:5], state.points[k - 1], atol=1e-6)
        np.testing.assert_allclose(centres[5:], state.points[k - 1], atol=1e-6)
    # Eq. 5, half-extent reading: the anchor expanded by 0.16 (0.09) on each side
    np.testing.assert_allclose(state.windows[2][1][0], [0.32, 0.32], atol=1e-6)
    np.testing.assert_allclose(state.windows[3][1][9], [0.18, 0.18], atol=1e-6)
    assert set(state.points) == {1, 2, 3} and all(np.isfinite(e) for e in state.errors.values())


def test_window_slider_scales_sizes_and_changes_crops(explorer):
    a, b = explorer.update(0, window_scale=1.0), explorer.update(0, window_scale=1.5)
    np.testing.assert_allclose(b.windows[2][1], 1.5 * a.windows[2][1], rtol=1e-6)
    assert not np.allclose(a.crops[2], b.crops[2])
    np.testing.assert_allclose(a.points[1], b.points[1])          # stage 1 is unaffected


@pytest.mark.slow
def test_shake_slider_moves_windows_by_the_requested_amount(explorer):
    still = explorer.update(0, shake_std=0.0)
    moved = [explorer.update(0, shake_std=0.02, seed=s).windows[2][0] for s in range(8)]
    offsets = np.stack(moved) - still.windows[2][0]
    assert offsets.std() == pytest.approx(0.02, rel=0.2)      # 8 x 20 draws
    # the same seed gives the same shake; another seed another one
    same = explorer.update(0, shake_std=0.02, seed=3).windows[2][0]
    np.testing.assert_allclose(same, moved[3])
    assert not np.allclose(moved[3], moved[4])


def test_render_draws_windows_and_crops(explorer):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = explorer.update(2, window_scale=1.2, shake_std=0.01, seed=1)
    fig = explorer.render(state, stage=3)
    main = fig.axes[0]
    assert len(main.patches) == 10                                  # the ten windows
    assert len(fig.axes) == 11                                      # face + ten crops
    assert "x1.20" in main.get_title()
    plt.close(fig)


def test_invalid_slider_values_are_rejected(explorer):
    with pytest.raises(ValueError, match="face must be in"):
        explorer.update(face=99)
    with pytest.raises(ValueError, match="window_scale"):
        explorer.update(window_scale=0)


def test_build_widget_wires_sliders(explorer):
    pytest.importorskip("ipywidgets")
    from lmklib.widgets.ccnn import build_widget

    box = build_widget(explorer)
    sliders = [c for row in box.children[:2] for c in row.children]
    assert {s.description for s in sliders} >= {"face", "window x", "shake std"}
    sliders[1].value = 1.3                                           # triggers a redraw


def test_headless_run_shows_a_static_frame_instead_of_a_live_widget(explorer, monkeypatch,
                                                                    capsys):
    """lmk reproduce sets LMK_HEADLESS: no widget comms (nbclient can hang on them), but the
    cell's output still holds a picture of the current frame (issue 10, item 5), and that
    figure is closed afterwards (no second copy drawn at the end of the cell)."""
    import matplotlib
    matplotlib.use("Agg")
    import IPython.display
    import matplotlib.pyplot as plt
    from lmklib.widgets import HEADLESS_ENV
    from lmklib.widgets.ccnn import build_widget

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    monkeypatch.setenv(HEADLESS_ENV, "1")
    plt.close("all")
    state = explorer.update(face=2, window_scale=1.1)
    assert build_widget(explorer, stage=2, state=state) is None
    assert "open this notebook in Jupyter" in capsys.readouterr().out
    assert len(shown) == 1 and isinstance(shown[0], matplotlib.figure.Figure)
    assert len(shown[0].axes) == 11 and "face 2: windows x1.10" in shown[0].axes[0].get_title()
    assert plt.get_fignums() == []                                  # closed
