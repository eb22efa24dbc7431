"""AFLW2000-3D and 300W-LP (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution",
CVPR 2016): large-pose faces with 68 points from a fitted 3D model, and the head pose.

AFLW2000-3D layout under ``root`` (the ``AFLW2000`` folder of ``AFLW2000-3D.zip``)::

    image00002.jpg  image00002.mat  ...   (2,000 pairs, 450x450 images)

each ``.mat`` (MATLAB v5, read with ``scipy.io.loadmat``) holding ``pt3d_68`` (3x68: x, y, z in
pixels), ``pt2d`` (2x21: the original AFLW 21 points, -1 where not annotated), ``Pose_Para``
(1x7: pitch, yaw, roll in radians, then tx, ty, tz, scale), ``roi`` and the 3DMM parameters.
Optionally ``3ddfa/AFLW2000-3D-Reannotated.pts68.npy`` (from 3DDFA's ``test.configs``): the 68
points re-annotated by hand by Bulat & Tzimiropoulos (ICCV 2017), ``(N, 2, 68)`` float32, one row
per ``.mat`` in sorted file order, already 0-based (checked against ``pt3d_68``: on 400 faces with
``|yaw| < 30`` the re-annotation sits 1.2 px left of the raw 1-based ``pt3d_68``, averaged over
mirror pairs so that definition differences cancel, i.e. 0-based like lmklib; NME 3.6 % with
the -1 shift vs 3.8 % without).

300W-LP layout under ``root`` (``300W_LP.zip``)::

    AFW/ HELEN/ IBUG/ LFPW/            images X.jpg with X.mat (Pose_Para, pt2d 2x68, roi, ...)
    AFW_Flip/ HELEN_Flip/ ...          their mirrored copies (same files)
    landmarks/AFW/X_pts.mat ...        pts_2d (68x2) and pts_3d (68x2) for the unflipped images

Landmarks of 300W-LP come from ``landmarks/<subset>/<X>_pts.mat`` (``pts_2d`` by default, the
visible-contour markup) and otherwise from the image's own ``pt2d``. MATLAB coordinates are
1-based: every point is shifted by -1 (``one_based=True``); set it False to use them as stored.

Pose is reported in degrees (``meta["pose"] = {"yaw", "pitch", "roll"}``) and the absolute yaw is
binned as in the papers: ``[0, 30]``, ``(30, 60]``, ``(60, 90]``, and ``> 90`` (:func:`yaw_bin`).
AFLW2000-3D splits 1,312 / 383 / 298 with 7 faces beyond 90 degrees.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, numeric_array)
from ..schemes import AFLW21, IBUG68

YAW_BINS = ("0-30", "30-60", "60-90", ">90")
EXPECTED_YAW_BINS_AFLW2000 = {"0-30": 1312, "30-60": 383, "60-90": 298, ">90": 7}
EXPECTED_COUNTS_AFLW2000 = {"test": 2000}
W300LP_SUBSETS = {"AFW": 5207, "HELEN": 37676, "IBUG": 1786, "LFPW": 16556}
EXPECTED_COUNTS_300WLP = {"all": 61225, **W300LP_SUBSETS}
HOW_TO_GET_AFLW2000 = ("Get AFLW2000-3D.zip from http://www.cbsr.ia.ac.cn/users/xiangyuzhu/"
                       "projects/3DDFA/main.htm and unpack its AFLW2000/ folder there.")
REANNOTATED_FILE = "3ddfa/AFLW2000-3D-Reannotated.pts68.npy"
HOW_TO_GET_REANNOTATED = ("AFLW2000-3D-Reannotated.pts68.npy is in cleardusk/3DDFA "
                          "(test.configs/); put it in a 3ddfa/ folder beside the .mat files.")
HOW_TO_GET_300WLP = ("Get 300W-LP.zip from http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/"
                     "3DDFA/main.htm and unpack its 300W_LP/ folder there.")


def yaw_bin(yaw_degrees: float) -> str:
    """The bin of ``|yaw|``: ``"0-30"``, ``"30-60"``, ``"60-90"`` (upper bounds inclusive) or
    ``">90"``."""
    a = abs(float(yaw_degrees))
    if not math.isfinite(a):
        raise ValueError(f"yaw must be finite, got {yaw_degrees}")
    return "0-30" if a <= 30 else "30-60" if a <= 60 else "60-90" if a <= 90 else ">90"


def yaw_bin_counts(yaws_degrees: Iterable[float]) -> dict[str, int]:
    """How many yaws fall in each of :data:`YAW_BINS`."""
    counts = dict.fromkeys(YAW_BINS, 0)
    for y in yaws_degrees:
        counts[yaw_bin(y)] += 1
    return counts


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as e:  # scipy raises several types for a corrupt or non-v5 file
        raise AnnotationError(path, f"cannot read as a MATLAB v5 .mat file ({e})") from None


def _pose(m: dict, path: Path) -> dict[str, float]:
    if "Pose_Para" not in m:
        raise AnnotationError(path, "variable 'Pose_Para' missing (expected 1x7: pitch yaw roll "
                              "tx ty tz scale)")
    p = numeric_array(m["Pose_Para"], path, "Pose_Para", "a numeric 1x7 vector (pitch yaw roll "
                      "tx ty tz scale)").reshape(-1)
    if p.size != 7 or not np.isfinite(p[:3]).all():
        raise AnnotationError(path, f"Pose_Para must hold 7 finite values, got {p.tolist()}")
    pitch, yaw, roll = np.degrees(p[:3])
    return {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll)}


def _points(m: dict, var: str, k: int, path: Path, rows: int) -> np.ndarray:
    """``var`` as ``[k, 2]``: accepts ``rows x k`` (x, y[, z] rows) or ``k x 2`` layouts."""
    if var not in m:
        raise AnnotationError(path, f"variable {var!r} missing (found "
                              f"{sorted(x for x in m if not x.startswith('__'))})")
    a = numeric_array(m[var], path, var, f"a numeric {rows}x{k} (or {k}x2) matrix")
    if a.shape == (rows, k) or (a.ndim == 2 and a.shape[1] == k and a.shape[0] in (2, 3)):
        pts = a[:2].T
    elif a.shape == (k, 2) or a.shape == (k, 3):
        pts = a[:, :2]
    else:
        raise AnnotationError(path, f"{var}: expected {rows}x{k} (or {k}x2), got {list(a.shape)}")
    return pts


def read_aflw2000_mat(path: str | os.PathLike, points: str = "pt3d_68",
                      one_based: bool = True) -> tuple[np.ndarray, dict[str, float]]:
    """One AFLW2000-3D annotation: ``([K, 2] 0-based points, pose in degrees)``.

    ``points="pt3d_68"`` gives the 68 points (x, y of the 3x68 array); ``"pt2d"`` the 21 AFLW
    points, NaN where the file holds -1 (not annotated).
    """
    if points not in ("pt3d_68", "pt2d"):
        raise ValueError(f"points must be 'pt3d_68' or 'pt2d', got {points!r}")
    pts, pose, _ = _read_aflw2000(Path(path), points, one_based)
    return pts, pose


def _pt3d(m: dict, path: Path, shift: float) -> np.ndarray:
    """``pt3d_68`` as ``[68, 3]``: x, y shifted to 0-based by ``shift``, z as stored."""
    if "pt3d_68" not in m:
        raise AnnotationError(path, f"variable 'pt3d_68' missing (found "
                              f"{sorted(x for x in m if not x.startswith('__'))})")
    a = numeric_array(m["pt3d_68"], path, "pt3d_68", "a numeric 3x68 matrix")
    if a.shape not in ((3, 68), (68, 3)):
        raise AnnotationError(path, f"pt3d_68: expected 3x68 (or 68x3), got {list(a.shape)}")
    p = (a.T if a.shape == (3, 68) else a).astype(np.float64)
    check_points(p[:, :2], 68, path)
    if not np.isfinite(p[:, 2]).all():
        raise AnnotationError(path, f"pt3d_68: point {int(np.argmax(~np.isfinite(p[:, 2])))} has a "
                              "non-finite z")
    return p - np.array([shift, shift, 0.0])


def _read_aflw2000(path: Path, points: str, one_based: bool):
    """``(points [K, 2], pose, pt3d [68, 3])`` of one ``.mat`` (``points="reannotated"``: the
    points are ``pt3d_68``'s x, y, to be replaced by the caller)."""
    m = _loadmat(path)
    shift = 1.0 if one_based else 0.0
    if points in ("pt3d_68", "reannotated"):
        pts = check_points(_points(m, "pt3d_68", 68, path, 3), 68, path) - shift
    elif points == "pt2d":
        raw = _points(m, "pt2d", 21, path, 2)
        missing = (raw < 0).any(axis=1)
        pts = check_points(raw, 21, path) - shift
        pts[missing] = np.nan
    else:
        raise ValueError(f"points must be 'pt3d_68', 'pt2d' or 'reannotated', got {points!r}")
    return pts, _pose(m, path), _pt3d(m, path, shift)


def read_reannotated(root: str | os.PathLike, n: int) -> np.ndarray:
    """``[n, 68, 2]`` 0-based re-annotated points from ``root/3ddfa/...pts68.npy`` (module doc),
    row ``i`` for the ``i``-th ``.mat`` in sorted order; ``n`` = how many ``.mat`` files."""
    path = Path(root) / REANNOTATED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found ({HOW_TO_GET_REANNOTATED})")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read as a .npy array ({e})") from None
    if a.shape != (n, 2, 68) or not np.isfinite(a).all():
        raise ValueError(f"{path}: expected a finite ({n}, 2, 68) array (one row per .mat file "
                         f"in {path.parent.parent}), got {a.shape}")
    return a.transpose(0, 2, 1).astype(np.float64)


