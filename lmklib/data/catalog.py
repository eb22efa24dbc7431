"""The data catalog: every dataset the papers use, where it goes under the data root, how many
images each split should hold, where to get it, and a scan of what is actually there.

``scan(data_root)`` counts annotations with plain file reads (no image decoding, no torch), so
``lmk data`` answers in a second or two; ``present(data_root)`` says which datasets were found.
Loaders are named as ``"module:Class"`` strings and imported only by :meth:`DatasetEntry.load`.

Nothing is ever downloaded: the ``how_to_get`` text says where each dataset comes from.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..paths import data_root as resolve_data_root

Counter = Callable[[Path], dict[str, int]]


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the catalog.

    Attributes:
        name: catalog key (``"cuhk_5pt"``, ``"300w"``, ...).
        title: readable name.
        folders: folder names accepted under the data root, first match wins.
        inner: optional sub-folder the archive unpacks to (used when it exists).
        loader: ``"module:Class"`` of the :class:`~lmklib.data.sample.LandmarkDataset`.
        scheme: landmark scheme name.
        expected: expected count per split (images or faces).
        how_to_get: where to obtain it.
        layout: the expected folder layout.
        citation: the paper to cite.
        count: ``folder -> {split: found}`` (cheap file counting).
        papers: which of our papers use it.
        probe: ``folder -> bool`` quick "anything there?" check for :func:`present` (default:
            any non-zero count).
    """

    name: str
    title: str
    folders: tuple[str, ...]
    loader: str
    scheme: str
    expected: dict[str, int]
    how_to_get: str
    layout: str
    citation: str
    count: Counter = field(repr=False, compare=False)
    inner: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()
    probe: Callable[[Path], bool] | None = field(default=None, repr=False, compare=False)

    def find(self, data_root: str | os.PathLike | None = None) -> Path | None:
        """The dataset's folder under the data root, or ``None``."""
        root = resolve_data_root(data_root)
        for name in self.folders:
            base = root / name
            if base.is_dir():
                for sub in self.inner:
                    if (base / sub).is_dir():
                        return base / sub
                return base
        return None

    def loader_class(self) -> type:
        module, cls = self.loader.split(":")
        return getattr(importlib.import_module(module), cls)

    def load(self, data_root: str | os.PathLike | None = None, split: str | None = None,
             **kwargs: Any):
        """Build the dataset from the data root (``FileNotFoundError`` naming where it should be)."""
        folder = self.find(data_root)
        if folder is None:
            root = resolve_data_root(data_root)
            raise FileNotFoundError(f"{self.title} not found: expected one of "
                                    f"{[str(root / f) for f in self.folders]}. {self.how_to_get}")
        args = {} if split is None else {"split": split}
        return self.loader_class()(folder, **args, **kwargs)


# --- counters: plain file reads --------------------------------------------------------------------

def _lines(path: Path, skip: int = 0) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return max(sum(1 for ln in f if ln.strip()) - skip, 0)


def _count_prefix(path: Path, prefix: bytes) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for ln in f if ln.strip().startswith(prefix))


def _count_cuhk(d: Path) -> dict[str, int]:
    """The clean protocol (``train``: net_7876 + the 80 px LFW frames; ``test``: net_7876) and
    the official lists (see :mod:`lmklib.data.formats.cuhk`)."""
    train, test = d / "trainImageList.txt", d / "testImageList.txt"
    return {"train": _count_prefix(train, b"net_7876") + _lines(d / "trainImageList_lfw_5590_80px.txt"),
            "test": _count_prefix(test, b"net_7876"),
            "train_official": _lines(train), "test_official": _lines(test)}


_W300_FOLDERS = {"afw": 337, "helen/trainset": 2000, "lfpw/trainset": 811, "helen/testset": 330,
                 "lfpw/testset": 224, "ibug": 135}
_W300_SPLITS = {"train": ("afw", "helen/trainset", "lfpw/trainset"),
                "common": ("helen/testset", "lfpw/testset"), "challenge": ("ibug",),
                "full": ("helen/testset", "lfpw/testset", "ibug")}


