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
                      manifest.json  fingerprint: dataset, sources (path, mtime, ctime, size),
                                     annotation hashes, pre_transform repr, shapes; and per
                                     file its byte size and CRC-32, taken when it was built

The folder is built under a temporary name and renamed into place only when complete, so a
crash never leaves a half cache. When the fingerprint no longer matches (an image replaced or
touched, an annotation edited, other crop parameters, the decoding code edited) the cache is
rebuilt. Random augmentation belongs in ``transform``, applied after the cache on every access.

**Folder names and superseded caches.** The default key is ``<Class>-<identity>-<digest>``:
``identity`` (12 hex) hashes *which faces, cropped how*: the dataset class, its image mode and
transform, the ``pre_transform`` and, per record, its image path and ``meta`` (a
``cache_identity()`` of the dataset, if defined, replaces the records); ``digest`` (16 hex)
hashes the whole fingerprint, which adds *what they hold now*: the sources' size, mtime and
ctime, the landmarks, boxes and visibility, the code and :data:`FORMAT_VERSION`. A folder is
**superseded** when a cache of the same ``<Class>-<identity>`` is built with another digest:
the same faces under the same policy, with other pixels, annotations or code. It can never be
valid again, so the build removes it (and the version-1 folders ``<Class>-<16 hex>`` of the same
class, which this code cannot read). Caches of other subsets or crop policies stay. With a fixed
``key`` the cache is rebuilt in place. Editing a record's ``meta`` (a pose, a flag) gives a new
identity, so the old folder is not recognised as superseded and stays until someone removes it.

