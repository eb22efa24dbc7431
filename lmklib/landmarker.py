"""Use a reproduced model: ``Landmarker.load("01_ccnn").predict(image, boxes)``.

Every paper notebook saves its trained models into its report (``reports/<notebook>/models/``,
:func:`lmklib.reports.save_model`): the weights, and a model card (JSON) that says how the model
was trained and how it sees a face: the landmark scheme, the crop (size, colour, margin,
resampler) and the box policy. :class:`Landmarker` reads both and runs the model on any image
through the same code path as the notebook (:func:`~lmklib.data.faces.load_face_crops` under the
card's :class:`~lmklib.data.faces.CropPolicy`, then the paper's own predictor), so a face with
the notebook's box gets the notebook's prediction.

Coordinates: points are ``(x, y)`` in pixels of the image passed in, 0-based, pixel centres at
integers (``(0, 0)`` is the centre of the top-left pixel); boxes are ``(x0, y0, x1, y1)`` in the
same pixels.

Boxes. A box passed in must follow the model's box policy (the card's ``box_policy``; e.g. the
CUHK boxes of its test list for the 5-point models). Without boxes, faces are found by OpenCV's
bundled Haar cascade (:mod:`lmklib.data.detect`) and each detection is turned into the model's
kind of box with the calibration measured on the model's training faces when it was trained
(the card's ``detector``: how the training boxes sat around the detections, median over the
matched faces). A model trained on faces the detector does not find (synthetic ones) has no
calibration and needs boxes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data.detect import DetectorCalibration, adapt, detect_faces
from .data.faces import CropPolicy, FaceCrops, load_face_crops
from .data.geometry import BoxGeometry
from .data.sample import LandmarkDataset, Record, load_image
from .data.schemes import get_scheme
from .paths import reports_root as default_reports_root
from .reports import MODEL_FORMAT

ImageLike = Any   # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


class NoFaceError(ValueError):
    """The detector found no face in an image."""


def find_card(model: str | os.PathLike, reports_root: str | os.PathLike | None = None,
              name: str | None = None) -> Path:
    """The model card meant by ``model``: a card (``.json``) or weights (``.pt``) path, a report
    folder or its ``models/`` folder, or a report name under ``reports_root`` (default
    :func:`lmklib.paths.reports_root`). A report with several models needs ``name``."""
    given = Path(model).expanduser()
    if given.suffix in (".json", ".pt"):
        card = given.with_suffix(".json")
        if not card.is_file():
            raise FileNotFoundError(f"no model card {card}")
        return card
    if given.is_dir():
        folder = given
    else:
        root = default_reports_root(reports_root)
        folder = root / str(model)
        if not folder.is_dir():
            have = sorted(p.name for p in root.iterdir() if (p / "models").is_dir()) \
                if root.is_dir() else []
            raise FileNotFoundError(
                f"no report {model!r} under {root} (run `lmk reproduce {model}` first; reports "
                f"with models there: {', '.join(have) or 'none'})")
    models = folder if folder.name == "models" else folder / "models"
    cards = sorted(models.glob("*.json"))
    if not cards:
        raise FileNotFoundError(f"report {folder} holds no model ({models} has no model card): "
                                "re-run its notebook with this version of lmklib")
    if name is not None:
        pick = [c for c in cards if c.stem == name]
        if not pick:
            raise FileNotFoundError(f"report {folder} has no model {name!r}; it has: "
                                    f"{', '.join(c.stem for c in cards)}")
        return pick[0]
    if len(cards) > 1:
        raise ValueError(f"report {folder} holds {len(cards)} models "
                         f"({', '.join(c.stem for c in cards)}): choose one with name=...")
    return cards[0]


def read_card(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """A model card (its ``args`` lists back as tuples) and its weights (checked against the
    card's SHA-256, loaded with ``weights_only=True``)."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable model card ({e})") from None
    if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not an lmklib model card (expected format {MODEL_FORMAT!r})")
    # JSON has no tuples: the architecture's tuple arguments come back as lists
    card["args"] = {k: tuple(v) if isinstance(v, list) else v for k, v in card["args"].items()}
    weights = path.parent / card["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: its weights {weights} are missing")
    data = weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        raise ValueError(f"{weights}: contents differ from what {path.name} recorded (SHA-256): "
                         "the weights and the card are from different runs")
    import io

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return card, state


def to_array(image: ImageLike, mode: str) -> tuple[np.ndarray, str]:
    """An image as uint8 ``[H, W, C]`` (C = 1 for ``mode="L"``, 3 for ``"RGB"``) and a name for
    it. Paths are decoded by :func:`lmklib.data.sample.load_image`, as the datasets decode them;
    arrays and tensors must be uint8, ``[H, W]``, ``[H, W, C]`` (numpy) or ``[C, H, W]``
    (torch), RGB when they have 3 channels."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, mode).permute(1, 2, 0).numpy(), str(image)
    if hasattr(image, "convert") and hasattr(image, "size"):   # a PIL image
        arr = np.array(image.convert(mode), dtype=np.uint8)
        return (arr[..., None] if arr.ndim == 2 else arr), "<PIL image>"
    if isinstance(image, torch.Tensor):
        if image.dim() == 3:
            image = image.permute(1, 2, 0)
        image = image.numpy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"cannot read this image: expected a path, a PIL image, or a uint8 "
                         f"[H, W(, C)] array / [C, H, W] tensor; got {arr.dtype} {list(arr.shape)}")
    arr = arr[..., None] if arr.ndim == 2 else arr[..., :3]
    if mode == "L" and arr.shape[2] == 3:   # Pillow's luma, as load_image(mode="L") makes it
        from PIL import Image

        arr = np.array(Image.fromarray(arr).convert("L"))[..., None]
    elif mode == "RGB" and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, 2)
    return np.ascontiguousarray(arr), "<array>"


class Landmarker:
    """A trained model of a report, from image to points.

    >>> lm = Landmarker.load("01_ccnn")                  # reports/01_ccnn/models/*.json
    >>> lm.predict("face.jpg", boxes=[[75, 87, 165, 177]])   # [1, 5, 2] image pixels
    """

    def __init__(self, card: dict, predictor: Callable[[FaceCrops], np.ndarray],
                 path: Path | None = None):
        self.card, self.predictor, self.path = card, predictor, path
        crop = dict(card["crop"])
        geometry = crop.pop("geometry", None)
        self.policy = CropPolicy(**crop, geometry=BoxGeometry(**geometry) if geometry else None)
        self.scheme = get_scheme(card["scheme"])
        det = card.get("detector")
        self.calibration = DetectorCalibration.from_dict(det) if det else None

    @classmethod
    def load(cls, model: str | os.PathLike = "01_ccnn", name: str | None = None,
             reports_root: str | os.PathLike | None = None) -> "Landmarker":
        """The model of report ``model`` (see :func:`find_card`; ``name`` picks one of several)."""
        path = find_card(model, reports_root, name)
        card, state = read_card(path)
        try:
            paper = importlib.import_module(f"lmklib.papers.{card['paper']}")
        except ImportError as e:
            raise ValueError(f"{path}: unknown paper module {card['paper']!r} ({e})") from None
        return cls(card, paper.load_predictor(card, state), path)

    @property
    def num_points(self) -> int:
        return self.scheme.num_points

    def __repr__(self) -> str:
        test = self.card.get("test") or {}
        score = f", test {test.get('value', float('nan')):.3g} {test.get('unit', '')}" if test else ""
        return (f"Landmarker({self.card['name']!r} of {self.card['notebook']}: "
                f"{self.card['architecture']}, {self.scheme.name} {self.num_points} points, "
                f"{self.policy.size} px {self.policy.mode}{score})")

    def find_faces(self, image: ImageLike, name: str | None = None) -> np.ndarray:
        """The model's boxes ``[F, 4]`` for the faces the detector finds (largest first);
        ``name`` names the image in the error when none is found (default: its path)."""
        arr, label = to_array(image, "RGB")
        label = name or label
        if self.calibration is None:
            raise ValueError(f"model {self.card['name']!r} of {self.card['notebook']} has no "
                             "detector calibration (its training faces were not detectable, e.g. "
                             "synthetic): pass boxes")
        found = detect_faces(arr)
        if not len(found):
            raise NoFaceError(f"{label}: no face found ({self.calibration.detector}); pass a box")
        return adapt(found, self.calibration)

    def crops(self, image: ImageLike, boxes: Sequence[Sequence[float]] | np.ndarray
              ) -> FaceCrops:
        """The model's input crops of the faces ``boxes [F, 4]`` of ``image``."""
        arr, label = to_array(image, self.policy.mode)
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(b).all() or (b[:, 2:] <= b[:, :2]).any():
            raise ValueError(f"boxes must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, "
                             f"got {b.tolist()}")
        k = self.num_points
        ds = LandmarkDataset([Record(Path(label), np.full((k, 2), np.nan), box=box, image=arr)
                              for box in b])
        ds.scheme = self.scheme
        policy = replace(self.policy, box="data", geometry=None)   # the box is given
        return load_face_crops(ds, policy, name=label, cache=False)

    @torch.inference_mode()
    def predict(self, image: ImageLike, boxes: Sequence[Sequence[float]] | np.ndarray | None = None
                ) -> np.ndarray:
        """Points ``[F, K, 2]`` (float64, image pixels; see the module docstring) of the faces
        ``boxes [F, 4]`` (the model's box policy) of ``image``, or of every face the detector
        finds. ``image``: a path, a PIL image, a uint8 numpy ``[H, W(, C)]`` or a uint8 torch
        ``[C, H, W]``."""
        if boxes is None:
            boxes = self.find_faces(image)
        return np.asarray(self.predictor(self.crops(image, boxes)), dtype=np.float64)


__all__ = ["Landmarker", "NoFaceError", "find_card", "read_card", "to_array"]
