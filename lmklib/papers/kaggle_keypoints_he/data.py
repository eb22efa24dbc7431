"""Data for notebook 05 (Kaggle Facial Keypoints, He & Yang): whichever of three sources exists.

1. ``"kaggle"``: the competition's own ``training.csv`` (7,049 faces, 96x96 grayscale, 15
   keypoints, many missing) and ``test.csv`` under the data root (see :func:`find_kaggle_dir`).
   ``training.csv`` has no separate labelled test set, so a seeded ``test_fraction`` of it is
   held out.
2. ``"300w"``: a Kaggle-format set we build from the real 68-point 300-W faces
   (``<data root>/300w_subset``): each face is cropped square around its landmarks (with a
   small seeded jitter in position and scale, so the face is not perfectly centred as it would
   not be behind a face detector), resized to 96x96 grayscale, and its 68 points are mapped to
   Kaggle's 15 (:func:`lmklib.data.schemes.convert_points`, documented 68->15 mapping). AFW,
   HELEN train and LFPW train become ``training.csv``; HELEN test becomes a labelled
   ``heldout.csv`` and an unlabelled Kaggle-style ``test.csv`` (with an ``IdLookupTable.csv``)
   for the submission writer. The CSVs are built once into
   ``lmklib.paths.cache_root()/kaggle_from_300w/<key>/``, with ``<split>_faces.npz``: where
   each row came from (image, box, affine, the 15 points in image pixels).
3. ``"synthetic"``: rendered faces from :mod:`lmklib.data.synthetic` (no real data at all).

Every split is a :class:`~lmklib.data.faces.FaceCrops` made by
:meth:`~lmklib.data.faces.FaceCrops.from_images` from the 96x96 rows. For Kaggle's CSV and
synthetic faces each row is its own frame (the crop was made by the competition or by the
renderer), so the affine is the identity, ``gt`` equals ``points`` (in float64), ``boxes`` is
the whole frame ``(-0.5, -0.5, 95.5, 95.5)`` (pixel centres at integers; the synthetic
generator's own face boxes are not used) and ``paths`` names each face: ``<csv file>:<row or
ImageId>`` or ``synthetic:<i>``. Rows built from 300-W keep their pixels and ``points`` but
carry their source: ``paths`` the 300-W image, ``boxes`` the face box in its pixels, ``affines``
image -> crop, ``gt`` the 15 points in image pixels and ``policy`` the
:class:`~lmklib.data.faces.CropPolicy` that cuts them again (:func:`crop_policy`,
:func:`recrop`).

How a 300-W face becomes a row (:func:`crop_faces`): the tight box of its 68 points is made
square on its longer side about its centre, its side scaled by ``1 + U(-jitter, jitter)`` and
its centre moved by ``U(-jitter, jitter)`` x the crop side in x and in y (seeded: the box a
detector might give); that box (:func:`crop_boxes`), enlarged ``crop_scale`` = 1.15 times about
its centre (7.5 % a side), is resampled to 96x96 gray (:func:`lmklib.data.geometry.crop_batch`:
bilinear, the border pixel repeated outside the image, and one antialiasing pre-shrink of the
whole batch by the training faces' smallest shrink, about 1.82 for 300-W's 256x256 images:
the build's ``prescale``, used for the held-out faces too). :func:`crop_policy`,
``CropPolicy(96, "L", scale=1.15, padding="border", prescale=<prescale>)``, with the row's box
cuts the same face again from its image, up to the float32 rounding every sample's box goes
through (:func:`lmklib.data.sample.make_sample`): crop affines within 1e-5 px, one gray level
on about 0.002 % of the pixels.

Arrays: images ``uint8`` ``[N, 1, 96, 96]``; points ``float32`` ``[N, 15, 2]`` ``(x, y)`` pixels,
0-based (pixel centres at integers), NaN where missing (``mask`` False), in Kaggle's order and
"subject" sides (``left_eye_center`` is the subject's left eye, on the image right).

The CSVs are read with :func:`lmklib.data.formats.kaggle.read_kaggle_csv`, not through its
:class:`~lmklib.data.formats.kaggle.KaggleFacialKeypoints` dataset: that class knows only the
``train``/``test`` files, and the 300-W build's labelled held-out faces are ``heldout.csv``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ...data.cache import digest
from ...data.faces import CropPolicy, FaceCrops
from ...data.geometry import frame_boxes
from ...data.schemes import KAGGLE15, KAGGLE15_COLUMNS, convert_points
from ...paths import cache_root, data_root as resolve_data_root

#: Sub-folders of the data root searched for the competition CSVs, in order.
KAGGLE_DIRS = ("kaggle_keypoints", "facial-keypoints-detection", "kaggle", ".")
SOURCES = ("auto", "kaggle", "300w", "synthetic")
#: 300-W sub-folders used for training and for the held-out test of the built set.
W300_TRAIN = ("afw", "helen/trainset", "lfpw/trainset")
W300_TEST = ("helen/testset",)
#: Kaggle's four points that are (almost) always annotated; the others are missing in ~70% of rows.
KAGGLE_ALWAYS = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")


def complete_rows(faces: FaceCrops) -> int:
    """How many faces have all their keypoints."""
    return int(faces.mask.all(dim=1).sum())


@dataclass
class KeypointData:
    """Train/validation/held-out splits (each a :class:`~lmklib.data.faces.FaceCrops`) plus
    what they were made of.

    ``source`` is ``"kaggle"``, ``"300w"`` or ``"synthetic"``; ``description`` says it in words
    for the report; ``test_csv`` / ``lookup_csv`` are the unlabelled Kaggle-style test files
    (``None`` when absent) that a submission can be written for.
    """

    train: FaceCrops
    val: FaceCrops
    test: FaceCrops
    source: str
    description: str
    folder: Path | None = None
    test_csv: Path | None = None
    lookup_csv: Path | None = None

    def summary(self) -> dict:
        return {"source": self.source, "description": self.description,
                **{f"n_{k}": len(getattr(self, k)) for k in ("train", "val", "test")},
                **{f"complete_{k}": complete_rows(getattr(self, k))
                   for k in ("train", "val", "test")}}


# --------------------------------------------------------------------------- locating files
def find_kaggle_dir(root: str | os.PathLike | None = None) -> Path | None:
    """The folder under the data root holding the competition's ``training.csv``, or None."""
    base = resolve_data_root(root)
    for sub in KAGGLE_DIRS:
        if (base / sub / "training.csv").is_file():
            return (base / sub).resolve()
    return None


