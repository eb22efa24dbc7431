"""The data check behind ``lmk data --check``: does each source folder's annotation fit its
pictures as well as its sibling folders' do?

It was written after our CUHK copy turned out to hold, in ``lfw_5590/``, a rotated, re-aligned
grayscale LFW whose frames no longer match the labels (issue 16). That copy passes every
annotation-only check: its points agree with their own face boxes (its mean-shape error, 7.4 %
of the box width, is even lower than ``net_7876``'s 8.6 %). What is wrong is the IMAGE under
the labels, so the check looks at pixels. Per split of each dataset and per source folder
(``meta["source"]``, else the image's folder relative to the dataset root) it reports:

* **mean-shape NME**: the points of each face in its box frame (centre at 0, box width 1)
  against the mean such shape of the OTHER folders; mean point distance in % of the box width
  (the tight box of the points where a format ships none). An annotation-only check: it
  catches a folder whose points or boxes follow another convention.
* **agreement** (pixels): a seeded sample of at most ``per_folder`` faces is similarity-aligned
  by its labelled points onto a ``32 x 32`` canonical frame (least squares onto the split's
  Procrustes mean shape, grayscale, z-normalised inside the inscribed disc) and correlated with
  the mean aligned face of the OTHER folders (leave-folder-out template; a folder without
  siblings is compared with its own mean). The same correlation is taken after moving the
  template by each of 1,715 small similarity re-alignments (shifts up to 0.15 inter-ocular
  distances, rotations up to 12 degrees, scales 0.88-1.12). A face's agreement is its
  correlation at the labels divided by the best one: 1 when the labels put the face where it
  looks most like its siblings' faces, lower when moving the labels would fit the image
  better. ``realign`` is how far the best re-alignment moves the points (median, % of the
  inter-ocular distance; a floor of about 8-18 % even on clean data, so read it
  relative to the siblings).

**Flag rule** (needs a sibling folder and at least :data:`MIN_FACES` faces): a folder is
flagged when its *misfit* ``1 - median agreement`` is above :data:`MISFIT_RATIO` (1.75) times
the median misfit of its siblings AND above it by more than :data:`MISFIT_EXCESS` (0.07; on
very clean data all misfits are near zero and their ratios are noise), or when its mean-shape
NME is above :data:`NME_RATIO` (1.5) times the siblings' median.

Measured on the real data (300 faces per folder, seeds 0-3): on the official CUHK lists
``lfw_5590``'s misfit is 2.2-3.0x ``net_7876``'s and 0.107-0.138 above it (seed 0, train:
0.212 against 0.095), so it is flagged on both lists; on the clean train split
``lfw_5590_80px`` is 0.88-1.01x ``net_7876`` (0.083 against 0.094); the 300-W folders reach
at most 1.47x and +0.044 (``afw`` on train, ``helen/testset`` on common). No folder's
mean-shape NME is above 1.2x its siblings' (``lfw_5590`` 7.4 %, ``net_7876`` 8.6 %; ``afw``
12.1 %, the other 300-W folders 9.3-10.6 %).

Everything here computes; :func:`overlay_png` renders a contact sheet of a few random faces
with their points per folder, as PNG bytes, for a person to look at (``lmk data --check``
writes them). Datasets checked: :data:`CHECK_SPLITS` (those whose splits join several source
folders and whose annotations load in seconds).
"""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .geometry import apply_affine, box_affine, boxes_from_points, rotation_affine, warp_affine
from .sample import LandmarkDataset, Record, load_image

#: Catalog datasets and the splits the check scores (missing splits are reported, not fatal).
CHECK_SPLITS: dict[str, tuple[str, ...]] = {
    "cuhk_5pt": ("train_official", "test_official", "train", "test"),
    "300w": ("train", "common"),
    "masked_300w": ("common",),
}
MISFIT_RATIO = 1.75    # flag: 1 - agreement above this multiple of the siblings' median ...
MISFIT_EXCESS = 0.07   # ... and above it by this much (ratios of near-zero misfits are noise)
NME_RATIO = 1.5        # flag: mean-shape NME above this multiple of the siblings' median
MIN_FACES = 20         # fewer sampled faces than this: reported, never flagged
FRAME = 32             # canonical frame side, pixels
EXTENT = 0.7           # the mean shape's longer side spans this fraction of the frame
SHIFTS = np.arange(-3, 4) * 0.05                  # x and y, in inter-ocular distances
ANGLES = np.arange(-12, 13, 4)                    # degrees
SCALES = (0.88, 0.94, 1.0, 1.06, 1.12)


