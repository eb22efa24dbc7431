"""Heat-map explorer of the SD-HRNet notebook: teacher, peer students and their ensemble.

Lin et al., SD-HRNet (Sensors 2023), Sec. 3.2: the triple knowledge distillation trains two peer
students (:class:`~lmklib.papers.sd_hrnet_lin2023.distillation.PeerStudents`, ``.s1`` and
``.s2``) on randomly masked faces, against the ground truth, their ensemble
``P_E = (P_S1 + P_S2) / 2`` (Eq. 4) and a frozen teacher. Pick a face and a landmark, see each
network's heatmap of that landmark and its decoded point, and drop a square occluder on the face
to watch the maps move (the students were trained on masked inputs, the teacher was not).

:func:`occlude` paints the square; :func:`panel` runs the models on one (occluded) face and
returns plain arrays; :func:`draw` draws one row of axes from them; :func:`explorer` wires both
to ipywidgets (the only function that needs it). Points are crop pixels (0-based, pixel centres
at integers, the library convention); heatmaps are ``S / 4`` pixels, decoded with the paper
module's :func:`~lmklib.papers.sd_hrnet_lin2023.decode` (``cfg["decode"]``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data.faces import FaceCrops
from ..data.heatmaps import image_to_heatmap
from ..data.transforms import standardise

STUDENTS = ("student 1", "student 2")
"""The model names that make the ensemble (when both are given to :func:`panel`)."""

ENSEMBLE = "ensemble"
"""The name of Eq. 4's ``P_E``, the mean of the two students' raw heatmaps."""

CACHE_SIZE = 16
"""Model runs the explorer keeps, one per ``(face, occluder centre, side)``."""


# --------------------------------------------------------------------------- occluder
def occlude(image: torch.Tensor, centre: tuple[float, float] | None, side: float,
            value: int = 0) -> torch.Tensor:
    """A copy of ``image`` (uint8 ``[C, S, S]``) with a square of ``side`` px centred at
    ``centre`` (crop px, ``(x, y)``) painted ``value`` in every channel.

    The painted pixels are those whose centre lies in the half-open square
    ``[x - side/2, x + side/2) x [y - side/2, y + side/2)``: columns
    ``ceil(x - side/2) .. ceil(x + side/2) - 1`` (rows likewise), clipped to the image. An
    integer ``side`` thus paints exactly ``side x side`` pixels away from the borders.
    ``centre=None`` or ``side <= 0`` returns an unchanged copy."""
    img = torch.as_tensor(image)
    if img.dim() != 3:
        raise ValueError(f"image must be [C, H, W], got shape {tuple(img.shape)}")
    if not 0 <= int(value) <= 255:
        raise ValueError(f"value must be in [0, 255], got {value}")
    out = img.clone()
    if centre is None or side <= 0:
        return out
    x, y = (float(c) for c in centre)
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(float(side))):
        raise ValueError(f"centre and side must be finite, got {centre}, {side}")
    h, w = img.shape[-2:]
    half = float(side) / 2
    c0, c1 = max(0, math.ceil(x - half)), min(w, math.ceil(x + half))
    r0, r1 = max(0, math.ceil(y - half)), min(h, math.ceil(y + half))
    if c1 > c0 and r1 > r0:
        out[:, r0:r1, c0:c1] = int(value)
    return out


def panel_key(index: int, centre: tuple[float, float] | None = None,
              side: float = 0.0) -> tuple:
    """The cache key of one model run: ``(index, centre, side)`` as plain numbers; no occluder
    (``centre=None`` or ``side <= 0``) is ``(index, None, 0.0)``."""
    if centre is None or side <= 0:
        return int(index), None, 0.0
    return int(index), (float(centre[0]), float(centre[1])), float(side)


# --------------------------------------------------------------------------- models -> data
@torch.no_grad()
def run_models(models: dict[str, torch.nn.Module], image: torch.Tensor) -> dict[str, np.ndarray]:
    """Each model (put in eval mode) on one uint8 image ``[C, S, S]``:
    ``{name: [K, S/4, S/4] float32}`` in the order of ``models``, with :data:`ENSEMBLE` (the mean
    of the two students' raw maps, Eq. 4's ``P_E``) right after the later of the students when
    both :data:`STUDENTS` are there."""
    if ENSEMBLE in models:
        raise ValueError(f"{ENSEMBLE!r} is computed from {STUDENTS}; do not pass it as a model")
    x = standardise(torch.as_tensor(image)[None])
    maps: dict[str, np.ndarray] = {}
    both = all(s in models for s in STUDENTS)
    last = max(list(models).index(s) for s in STUDENTS) if both else -1
    for i, (name, model) in enumerate(models.items()):
        model.eval()
        try:
            dev = next(model.parameters()).device
        except StopIteration:
            dev = torch.device("cpu")
        maps[name] = model(x.to(dev))[0].float().cpu().numpy()
        if i == last:
            maps[ENSEMBLE] = (maps[STUDENTS[0]] + maps[STUDENTS[1]]) / 2
    return maps


def panel(models: dict[str, torch.nn.Module], faces: FaceCrops, cfg: dict, index: int,
          landmark: int, centre: tuple[float, float] | None = None, side: float = 0.0, *,
          cache: dict | None = None, cache_size: int = CACHE_SIZE) -> dict:
    """What the explorer shows for face ``index`` and one ``landmark``.

    Args:
        models: ``{name: network}`` (e.g. ``{"teacher": t, "student 1": pair.s1,
            "student 2": pair.s2}``); each maps standardised ``[1, 3, S, S]`` to
            ``[1, K, S/4, S/4]`` heatmaps. They are put in eval mode and run without gradients.
        faces: the faces (``faces.images`` uint8 ``[N, 3, S, S]``, ``faces.points`` crop px).
        cfg: the paper profile (``cfg["decode"]``: :func:`lmklib.papers.sd_hrnet_lin2023.decode`).
        index, landmark: the face and the landmark (0-based).
        centre, side: an occluder (:func:`occlude`, painted 0) over the face before the models
            read it; ``None`` = none.
        cache: optional dict of model runs keyed by :func:`panel_key` (the maps of all
            landmarks, so moving between landmarks reruns nothing); at most ``cache_size``
            entries are kept, the least recently used dropped.

    Returns a dict:
        ``image`` ``[S, S, 3]`` uint8, the face as the models saw it (occluded);
        ``maps`` ``{name: [S/4, S/4]}`` the landmark's heatmap per model, :data:`ENSEMBLE`
        after the students when both :data:`STUDENTS` are given; ``points`` ``{name: [2]}``
        crop px, the landmark's row of the paper module's ``decode`` of the model's full
        ``[1, K, S/4, S/4]`` maps (NaN for a map with no positive value); ``truth`` ``[2]``
        ``faces.points[index, landmark]``; ``errors`` ``{name: px}`` distance to the truth;
        ``index``, ``landmark``, ``centre``, ``side``, ``key`` (the :func:`panel_key`).
    """
    from ..papers.sd_hrnet_lin2023 import decode

    if not models:
        raise ValueError("models is empty")
    n, k = len(faces), int(faces.points.shape[1])
    if not 0 <= int(index) < n:
        raise ValueError(f"index must be in [0, {n - 1}], got {index}")
    if not 0 <= int(landmark) < k:
        raise ValueError(f"landmark must be in [0, {k - 1}], got {landmark}")
    index, landmark = int(index), int(landmark)
    key = panel_key(index, centre, side)
    run = None if cache is None else cache.pop(key, None)
    if run is None:
        image = occlude(faces.images[index], key[1], key[2])
        maps = run_models(models, image)
        points = {name: decode(torch.from_numpy(m)[None], cfg)[0] for name, m in maps.items()}
        rgb = image.permute(1, 2, 0).numpy()
        if rgb.shape[-1] != 3:
            rgb = np.repeat(rgb[..., :1], 3, -1)
        run = (np.ascontiguousarray(rgb), maps, points)
    if cache is not None:
        cache[key] = run                                    # (re)inserted last: most recent
        while len(cache) > max(1, int(cache_size)):
            cache.pop(next(iter(cache)))
    image, maps, points = run
    truth = faces.points[index, landmark].double().numpy()
    pts = {name: p[landmark] for name, p in points.items()}
    return {"image": image, "maps": {name: m[landmark] for name, m in maps.items()},
            "points": pts, "truth": truth,
            "errors": {name: float(np.linalg.norm(p - truth)) for name, p in pts.items()},
            "index": index, "landmark": landmark, "centre": key[1], "side": key[2], "key": key}


# --------------------------------------------------------------------------- drawing
_COLOURS = ("red", "cyan", "orange", "magenta", "yellow", "lime", "deepskyblue")
_MARKERS = ("x", "+", "^", "s", "D", "v", "o")


def draw(result: dict, ax_row) -> None:
    """One row of a :func:`panel` result: ``ax_row[0]`` the face (occluder outlined) with the
    truth (white circle) and each model's decoded point; then one heatmap per model
    (``imshow``), the truth and the model's point marked on it in heatmap pixels, titled with the
    model's name and its error in px to the truth. ``ax_row`` needs ``1 + len(result["maps"])``
    axes."""
    from matplotlib.patches import Rectangle

    names = list(result["maps"])
    axes = list(np.ravel(ax_row))
    if len(axes) < 1 + len(names):
        raise ValueError(f"need {1 + len(names)} axes (the face and {len(names)} maps), "
                         f"got {len(axes)}")
    image, truth = result["image"], np.asarray(result["truth"], dtype=np.float64)
    s = image.shape[0]
    ax = axes[0]
    ax.imshow(image, interpolation="nearest")
    if result.get("centre") is not None:
        (x, y), side = result["centre"], result["side"]
        ax.add_patch(Rectangle((x - side / 2 - 0.5, y - side / 2 - 0.5), side, side, fill=False,
                               ec="yellow", lw=1, ls="--"))
    ax.plot(*truth, "o", ms=6, mfc="none", mec="white", mew=1.2, label="truth")
    for i, name in enumerate(names):
        ax.plot(*result["points"][name], _MARKERS[i % len(_MARKERS)], ms=5, mew=1.2,
                color=_COLOURS[i % len(_COLOURS)], mfc="none", label=name)
    ax.set_xlim(-0.5, s - 0.5)                   # points off the crop must not rescale the panel
    ax.set_ylim(s - 0.5, -0.5)
    ax.set_title(f"face {result.get('index', '?')}, landmark {result.get('landmark', '?')}",
                 fontsize=8)
    ax.legend(fontsize=6, loc="lower left", framealpha=0.5)
    stride = s / result["maps"][names[0]].shape[-1]
    t_hm = image_to_heatmap(truth, stride)
    for i, name in enumerate(names):
        ax = axes[1 + i]
        m = result["maps"][name]
        ax.imshow(m, cmap="viridis", interpolation="nearest")
        ax.plot(*t_hm, "o", ms=6, mfc="none", mec="white", mew=1.2)
        ax.plot(*image_to_heatmap(np.asarray(result["points"][name]), stride),
                _MARKERS[i % len(_MARKERS)], ms=5, mew=1.2, color=_COLOURS[i % len(_COLOURS)],
                mfc="none")
        ax.set_xlim(-0.5, m.shape[1] - 0.5)
        ax.set_ylim(m.shape[0] - 0.5, -0.5)
        ax.set_title(f"{name}: {result['errors'][name]:.1f} px", fontsize=8)
    for ax in axes[:1 + len(names)]:
        ax.set_xticks([])
        ax.set_yticks([])


def figure(result: dict):
    """A new matplotlib figure of one :func:`draw` row (left open, for ``plt.show()`` or
    ``reports.save_figure``)."""
    import matplotlib.pyplot as plt

    n = 1 + len(result["maps"])
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.6), squeeze=False)
    draw(result, axes[0])
    occ = "no occluder" if result.get("centre") is None else \
        f"occluder {result['side']:.0f} px at ({result['centre'][0]:.0f}, " \
        f"{result['centre'][1]:.0f})"
    fig.suptitle(f"heatmaps of landmark {result['landmark']} ({occ}); errors = distance of the "
                 "decoded point to the truth", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- widget
def explorer(models: dict[str, torch.nn.Module], faces: FaceCrops, cfg: dict, *,
             cache_size: int = CACHE_SIZE):
    """ipywidgets controls over an Output holding :func:`figure` of the current :func:`panel`.

    Controls: ``face`` (IntSlider), ``landmark`` (IntSlider ``0 .. K-1``), ``occluder``
    (Checkbox), ``occluder x`` / ``occluder y`` / ``side`` (FloatSliders, crop px; disabled while
    the box is off). Model runs are cached per :func:`panel_key` in a dict of at most
    ``cache_size`` entries, so moving the landmark slider reruns nothing. Returns the VBox; its
    ``cache`` attribute is that dict, ``controls`` the widgets by description, ``result`` the
    last :func:`panel` result (``result["key"]`` its cache key).

    In a headless run (:func:`lmklib.widgets.headless`) nothing is built and None is returned
    (no one can move a slider, and widget comms can hang nbclient)."""
    from . import headless

    if not models:
        raise ValueError("models is empty")
    if len(faces) == 0:
        raise ValueError("faces is empty")
    if headless():
        print("interactive heat-map explorer: open this notebook in Jupyter to move the sliders")
        return None
    import ipywidgets as w
    import matplotlib.pyplot as plt

    s, k = faces.size, int(faces.points.shape[1])
    out = w.Output()
    face = w.IntSlider(0, 0, len(faces) - 1, description="face", continuous_update=False)
    landmark = w.IntSlider(min(30, k - 1), 0, k - 1, description="landmark")
    on = w.Checkbox(False, description="occluder", indent=False)
    ox = w.FloatSlider((s - 1) / 2, min=0.0, max=s - 1.0, step=0.5, description="occluder x",
                       continuous_update=False, disabled=True)
    oy = w.FloatSlider((s - 1) / 2, min=0.0, max=s - 1.0, step=0.5, description="occluder y",
                       continuous_update=False, disabled=True)
    side = w.FloatSlider(round(s / 4), min=1.0, max=float(s), step=1.0, description="side",
                         continuous_update=False, disabled=True)
    cache: dict = {}

    def redraw(_=None):
        for c in (ox, oy, side):
            c.disabled = not on.value
        centre = (ox.value, oy.value) if on.value else None
        box.result = panel(models, faces, cfg, face.value, landmark.value, centre,
                           side.value if on.value else 0.0, cache=cache, cache_size=cache_size)
        with out:
            out.clear_output(wait=True)
            fig = figure(box.result)
            plt.show()
            plt.close(fig)

    box = w.VBox([w.HBox([face, landmark]), w.HBox([on, ox, oy, side]), out])
    box.cache = cache
    box.controls = {c.description: c for c in (face, landmark, on, ox, oy, side)}
    for c in box.controls.values():
        c.observe(redraw, names="value")
    redraw()
    return box