def _count_300w(d: Path) -> dict[str, int]:
    per = {f: (len(list((d / f).rglob("*.pts"))) if (d / f).is_dir() else 0) for f in _W300_FOLDERS}
    return {**{s: sum(per[f] for f in fs) for s, fs in _W300_SPLITS.items()}, **per}


def _count_masked_300w(d: Path) -> dict[str, int]:
    c = _count_300w(d)
    return {k: c[k] for k in ("common", "challenge", "full")}


def _count_kaggle(d: Path) -> dict[str, int]:
    return {"train": _lines(d / "training.csv", 1), "test": _lines(d / "test.csv", 1),
            "lookup_rows": _lines(d / "IdLookupTable.csv", 1)}


def _count_cofw(d: Path) -> dict[str, int]:
    out = {}
    for split, names, var in (("train", ("COFW_train_color.mat", "COFW_train.mat"), "phisTr"),
                              ("test", ("COFW_test_color.mat", "COFW_test.mat"), "phisT")):
        path = next((d / n for n in names if (d / n).is_file()), None)
        out[split] = 0
        if path is not None:
            try:
                import h5py

                if h5py.is_hdf5(str(path)):
                    with h5py.File(path, "r") as f:
                        shape = f[var].shape
                    out[split] = int(shape[1] if shape[0] == 87 else shape[0])
                else:
                    from scipy.io import whosmat

                    shape = dict((n, s) for n, s, _ in whosmat(str(path)))[var]
                    out[split] = int(shape[0] if shape[1] == 87 else shape[1])
            except Exception:  # unreadable file: report it as not found, the loader says why
                out[split] = 0
    return out


_WFLW_ATTRS = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def _count_wflw(d: Path) -> dict[str, int]:
    out = {}
    for split in ("train", "test"):
        name = f"list_98pt_rect_attr_{split}.txt"
        path = next((d / f / name for f in ("WFLW_annotations/list_98pt_rect_attr_train_test",
                                            "WFLW_annotations", "list_98pt_rect_attr_train_test",
                                            ".") if (d / f / name).is_file()), None)
        out[split] = _lines(path) if path else 0
        if split == "test":
            counts = dict.fromkeys(_WFLW_ATTRS, 0)
            if path:
                for ln in open(path, encoding="utf-8"):
                    t = ln.split()
                    if len(t) == 207:
                        for a, v in zip(_WFLW_ATTRS, t[200:206]):
                            counts[a] += v == "1"
            out.update({f"test/{a}": c for a, c in counts.items()})
    return out


def _count_aflw2000(d: Path) -> dict[str, int]:
    mats = [m for m in sorted(d.glob("*.mat")) if m.with_suffix(".jpg").is_file()]
    out = {"test": len(mats)}
    if mats:
        import numpy as np
        from scipy.io import loadmat

        bins = {"yaw 0-30": 0, "yaw 30-60": 0, "yaw 60-90": 0, "yaw >90": 0}
        for m in mats:
            try:
                yaw = abs(float(np.degrees(np.asarray(
                    loadmat(str(m), variable_names=["Pose_Para"])["Pose_Para"]).reshape(-1)[1])))
            except Exception:
                continue
            key = "0-30" if yaw <= 30 else "30-60" if yaw <= 60 else "60-90" if yaw <= 90 else ">90"
            bins[f"yaw {key}"] += 1
        out.update(bins)
    return out


_300WLP = {"AFW": 5207, "HELEN": 37676, "IBUG": 1786, "LFPW": 16556}


def _count_300wlp(d: Path) -> dict[str, int]:
    per = {s: len(list((d / s).glob("*.mat"))) if (d / s).is_dir() else 0 for s in _300WLP}
    flip = {f"{s}_Flip": len(list((d / f"{s}_Flip").glob("*.mat")))
            if (d / f"{s}_Flip").is_dir() else 0 for s in _300WLP}
    return {"all": sum(per.values()), **per, **flip}


