"""Tiny datasets written in each format's documented layout: the small fixtures lmklib ships.

Every ``write_*_fixture(root, ..., seed=0)`` writes a few generated faces into ``root`` exactly as
the real dataset lays them out (file names, folders, 0/1-based conventions, MATLAB/HDF5 layouts)
and returns what it wrote, as 0-based ``[N, K, 2]`` landmarks per split, so tests and notebooks can
check a loader end to end (write -> load -> same landmarks) without the real data.

Pictures: with ``faces="auto"`` (default) a writer uses :func:`lmklib.data.synthetic.generate`
(drawn faces whose landmarks are exact) when that module is importable and supports the scheme,
pasted onto a canvas of the dataset's image size; otherwise, or with ``faces="drawn"``, a smooth
gradient with a dot at each landmark. Either way the files follow the format exactly, which is all
the loaders and their tests rely on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .schemes import get_scheme

__all__ = ["face_points", "draw_image", "make_faces", "write_kaggle_fixture", "write_cofw_fixture",
           "write_wflw_fixture", "write_aflw2000_fixture", "write_300wlp_fixture",
           "write_bioid_fixture", "write_celeba_fixture", "write_cuhk_fixture",
           "write_300w_fixture", "write_all_fixtures"]


def face_points(n: int, k: int, width: int, height: int, rng: np.random.Generator,
                decimals: int | None = 3) -> np.ndarray:
    """``[n, k, 2]`` 0-based points spread over the central part of a ``width x height`` image."""
    cx, cy = width / 2, height / 2
    sx, sy = width * 0.28, height * 0.28
    pts = np.stack([cx + rng.uniform(-sx, sx, (n, k)), cy + rng.uniform(-sy, sy, (n, k))], -1)
    return np.round(pts, decimals) if decimals is not None else pts


def draw_image(height: int, width: int, points: np.ndarray | None = None, seed: int = 0,
               channels: int = 3) -> np.ndarray:
    """A gradient picture ``[H, W, C]`` (or ``[H, W]`` for ``channels=1``) uint8, with a 3x3 dot at
    each finite point of ``points`` ``[K, 2]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = [64 + 96 * (xx / max(width - 1, 1)) + 64 * (yy / max(height - 1, 1)) * rng.uniform(0.5, 1)
            for _ in range(channels)]
    img = np.stack(base, axis=-1)
    if points is not None:
        for x, y in np.asarray(points, dtype=np.float64):
            if np.isfinite(x) and np.isfinite(y):
                xi, yi = int(round(x)), int(round(y))
                img[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2] = 250
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def make_faces(n: int, scheme: str, width: int, height: int, seed: int,
               channels: int | tuple[int, ...] = 3, decimals: int | None = 3,
               faces: str = "auto") -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` pictures ``[H, W(, C)]`` uint8 and their 0-based points ``[n, K, 2]`` (rounded to
    ``decimals``). ``channels``: 1 or 3, or one value per picture. ``faces``: ``"auto"``,
    ``"synthetic"`` (fail if unavailable) or ``"drawn"`` (module docstring)."""
    if faces not in ("auto", "synthetic", "drawn"):
        raise ValueError(f"faces must be 'auto', 'synthetic' or 'drawn', got {faces!r}")
    chans = (channels,) * n if isinstance(channels, int) else tuple(channels)
    k = get_scheme(scheme).num_points
    if faces != "drawn":
        try:
            from .synthetic import generate

            side = min(width, height)
            gen = [generate(n, size=side, seed=seed, scheme=scheme, grayscale=g)
                   for g in (False, True)]
        except (ImportError, ValueError):
            if faces == "synthetic":
                raise
        else:
            ox, oy = (width - side) // 2, (height - side) // 2
            pts = gen[0]["landmarks"].astype(np.float64) + [ox, oy]
            pts = np.round(pts, decimals) if decimals is not None else pts
            images = []
            for i, c in enumerate(chans):
                canvas = draw_image(height, width, None, seed + i, c)
                face = gen[c == 1]["images"][i]
                canvas[oy:oy + side, ox:ox + side] = face[..., 0] if c == 1 else face
                images.append(canvas)
            return images, pts
    rng = np.random.default_rng(seed)
    pts = face_points(n, k, width, height, rng, decimals)
    return [draw_image(height, width, p, seed + i, c) for i, (p, c) in enumerate(zip(pts, chans))], pts


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2 ** 31))


def _save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _root(root: str | os.PathLike) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


# --- Kaggle ------------------------------------------------------------------------------------------

def write_kaggle_fixture(root: str | os.PathLike, n: int = 5, seed: int = 0,
                         n_test: int | None = None, faces: str = "auto") -> dict:
    """``training.csv`` (n rows; rows 1, 3, ... miss some keypoints), ``test.csv`` and
    ``IdLookupTable.csv`` (all 30 features of test image 1, four of each other image)."""
    from .formats.kaggle import write_id_lookup, write_kaggle_csv
    from .schemes import KAGGLE15_COLUMNS

    root, rng = _root(root), np.random.default_rng(seed)
    n_test = n if n_test is None else n_test
    train, lm = make_faces(n, "kaggle15", 96, 96, _seed(rng), 1, faces=faces)
    train = np.stack(train)
    for i in range(1, n, 2):
        lm[i, rng.choice(15, size=min(i, 10), replace=False)] = np.nan
    test, test_pts = make_faces(n_test, "kaggle15", 96, 96, _seed(rng), 1, faces=faces)
    test = np.stack(test)
    write_kaggle_csv(root / "training.csv", train, lm)
    write_kaggle_csv(root / "test.csv", test)
    requests = [(1, c) for c in KAGGLE15_COLUMNS]
    for i in range(2, n_test + 1):
        requests += [(i, c) for c in ("left_eye_center_x", "left_eye_center_y", "nose_tip_x",
                                      "nose_tip_y")]
    write_id_lookup(root / "IdLookupTable.csv", requests)
    return {"train": lm, "train_images": train, "test_images": test, "test_points": test_pts,
            "lookup": requests}


# --- COFW (MATLAB v7.3 = HDF5) -----------------------------------------------------------------------

def _write_mat73(path: Path, images: list[np.ndarray], phis: np.ndarray, boxes: np.ndarray,
                 names: tuple[str, str, str]) -> None:
    """Write a MATLAB v7.3-style file: a cell of images and two matrices, stored transposed as
    MATLAB does (``N x 87`` -> ``87 x N``; ``H x W x 3`` -> ``3 x W x H``)."""
    import h5py

    img_var, phis_var, box_var = names
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        ref_list = []
        for i, img in enumerate(images):
            data = img.T if img.ndim == 2 else img.transpose(2, 1, 0)
            d = refs.create_dataset(f"img{i}", data=np.ascontiguousarray(data))
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
            ref_list.append(d.ref)
        cell = f.create_dataset(img_var, (1, len(ref_list)), dtype=h5py.ref_dtype)
        cell[0, :] = ref_list
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        for name, m in ((phis_var, phis), (box_var, boxes)):
            d = f.create_dataset(name, data=np.ascontiguousarray(np.asarray(m, np.float64).T))
            d.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: lmklib fixture HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def write_cofw_fixture(root: str | os.PathLike, n_train: int = 4, n_test: int = 3,
                       seed: int = 0, faces: str = "auto") -> dict:
    """``COFW_train_color.mat`` / ``COFW_test_color.mat`` (HDF5, MATLAB 1-based values); the first
    test image is grayscale, as some COFW images are."""
    from .formats.cofw import FILES, VARIABLES

    root, rng = _root(root), np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        h, w = 120, 100
        chans = tuple(1 if (split == "test" and i == 0) else 3 for i in range(n))
        images, pts = make_faces(n, "cofw29", w, h, _seed(rng), chans, faces=faces)
        occ = (rng.uniform(size=(n, 29)) < 0.2).astype(np.float64)
        boxes = np.stack([pts[..., 0].min(1) - 5, pts[..., 1].min(1) - 5,
                          np.ptp(pts[..., 0], 1) + 10, np.ptp(pts[..., 1], 1) + 10], 1)
        phis = np.concatenate([pts[..., 0] + 1, pts[..., 1] + 1, occ], axis=1)  # 1-based
        mat_boxes = boxes.copy()
        mat_boxes[:, :2] += 1
        _write_mat73(root / FILES[split][0], images, phis, mat_boxes, VARIABLES[split])
        out[split] = pts
        out[f"{split}_occluded"] = occ.astype(bool)
        out[f"{split}_boxes"] = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)
        out[f"{split}_images"] = images
    return out


# --- WFLW --------------------------------------------------------------------------------------------

def write_wflw_fixture(root: str | os.PathLike, n_train: int = 4, n_test: int = 6,
                       seed: int = 0, faces: str = "auto") -> dict:
    """The two WFLW list files and images under ``WFLW_images/<event>/``; test face ``i`` has
    attribute ``i % 6`` set (so every subset is non-empty when ``n_test >= 6``)."""
    from .formats.wflw import LIST_FILES

    root, rng = _root(root), np.random.default_rng(seed)
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, pts = make_faces(n, "wflw98", 160, 140, _seed(rng), decimals=6, faces=faces)
        lines, attrs = [], np.zeros((n, 6), dtype=int)
        for i, p in enumerate(pts):
            if split == "test":
                attrs[i, i % 6] = 1
            else:
                attrs[i] = rng.integers(0, 2, 6)
            name = f"{i % 2}--Event_{i % 2}/{split}_{i:03d}.jpg"
            _save(root / "WFLW_images" / name, images[i])
            box = [int(p[:, 0].min()) - 2, int(p[:, 1].min()) - 2, int(p[:, 0].max()) + 3,
                   int(p[:, 1].max()) + 3]
            lines.append(" ".join([f"{v:.6f}" for v in p.reshape(-1)] + [str(b) for b in box]
                                  + [str(a) for a in attrs[i]] + [name]))
        (lists / LIST_FILES[split]).write_text("\n".join(lines) + "\n")
        out[split], out[f"{split}_attributes"] = pts, attrs
    return out


# --- AFLW2000-3D and 300W-LP (MATLAB v5) --------------------------------------------------------------

_AFLW2000_YAWS = (5.0, -20.0, 45.0, -50.0, 75.0, -80.0, 95.0, 10.0)


def write_aflw2000_fixture(root: str | os.PathLike, n: int = 8, seed: int = 0,
                           yaws: tuple[float, ...] | None = None, faces: str = "auto") -> dict:
    """``imageXXXXX.jpg`` + ``.mat`` pairs (``pt3d_68`` 3x68, ``pt2d`` 2x21 with -1 for two
    unannotated points, ``Pose_Para`` 1x7 radians, ``roi``), 1-based as MATLAB. Yaws cycle through
    5, -20, 45, -50, 75, -80, 95, 10 degrees (bins 3 / 2 / 2 and 1 beyond 90 for ``n = 8``)."""
    from scipy.io import savemat

    root, rng = _root(root), np.random.default_rng(seed)
    yaws = _AFLW2000_YAWS if yaws is None else tuple(yaws)
    images, pts68 = make_faces(n, "ibug68", 120, 120, _seed(rng), faces=faces)
    pts21 = face_points(n, 21, 120, 120, rng)
    pts21[:, [12, 16]] = np.nan  # ears not annotated
    yaw = np.array([yaws[i % len(yaws)] for i in range(n)])
    pitch, roll = rng.uniform(-20, 20, n), rng.uniform(-10, 10, n)
    for i in range(n):
        stem = root / f"image{i * 3 + 2:05d}"
        _save(stem.with_suffix(".jpg"), images[i])
        z = rng.uniform(-30, 30, 68)
        p2d = np.where(np.isnan(pts21[i]), -1.0, pts21[i] + 1).T
        savemat(str(stem.with_suffix(".mat")), {
            "pt3d_68": np.vstack([pts68[i].T + 1, z]),
            "pt2d": p2d,
            "Pose_Para": np.array([[np.radians(pitch[i]), np.radians(yaw[i]), np.radians(roll[i]),
                                    60.0, 60.0, 0.0, 0.001]]),
            "roi": np.array([[10.0, 10.0, 110.0, 110.0]]),
        })
    return {"test": pts68, "pt2d": pts21, "yaw": yaw, "pitch": pitch, "roll": roll}


def write_300wlp_fixture(root: str | os.PathLike, n_per_subset: int = 2, seed: int = 0,
                         subsets: tuple[str, ...] = ("AFW", "HELEN", "IBUG", "LFPW"),
                         flipped: bool = True, faces: str = "auto") -> dict:
    """``<SUBSET>/X.jpg`` + ``X.mat`` (``Pose_Para``, ``pt2d`` 2x68, ``roi``) and
    ``landmarks/<SUBSET>/X_pts.mat`` (``pts_2d``, ``pts_3d`` 68x2), 1-based; with ``flipped``
    also ``<SUBSET>_Flip/`` (image ``.mat`` only, as in the release)."""
    from scipy.io import savemat

    root, rng = _root(root), np.random.default_rng(seed)
    out = {}
    for sub in subsets:
        folders = [sub] + ([f"{sub}_Flip"] if flipped else [])
        for folder in folders:
            images, pts = make_faces(n_per_subset, "ibug68", 100, 100, _seed(rng), faces=faces)
            pts3 = pts + rng.normal(0, 1, pts.shape).round(3)
            yaw = rng.uniform(-89, 89, n_per_subset)
            for i in range(n_per_subset):
                stem = f"{sub}_{1000 + i}_1_{i}"
                _save(root / folder / f"{stem}.jpg", images[i])
                pose = np.array([[0.1, np.radians(yaw[i]), -0.05, 50.0, 50.0, 0.0, 0.001]])
                if folder == sub:  # pt2d in the image .mat is the 3D-style markup, pts_2d the 2D one
                    savemat(str(root / folder / f"{stem}.mat"),
                            {"Pose_Para": pose, "pt2d": pts3[i].T + 1, "roi": np.zeros((1, 4))})
                    (root / "landmarks" / sub).mkdir(parents=True, exist_ok=True)
                    savemat(str(root / "landmarks" / sub / f"{stem}_pts.mat"),
                            {"pts_2d": pts[i] + 1, "pts_3d": pts3[i] + 1})
                else:
                    savemat(str(root / folder / f"{stem}.mat"),
                            {"Pose_Para": pose, "pt2d": pts[i].T + 1, "roi": np.zeros((1, 4))})
            out[folder], out[f"{folder}_pts_3d"], out[f"{folder}_yaw"] = pts, pts3, yaw
    return out


# --- BioID ---------------------------------------------------------------------------------------------

def write_bioid_fixture(root: str | os.PathLike, n: int = 3, seed: int = 0,
                        faces: str = "auto") -> dict:
    """``BioID_XXXX.pgm`` (384x286 grayscale) + ``.eye`` + ``points_20/bioid_XXXX.pts``; the eye
    file holds the rounded pupils of the 20-point markup (subject's left eye first)."""
    from .formats.bioid import write_eye_file
    from .formats.w300 import write_pts

    root, rng = _root(root), np.random.default_rng(seed)
    # synthetic faces have no BioID 20 scheme: "auto" falls back to drawn pictures
    images, pts = make_faces(n, "bioid20", 384, 286, _seed(rng), 1, faces=faces)
    # pupils: point 0 = subject's right = image left, so keep x0 < x1
    pts[:, [0, 1], 0] = np.sort(pts[:, [0, 1], 0], axis=1)
    (root / "points_20").mkdir(exist_ok=True)
    for i, p in enumerate(pts):
        _save(root / f"BioID_{i:04d}.pgm", images[i])
        write_eye_file(root / f"BioID_{i:04d}.eye", left=p[1], right=p[0])
        write_pts(root / "points_20" / f"bioid_{i:04d}.pts", p - 1.0)  # write_pts adds 1; BioID is 0-based
    eyes = np.round(pts[:, [0, 1]])
    return {"all": pts, "eyes": eyes}


# --- CelebA --------------------------------------------------------------------------------------------

def write_celeba_fixture(root: str | os.PathLike, n: int = 6, seed: int = 0,
                         faces: str = "auto", wild: bool = True) -> dict:
    """``Img/img_align_celeba/*.jpg`` (178x218), ``Anno/list_landmarks_align_celeba.txt`` (integer
    points) and ``Eval/list_eval_partition.txt`` (images cycle train / valid / test); with ``wild``
    also ``Img/img_celeba/`` (256x256), ``Anno/list_landmarks_celeba.txt`` and
    ``Anno/list_bbox_celeba.txt``."""
    from .formats.celeba import HEADER

    root, rng = _root(root), np.random.default_rng(seed)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    (root / "Anno").mkdir(exist_ok=True)
    (root / "Eval").mkdir(exist_ok=True)
    out = {}
    for kind, folder, list_name, w, h in (
            ("align", "img_align_celeba", "list_landmarks_align_celeba.txt", 178, 218),
            ("wild", "img_celeba", "list_landmarks_celeba.txt", 256, 256)):
        if kind == "wild" and not wild:
            continue
        images, pts = make_faces(n, "cuhk5", w, h, _seed(rng), decimals=0, faces=faces)
        for name, img in zip(names, images):
            _save(root / "Img" / folder / name, img)
        lines = [str(n), " ".join(HEADER)]
        lines += [f"{name} " + " ".join(f"{int(v):4d}" for v in p.reshape(-1))
                  for name, p in zip(names, pts)]
        (root / "Anno" / list_name).write_text("\n".join(lines) + "\n")
        out[kind] = pts
    if wild:
        boxes = np.concatenate([out["wild"].min(1) - 20, out["wild"].max(1) + 20], axis=1)
        lines = [str(n), "image_id x_1 y_1 width height"]
        lines += [f"{name} {int(b[0])} {int(b[1])} {int(b[2] - b[0])} {int(b[3] - b[1])}"
                  for name, b in zip(names, boxes)]
        (root / "Anno" / "list_bbox_celeba.txt").write_text("\n".join(lines) + "\n")
        out["wild_boxes"] = boxes
    parts = [i % 3 for i in range(n)]
    (root / "Eval" / "list_eval_partition.txt").write_text(
        "".join(f"{name} {s}\n" for name, s in zip(names, parts)))
    pts = out["align"]
    out["all"] = pts
    out.update({s: pts[[i for i in range(n) if parts[i] == k]]
                for k, s in enumerate(("train", "valid", "test"))})
    return out


# --- CUHK 5-point ----------------------------------------------------------------------------------------

def write_cuhk_fixture(root: str | os.PathLike, n_train: int = 4, n_test: int = 2,
                       seed: int = 0, faces: str = "auto") -> dict:
    """``trainImageList.txt`` / ``testImageList.txt`` (CRLF, ``lfw_5590\\X.jpg x0 x1 y0 y1`` + 5
    points) and the images in ``lfw_5590/`` (grayscale 250x250) and ``net_7876/`` (colour); plus,
    for the clean protocol, the training LFW faces as 80x80 colour frames in ``lfw_5590_80px/``
    with ``trainImageList_lfw_5590_80px.txt`` (every value mapped by ``(v + 0.5) * 0.32 - 0.5``)."""
    from PIL import Image

    root, rng = _root(root), np.random.default_rng(seed)
    out = {}
    lfw80 = []
    for split, n, list_name in (("train", n_train, "trainImageList.txt"),
                                ("test", n_test, "testImageList.txt")):
        chans = tuple(1 if i % 2 == 0 else 3 for i in range(n))
        images, pts = make_faces(n, "cuhk5", 250, 250, _seed(rng), chans, decimals=6, faces=faces)
        lines = []
        for i, p in enumerate(pts):
            folder = "lfw_5590" if i % 2 == 0 else "net_7876"
            name = f"{split}_{i:04d}.jpg"
            _save(root / folder / name, images[i])
            x0, y0 = int(p[:, 0].min()) - 10, int(p[:, 1].min()) - 10
            x1, y1 = int(p[:, 0].max()) + 10, int(p[:, 1].max()) + 10
            lines.append(f"{folder}\\{name} {x0} {x1} {y0} {y1} "
                         + " ".join(f"{v:.6f}" for v in p.reshape(-1)))
            if split == "train" and folder == "lfw_5590":
                small = Image.fromarray(images[i]).convert("RGB").resize((80, 80), Image.BILINEAR)
                _save(root / "lfw_5590_80px" / name, np.asarray(small))
                m = lambda v: (v + 0.5) * 0.32 - 0.5  # noqa: E731  (the 250 -> 80 px frame)
                lfw80.append(f"lfw_5590_80px\\{name} {m(x0):.6f} {m(x1):.6f} {m(y0):.6f} "
                             f"{m(y1):.6f} " + " ".join(f"{m(v):.6f}" for v in p.reshape(-1)))
        with open(root / list_name, "w", newline="") as f:
            f.write("\r\n".join(lines) + "\r\n")
        out[split] = pts
    with open(root / "trainImageList_lfw_5590_80px.txt", "w", newline="") as f:
        f.write("\r\n".join(lfw80) + ("\r\n" if lfw80 else ""))
    return out


# --- 300-W --------------------------------------------------------------------------------------------

_300W_FOLDERS = ("afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset", "ibug")


def write_300w_fixture(root: str | os.PathLike, n_per_folder: int = 2, seed: int = 0,
                       folders: tuple[str, ...] = _300W_FOLDERS, faces: str = "auto") -> dict:
    """``.pts`` (1-based, 68 points) + ``.jpg`` pairs in the 300-W sub-folders."""
    from .formats.w300 import write_pts

    root, rng = _root(root), np.random.default_rng(seed)
    out = {}
    for folder in folders:
        images, pts = make_faces(n_per_folder, "ibug68", 128, 128, _seed(rng), faces=faces)
        for i, p in enumerate(pts):
            stem = root / folder / f"{folder.split('/')[0]}_{i:03d}"
            _save(stem.with_suffix(".jpg"), images[i])
            write_pts(stem.with_suffix(".pts"), p)
        out[folder] = pts
    return out


def write_all_fixtures(root: str | os.PathLike, seed: int = 0,
                       faces: str = "auto") -> dict[str, Path]:
    """Every fixture under ``root/<catalog folder name>``; returns ``{dataset: folder}``."""
    root = _root(root)
    writers = {"kaggle": write_kaggle_fixture, "cofw": write_cofw_fixture,
               "wflw": write_wflw_fixture, "aflw2000_3d": write_aflw2000_fixture,
               "300w_lp": write_300wlp_fixture, "bioid": write_bioid_fixture,
               "celeba": write_celeba_fixture, "cuhk_5pt": write_cuhk_fixture,
               "300w": write_300w_fixture}
    folders = {}
    for name, writer in writers.items():
        writer(root / name, seed=seed, faces=faces)
        folders[name] = root / name
    return folders

