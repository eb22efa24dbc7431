"""COFW (Burgos-Artizzu et al., ICCV 2013): 1,852 occluded faces (1,345 train / 507 test), 29 points
with occlusion flags.

Layout under ``root``: the colour release used by HRNet/mmpose, two MATLAB v7.3 (HDF5) files::

    COFW_train_color.mat   IsTr (1345x1 cell of HxWx3 uint8 images), phisTr (1345x87),
                           bboxesTr (1345x4)
    COFW_test_color.mat    IsT (507x1 cell), phisT (507x87), bboxesT (507x4)

(the original grayscale ``COFW_train.mat`` / ``COFW_test.mat`` with the same variables are read
too, and MATLAB v5 files go through ``scipy.io.loadmat``). A row of ``phis`` is
``x1..x29, y1..y29, o1..o29`` with ``o = 1`` where the point is occluded; ``bboxes`` rows are
``x y w h``. MATLAB coordinates are 1-based: points and boxes are shifted by -1 (``one_based``).
HDF5 stores MATLAB arrays transposed (an ``N x 87`` matrix is an ``87 x N`` dataset, an
``H x W x 3`` image ``3 x W x H``); the reader undoes that. Images are decoded lazily from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      make_sample, numeric_array)
from ..schemes import COFW29

FILES = {"train": ("COFW_train_color.mat", "COFW_train.mat"),
         "test": ("COFW_test_color.mat", "COFW_test.mat")}
VARIABLES = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}
EXPECTED_COUNTS = {"train": 1345, "test": 507}
HOW_TO_GET = ("Get COFW_train_color.mat and COFW_test_color.mat (COFW colour release, "
              "http://www.vision.caltech.edu/xpburgos/ICCV13/, also linked from the HRNet facial "
              "landmark repository) and put them in that folder.")


def _is_hdf5(path: Path) -> bool:
    import h5py

    return h5py.is_hdf5(str(path))


def _as_rows(a: np.ndarray, width: int, path: Path, name: str, hdf5: bool) -> np.ndarray:
    """An ``N x width`` MATLAB matrix as numpy rows (HDF5 stores it ``width x N``)."""
    a = numeric_array(a, path, name, f"a numeric N x {width} matrix")
    if a.ndim != 2:
        raise AnnotationError(path, f"{name}: expected an N x {width} matrix, got {list(a.shape)}")
    if hdf5:
        a = a.T
    if a.shape[1] != width:
        raise AnnotationError(path, f"{name}: expected {width} columns, got {a.shape[1]} "
                              f"(shape {list(a.shape)})")
    return a


def read_cofw_mat(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Read ``phis`` ``[N, 87]`` and ``bboxes`` ``[N, 4]`` (MATLAB values) and the image count."""
    path = Path(path)
    img_var, phis_var, box_var = VARIABLES[split]
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            for v in (img_var, phis_var, box_var):
                if v not in f:
                    raise AnnotationError(path, f"variable {v!r} missing (expected {img_var}, "
                                          f"{phis_var}, {box_var}; found {sorted(f.keys())})")
            phis = _as_rows(f[phis_var][()], 87, path, phis_var, True)
            boxes = _as_rows(f[box_var][()], 4, path, box_var, True)
            n_images = int(np.prod(f[img_var].shape))
    else:
        from scipy.io import loadmat

        m = loadmat(str(path))
        for v in (img_var, phis_var, box_var):
            if v not in m:
                raise AnnotationError(path, f"variable {v!r} missing (expected {img_var}, "
                                      f"{phis_var}, {box_var})")
        phis = _as_rows(m[phis_var], 87, path, phis_var, False)
        boxes = _as_rows(m[box_var], 4, path, box_var, False)
        n_images = int(np.prod(m[img_var].shape))
    return phis, boxes, n_images