class AFLW2000_3D(LandmarkDataset):
    """AFLW2000-3D: 2,000 test faces, 68 points (or the 21 AFLW points), with head pose.

    Args:
        root: the ``AFLW2000`` folder (image/``.mat`` pairs).
        split: only ``"test"`` (the whole set).
        points: ``"pt3d_68"`` (68 points, scheme ibug68), ``"pt2d"`` (21 points, aflw21) or
            ``"reannotated"`` (68 hand-corrected points, module doc; needs the ``3ddfa/`` file).
        max_abs_yaw: keep only faces with ``|yaw| <= max_abs_yaw`` degrees (None keeps all 2,000;
            90 drops the 7 beyond 90 degrees).
        one_based: shift the MATLAB coordinates by -1 (not the re-annotation: already 0-based).

    ``meta``: ``pose`` (yaw, pitch, roll degrees), ``yaw_bin`` and ``pt3d``: the ``[68, 3]``
    ``pt3d_68`` (x, y 0-based pixels as the points, z as stored: the fitted 3D shape's depth in
    pixels). ``box`` is the tight box of the points (the papers crop by it).
    """

    def __init__(self, root: str | os.PathLike, split: str = "test",
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB",
                 points: str = "pt3d_68", max_abs_yaw: float | None = None, one_based: bool = True):
        if split != "test":
            raise ValueError(f"split must be one of ['test'], got {split!r}")
        if points not in ("pt3d_68", "pt2d", "reannotated"):
            raise ValueError(f"points must be 'pt3d_68', 'pt2d' or 'reannotated', got {points!r}")
        self.root, self.split, self.image_mode = Path(root), split, image_mode
        self.scheme = AFLW21 if points == "pt2d" else IBUG68
        mats = sorted(self.root.glob("*.mat")) if self.root.is_dir() else []
        if not mats:
            raise FileNotFoundError(f"AFLW2000-3D annotations (*.mat) not found in {self.root}. "
                                    f"{HOW_TO_GET_AFLW2000}")
        reannotated = read_reannotated(self.root, len(mats)) if points == "reannotated" else None
        records = []
        for i, mat in enumerate(mats):
            image = mat.with_suffix(".jpg")
            if not image.is_file():
                raise FileNotFoundError(f"{mat}: image not found: {image}")
            pts, pose, pt3d = _read_aflw2000(mat, points, one_based)
            src = mat
            if reannotated is not None:
                pts, src = reannotated[i], self.root / REANNOTATED_FILE
            check_in_image(pts, None, image_size(image), src, image=image.name,
                           label=f"{points} " if reannotated is None else f"row {i}: ")
            if max_abs_yaw is not None and abs(pose["yaw"]) > max_abs_yaw:
                continue
            records.append(Record(image, pts, meta={"pose": pose, "yaw_bin": yaw_bin(pose["yaw"]),
                                                    "pt3d": pt3d}))
        super().__init__(records, transform)

    def yaws(self) -> np.ndarray:
        """Yaw of every face in degrees ``[N]``."""
        return np.array([r.meta["pose"]["yaw"] for r in self.records])

    def yaw_bin_counts(self) -> dict[str, int]:
        return yaw_bin_counts(self.yaws())

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nYaw bins: {self.yaw_bin_counts()}"


