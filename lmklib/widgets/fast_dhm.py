"""Heat-map explorer of the Fast DHM notebook: the 3D diffusion heat maps per recurrent step.

Sun et al. (``shared/papers/fast_dhm_sun.txt``), Fig. 3: the DHM of the current 3D shape at each
of the T steps, from the mean initialisation (t = 0) to the output (t = T). Pick a face, slide
through the steps, switch the map's x / y / z channels (Eq. 3) on and off, and turn the face to a
larger |yaw| with the notebook's 300W-LP-style profiling (:func:`lmklib.data.profiling.
profile_faces`) before both models read it.

:meth:`DHMExplorer.view` turns an :class:`ExplorerState` (slider values) into plain arrays (the
image, the DHM of the chosen step, the DHM and Fast DHM points, the ground truth);
:func:`show_static` draws one row of all steps; :func:`build_widget` wires both to ipywidgets.
Only ``build_widget`` needs ipywidgets. Points are crop pixels (0-based, pixel centres at
integers, the library convention); the models' normalised outputs are multiplied by ``size``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..data.faces import FaceCrops
from ..data.transforms import standardise
from ..models.fast_dhm import DHMNet, FastDHM

CHANNELS = ("x", "y", "z")
"""The DHM channels (Eq. 3): each landmark's normalised x, y and depth (z away from the viewer)."""

MAX_YAW = 85.0
"""The yaw slider's end (the notebook profiles 300-W faces up to 85 degrees)."""


@dataclass
class ExplorerState:
    """The slider values of one view.

    Attributes:
        face: index into the explorer's faces.
        step: recurrent step ``0 .. T`` (0 = the mean initialisation; negative counts from the
            end, -1 = the output).
        channels: which DHM channels (x, y, z) are shown; unselected ones are zeroed.
        yaw: None = the face as it is; else the target |yaw| in degrees: the face is turned to it
            (:func:`~lmklib.data.profiling.profile_faces`) before the models run.
    """

    face: int = 0
    step: int = -1
    channels: tuple[bool, bool, bool] = (True, True, True)
    yaw: float | None = None


@dataclass
class _Run:
    """Both models on one (possibly turned) face, every step (crop px, numpy)."""

    image: np.ndarray         # [S, S, 3] uint8
    truth: np.ndarray         # [K, 2]
    dhm_shapes: np.ndarray    # [T_dhm + 1, K, 3]
    dhm_maps: np.ndarray      # [T_dhm + 1, 3, S, S]
    fast_points: np.ndarray   # [T_fast + 1, K, 2]
    pose_yaw: float | None    # signed yaw of the turned face (None when not turned)