def read_cofw_image_sizes(path: str | os.PathLike, split: str) -> np.ndarray:
    """``(height, width)`` of every image of a COFW file ``[N, 2]``, from the array shapes
    (no pixels read)."""
    path = Path(path)
    img_var = VARIABLES[split][0]
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            cell = f[img_var]
            if h5py.check_dtype(ref=cell.dtype) is None:
                raise AnnotationError(path, f"{img_var}: expected a cell array of images, got a "
                                      f"{cell.dtype} array of shape {list(cell.shape)}")
            shapes = [f[ref].shape for ref in cell[()].reshape(-1)]
        hw = [s[::-1][:2] for s in shapes]  # stored transposed: W x H, or 3 x W x H
    else:
        from scipy.io import loadmat

        cell = loadmat(str(path))[img_var]
        if cell.dtype != object:
            raise AnnotationError(path, f"{img_var}: expected a cell array of images, got a "
                                  f"{cell.dtype} array of shape {list(cell.shape)}")
        hw = [np.shape(a)[:2] for a in cell.reshape(-1)]
    return np.array(hw, dtype=np.int64).reshape(-1, 2)


def read_cofw_image(path: str | os.PathLike, split: str, index: int) -> np.ndarray:
    """Image ``index`` of a COFW file as ``[H, W]`` or ``[H, W, 3]`` uint8."""
    path = Path(path)
    img_var = VARIABLES[split][0]
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            ref = f[img_var][()].reshape(-1)[index]
            arr = np.asarray(f[ref][()])
        arr = arr.T if arr.ndim == 2 else arr.transpose(2, 1, 0)  # undo MATLAB's column order
    else:
        from scipy.io import loadmat

        arr = np.asarray(loadmat(str(path))[img_var].reshape(-1)[index])
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return np.ascontiguousarray(arr.astype(np.uint8))


class COFW(LandmarkDataset):
    """COFW 29-point occluded faces.

    Args:
        root: folder with the two ``.mat`` files (see the module docstring).
        split: ``"train"`` (1,345) or ``"test"`` (507).
        one_based: the file's coordinates are MATLAB 1-based (shifted by -1 to lmklib's 0-based).
        image_mode: ``"RGB"`` (grayscale images repeated to 3 channels), ``"L"``, or ``None``.

    ``visible`` is False where COFW flags a point occluded; ``box`` is the annotated face box.
    """

    scheme = COFW29

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB",
                 one_based: bool = True):
        if split not in FILES:
            raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
        self.root, self.split, self.image_mode = Path(root), split, image_mode
        path = next((self.root / n for n in FILES[split] if (self.root / n).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"COFW file not found: {self.root / FILES[split][0]}. "
                                    f"{HOW_TO_GET}")
        self.mat_path = path
        phis, boxes, n_images = read_cofw_mat(path, split)
        if not (len(phis) == len(boxes) == n_images):
            raise AnnotationError(path, f"{n_images} images but {len(phis)} point rows and "
                                  f"{len(boxes)} boxes (expected the same count)")
        shift = 1.0 if one_based else 0.0
        records = []
        for i, (row, b) in enumerate(zip(phis, boxes)):
            pts = check_points(np.stack([row[:29], row[29:58]], axis=1), 29, path, line=None)
            occ = row[58:87]
            if not np.isin(occ, (0, 1)).all():
                raise AnnotationError(path, f"face {i + 1}: occlusion flags must be 0 or 1, got "
                                      f"{sorted(set(occ.tolist()))}")
            if not np.isfinite(b).all() or b[2] <= 0 or b[3] <= 0:
                raise AnnotationError(path, f"face {i + 1}: box {b.tolist()} is not finite or "
                                      "has no area (expected x y w h)")
            x0, y0 = b[0] - shift, b[1] - shift
            records.append(Record(path, pts - shift, np.array([x0, y0, x0 + b[2], y0 + b[3]]),
                                  visible=occ == 0, meta={"mat_index": i, "occluded": occ == 1}))
        for i, (r, hw) in enumerate(zip(records, read_cofw_image_sizes(path, split))):
            check_in_image(r.landmarks, r.box, hw, path, label=f"face {i + 1}: ")
        super().__init__(records, transform)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        arr = read_cofw_image(self.mat_path, self.split, r.meta["mat_index"])
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if self.image_mode == "RGB" and arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        elif self.image_mode == "L" and arr.shape[2] == 3:
            arr = np.round(arr @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[:, :, None]
        image = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        meta = {"path": f"{r.image_path}#{r.meta['mat_index']}", "index": index,
                "occluded": r.meta["occluded"], "mat_index": r.meta["mat_index"]}
        sample = make_sample(image, r.landmarks, r.box, r.visible, meta)
        return self.transform(sample) if self.transform is not None else sample

    def extra_repr(self) -> str:
        return f"File: {self.mat_path}\nSplit: {self.split}"