def find_w300_dir(root: str | os.PathLike | None = None) -> Path | None:
    """``<data root>/300w_subset`` (or ``300w``) when it holds the held-out folder
    (:data:`W300_TEST`) and at least one training folder (:data:`W300_TRAIN`)."""
    base = resolve_data_root(root)
    for sub in ("300w_subset", "300w", "300W"):
        if all((base / sub / f).is_dir() for f in W300_TEST) \
                and any((base / sub / f).is_dir() for f in W300_TRAIN):
            return base / sub
    return None


def w300_train_folders(w300_dir: str | os.PathLike) -> tuple[str, ...]:
    """The training folders of :data:`W300_TRAIN` present under ``w300_dir`` (all are used)."""
    return tuple(f for f in W300_TRAIN if (Path(w300_dir) / f).is_dir())


def resolve_source(source: str = "auto", root: str | os.PathLike | None = None) -> str:
    """``auto`` -> ``kaggle`` if its CSV is present, else ``300w`` if 300-W is, else
    ``synthetic``; an explicit source whose data is missing raises ``FileNotFoundError``."""
    if source not in SOURCES:
        raise ValueError(f"dataset must be one of {SOURCES}, got {source!r}")
    base = resolve_data_root(root)
    if source in ("auto", "kaggle") and find_kaggle_dir(base) is not None:
        return "kaggle"
    if source == "kaggle":
        raise FileNotFoundError(f"no Kaggle training.csv under {base} (looked in "
                                f"{[str(base / d) for d in KAGGLE_DIRS]}); download it from "
                                "https://www.kaggle.com/c/facial-keypoints-detection/data")
    if source in ("auto", "300w") and find_w300_dir(base) is not None:
        return "300w"
    if source == "300w":
        raise FileNotFoundError(f"no 300-W folder with {W300_TEST} and one of {W300_TRAIN} "
                                f"under {base}")
    return "synthetic"