class DHMExplorer:
    """DHM and Fast DHM, step by step, on the faces of a :class:`FaceCrops`.

    Args:
        dhm: a :class:`~lmklib.models.fast_dhm.DHMNet` (its posed 3D shapes per step).
        fast: a :class:`~lmklib.models.fast_dhm.FastDHM` (its read-out of ``F_0 .. F_T``).
        faces: the faces (crops of side ``dhm.size``; models read
            :func:`~lmklib.data.transforms.standardise` of their images).
        shape_model: the :class:`~lmklib.data.formats.bfm.ShapeModel` that turns faces.
        seed: :func:`profile_faces`'s seed (the side a near-frontal face turns to).
        cache_size: model runs kept, one per (face, yaw); sliding steps or channels reuses them.

    Both models are put in eval mode. The step slider runs over ``0 .. n_steps`` with
    ``n_steps = max(T_dhm, T_fast)``; a model with fewer steps shows its last one beyond its T.
    """

    def __init__(self, dhm: DHMNet, fast: FastDHM, faces: FaceCrops, shape_model, *,
                 seed: int = 0, cache_size: int = 64):
        sizes = {"dhm": dhm.size, "fast": fast.size, "faces": faces.size}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the models and the faces must share one crop size, got {sizes}")
        if len(faces) == 0:
            raise ValueError("faces is empty")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.dhm, self.fast = dhm.eval(), fast.eval()
        self.faces, self.shape_model = faces, shape_model
        self.seed, self.cache_size = int(seed), int(cache_size)
        self._runs: OrderedDict[tuple[int, float | None], _Run] = OrderedDict()

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    @property
    def n_steps(self) -> int:
        """T: the last step (steps run ``0 .. T``)."""
        return max(self.dhm.steps, self.fast.steps)

    @property
    def size(self) -> int:
        return self.faces.size

    # ----------------------------------------------------------------- state -> data
    def check(self, state: ExplorerState) -> tuple[int, int, float | None]:
        """``(face, step, yaw)`` resolved (step ``-1`` -> T, yaw as float); ``ValueError`` for
        values the sliders cannot reach."""
        face, step, t = int(state.face), int(state.step), self.n_steps
        if not 0 <= face < self.n_faces:
            raise ValueError(f"face must be in [0, {self.n_faces - 1}], got {state.face}")
        if not -(t + 1) <= step <= t:
            raise ValueError(f"step must be in [0, {t}] (or -1 for the last), got {state.step}")
        if len(state.channels) != 3:
            raise ValueError(f"channels must be three booleans (x, y, z), got {state.channels}")
        yaw = state.yaw
        if yaw is not None:
            yaw = float(yaw)
            if not 0.0 <= yaw <= 90.0:
                raise ValueError(f"yaw must be None (as is) or in [0, 90] degrees, got {yaw}")
        return face, step % (t + 1), yaw

    def view(self, state: ExplorerState | None = None) -> dict:
        """What the widget shows for ``state`` (default :class:`ExplorerState()`).

        Returns a dict:
            ``image`` ``[S, S, 3]`` uint8, the face (turned when ``state.yaw`` is set);
            ``dhm_maps`` ``[3, S, S]`` float32, the DHM (Eq. 3, the model's ``sigma``) of DHM's
            shape at the step, unselected channels zero; ``dhm_points`` ``[K, 2]`` that shape's
            x, y; ``dhm_shape`` ``[K, 3]`` the shape; ``fast_points`` ``[K, 2]`` Fast DHM's
            read-out at the step (clamped to its T); ``truth`` ``[K, 2]`` the face's points
            (turned too); ``dhm_error``, ``fast_error`` mean point-to-point distance to
            ``truth`` in px; ``step`` (resolved), ``dhm_step``, ``fast_step`` (after clamping),
            ``yaw`` (``state.yaw``), ``pose_yaw`` (signed yaw of the turned face, or None),
            ``channels``, ``face``.
        """
        state = ExplorerState() if state is None else state
        face, step, yaw = self.check(state)
        run = self.run(face, yaw)
        ds, fs = min(step, self.dhm.steps), min(step, self.fast.steps)
        keep = np.asarray([bool(c) for c in state.channels], dtype=np.float32)
        maps = run.dhm_maps[ds] * keep[:, None, None]
        dhm_points, fast_points = run.dhm_shapes[ds, :, :2], run.fast_points[fs]

        def error(p):
            return float(np.nanmean(np.linalg.norm(p - run.truth, axis=-1)))

        return {"image": run.image, "dhm_maps": maps, "dhm_points": dhm_points,
                "dhm_shape": run.dhm_shapes[ds], "fast_points": fast_points, "truth": run.truth,
                "dhm_error": error(dhm_points), "fast_error": error(fast_points),
                "step": step, "dhm_step": ds, "fast_step": fs, "yaw": yaw,
                "pose_yaw": run.pose_yaw, "channels": tuple(bool(c) for c in state.channels),
                "face": face}

    def run(self, face: int, yaw: float | None = None) -> _Run:
        """Both models on face ``face`` (turned to ``yaw`` when given), every step; cached per
        ``(face, yaw)`` (least recently used dropped beyond ``cache_size``)."""
        key = (int(face), None if yaw is None else float(yaw))
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        image, truth, pose_yaw = self._face(*key)
        run = self._models(image, truth, pose_yaw)
        self._runs[key] = run
        while len(self._runs) > self.cache_size:
            self._runs.popitem(last=False)
        return run

    def _face(self, face: int, yaw: float | None):
        """``(image [S, S, C] uint8, points [K, 2] px, signed yaw or None)`` of one face."""
        image = self.faces.images[face].permute(1, 2, 0).numpy()
        points = self.faces.points[face].double().numpy()
        if yaw is None:
            return image, points, None
        if not np.isfinite(points).all():
            raise ValueError(f"face {face} has missing points: it cannot be turned "
                             "(fit_shape needs all of them); use yaw=None")
        from ..data.profiling import profile_faces   # scipy, only when a face is turned

        out = profile_faces(image[None], points[None], (yaw,), self.shape_model, seed=self.seed)
        return out["images"][0], out["points"][0], float(out["yaw"][0])

    @torch.no_grad()
    def _models(self, image: np.ndarray, truth: np.ndarray, pose_yaw) -> _Run:
        device = next(self.dhm.parameters()).device
        x = standardise(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
        shapes = torch.stack(self.dhm.steps_shapes(x.to(device)))[:, 0]          # [T+1, K, 3]
        maps = self.dhm.diffusion_maps(shapes)                                    # [T+1, 3, S, S]
        fdev = next(self.fast.parameters()).device
        fast = torch.stack(self.fast.steps_points(x.to(fdev)))[:, 0] * self.fast.size
        rgb = image if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, -1)
        return _Run(np.ascontiguousarray(rgb), np.asarray(truth, dtype=np.float64),
                    shapes.cpu().numpy(), maps.float().cpu().numpy(), fast.cpu().numpy(),
                    pose_yaw)


# --------------------------------------------------------------------------- drawing
def overlay(image: np.ndarray, maps: np.ndarray, dim: float = 0.6) -> np.ndarray:
    """The DHM over the face: ``[S, S, 3]`` float in ``[0, 1]``.

    The image is shown in grey, scaled by ``dim``; the maps ``[3, S, S]`` (clipped to
    ``[0, 1]``) are the colour, x -> red, y -> green, z -> blue, blended in with the strongest
    channel as opacity (so a zero map leaves the grey image, a map of 1 shows its pure colour)."""
    img = np.asarray(image, dtype=np.float32) / 255.0
    grey = np.repeat(img.mean(-1, keepdims=True), 3, -1) * dim
    heat = np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0).transpose(1, 2, 0)
    alpha = heat.max(-1, keepdims=True)
    return grey * (1 - alpha) + heat * alpha