def _count_bioid(d: Path) -> dict[str, int]:
    pts = d / "points_20"
    return {"all": len(list(d.glob("BioID_*.pgm"))), "eye files": len(list(d.glob("BioID_*.eye"))),
            "fgnet20 points": len(list(pts.glob("bioid_*.pts"))) if pts.is_dir() else 0}


def _count_celeba(d: Path) -> dict[str, int]:
    part = next((d / s / "list_eval_partition.txt" for s in (".", "Eval")
                 if (d / s / "list_eval_partition.txt").is_file()), None)
    counts = {"train": 0, "valid": 0, "test": 0}
    if part:
        for ln in open(part, encoding="utf-8"):
            t = ln.split()
            if len(t) == 2 and t[1] in "012":
                counts[("train", "valid", "test")[int(t[1])]] += 1
    lm = next((d / s / "list_landmarks_align_celeba.txt" for s in (".", "Anno")
               if (d / s / "list_landmarks_align_celeba.txt").is_file()), None)
    counts["all"] = _lines(lm, 2) if lm else 0
    return counts


_MMPOSE_JSON = {"300w": "test_300w.json", "300wlp": "test_300wlp.json", "aflw": "test_aflw.json",
                "cofw": "test_cofw.json", "wflw": "test_wflw.json", "300vw": "anno_300vw.json",
                "lapa": "test_lapa.json"}


def _count_mmpose(d: Path) -> dict[str, int]:
    import json

    out = {}
    for sub, name in _MMPOSE_JSON.items():
        p = d / sub / name
        try:
            out[sub] = len(json.loads(p.read_text())["annotations"]) if p.is_file() else 0
        except (ValueError, KeyError):
            out[sub] = 0
    return out


# --- the catalog ----------------------------------------------------------------------------------

