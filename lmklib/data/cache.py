"""An on-disk cache of decoded, deterministically cropped samples: epoch 2 decodes no JPEG.

``CachedDataset(dataset, pre_transform=CropToBox(...))`` runs ``dataset[i]`` (decode) and the
deterministic ``pre_transform`` once per sample and stores every field as one ``.npy`` array,
memory-mapped when read::

    <cache_dir>/<key>/image.npy      uint8   [N, C, H, W]
                      landmarks.npy  float32 [N, K, 2]   (NaN where missing)
                      mask.npy, visible.npy  bool [N, K]
                      box.npy        float32 [N, 4]
                      affine.npy     float64 [N, 2, 3]   original image -> cached crop
                      meta.json      per-sample JSON-able meta (path, index, ...)
                      manifest.json  fingerprint: dataset, sources (path, mtime, size),
                                     annotation hashes, pre_transform repr, shapes

The folder is built under a temporary name and renamed into place only when complete, so a
crash never leaves a half cache. When the fingerprint no longer matches (an image touched, an
annotation edited, other crop parameters) the cache is rebuilt. Random augmentation belongs in
``transform``, applied after the cache on every access.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import paths

FORMAT_VERSION = 1
FIELDS = ("image", "landmarks", "mask", "visible", "box", "affine")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, (np.ndarray, torch.Tensor)):
        return np.asarray(v).tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return repr(v)


def _update(h, *arrays) -> None:
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())


def _hash_arrays(*arrays) -> str:
    h = hashlib.sha1()
    _update(h, *arrays)
    return h.hexdigest()


def _describe(fn: Any) -> str:
    """A stable description of a callable: its repr, or its qualified name when the repr holds
    a memory address (plain functions, classes without ``__repr__``)."""
    r = repr(fn)
    if " at 0x" in r or " object at " in r:
        f = getattr(fn, "__func__", fn)
        return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__qualname__)}"
    return r


def code_fingerprint(*objects: Any) -> str:
    """A hash of the source files that define ``objects`` (and of the decoding and geometry
    code every cached sample goes through), so editing that code invalidates old caches."""
    import inspect
    import sys

    from . import geometry, sample

    modules = {sample.__file__, geometry.__file__}
    for obj in objects:
        if obj is None:
            continue
        module = sys.modules.get(getattr(obj, "__module__", None) or type(obj).__module__)
        if module is not None and getattr(module, "__file__", None):
            modules.add(module.__file__)
    h = hashlib.sha1()
    for path in sorted(modules):
        h.update(open(path, "rb").read())
    return h.hexdigest()


def dataset_fingerprint(dataset: Dataset, pre_transform: Callable | None) -> dict:
    """What the cached arrays depend on. Uses ``dataset.cache_fingerprint()`` when defined,
    else a :class:`~lmklib.data.sample.LandmarkDataset`'s records (image path, mtime, size, or a
    hash of in-memory images, and the annotations)."""
    fp: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "dataset": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        "length": len(dataset),
        "image_mode": getattr(dataset, "image_mode", None),
        "dataset_transform": _describe(getattr(dataset, "transform", None)),
        "pre_transform": _describe(pre_transform),
        "code": code_fingerprint(dataset, pre_transform),
    }
    if hasattr(dataset, "cache_fingerprint"):
        fp["custom"] = _jsonable(dataset.cache_fingerprint())
        return fp
    records = getattr(dataset, "records", None)
    if records is None:
        raise TypeError(f"cannot fingerprint {type(dataset).__name__}: give it a `records` list "
                        "(LandmarkDataset) or a `cache_fingerprint()` method")
    sources = []
    for r in records:
        if getattr(r, "image", None) is not None:
            sources.append([str(r.image_path), "in-memory", _hash_arrays(r.image)])
        else:
            st = os.stat(r.image_path)
            sources.append([str(r.image_path), st.st_mtime_ns, st.st_size])
    fp["sources"] = sources
    h = hashlib.sha1()
    for r in records:
        _update(h, r.landmarks, r.box, r.visible)
    h.update(json.dumps([_jsonable(r.meta) for r in records], sort_keys=True).encode())
    fp["annotations"] = h.hexdigest()
    return fp


def _digest(fp: dict) -> str:
    return hashlib.sha1(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def _identity(x):
    return x


class _PreTransformed(Dataset):
    def __init__(self, dataset: Dataset, pre_transform: Callable[[dict], dict] | None):
        self.dataset, self.pre_transform = dataset, pre_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        s = self.dataset[i]
        return self.pre_transform(s) if self.pre_transform is not None else s


class CachedDataset(Dataset):
    """A dataset whose decoded, pre-transformed samples live in memory-mapped ``.npy`` files.

    Args:
        dataset: the source (a :class:`~lmklib.data.sample.LandmarkDataset` or anything with
            ``cache_fingerprint()``); its own ``transform`` should be None or deterministic.
        cache_dir: parent folder; default :func:`lmklib.paths.cache_root`.
        key: sub-folder name; default ``<DatasetClass>-<fingerprint digest>``. With a fixed key a
            stale cache is rebuilt in place.
        pre_transform: deterministic ``sample -> sample`` run before caching (e.g.
            ``CropToBox(64, scale=1.2)``); all results must share one image shape.
        transform: ``sample -> sample`` run on every access (random augmentation, ``ToFloat``).
        rebuild: rebuild even when the cache looks valid.
        progress: show a tqdm bar while building.
        num_workers: DataLoader worker processes that decode while building (0 = in process).
    """

    def __init__(self, dataset: Dataset, cache_dir: str | os.PathLike | None = None,
                 key: str | None = None, pre_transform: Callable[[dict], dict] | None = None,
                 transform: Callable[[dict], dict] | None = None, rebuild: bool = False,
                 progress: bool = False, num_workers: int = 0):
        self.dataset, self.pre_transform, self.transform = dataset, pre_transform, transform
        self.scheme = getattr(dataset, "scheme", None)
        fp = dataset_fingerprint(dataset, pre_transform)
        self.digest = _digest(fp)
        key = key or f"{type(dataset).__name__}-{self.digest[:16]}"
        self.path = Path(cache_dir if cache_dir is not None else paths.cache_root()) / key
        self.built = False  # True when this instance (re)built the cache
        if rebuild or not self._valid():
            self._build(fp, progress, num_workers)
            self.built = True
        with open(self.path / "meta.json", encoding="utf-8") as f:
            self._meta = json.load(f)
        self._arrays: dict[str, np.ndarray] | None = None

    # --- building -------------------------------------------------------------------------
    def _valid(self) -> bool:
        try:
            with open(self.path / "manifest.json", encoding="utf-8") as f:
                return json.load(f).get("digest") == self.digest
        except (OSError, ValueError):
            return False

    def _build(self, fp: dict, progress: bool, num_workers: int) -> None:
        n = len(self.dataset)
        if n == 0:
            raise ValueError(f"cannot cache an empty dataset ({type(self.dataset).__name__})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            source = _PreTransformed(self.dataset, self.pre_transform)
            samples = iter(torch.utils.data.DataLoader(
                source, batch_size=None, num_workers=num_workers, collate_fn=_identity))
            first = next(samples)
            shapes = {k: tuple(self._field(first, k).shape) for k in FIELDS}
            dtypes = {k: self._field(first, k).dtype for k in FIELDS}
            out = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=dtypes[k],
                                                shape=(n, *shapes[k])) for k in FIELDS}
            metas = []
            it = range(n)
            if progress:
                from tqdm.auto import tqdm
                it = tqdm(it, desc=f"caching {self.path.name}", unit="sample")
            for i in it:
                s = first if i == 0 else next(samples)
                for k in FIELDS:
                    v = self._field(s, k)
                    if tuple(v.shape) != shapes[k]:
                        raise ValueError(
                            f"cannot cache sample {i} ({s.get('meta', {}).get('path', '?')}): "
                            f"{k} has shape {list(v.shape)} but sample 0 had {list(shapes[k])}; "
                            "give a pre_transform such as CropToBox(size) and a fixed image_mode "
                            "so every sample has one shape")
                    out[k][i] = v
                metas.append(_jsonable({k: v for k, v in s.get("meta", {}).items()
                                        if k != "affine"}))
            for a in out.values():
                a.flush()
            del out
            (tmp / "meta.json").write_text(json.dumps(metas), encoding="utf-8")
            manifest = {"digest": self.digest, "n": n,
                        "shapes": {k: list(v) for k, v in shapes.items()},
                        "dtypes": {k: str(np.dtype(v)) for k, v in dtypes.items()},
                        "fingerprint": fp}
            (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
            if self.path.exists():  # stale: move aside first so the rename below is atomic
                old = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(self.path, old)
                shutil.rmtree(old, ignore_errors=True)
            try:
                os.replace(tmp, self.path)
            except OSError:
                if not self._valid():  # someone else won the race with an equal cache: fine
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _field(sample: dict, key: str) -> np.ndarray:
        if key == "affine":
            return np.asarray(sample.get("meta", {}).get("affine", np.eye(3)[:2]),
                              dtype=np.float64)
        v = sample[key]
        if key == "image" and v.dtype != torch.uint8:
            raise TypeError(f"cache stores uint8 images, got {v.dtype}: move ToFloat and other "
                            "float transforms from pre_transform to transform")
        return v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    # --- reading --------------------------------------------------------------------------
    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The memory-mapped field arrays (read-only), e.g. for whole-batch tensor work."""
        if self._arrays is None:
            self._arrays = {k: np.load(self.path / f"{k}.npy", mmap_mode="r") for k in FIELDS}
        return self._arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # never pickle memmaps into DataLoader workers
        return state

    def __len__(self) -> int:
        return len(self._meta)

    def __getitem__(self, index: int) -> dict:
        a = self.arrays
        meta = dict(self._meta[index])
        meta["affine"] = np.array(a["affine"][index])
        sample = {k: torch.from_numpy(np.array(a[k][index])) for k in FIELDS if k != "affine"}
        sample["meta"] = meta
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        shape = list(self.arrays["image"].shape)
        return (f"CachedDataset\n    Number of samples: {len(self)}\n    Images: {shape} uint8\n"
                f"    Cache: {self.path}\n    Source: {type(self.dataset).__name__}\n"
                f"    Pre-transform: {self.pre_transform!r}\n    Transform: {self.transform!r}")
