"""Figures the notebooks share: faces with landmarks, CED curves, per-point error bars."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def image_to_numpy(image) -> np.ndarray:
    """``[C, H, W]`` tensor/array (uint8 or float) -> ``[H, W]`` or ``[H, W, 3]`` for imshow."""
    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return a


def show_faces(images: Sequence, points: Sequence, titles: Sequence[str] | None = None,
               predictions: Sequence | None = None, boxes: Sequence | None = None,
               cols: int = 6, size: float = 2.0, point_size: float = 8.0):
    """A grid of faces with ground truth (green) and, if given, predictions (red)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols)) if n else 1
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        img = image_to_numpy(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        p = np.asarray(points[i])
        ax.scatter(p[:, 0], p[:, 1], s=point_size, c="lime", edgecolors="k", linewidths=0.3)
        if predictions is not None:
            q = np.asarray(predictions[i])
            ax.scatter(q[:, 0], q[:, 1], s=point_size, c="red", marker="x", linewidths=0.8)
        if boxes is not None:
            x0, y0, x1, y1 = np.asarray(boxes[i])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=0.8))
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def plot_ced(curves: dict[str, np.ndarray], max_threshold: float, xlabel: str,
             steps: int = 501):
    """CED curves of several methods: ``curves`` maps a label to per-face errors."""
    import matplotlib.pyplot as plt

    from .metrics import auc, ced

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, errors in curves.items():
        t, f = ced(errors, max_threshold, steps)
        ax.plot(t, f, label=f"{label} (AUC@{max_threshold:g} = {auc(errors, max_threshold):.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of faces")
    ax.set_xlim(0, max_threshold)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