# --------------------------------------------------------------------------- 300-W -> Kaggle format
def _jittered(points68: np.ndarray, crop_scale: float, jitter: float,
              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes, shift, face_boxes)``: the square jittered boxes and shifts that
    :func:`crop_faces` crops with (``crop_batch(..., shift=shift)``), and the same boxes moved
    by their shift (:func:`crop_boxes`)."""
    from ...data.geometry import boxes_from_points

    rng = np.random.default_rng(seed)
    n = len(points68)
    boxes = boxes_from_points(points68)
    grow = 1.0 + rng.uniform(-jitter, jitter, size=n)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2 * grow
    boxes = np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)
    shift = rng.uniform(-jitter, jitter, size=(n, 2))
    side = 2 * half * crop_scale                       # the crop's side: the shift's unit
    mx, my = cx + shift[:, 0] * side, cy + shift[:, 1] * side
    return boxes, shift, np.stack([mx - half, my - half, mx + half, my + half], axis=1)


def crop_boxes(points68: np.ndarray, crop_scale: float = 1.15, jitter: float = 0.05,
               seed: int = 0) -> np.ndarray:
    """The face boxes ``[N, 4]`` (image pixels) that :func:`crop_faces` crops: the tight box of
    the 68 points, square on its longer side, its side scaled and its centre moved by the
    seeded jitter (see the module docstring). ``box_affine(box, size, crop_scale)`` is the
    crop's affine up to float64 rounding."""
    return _jittered(np.asarray(points68, dtype=np.float64), crop_scale, jitter, seed)[2]


def _crop(images: torch.Tensor, points68: np.ndarray, size: int, crop_scale: float,
          jitter: float, seed: int, prescale: float | None = None):
    """:func:`crop_faces` and where each crop came from: ``(crops, points15, boxes, affines,
    prescale)`` (:func:`crop_boxes`, image -> crop, the antialiasing pre-shrink of the batch:
    ``prescale`` when given, else the batch's own)."""
    from ...data.geometry import antialias_prescale, apply_affine, crop_batch

    boxes, shift, face_boxes = _jittered(points68, crop_scale, jitter, seed)
    crops, affines = crop_batch(images, boxes, size, scale=crop_scale, shift=shift,
                                padding="border", prescale=prescale)
    moved = np.stack([np.asarray(apply_affine(p, a)) for p, a in zip(points68, affines)])
    return (crops, convert_points(moved, "ibug68", "kaggle15"), face_boxes, affines,
            antialias_prescale(affines) if prescale is None else prescale)


def crop_faces(images: torch.Tensor, points68: np.ndarray, size: int = 96,
               crop_scale: float = 1.15, jitter: float = 0.05,
               seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Crop square faces around their 68 landmarks and map the points to Kaggle's 15.

    Args:
        images: ``[N, 1, H, W]`` uint8 grayscale.
        points68: ``[N, 68, 2]`` 0-based pixels.
        crop_scale: crop side = ``crop_scale`` x the longer side of the landmark box.
        jitter: the crop centre moves by up to ``jitter`` x side and its side changes by up to
            ``jitter`` (uniform, seeded), as a face detector's box would.
    Returns:
        ``(crops [N, 1, size, size] uint8, points [N, 15, 2] float64)``: one
        :func:`~lmklib.data.geometry.crop_batch` of the faces' :func:`crop_boxes` (the border
        pixel repeated outside the image; one antialiasing pre-shrink for the batch, see
        :func:`crop_policy`).
    """
    return _crop(images, points68, size, crop_scale, jitter, seed)[:2]


def crop_policy(size: int = 96, crop_scale: float = 1.15,
                prescale: float | None = None) -> CropPolicy:
    """The :class:`~lmklib.data.faces.CropPolicy` that cuts a face of the 300-W build again from
    its image, given its box (:func:`crop_boxes`): 96x96 gray, the box enlarged ``crop_scale``
    times, square, bilinear with the border repeated, and the build's ``prescale`` (the
    batch's antialiasing pre-shrink, ``build.json``)."""
    return CropPolicy(size, "L", box="data", scale=crop_scale, square=True, resample="torch",
                      padding="border", prescale=prescale)