_F = "lmklib.data.formats"
CATALOG: dict[str, DatasetEntry] = {e.name: e for e in (
    DatasetEntry(
        "cuhk_5pt", "CUHK 5-point (LFW+Webface)", ("cuhk_5pt", "cuhk", "CUHK5"),
        f"{_F}.cuhk:CUHK5Point", "cuhk5",
        {"train": 10000, "test": 2027, "train_official": 10000, "test_official": 3466},
        "Sun, Wang & Tang (CVPR 2013) project page, 'Deep Convolutional Network Cascade for Facial "
        "Point Detection' (train.zip: trainImageList.txt, testImageList.txt, lfw_5590/, net_7876/); "
        "the clean protocol also needs the original LFW frames of the 4,151 training faces "
        "(lfw_5590_80px/ + trainImageList_lfw_5590_80px.txt, see lmklib.data.formats.cuhk)",
        "trainImageList.txt testImageList.txt lfw_5590/*.jpg net_7876/*.jpg "
        "trainImageList_lfw_5590_80px.txt lfw_5590_80px/*.jpg",
        "Sun, Wang & Tang, Deep Convolutional Network Cascade for Facial Point Detection, CVPR 2013",
        _count_cuhk, papers=("ccnn_duan2021", "acn_chen2020")),
    DatasetEntry(
        "300w", "300-W (68 points)", ("300w", "300w_subset", "300W"),
        f"{_F}.w300:W300", "ibug68",
        {"train": 3148, "common": 554, "challenge": 135, "full": 689, **_W300_FOLDERS},
        "https://ibug.doc.ic.ac.uk/resources/300-W/ (afw, helen, lfpw, ibug archives)",
        "afw/ helen/{trainset,testset}/ lfpw/{trainset,testset}/ ibug/ with X.jpg|png + X.pts",
        "Sagonas et al., 300 Faces in-the-Wild Challenge, ICCV-W 2013",
        _count_300w, papers=("acn_chen2020", "sd_hrnet_lin2023")),
    DatasetEntry(
        "masked_300w", "Masked 300-W (test only)", ("masked_300w", "300w_masked", "Masked_300W"),
        f"{_F}.w300:W300", "ibug68", {"common": 554, "challenge": 135, "full": 689},
        "from the authors of the Masked 300-W benchmark (SD-HRNet ref. [46]); same 68-point .pts "
        "markup as 300-W with masks drawn on the test images",
        "helen/testset/ lfpw/testset/ ibug/ with X.jpg + X.pts (the 300-W test layout; load "
        "with W300(root, split='common'|'challenge'|'full'))",
        "Masked 300-W, as cited by Lin et al., SD-HRNet, Sensors 2023 (ref. [46])",
        _count_masked_300w, papers=("sd_hrnet_lin2023",)),
    DatasetEntry(
        "kaggle", "Kaggle Facial Keypoints (15 points)",
        ("kaggle", "kaggle_keypoints", "facial-keypoints-detection"),
        f"{_F}.kaggle:KaggleFacialKeypoints", "kaggle15",
        {"train": 7049, "test": 1783, "lookup_rows": 27124},
        "https://www.kaggle.com/c/facial-keypoints-detection/data (Kaggle account)",
        "training.csv test.csv IdLookupTable.csv",
        "Kaggle Facial Keypoints Detection (2013), data from Y. Bengio's lab, Univ. Montreal",
        _count_kaggle, papers=("kaggle_keypoints_he",)),
    DatasetEntry(
        "cofw", "COFW (29 points, occlusion)", ("cofw", "COFW"),
        f"{_F}.cofw:COFW", "cofw29", {"train": 1345, "test": 507},
        "http://www.vision.caltech.edu/xpburgos/ICCV13/ (colour .mat files also linked from the "
        "HRNet facial-landmark repository)",
        "COFW_train_color.mat COFW_test_color.mat (MATLAB v7.3)",
        "Burgos-Artizzu, Perona & Dollar, Robust Face Landmark Estimation under Occlusion, ICCV 2013",
        _count_cofw, papers=("sd_hrnet_lin2023",)),
    DatasetEntry(
        "wflw", "WFLW (98 points, 6 attributes)", ("wflw", "WFLW"),
        f"{_F}.wflw:WFLW", "wflw98",
        {"train": 7500, "test": 2500, "test/pose": 326, "test/expression": 314,
         "test/illumination": 698, "test/makeup": 206, "test/occlusion": 736, "test/blur": 773},
        "https://wywu.github.io/projects/LAB/WFLW.html (WFLW_images.tar.gz, "
        "WFLW_annotations.tar.gz)",
        "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt "
        "WFLW_images/<event>/*.jpg",
        "Wu et al., Look at Boundary: A Boundary-Aware Face Alignment Algorithm, CVPR 2018",
        _count_wflw, papers=("sd_hrnet_lin2023",)),
    DatasetEntry(
        "aflw2000_3d", "AFLW2000-3D (68 points, pose)", ("aflw2000_3d", "AFLW2000", "aflw2000"),
        f"{_F}.aflw:AFLW2000_3D", "ibug68",
        {"test": 2000, "yaw 0-30": 1312, "yaw 30-60": 383, "yaw 60-90": 298, "yaw >90": 7},
        "http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm (AFLW2000-3D.zip)",
        "imageXXXXX.jpg + imageXXXXX.mat (pt3d_68, pt2d, Pose_Para, roi); the zip's AFLW2000/ "
        "folder may sit inside",
        "Zhu et al., Face Alignment Across Large Poses: A 3D Solution, CVPR 2016",
        _count_aflw2000, inner=("AFLW2000",), papers=("fast_dhm_sun",),
        probe=lambda d: any(m.with_suffix(".jpg").is_file() for m in d.glob("*.mat"))),
    DatasetEntry(
        "300w_lp", "300W-LP (68 points, large pose, training)", ("300w_lp", "300W_LP", "300W-LP"),
        f"{_F}.aflw:W300LP", "ibug68", {"all": 61225, **_300WLP, **{f"{s}_Flip": n
                                                                   for s, n in _300WLP.items()}},
        "http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm (300W-LP.zip)",
        "AFW/ HELEN/ IBUG/ LFPW/ (+ *_Flip/) with X.jpg + X.mat; landmarks/<SUBSET>/X_pts.mat",
        "Zhu et al., Face Alignment Across Large Poses: A 3D Solution, CVPR 2016",
        _count_300wlp, inner=("300W_LP",), papers=("fast_dhm_sun",)),
    DatasetEntry(
        "bioid", "BioID (eye centres; FGNet 20 points)", ("bioid", "BioID"),
        f"{_F}.bioid:BioID", "bioid20", {"all": 1521, "eye files": 1521, "fgnet20 points": 1521},
        "https://www.bioid.com/face-database/ (images + .eye); FGNet 20-point markup "
        "(points_20.zip)",
        "BioID_XXXX.pgm BioID_XXXX.eye points_20/bioid_XXXX.pts",
        "Jesorsky, Kirchberg & Frischholz, Robust Face Detection Using the Hausdorff Distance, "
        "AVBPA 2001",
        _count_bioid, papers=("acn_chen2020",)),
    DatasetEntry(
        "celeba", "CelebA (5 points)", ("celeba", "CelebA"),
        f"{_F}.celeba:CelebA", "cuhk5",
        {"train": 162770, "valid": 19867, "test": 19962, "all": 202599},
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Img/, Anno/, Eval/)",
        "Img/img_align_celeba/*.jpg Anno/list_landmarks_align_celeba.txt "
        "Eval/list_eval_partition.txt",
        "Liu, Luo, Wang & Tang, Deep Learning Face Attributes in the Wild, ICCV 2015",
        _count_celeba, papers=("acn_chen2020",)),
    DatasetEntry(
        "mmpose_coco", "mmpose face fixtures (COCO json)", ("fixtures/mmpose_coco",),
        f"{_F}.coco:CocoKeypoints", "", {"300w": 2, "300wlp": 2, "aflw": 2, "cofw": 2, "wflw": 4,
                                         "300vw": 3, "lapa": 2},
        "open-mmlab/mmpose tests/data/ (2-3 images per benchmark)",
        "<benchmark>/<json> + images; load with CocoKeypoints(json_file)",
        "MMPose Contributors, OpenMMLab Pose Estimation Toolbox and Benchmark, 2020",
        _count_mmpose),
)}