class W300LP(LandmarkDataset):
    """300W-LP: 61,225 synthesised large-pose faces (122,450 with the mirrored copies), 68 points.

    Args:
        root: the ``300W_LP`` folder.
        split: ``"all"`` or one subset ``"AFW"``, ``"HELEN"``, ``"IBUG"``, ``"LFPW"``.
        include_flipped: also read the ``*_Flip`` folders.
        landmarks: ``"pts_2d"`` or ``"pts_3d"`` from ``landmarks/``, or ``"pt2d"`` from the image
            ``.mat``; ``"auto"`` = ``pts_2d`` where the landmarks file exists, else ``pt2d``.
        one_based: shift the MATLAB coordinates by -1.
    """

    scheme = IBUG68

    def __init__(self, root: str | os.PathLike, split: str = "all",
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB",
                 include_flipped: bool = False, landmarks: str = "auto", one_based: bool = True):
        valid = ["all", *W300LP_SUBSETS]
        if split not in valid:
            raise ValueError(f"split must be one of {valid}, got {split!r}")
        if landmarks not in ("auto", "pts_2d", "pts_3d", "pt2d"):
            raise ValueError(f"landmarks must be 'auto', 'pts_2d', 'pts_3d' or 'pt2d', got "
                             f"{landmarks!r}")
        self.root, self.split, self.image_mode = Path(root), split, image_mode
        subsets = list(W300LP_SUBSETS) if split == "all" else [split]
        folders = subsets + ([f"{s}_Flip" for s in subsets] if include_flipped else [])
        present = [f for f in folders if (self.root / f).is_dir()]
        if not present:
            raise FileNotFoundError(f"300W-LP folders {folders} not found in {self.root}. "
                                    f"{HOW_TO_GET_300WLP}")
        self.missing = [f for f in folders if f not in present]
        shift = 1.0 if one_based else 0.0
        records = []
        for folder in present:
            for mat in sorted((self.root / folder).glob("*.mat")):
                image = mat.with_suffix(".jpg")
                if not image.is_file():
                    raise FileNotFoundError(f"{mat}: image not found: {image}")
                m = _loadmat(mat)
                pose = _pose(m, mat)
                lm_file = self.root / "landmarks" / folder / f"{mat.stem}_pts.mat"
                if landmarks in ("pts_2d", "pts_3d") or (landmarks == "auto" and lm_file.is_file()):
                    var = "pts_2d" if landmarks in ("auto", "pts_2d") else "pts_3d"
                    if not lm_file.is_file():
                        raise FileNotFoundError(f"300W-LP landmarks not found: {lm_file}")
                    src, raw = lm_file, _points(_loadmat(lm_file), var, 68, lm_file, 2)
                else:
                    src, raw = mat, _points(m, "pt2d", 68, mat, 2)
                pts = check_points(raw, 68, src) - shift
                check_in_image(pts, None, image_size(image), src, image=image.name)
                records.append(Record(image, pts, meta={"pose": pose, "subset": folder,
                                                        "yaw_bin": yaw_bin(pose["yaw"])}))
        super().__init__(records, transform)

    def yaws(self) -> np.ndarray:
        return np.array([r.meta["pose"]["yaw"] for r in self.records])

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nSplit: {self.split}\nMissing: {self.missing}"