def _read_w300(folder: Path, subsets: tuple[str, ...],
               limit: int | None = None) -> tuple[torch.Tensor, np.ndarray, list, list]:
    """The faces of ``subsets`` (the first ``limit`` of each, or all) as grayscale
    ``[N, 1, H, W]`` (they must share one size), their points, ids and image paths (relative
    to ``folder``)."""
    from ...data.formats.w300 import W300

    images, points, ids, paths = [], [], [], []
    for sub in subsets:
        ds = W300(folder, split=sub, image_mode="L", missing_ok=False)
        for i in range(len(ds) if limit is None else min(limit, len(ds))):
            s = ds[i]
            images.append(s["image"])
            points.append(s["landmarks"].numpy().astype(np.float64))
            ids.append(f"{sub}/{Path(s['meta']['path']).stem}")
            paths.append(Path(s["meta"]["path"]).relative_to(folder).as_posix())
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{folder}: expected equally sized images to crop in one batch, got "
                         f"{sorted(shapes)[:3]}...")
    return torch.stack(images), np.stack(points), ids, paths


def build_from_w300(w300_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                    size: int = 96, crop_scale: float = 1.15, jitter: float = 0.05,
                    seed: int = 0, limit: int | None = None) -> Path:
    """Write a Kaggle-format copy of 300-W (see the module docstring) and return its folder.

    Files: ``training.csv`` (every training folder present: AFW, HELEN train, LFPW train),
    ``heldout.csv`` (HELEN test, labelled, same
    format), ``test.csv`` + ``IdLookupTable.csv`` (HELEN test without labels, asking for all 30
    values of each face) and ``build.json`` (the settings). Nothing is rebuilt when
    ``build.json`` already matches the settings. ``limit`` keeps only the first faces of
    each sub-folder (smoke runs). Beside each labelled CSV, ``<name>_faces.npz`` says where
    its rows came from (row order): ``image`` (path relative to ``w300_dir``), ``box``
    (:func:`crop_boxes`), ``affine`` (image -> crop), ``image_hw`` and ``points`` (the 15
    points in image pixels). ``build.json`` holds the ``prescale``: the training batch's
    antialiasing pre-shrink (:func:`~lmklib.data.geometry.antialias_prescale`), which the
    held-out faces are cut with too, as a model's card cuts any face (:func:`crop_policy`).
    """
    import io

    from ...data.formats import kaggle as kfmt
    from ...reports import atomic_write_bytes, atomic_write_json

    w300_dir = Path(w300_dir)
    train_folders = w300_train_folders(w300_dir)
    settings = {"source": str(w300_dir.resolve()), "size": size, "crop_scale": crop_scale,
                "jitter": jitter, "seed": seed, "train": train_folders, "test": W300_TEST,
                "limit": limit, "version": 2}
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as build.json stores them
    key = digest(settings)[:10]
    out = Path(out_dir) if out_dir is not None else cache_root() / "kaggle_from_300w" / key
    marker = out / "build.json"
    if marker.is_file() and json.loads(marker.read_text()).get("settings") == settings:
        return out
    out.mkdir(parents=True, exist_ok=True)
    counts, prescale = {}, None
    for name, subsets, offset in (("training", train_folders, 0), ("heldout", W300_TEST, 1)):
        images, pts68, ids, paths = _read_w300(w300_dir, subsets, limit)
        crops, pts15, boxes, affines, used = _crop(images, pts68, size, crop_scale, jitter,
                                                   seed + offset, prescale)
        prescale = used if name == "training" else prescale
        kfmt.write_kaggle_csv(out / f"{name}.csv", crops[:, 0].numpy(), pts15)
        buf = io.BytesIO()
        np.savez(buf, image=np.asarray(paths), box=boxes, affine=affines,
                 image_hw=np.tile(images.shape[-2:], (len(paths), 1)).astype(np.int64),
                 points=convert_points(pts68, "ibug68", "kaggle15"))
        atomic_write_bytes(out / f"{name}_faces.npz", buf.getvalue())
        counts[name] = len(ids)
        if name == "heldout":
            kfmt.write_kaggle_csv(out / "test.csv", crops[:, 0].numpy())
            kfmt.write_id_lookup(out / "IdLookupTable.csv", [
                (i, c) for i in range(1, len(ids) + 1) for c in KAGGLE15_COLUMNS])
            atomic_write_json(out / "heldout_ids.json", ids)
    atomic_write_json(marker, {"settings": settings, "counts": counts, "prescale": prescale})
    return out