def show_static(explorer: DHMExplorer, state: ExplorerState | None = None):
    """One row of panels, steps ``t = 0 .. T`` of ``state``'s face (default the first face as
    it is, all channels): each panel the face with that step's DHM overlaid (:func:`overlay`),
    DHM's points (red), Fast DHM's (cyan) and the truth (white); ``state.step`` is framed.
    Returns the matplotlib figure, left open (for ``plt.show()`` / ``reports.save_figure``)."""
    import matplotlib.pyplot as plt

    state = ExplorerState() if state is None else state
    chosen = explorer.check(state)[1]
    t = explorer.n_steps
    fig, axes = plt.subplots(1, t + 1, figsize=(2.4 * (t + 1), 2.9), squeeze=False)
    for k, ax in enumerate(axes[0]):
        v = explorer.view(ExplorerState(state.face, k, tuple(state.channels), state.yaw))
        ax.imshow(overlay(v["image"], v["dhm_maps"]), interpolation="nearest")
        ax.plot(*v["truth"].T, "o", ms=2.5, mfc="none", mec="white", mew=0.6,
                label="truth")
        ax.plot(*v["dhm_points"].T, ".", ms=3, color="red", label="DHM")
        ax.plot(*v["fast_points"].T, "x", ms=2.5, mew=0.7, color="cyan", label="Fast DHM")
        name = "mean init" if k == 0 else "output" if k == t else f"step {k}"
        ax.set_title(f"t={k} ({name})\nDHM {v['dhm_error']:.1f} px, "
                     f"Fast {v['fast_error']:.1f} px", fontsize=8,
                     fontweight="bold" if k == chosen else "normal")
        s = explorer.size
        ax.set_xlim(-0.5, s - 0.5)              # points off the crop must not rescale a panel
        ax.set_ylim(s - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(k == chosen)
            spine.set_color("gold")
            spine.set_linewidth(3)
    axes[0, 0].legend(fontsize=6, loc="lower left", framealpha=0.5)
    shown = "".join(c for c, on in zip(CHANNELS, state.channels) if on) or "none"
    turned = "as is" if state.yaw is None else f"turned to |yaw| {float(state.yaw):.0f}"
    fig.suptitle(f"face {state.face} ({turned}), DHM channels {shown}; errors = mean point "
                 "distance to the truth", fontsize=9)
    fig.tight_layout()
    return fig


def build_widget(explorer: DHMExplorer, state: ExplorerState | None = None):
    """ipywidgets controls (face, step, x/y/z channel boxes, yaw with an "as is" box) over an
    Output holding :func:`show_static` of the current state. The controls edit ``state``
    (default a new :class:`ExplorerState`) in place, so a later cell can read the settings; the
    box's ``state`` attribute is that object. Face and yaw redraw when released (each new pair
    reruns the models, and a turn also the profiling warp).

    In a headless run (:func:`lmklib.widgets.headless`) nothing is built (nobody can move a
    slider, and widget comms can hang nbclient; the notebook shows :func:`show_static` above
    the widget) and None is returned."""
    from . import headless

    state = ExplorerState() if state is None else state
    explorer.check(state)
    if headless():
        print("interactive heat-map explorer: open this notebook in Jupyter to move the sliders "
              "(the static figure above shows its first view)")
        return None
    import ipywidgets as w
    import matplotlib.pyplot as plt

    t = explorer.n_steps
    out = w.Output()
    face = w.IntSlider(state.face, 0, explorer.n_faces - 1, description="face",
                       continuous_update=False)
    step = w.IntSlider(state.step % (t + 1), 0, t, description="step t")
    boxes = [w.Checkbox(bool(on), description=f"{c} channel", indent=False)
             for c, on in zip(CHANNELS, state.channels)]
    as_is = w.Checkbox(state.yaw is None, description="yaw as is", indent=False)
    yaw = w.FloatSlider(30.0 if state.yaw is None else float(state.yaw), min=0.0, max=MAX_YAW,
                        step=5.0, description="|yaw|", continuous_update=False,
                        disabled=state.yaw is None)

    def redraw(_=None):
        state.face, state.step = face.value, step.value
        state.channels = tuple(b.value for b in boxes)
        state.yaw = None if as_is.value else float(yaw.value)
        yaw.disabled = as_is.value
        with out:
            out.clear_output(wait=True)
            try:
                fig = show_static(explorer, state)
            except ValueError as e:          # e.g. a face with missing points cannot turn
                print(e)
                return
            plt.show()
            plt.close(fig)

    for c in (face, step, *boxes, as_is, yaw):
        c.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([face, step]), w.HBox(boxes), w.HBox([as_is, yaw]), out])
    box.state = state
    return box
