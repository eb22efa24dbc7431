"""CCNN window explorer: pick a face, see the stage-2/3 windows, change their size and shake.

``CCNNExplorer.update(face, window_scale, shake_std, seed)`` runs the cascade on one face with the
stage-2/3 window sizes of Eq. 5 multiplied by ``window_scale`` and every window shaken by
``N(0, shake_std^2)`` (box units), and returns a :class:`ExplorerState` (crops, windows,
predictions per stage, error per stage); ``render(state)`` draws it. ``build_widget`` wires both
to ipywidgets sliders. Only ``build_widget`` needs ipywidgets. The faces are the notebook's
:class:`~lmklib.data.faces.FaceCrops`, seen in face-box units through
:mod:`lmklib.papers.ccnn_duan2021`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.faces import FaceCrops
from ..models.ccnn import CCNN, shake
from ..papers.ccnn_duan2021 import absolute, frames, gt_box_units


@dataclass
class ExplorerState:
    """Everything one update computed (box units unless stated).

    Attributes:
        face: index into the face set.
        points: ``{1: [5, 2], 2: [5, 2], 3: [5, 2]}`` predictions after each stage.
        gt: ``[5, 2]`` ground truth.
        windows: ``{2: (centres [10, 2], sizes [10, 2]), 3: (...)}`` the windows actually cut.
        crops: ``{2: [10, 15, 15, 3], 3: [...]}`` uint8-range float crops (before standardising).
        errors: ``{stage: error in % of the face-box width}``.
        window_scale, shake_std, seed: the slider values.
    """

    face: int
    points: dict
    gt: np.ndarray
    windows: dict
    crops: dict
    errors: dict
    window_scale: float
    shake_std: float
    seed: int


class CCNNExplorer:
    """Runs a trained :class:`~lmklib.models.ccnn.CCNN` on one face of a CCNN :class:`FaceCrops`
    (:func:`lmklib.papers.ccnn_duan2021.load_cuhk`, ...)."""

    def __init__(self, model: CCNN, crops: FaceCrops):
        self.model, self.crops = model.eval(), crops

    @torch.no_grad()
    def update(self, face: int = 0, window_scale: float = 1.0, shake_std: float = 0.0,
               seed: int = 0) -> ExplorerState:
        """Recompute the cascade for slider values; returns the new :class:`ExplorerState`."""
        if not 0 <= face < len(self.crops):
            raise ValueError(f"face must be in [0, {len(self.crops) - 1}], got {face}")
        if window_scale <= 0:
            raise ValueError(f"window_scale must be positive, got {window_scale}")
        m, c = self.model, self.crops
        images, fr = c.images[face:face + 1], frames(c, 1)
        gen = torch.Generator().manual_seed(int(seed))
        crops1, cen, siz = m.stage1_inputs(images, fr)
        points = {1: m.decode_stage1(m.stage1(crops1), cen, siz, absolute(c)[face:face + 1])}
        windows, crops = {}, {}
        from ..models.ccnn import sample_windows, standardise

        for k in (2, 3):
            centres = shake(points[k - 1].repeat(1, 2, 1), shake_std, gen)
            sizes = (m.config.local_window_sizes(k) * window_scale)[None]
            raw = sample_windows(images, fr, centres, sizes, m.config.local_size)
            points[k] = m.decode_local(m.stage(k)(standardise(raw)), centres, sizes)
            windows[k] = (centres[0].numpy(), sizes[0].numpy())
            crops[k] = raw[0].permute(0, 2, 3, 1).numpy()
        gt = gt_box_units(c, torch.tensor([face]))[0].numpy()
        box = c.boxes[face].float()
        width, height = float(box[2] - box[0]), float(box[3] - box[1])
        scale = np.array([1.0, height / width])
        errors = {k: float(100 * np.mean(np.linalg.norm((p[0].numpy() - gt) * scale, axis=1)))
                  for k, p in points.items()}
        return ExplorerState(face, {k: p[0].numpy() for k, p in points.items()}, gt, windows,
                             crops, errors, float(window_scale), float(shake_std), int(seed))

    def render(self, state: ExplorerState, stage: int = 3):
        """A figure: the face with the stage-``stage`` windows and every stage's points, and the
        ten crops of that stage with their nets' predictions."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        fig = plt.figure(figsize=(11, 4.2))
        ax = fig.add_axes([0.0, 0.05, 0.38, 0.9])
        img = self.crops.images[state.face].permute(1, 2, 0).numpy()
        fr = frames(self.crops, 1)[0].numpy()
        to_px = lambda p: fr[:2] + np.asarray(p) * fr[2:]   # noqa: E731
        ax.imshow(img, cmap="gray")
        centres, sizes = state.windows[stage]
        for i, (cn, sz) in enumerate(zip(centres, sizes)):
            x0, y0 = to_px(cn - sz / 2)
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), sz[0] * fr[2], sz[1] * fr[3], fill=False,
                                   color="lime" if i < 5 else "yellow", lw=1))
        colours = {1: "tab:blue", 2: "tab:orange", 3: "tab:red"}
        for k, p in state.points.items():
            q = to_px(p)
            ax.plot(q[:, 0], q[:, 1], "o", ms=3, color=colours[k],
                    label=f"stage {k}: {state.errors[k]:.2f}%")
        g = to_px(state.gt)
        ax.plot(g[:, 0], g[:, 1], "x", color="white", ms=5, label="ground truth")
        ax.legend(fontsize=7, loc="lower left")
        ax.set_title(f"face {state.face}: windows x{state.window_scale:.2f}, "
                     f"shake std {state.shake_std:.3f}", fontsize=9)
        ax.axis("off")
        crops = state.crops[stage]
        n = crops.shape[1]
        for i in range(10):
            a = fig.add_axes([0.40 + (i % 5) * 0.12, 0.52 - (i // 5) * 0.47, 0.11, 0.42])
            a.imshow(np.clip(crops[i], 0, 255).astype(np.uint8), cmap="gray")
            t = (state.points[stage][i % 5] - (centres[i] - sizes[i] / 2)) / sizes[i] * n - 0.5
            a.plot(t[0], t[1], "r+", ms=8)
            a.set_title(f"{['LE', 'RE', 'N', 'LM', 'RM'][i % 5]}{stage}{1 + i // 5}", fontsize=8)
            a.axis("off")
        return fig


def show_static(explorer: CCNNExplorer, state: ExplorerState | None = None, stage: int = 3):
    """Display one rendered frame as a static PNG (what a headless report, an untrusted notebook
    or an HTML export can show) and close its figure, so no second copy is drawn later."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    fig = explorer.render(state or explorer.update(), stage)
    try:
        display(fig)
    finally:
        plt.close(fig)
    return fig


def build_widget(explorer: CCNNExplorer, stage: int = 3, state: ExplorerState | None = None):
    """ipywidgets sliders (face, window scale, shake, seed, stage) driving :meth:`update`,
    starting from ``state`` (default: face 0, windows x1, no shake).

    In a headless run (:func:`lmklib.widgets.headless`) no live widget is built (nobody can
    move a slider, and widget comms can hang nbclient): the current frame is displayed as a
    static image instead (:func:`show_static`) and None is returned."""
    from . import headless

    if state is None:
        state = explorer.update()
    if headless():
        print("interactive window explorer: open this notebook in Jupyter to move the sliders; "
              "the current frame:")
        show_static(explorer, state, stage)
        return None
    import ipywidgets as w
    import matplotlib.pyplot as plt

    out = w.Output()
    controls = {
        "face": w.IntSlider(state.face, 0, len(explorer.crops) - 1, description="face"),
        "window_scale": w.FloatSlider(state.window_scale, min=0.5, max=2.0, step=0.05,
                                      description="window x"),
        "shake_std": w.FloatSlider(state.shake_std, min=0.0, max=0.05, step=0.0025,
                                   readout_format=".4f", description="shake std"),
        "seed": w.IntSlider(state.seed, 0, 20, description="shake seed"),
        "stage": w.ToggleButtons(options=[2, 3], value=stage, description="stage"),
    }

    def redraw(_=None):
        state = explorer.update(controls["face"].value, controls["window_scale"].value,
                                controls["shake_std"].value, controls["seed"].value)
        with out:
            out.clear_output(wait=True)
            fig = explorer.render(state, controls["stage"].value)
            plt.show()
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox(list(controls.values())[:3]), w.HBox(list(controls.values())[3:]), out])