# --------------------------------------------------------------------------- loading
def _faces(images: np.ndarray, points: np.ndarray, paths: list[str], name: str) -> FaceCrops:
    """Rows that are their own 96x96 frame as :class:`FaceCrops` (identity affine, the whole
    frame as box: see the module docstring)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    frame = frame_boxes([images.shape[-2:]] * len(images))
    return FaceCrops.from_images(images, points, frame, name=name, paths=paths, scheme="kaggle15")


def _read_csv(path: Path, name: str) -> FaceCrops:
    from ...data.formats import kaggle as kfmt

    ids, images, points = kfmt.read_kaggle_csv(path)
    return _faces(images, points, [f"{path}:{int(i)}" for i in ids], name)


def _in_images(faces: FaceCrops, folder: Path, split: str, w300_dir: Path) -> FaceCrops:
    """Rows of the 300-W build's ``<split>.csv`` with their source (``<split>_faces.npz``):
    image paths, boxes, affines, the points in image pixels, and the :func:`crop_policy` that
    cut them (see the module docstring). Pixels and ``points`` stay the CSV's."""
    build = json.loads((folder / "build.json").read_text(encoding="utf-8"))
    with np.load(folder / f"{split}_faces.npz", allow_pickle=False) as z:
        src = {k: z[k] for k in z.files}
    if len(src["image"]) != len(faces):
        raise ValueError(f"{folder}: {split}_faces.npz has {len(src['image'])} faces, "
                         f"{split}.csv {len(faces)}: a broken build, delete the folder")
    cfg = build["settings"]
    return replace(faces, paths=[str(Path(w300_dir) / p) for p in src["image"].tolist()],
                   boxes=torch.as_tensor(src["box"], dtype=torch.float64),
                   affines=torch.as_tensor(src["affine"], dtype=torch.float64),
                   gt=torch.as_tensor(src["points"], dtype=torch.float64),
                   image_hw=torch.as_tensor(src["image_hw"], dtype=torch.int64),
                   policy=crop_policy(cfg["size"], cfg["crop_scale"], build["prescale"]))


def recrop(faces: FaceCrops, policy: CropPolicy | dict | None = None) -> FaceCrops | None:
    """``faces`` cut again from their image files with their boxes, through
    :func:`~lmklib.data.faces.load_face_crops` under ``policy`` (a
    :class:`~lmklib.data.faces.CropPolicy` or its dict, as a model card holds it; default
    ``faces.policy``): exactly the crops :class:`lmklib.landmarker.Landmarker` makes of these
    faces. ``gt`` and ``boxes`` are kept; None for faces without image files (Kaggle's CSV,
    synthetic faces)."""
    from ...data.faces import load_face_crops
    from ...data.geometry import BoxGeometry
    from ...data.sample import LandmarkDataset, Record

    if not faces.paths or not all(Path(p).is_file() for p in faces.paths):
        return None
    if policy is None:
        policy = faces.policy
    if isinstance(policy, dict):
        crop = dict(policy)
        geometry = crop.pop("geometry", None)
        policy = CropPolicy(**crop, geometry=BoxGeometry(**geometry) if geometry else None)
    if policy is None:
        raise ValueError(f"{faces.name}: no crop policy to cut the faces again with")
    ds = LandmarkDataset([Record(Path(p), g, box=b) for p, g, b in
                          zip(faces.paths, faces.gt.numpy(), faces.boxes.numpy())])
    ds.scheme = KAGGLE15
    return load_face_crops(ds, replace(policy, box="data", geometry=None), name=faces.name,
                           note="cut again from the images with their boxes", cache=False)


def _shuffle_split(faces: FaceCrops, fractions: tuple[float, ...], seed: int) -> list[FaceCrops]:
    """Seeded random partition into ``len(fractions) + 1`` parts (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(len(faces))
    sizes = [int(round(f * len(faces))) for f in fractions]
    cuts = np.cumsum(sizes)
    parts = np.split(order, cuts)
    return [faces.subset(np.sort(p)) for p in parts]


def hide_keypoints(faces: FaceCrops, fraction: float, seed: int = 0) -> FaceCrops:
    """Copy of ``faces`` where a seeded ``fraction`` of rows keep only the four points that
    Kaggle's partial rows keep (:data:`KAGGLE_ALWAYS`); the rest become NaN (``mask`` False)."""
    points, gt = faces.points.clone(), faces.gt.clone()
    rows = np.random.default_rng(seed).random(len(faces)) < fraction
    keep = [KAGGLE15.names.index(n) for n in KAGGLE_ALWAYS]
    drop = [i for i in range(KAGGLE15.num_points) if i not in keep]
    at = (torch.as_tensor(np.flatnonzero(rows), dtype=torch.long)[:, None],
          torch.as_tensor(drop)[None, :])
    points[at] = float("nan")
    gt[at] = float("nan")
    return replace(faces, points=points, gt=gt, mask=torch.isfinite(points).all(-1))