def get_entry(name: str) -> DatasetEntry:
    if name not in CATALOG:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(CATALOG)}")
    return CATALOG[name]


def _status(found: int, expected: int | None) -> str:
    if found == 0:
        return "missing"
    if expected is None or found >= expected:
        return "present"
    return "partial"


def scan(data_root: str | os.PathLike | None = None):
    """What is under the data root: one row per dataset and split.

    Returns:
        ``pandas.DataFrame`` with columns ``dataset, split, found, expected, status, path``
        (status ``present`` = found >= expected, ``partial``, or ``missing``).
    """
    import pandas as pd

    rows = []
    for entry in CATALOG.values():
        folder = entry.find(data_root)
        counts = entry.count(folder) if folder is not None else {}
        for split in dict.fromkeys([*entry.expected, *counts]):
            found = int(counts.get(split, 0))
            expected = entry.expected.get(split)
            rows.append({"dataset": entry.name, "split": split, "found": found,
                         "expected": expected, "status": _status(found, expected),
                         "path": str(folder) if folder is not None else ""})
    return pd.DataFrame(rows, columns=["dataset", "split", "found", "expected", "status", "path"])


def present(data_root: str | os.PathLike | None = None) -> dict[str, Path | None]:
    """``{dataset: folder}`` for every catalog entry: its folder if any annotation was found
    there, else ``None``."""
    out = {}
    for entry in CATALOG.values():
        folder = entry.find(data_root)
        found = folder is not None and (entry.probe(folder) if entry.probe is not None else
                                        any(v > 0 for v in entry.count(folder).values()))
        out[entry.name] = folder if found else None
    return out
