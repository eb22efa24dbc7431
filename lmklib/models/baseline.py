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

    Args:
        num_points: K.
        in_channels: 1 or 3.
        size: input side S (a multiple of 8).
        width: channels of the first conv block (doubled per block).
    """

    def __init__(self, num_points: int, in_channels: int = 3, size: int = 64, width: int = 16):
        super().__init__()
        if size % 8:
            raise ValueError(f"size must be a multiple of 8, got {size}")
        c = [in_channels, width, 2 * width, 4 * width]
        blocks = []
        for i in range(3):
            blocks += [nn.Conv2d(c[i], c[i + 1], 3, padding=1), nn.BatchNorm2d(c[i + 1]),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c[3] * (size // 8) ** 2, 128),
                                  nn.ReLU(inplace=True), nn.Linear(128, 2 * num_points))
        self.num_points = num_points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(-1, self.num_points, 2)


def pixels_to_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates (0..size-1) -> -1..1 (pixel-centre convention)."""
    return points / (size - 1) * 2 - 1


def unit_to_pixels(points: torch.Tensor, size: int) -> torch.Tensor:
    return (points + 1) / 2 * (size - 1)