**Integrity.** Opening a cache trusts nothing on disk: every field's ``.npy`` must exist, its
header must give the shape and dtype of ``manifest.json``, its byte size the recorded one, and
its CRC-32 the one recorded at build; ``meta.json`` likewise. On any mismatch a one-line
:class:`CacheWarning` names the file and the problem, and the cache is rebuilt. The header and
size checks run at every open (microseconds: they catch deleted, truncated and reshaped files).
The CRC-32 (zlib; measured 1.5-4.5 GB/s on one shared core, against 0.4-1 GB/s for SHA-1,
SHA-256, MD5 or BLAKE2b) runs once per process for each file state (inode, size, mtime, ctime):
opening 10,000 3x39x39 crops (46 MB) then costs 23 ms in a new process and 4 ms after, 2,000
3x256x256 crops (393 MB) 0.1-0.26 s and 2 ms, where copying the images into memory, as
:func:`~lmklib.data.faces.load_face_crops` does, takes 0.08 s and 1.1 s. Hashing at every open
would add little: any write to a file changes its ctime, so the next open, even in the same
process, sums it again (a same-size overwrite that put the old mtime back included); only
damage that leaves the metadata alone (the disk's own bit rot) waits for the next process.
CRC-32 guards against accidents (a crash, a stray write, a bad copy), not against a
deliberate forgery.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import paths

FORMAT_VERSION = 2
FIELDS = ("image", "landmarks", "mask", "visible", "box", "affine")
#: The fingerprint entries that say which faces are cached and how they are cropped.
IDENTITY_KEYS = ("dataset", "image_mode", "dataset_transform", "pre_transform", "faces")


class CacheWarning(UserWarning):
    """A cache folder failed a check when opened (the message names the file) and is rebuilt."""


# (file, inode, size, mtime_ns, ctime_ns) -> the checksum this process computed for that state
_VERIFIED: dict[tuple, str] = {}


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
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def dataset_fingerprint(dataset: Dataset, pre_transform: Callable | None) -> dict:
    """What the cached arrays depend on. Uses ``dataset.cache_fingerprint()`` when defined,
    else a :class:`~lmklib.data.sample.LandmarkDataset`'s records (image path, mtime, ctime and
    size, or a hash of in-memory images, and the annotations). The :data:`IDENTITY_KEYS` entries
    say which faces and which crop (see the module docstring); ``faces`` hashes each record's
    image path and ``meta``. The ctime (which no tool can set back) catches an image replaced
    by one of the same size whose old mtime was restored (``cp -p``, ``rsync -t``, ``tar``)."""
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
        identity = (dataset.cache_identity() if hasattr(dataset, "cache_identity")
                    else fp["custom"])
        fp["faces"] = digest({"custom": _jsonable(identity)})
        return fp
    records = getattr(dataset, "records", None)
    if records is None:
        raise TypeError(f"cannot fingerprint {type(dataset).__name__}: give it a `records` list "
                        "(LandmarkDataset) or a `cache_fingerprint()` method")
    sources, metas = [], [_jsonable(r.meta) for r in records]
    for r in records:
        if getattr(r, "image", None) is not None:
            sources.append([str(r.image_path), "in-memory", _hash_arrays(r.image)])
        else:
            st = os.stat(r.image_path)
            sources.append([str(r.image_path), st.st_mtime_ns, st.st_ctime_ns, st.st_size])
    fp["sources"] = sources
    h = hashlib.sha1()
    for r in records:
        _update(h, r.landmarks, r.box, r.visible)
    h.update(json.dumps(metas, sort_keys=True).encode())
    fp["annotations"] = h.hexdigest()
    fp["faces"] = digest([[str(r.image_path), m] for r, m in zip(records, metas)])
    return fp


def digest(settings: Any) -> str:
    """SHA-1 hex digest of JSON-able ``settings`` (dict keys sorted): the name a cache derives
    from what built it, here and wherever trained or built artefacts are cached by settings."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def cache_key(dataset: Dataset, fp: dict) -> str:
    """The default folder name ``<Class>-<identity 12 hex>-<digest 16 hex>`` (module docstring)."""
    identity = digest({k: fp.get(k) for k in IDENTITY_KEYS})
    return f"{type(dataset).__name__}-{identity[:12]}-{digest(fp)[:16]}"


def file_checksum(path: str | os.PathLike) -> str:
    """``"crc32:<8 hex>"`` of a file's bytes (read in 4 MiB blocks)."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc:08x}"


def _state(path: Path) -> tuple:
    st = os.stat(path)
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header (ValueError for a file that has none)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    return tuple(shape), dtype


def _remove_folder(path: Path) -> None:
    """Move ``path`` aside, then delete it: no process ever sees half a folder under its name."""
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(path, old)
    except OSError:
        return  # gone already (another process), or not ours to move
    shutil.rmtree(old, ignore_errors=True)


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
        key: sub-folder name; default :func:`cache_key`, ``<Class>-<identity>-<digest>``
            (a build removes the folders it supersedes, see the module docstring). With a fixed
            key a stale cache is rebuilt in place.
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
        self.digest = digest(fp)
        self._default_key = key is None
        key = key or cache_key(dataset, fp)
        self.path = Path(cache_dir if cache_dir is not None else paths.cache_root()) / key
        self.built = False  # True when this instance (re)built the cache
        if rebuild or not self._check():
            self._build(fp, progress, num_workers)
            self.built = True
            if self._default_key:
                self._remove_superseded()
        with open(self.path / "meta.json", encoding="utf-8") as f:
            self._meta = json.load(f)
        self._arrays: dict[str, np.ndarray] | None = None

    # --- checking -------------------------------------------------------------------------
    def _check(self) -> bool:
        """True if the folder holds this fingerprint's cache, intact; a damaged one is reported
        (one :class:`CacheWarning`) before the rebuild."""
        if not self.path.exists():
            return False
        problem = self._problem()
        if problem is None:
            return True
        if problem:
            warnings.warn(f"cache {self.path}: {problem}; rebuilding it", CacheWarning,
                          stacklevel=3)
        return False

    def _problem(self) -> str | None:
        """None when valid, "" when stale (another fingerprint), else what is wrong, with the
        file named."""
        try:
            with open(self.path / "manifest.json", encoding="utf-8") as f:
                manifest = json.load(f)
        except FileNotFoundError:
            return "manifest.json is missing"
        except (OSError, UnicodeDecodeError) as e:
            return f"manifest.json cannot be read ({e})"
        except json.JSONDecodeError as e:
            return f"manifest.json is not valid JSON ({e.msg}, line {e.lineno})"
        if not isinstance(manifest, dict) or "digest" not in manifest:
            return "manifest.json is not a cache manifest (expected an object with a digest)"
        if manifest["digest"] != self.digest:
            return ""
        try:
            return self._file_problem(manifest)
        except (KeyError, TypeError, ValueError) as e:
            return f"manifest.json is not a cache manifest of version {FORMAT_VERSION} ({e!r})"

    def _file_problem(self, manifest: dict) -> str | None:
        files, n = manifest["files"], manifest["n"]
        if set(files) != {f"{k}.npy" for k in FIELDS} | {"meta.json"}:
            return (f"manifest.json lists the files {sorted(files)}, expected every field's .npy "
                    "and meta.json")
        for name, recorded in files.items():
            path = self.path / name
            if not path.is_file():
                return f"{name} is missing"
            if name.endswith(".npy"):
                k = name[:-4]
                want = ((n, *manifest["shapes"][k]), np.dtype(manifest["dtypes"][k]))
                try:
                    got = _npy_header(path)
                except (ValueError, OSError, SyntaxError) as e:
                    return f"{name} has no readable .npy header ({e})"
                if got != want:
                    return (f"{name} holds {got[1]} {list(got[0])}, expected {want[1]} "
                            f"{list(want[0])} (manifest.json)")
            size = path.stat().st_size
            if size != recorded["bytes"]:
                return (f"{name} is {size} bytes, expected {recorded['bytes']} (truncated or "
                        "replaced)")
        for name, recorded in files.items():
            state = _state(self.path / name)
            if _VERIFIED.get(state) != recorded["checksum"]:
                got = file_checksum(self.path / name)
                if got != recorded["checksum"]:
                    return (f"{name} has checksum {got}, expected {recorded['checksum']}: its "
                            "bytes changed after the cache was built")
                _VERIFIED[state] = got
        return None

    def _remove_superseded(self) -> None:
        """Delete the sibling folders this build supersedes (module docstring): the same
        ``<Class>-<identity>-`` with another digest, leftovers of interrupted removals of
        them, and version-1 folders ``<Class>-<16 hex>``."""
        cls, identity, _ = self.path.name.rsplit("-", 2)
        prefix = f"{cls}-{identity}-"
        legacy = re.compile(rf"{re.escape(cls)}-[0-9a-f]{{16}}")
        for entry in self.path.parent.iterdir():
            name = entry.name
            if name == self.path.name or not entry.is_dir():
                continue
            if name.startswith(prefix) or legacy.fullmatch(name):
                _remove_folder(entry)
            elif name.startswith(f".{prefix}") and ".old-" in name:
                shutil.rmtree(entry, ignore_errors=True)

    # --- building -------------------------------------------------------------------------
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
            names = [f"{k}.npy" for k in FIELDS] + ["meta.json"]
            files = {name: {"bytes": (tmp / name).stat().st_size,
                            "checksum": file_checksum(tmp / name)} for name in names}
            manifest = {"digest": self.digest, "n": n,
                        "shapes": {k: list(v) for k, v in shapes.items()},
                        "dtypes": {k: str(np.dtype(v)) for k, v in dtypes.items()},
                        "files": files, "fingerprint": fp}
            (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
            if self.path.exists():  # stale: move aside first so the rename below is atomic
                _remove_folder(self.path)
            try:
                os.replace(tmp, self.path)
            except OSError:
                # another process won the race: fine if it left an equal, intact cache
                if self._problem() is not None:
                    raise
            else:
                for name in names:  # what this process just wrote and summed needs no re-check
                    _VERIFIED[_state(self.path / name)] = files[name]["checksum"]
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
