"""Baselines every paper notebook is compared with.

* :class:`MeanShape` predicts the training set's mean shape placed inside each face box
  (the shape is stored in box-normalised coordinates, 0..1 across the box).
* :class:`SimpleCNN` is a deliberately plain regressor (conv-pool blocks, one hidden FC layer)
  used by the quickstart to show that the synthetic faces are learnable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_box_coords(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Map pixel points ``[N, K, 2]`` into box coordinates (0..1 across each box ``[N, 4]``)."""
    b = np.asarray(boxes, dtype=np.float64)
    wh = (b[:, 2:] - b[:, :2])[:, None, :]
    return (np.asarray(points, dtype=np.float64) - b[:, None, :2]) / wh


def from_box_coords(coords: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_box_coords`."""
    b = np.asarray(boxes, dtype=np.float64)
    return b[:, None, :2] + np.asarray(coords) * (b[:, 2:] - b[:, :2])[:, None, :]


class MeanShape:
    """Predict the (NaN-aware) mean training shape inside each test face box."""

    def fit(self, points: np.ndarray, boxes: np.ndarray) -> "MeanShape":
        coords = to_box_coords(points, boxes)
        if not np.isfinite(coords).any():
            raise ValueError("MeanShape.fit: no finite training points")
        self.shape_ = np.nanmean(coords, axis=0)
        return self

    def predict(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64)
        return from_box_coords(np.broadcast_to(self.shape_, (len(b),) + self.shape_.shape), b)


class SimpleCNN(nn.Module):
    """Plain landmark regressor: ``[N, C, S, S]`` images in [0, 1] -> ``[N, K, 2]`` points in
    image-normalised coordinates (-1..1 across the image).

    Four stride-2 3x3 conv-BN-ReLU blocks (S -> S/16) and one linear head. The head's bias can be
    set to the mean training shape (:meth:`start_from`), so the net learns offsets from it.

    Args:
        num_points: K.
        in_channels: 1 or 3.
        size: input side S (a multiple of 16).
        width: channels of the first block (doubled per block).
    """

    def __init__(self, num_points: int, in_channels: int = 3, size: int = 64, width: int = 16):
        super().__init__()
        if size % 16:
            raise ValueError(f"size must be a multiple of 16, got {size}")
        blocks, c = [], in_channels
        for i in range(4):
            blocks += [nn.Conv2d(c, width * 2**i, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width * 2**i), nn.ReLU(inplace=True)]
            c = width * 2**i
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c * (size // 16) ** 2, 2 * num_points)
        self.num_points = num_points

    @torch.no_grad()
    def start_from(self, mean_shape: torch.Tensor, head_scale: float = 0.1) -> "SimpleCNN":
        """Set the head's bias to ``mean_shape`` ``[K, 2]`` (unit coordinates), shrink its
        weights: the untrained net predicts the mean shape."""
        self.head.bias.copy_(mean_shape.reshape(-1))
        self.head.weight.mul_(head_scale)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x - 0.5).flatten(1)).view(-1, self.num_points, 2)


def pixels_to_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates (0..size-1) -> -1..1 (pixel-centre convention)."""
    return points / (size - 1) * 2 - 1


def unit_to_pixels(points: torch.Tensor, size: int) -> torch.Tensor:
    return (points + 1) / 2 * (size - 1)