def load_keypoint_data(dataset: str = "auto", root: str | os.PathLike | None = None,
                       val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                       n_synthetic: int = 1500, max_train: int | None = None,
                       max_eval: int | None = None, hide_fraction: float = 0.0,
                       crop_scale: float = 1.15, jitter: float = 0.05) -> KeypointData:
    """Load (building when needed) the keypoint data and split it.

    Args:
        dataset: ``"auto"``, ``"kaggle"``, ``"300w"`` or ``"synthetic"`` (see the module doc).
        root: data root (``None`` -> ``$LMK_DATA_ROOT`` or ``data/``).
        val_fraction: part of the training pool kept for validation curves.
        test_fraction: part held out as the test set where the source has no labelled test set
            (Kaggle, synthetic); 300-W uses HELEN test.
        max_train, max_eval: caps on split sizes (smoke runs); None keeps everything.
        hide_fraction: training rows that keep only Kaggle's four always-present points
            (:func:`hide_keypoints`), to imitate Kaggle's missing labels on a complete set.
    """
    source = resolve_source(dataset, root)
    base = resolve_data_root(root)
    folder = test_csv = lookup = None
    if source == "kaggle":
        folder = find_kaggle_dir(base)
        pool = _read_csv(folder / "training.csv", "Kaggle training.csv")
        test, val, train = _shuffle_split(pool, (test_fraction, val_fraction), seed)
        desc = (f"Kaggle Facial Keypoints training.csv ({len(pool)} faces, "
                f"{complete_rows(pool)} with all 15 points); {len(test)} held out as test")
        test_csv = folder / "test.csv" if (folder / "test.csv").is_file() else None
        lookup = folder / "IdLookupTable.csv" if (folder / "IdLookupTable.csv").is_file() else None
    elif source == "300w":
        # smoke-sized runs build from the first faces only (the cache keys on the limit)
        limit = None if max_train is None else max_train + 2 * (max_eval or max_train)
        w300 = find_w300_dir(base)
        folder = build_from_w300(w300, crop_scale=crop_scale, jitter=jitter, seed=0, limit=limit)
        trained_on = " + ".join(w300_train_folders(w300))
        pool = _in_images(_read_csv(folder / "training.csv", f"300-W as Kaggle ({trained_on})"),
                          folder, "training", w300)
        test = _in_images(_read_csv(folder / "heldout.csv", "300-W as Kaggle (HELEN test)"),
                          folder, "heldout", w300)
        val, train = _shuffle_split(pool, (val_fraction,), seed)
        desc = (f"Kaggle-format set built from real 300-W faces (NOT Kaggle's data): "
                f"{trained_on} ({len(pool)} faces) for training/validation, "
                f"{' + '.join(W300_TEST)} ({len(test)}) held out; 96x96 grayscale crops, "
                f"68->15 points")
        test_csv, lookup = folder / "test.csv", folder / "IdLookupTable.csv"
    else:
        from ...data.synthetic import generate

        # faces fill most of the frame, as Kaggle's do (the generator's default is smaller)
        g = generate(n_synthetic, size=96, seed=seed, scheme="kaggle15", grayscale=True,
                     scale_range=(0.6, 0.75), max_yaw=30.0)
        pool = _faces(np.asarray(g["images"])[..., 0], g["landmarks"],
                      [f"synthetic:{i}" for i in range(n_synthetic)], "synthetic faces")
        test, val, train = _shuffle_split(pool, (test_fraction, val_fraction), seed)
        desc = (f"synthetic rendered faces ({n_synthetic}, no real data found under {base}); "
                "numbers are NOT comparable with Kaggle's")
    if hide_fraction > 0:
        train = hide_keypoints(train, hide_fraction, seed)
        desc += f"; {hide_fraction:.0%} of training rows reduced to Kaggle's 4 always-present points"
    if max_train is not None:
        train = train.subset(range(min(max_train, len(train))))
    if max_eval is not None:
        val, test = (s.subset(range(min(max_eval, len(s)))) for s in (val, test))
    train, val, test = (replace(s, name=f"{s.name}: {part}")
                        for s, part in ((train, "train"), (val, "validation"), (test, "test")))
    return KeypointData(train, val, test, source, desc, folder, test_csv, lookup)