@dataclass
class FolderCheck:
    """The check of one source folder of one split.

    Attributes:
        dataset, split, folder: what was checked (``folder`` relative to the dataset root).
        faces: faces of the folder in the split (with all points annotated).
        sampled: faces whose pixels were scored (at most ``per_folder``).
        nme: mean-shape NME, % of the box width (mean over all ``faces``).
        agreement: median image-label agreement of the sampled faces (1 = perfect).
        realign: median distance the best re-alignment moves the points, % inter-ocular.
        siblings: how many other folders the split has.
        flags: the reasons the folder is flagged (empty: not flagged).
        sample: dataset indices of the sampled faces, in sampling order (overlays use the
            first few).
    """

    dataset: str
    split: str
    folder: str
    faces: int
    sampled: int
    nme: float
    agreement: float
    realign: float
    siblings: int
    flags: list[str] = field(default_factory=list)
    sample: list[int] = field(default_factory=list, repr=False)

    @property
    def misfit(self) -> float:
        return 1.0 - self.agreement

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


@dataclass
class SplitCheck:
    """One split of one dataset: its folders, or why it could not be loaded."""

    dataset: str
    split: str
    folders: list[FolderCheck]
    data: LandmarkDataset | None = field(default=None, repr=False)
    error: str = ""


# --------------------------------------------------------------------------- geometry
def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``[..., 2, 3]`` mapping points ``src [..., K, 2]`` onto
    ``dst [..., K, 2]`` (rotation, uniform scale, translation; no reflection)."""
    ms, md = src.mean(-2, keepdims=True), dst.mean(-2, keepdims=True)
    s, d = src - ms, dst - md
    ss = (s ** 2).sum((-1, -2))
    a = (s * d).sum((-1, -2)) / ss
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(-1) / ss
    rot = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)      # [..., 2, 2]
    t = md[..., 0, :] - (rot @ ms[..., 0, :, None])[..., 0]
    return np.concatenate([rot, t[..., None]], -1)


def _normalise(shape: np.ndarray) -> np.ndarray:
    c = shape - shape.mean(-2, keepdims=True)
    return c / np.sqrt((c ** 2).sum(-1).mean(-1))[..., None, None]


def mean_shape(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Generalised Procrustes mean ``[K, 2]`` of ``points [N, K, 2]`` (centred, unit RMS
    radius)."""
    p = _normalise(np.asarray(points, dtype=np.float64))
    ref = _normalise(p.mean(0))
    for _ in range(iterations):
        ref = _normalise(apply_affine(p, _fit_similarity(p, ref)).astype(np.float64).mean(0))
    return ref


def canonical_points(ref: np.ndarray, size: int = FRAME, extent: float = EXTENT) -> np.ndarray:
    """The mean shape placed in a ``size x size`` frame: centred, longer side ``extent * size``."""
    lo, hi = ref.min(0), ref.max(0)
    return (ref - (lo + hi) / 2) / (hi - lo).max() * (extent * size) + (size - 1) / 2


def _eye_distance(canon: np.ndarray, scheme) -> float:
    """Inter-ocular distance of the canonical shape (the scheme's eye centres), else its RMS
    radius when the scheme is unknown."""
    eyes = getattr(scheme, "eye_centres", None)
    if eyes and max(max(eyes[0]), max(eyes[1])) < len(canon):
        a, b = (canon[list(ix)].mean(0) for ix in eyes)
        return float(np.linalg.norm(a - b))
    return float(np.sqrt(((canon - canon.mean(0)) ** 2).sum(-1).mean()))


def realignments(canon: np.ndarray, eye_distance: float, size: int = FRAME
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """The small similarity moves tried: affines ``[M, 2, 3]`` about the frame centre, how far
    each moves the canonical points (mean, % of ``eye_distance``) and the identity's index."""
    c = ((size - 1) / 2, (size - 1) / 2)
    moves = []
    for dx, dy, angle, scale in itertools.product(SHIFTS, SHIFTS, ANGLES, SCALES):
        a = rotation_affine(float(angle), c, scale)
        a[:, 2] += np.array([dx, dy]) * eye_distance
        moves.append(a)
    affines = np.stack(moves)
    moved = apply_affine(canon[None], affines).astype(np.float64)
    dist = np.linalg.norm(moved - canon[None], axis=-1).mean(-1) / eye_distance * 100
    return affines, dist, int(np.argmin(dist))


# --------------------------------------------------------------------------- the statistics
def source_folder(record: Record, root: str | os.PathLike | None = None) -> str:
    """A record's source folder: ``meta["source"]`` when the loader sets it (CUHK), else the
    image's folder relative to ``root`` (300-W: ``afw``, ``helen/trainset``, ...), else the
    ``meta["subset"]`` or the folder's own name."""
    if "source" in record.meta:
        return str(record.meta["source"])
    parent = Path(record.image_path).parent
    if root is not None:
        try:
            return parent.relative_to(root).as_posix() or "."
        except ValueError:
            pass
    return str(record.meta.get("subset", parent.name))


def points_in_box_frame(records: list[Record]) -> np.ndarray:
    """Points ``[N, K, 2]`` in each face's box frame: box centre at 0, box width 1."""
    pts = np.stack([r.landmarks for r in records]).astype(np.float64)
    boxes = np.stack([np.asarray(r.box, dtype=np.float64) if r.box is not None
                      else boxes_from_points(r.landmarks) for r in records])
    centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
    return (pts - centre) / (boxes[:, 2] - boxes[:, 0])[:, None, None]


def aligned_faces(dataset: LandmarkDataset, indices, canon: np.ndarray,
                  size: int = FRAME) -> np.ndarray:
    """Grayscale faces ``[n, size, size]`` float32, each warped by the similarity that maps its
    labelled points onto ``canon`` (border padding). Reads the records' pictures directly: the
    dataset's transform is not applied."""
    out = np.zeros((len(indices), size, size), np.float32)
    for j, i in enumerate(indices):
        r = dataset.records[int(i)]
        a = _fit_similarity(r.landmarks.astype(np.float64), canon)
        out[j] = warp_affine(_gray(r), a, size, padding="border")[0].numpy()
    return out


def _gray(record: Record) -> torch.Tensor:
    """The record's picture as float ``[1, H, W]`` grayscale (Pillow's luminance for files)."""
    if record.image is None:
        return load_image(record.image_path, "L").float()
    arr = torch.from_numpy(np.ascontiguousarray(record.image)).float()
    return (arr.mean(-1) if arr.ndim == 3 else arr)[None]


def _zn(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit norm along the last axis (so dot products are correlations)."""
    x = x - x.mean(-1, keepdims=True)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-9)


def agreement(faces: np.ndarray, template: np.ndarray, moves: np.ndarray, identity: int,
              size: int = FRAME) -> tuple[np.ndarray, np.ndarray]:
    """Per-face agreement of aligned ``faces [n, S, S]`` with ``template [S, S]``.

    Returns ``(agreement [n], best_move [n])``: the correlation at the labels over the best
    correlation among the ``moves [M, 2, 3]`` (template warped by each; ``identity`` = the
    index of no move), and the index of that best move.
    """
    yy, xx = np.mgrid[0:size, 0:size]
    r = (size - 1) / 2
    disc = (((xx - r) ** 2 + (yy - r) ** 2) <= (0.48 * size) ** 2).ravel()
    f = _zn(faces.reshape(len(faces), -1)[:, disc])
    t = torch.as_tensor(template, dtype=torch.float32)[None, None].expand(len(moves), 1, size, size)
    warped = warp_affine(t, moves, size, padding="border").numpy()[:, 0]
    corr = f @ _zn(warped.reshape(len(moves), -1)[:, disc]).T                 # [n, M]
    best = corr.max(1)
    agree = np.where(best > 0, corr[:, identity] / np.where(best > 0, best, 1.0), 0.0)
    return agree, corr.argmax(1)


def _sibling_flags(checks: list[FolderCheck]) -> None:
    for c in checks:
        sib = [s for s in checks if s is not c and s.sampled >= MIN_FACES]
        if not sib or c.sampled < MIN_FACES:
            continue
        misfit = float(np.median([s.misfit for s in sib]))
        if c.misfit > MISFIT_RATIO * misfit and c.misfit - misfit > MISFIT_EXCESS:
            c.flags.append(f"labels fit the images worse: misfit {c.misfit:.3f} = "
                           f"{c.misfit / max(misfit, 1e-9):.1f}x the siblings' {misfit:.3f}")
        nme = float(np.median([s.nme for s in sib]))
        if c.nme > NME_RATIO * nme:
            c.flags.append(f"mean-shape NME {c.nme:.2f} % = {c.nme / max(nme, 1e-9):.1f}x the "
                           f"siblings' {nme:.2f} %")


def check_dataset(dataset: LandmarkDataset, name: str = "", split: str = "",
                  root: str | os.PathLike | None = None, per_folder: int = 300,
                  seed: int = 0) -> list[FolderCheck]:
    """Check every source folder of one dataset split (see the module docstring).

    Args:
        dataset: any :class:`LandmarkDataset`; faces with a missing point are left out.
        name, split: labels for the report.
        root: the dataset root, for :func:`source_folder` (default: ``dataset.root`` if any).
        per_folder: faces sampled per folder for the pixel statistic (seeded, without
            replacement).
    Returns:
        one :class:`FolderCheck` per folder, sorted by folder name, flags set.
    """
    root = root if root is not None else getattr(dataset, "root", None)
    records = dataset.records
    usable = [i for i, r in enumerate(records) if np.isfinite(r.landmarks).all()]
    if not usable:
        return []
    by_folder: dict[str, list[int]] = {}
    for i in usable:
        by_folder.setdefault(source_folder(records[i], root), []).append(i)
    folders = sorted(by_folder)
    rng = np.random.default_rng(seed)
    sample = {f: [int(i) for i in rng.choice(by_folder[f], min(per_folder, len(by_folder[f])),
                                             replace=False)] for f in folders}

    # annotation check: each folder against the mean box-frame shape of the others
    frame = {f: points_in_box_frame([records[i] for i in by_folder[f]]) for f in folders}
    nme = {}
    for f in folders:
        others = [frame[g] for g in folders if g != f] or [frame[f]]
        mean = np.concatenate(others).mean(0)
        nme[f] = float(np.linalg.norm(frame[f] - mean, axis=-1).mean() * 100)

    # pixel check: faces aligned by their labels against the other folders' mean face
    picked = [i for f in folders for i in sample[f]]
    canon = canonical_points(mean_shape(np.stack([records[i].landmarks for i in picked])))
    eye = _eye_distance(canon, getattr(dataset, "scheme", None))
    moves, move_dist, identity = realignments(canon, eye)
    faces = {f: aligned_faces(dataset, sample[f], canon) for f in folders}
    means = {f: _zn(x.reshape(len(x), -1)).mean(0).reshape(FRAME, FRAME)
             for f, x in faces.items()}
    checks = []
    for f in folders:
        template = np.mean([means[g] for g in folders if g != f] or [means[f]], 0)
        agree, best = agreement(faces[f], template, moves, identity)
        checks.append(FolderCheck(name, split, f, len(by_folder[f]), len(sample[f]), nme[f],
                                  float(np.median(agree)), float(np.median(move_dist[best])),
                                  len(folders) - 1, sample=sample[f]))
    _sibling_flags(checks)
    return checks


def check_data_root(data_root: str | os.PathLike | None = None,
                    splits: dict[str, tuple[str, ...]] | None = None, per_folder: int = 300,
                    seed: int = 0) -> list[SplitCheck]:
    """Run :func:`check_dataset` on every split of :data:`CHECK_SPLITS` (or ``splits``) found
    under the data root. A split that cannot be loaded is reported with the error, not raised."""
    from .catalog import get_entry

    out = []
    for name, names in (splits or CHECK_SPLITS).items():
        entry = get_entry(name)
        folder = entry.find(data_root)
        if folder is None:
            continue
        for split in names:
            try:
                data = entry.load(data_root, split=split)
            except (OSError, ValueError) as e:
                out.append(SplitCheck(name, split, [], error=f"{type(e).__name__}: {e}"))
                continue
            if len(data) == 0:
                out.append(SplitCheck(name, split, [], data, error="no faces"))
                continue
            out.append(SplitCheck(name, split, check_dataset(data, name, split, folder,
                                                             per_folder, seed), data))
    return out


def to_frame(checks: list[SplitCheck]):
    """The report as a ``pandas.DataFrame``: one row per folder (``dataset, split, folder,
    faces, sampled, nme_pct_box, agreement, realign_pct_iod, flag``); ``flag`` is ``FLAG``,
    ``-`` (no sibling folder), ``few`` (under :data:`MIN_FACES` faces: never flagged) or empty."""
    import pandas as pd

    rows = [{"dataset": c.dataset, "split": c.split, "folder": c.folder, "faces": c.faces,
             "sampled": c.sampled, "nme_pct_box": round(c.nme, 2),
             "agreement": round(c.agreement, 3), "realign_pct_iod": round(c.realign, 1),
             "flag": "FLAG" if c.flagged else "-" if c.siblings == 0 else
             "few" if c.sampled < MIN_FACES else ""}
            for s in checks for c in s.folders]
    return pd.DataFrame(rows, columns=["dataset", "split", "folder", "faces", "sampled",
                                       "nme_pct_box", "agreement", "realign_pct_iod", "flag"])


# --------------------------------------------------------------------------- overlays
def overlay_name(dataset: str, split: str, folder: str) -> str:
    """``<dataset>_<split>_<folder>.png`` with ``/`` in the folder written as ``-``."""
    return f"{dataset}_{split}_{folder.replace('/', '-')}.png"


def overlay_png(dataset: LandmarkDataset, indices, title: str = "", n: int = 8,
                tile: int = 160, columns: int = 4) -> bytes:
    """A contact sheet of the first ``n`` faces of ``indices``: each face's box (enlarged 1.6x)
    cropped to ``tile`` pixels, its points as red dots, the box in green; ``title`` on top.
    Returns PNG bytes."""
    from PIL import Image, ImageDraw

    indices = [int(i) for i in list(indices)[:n]]
    rows = max(1, -(-len(indices) // columns))
    head = 18
    sheet = Image.new("RGB", (columns * tile, rows * tile + head), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), title, fill=(255, 255, 255))
    for j, i in enumerate(indices):
        r = dataset.records[i]
        image = dataset[i]["image"]
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        box = np.asarray(r.box, dtype=np.float64) if r.box is not None else \
            boxes_from_points(r.landmarks)
        a = box_affine(box, tile, scale=1.6)
        crop = warp_affine(image, a, tile).permute(1, 2, 0).numpy()
        x0, y0 = (j % columns) * tile, (j // columns) * tile + head
        sheet.paste(Image.fromarray(crop), (x0, y0))
        (bx0, by0), (bx1, by1) = apply_affine(box.reshape(2, 2), a)
        draw.rectangle([x0 + bx0, y0 + by0, x0 + bx1, y0 + by1], outline=(0, 255, 0))
        dot = 2.5 if len(r.landmarks) <= 20 else 1.5
        for x, y in apply_affine(r.landmarks, a):
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse([x0 + x - dot, y0 + y - dot, x0 + x + dot, y0 + y + dot],
                             fill=(255, 40, 40))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
