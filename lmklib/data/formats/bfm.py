"""Linear 3D face models restricted to the 68 iBUG landmarks (Fast DHM, Sun et al., Eq. 1).

``S = mean + id_basis @ a + exp_basis @ b``: a mean shape, an identity and an expression basis,
and the prior standard deviation of every coefficient. Two sources:

* :func:`load_bfm68`: the 3DDFA model (Zhu et al., CVPR 2016; identity from the Basel Face Model
  2009, expression from FaceWarehouse) at the 68 landmarks, read from the ``bfm68/`` folder::

      u_base.txt       204 values: the mean, x, y, z interleaved per landmark
      w_shp_base.txt   204 x 40 identity basis (rows as u_base)
      w_exp_base.txt   204 x 10 expression basis
      param_std.txt    62 values: 12 pose + 40 identity + 10 expression coefficient stds

  BFM frame: x to the image right of a frontal face, y UP, z TOWARDS the viewer, ~micrometres.
* :func:`template_shape_model`: the synthetic generator's own template
  (:mod:`lmklib.data.face_template`; 15 identity, 10 expression deformations), for machines
  without ``bfm68/``.

Both are converted to one frame (:class:`ShapeModel`): x right, y DOWN, z AWAY from the viewer
(right-handed, the image frame extended by depth), the mean centred at the origin and scaled to
an inter-ocular distance (outer eye corners 36/45) of 1; the bases get the same scale, so the
coefficient stds are unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOW_TO_GET_BFM68 = ("bfm68/ holds u_base.txt, w_shp_base.txt, w_exp_base.txt and param_std.txt "
                    "from cleardusk/3DDFA (c++/weights/); see the data README")
OUTER_EYE_CORNERS = (36, 45)


@dataclass(frozen=True, eq=False)
class ShapeModel:
    """A linear 3D face model at K landmarks: ``S = mean + id_basis @ a + exp_basis @ b`` (Eq. 1).

    Frame: x right, y DOWN, z AWAY from the viewer (right-handed; an image-like frame, so a scaled
    orthographic projection is just ``(s R S)[:, :2] + t`` in image pixels); units arbitrary but
    the mean centred at the origin and scaled so that the mean shape's inter-ocular (outer eye
    corners 36/45) distance is 1.

    Attributes:
        mean: ``[K, 3]`` float64.
        id_basis: ``[K, 3, n_id]`` float64 (already in the frame and units above).
        exp_basis: ``[K, 3, n_exp]``.
        id_std: ``[n_id]`` prior std of each identity coefficient (the fit's regulariser).
        exp_std: ``[n_exp]``.
        name: where the model came from (``"bfm68"``, ``"template"``).
    """

    mean: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    id_std: np.ndarray
    exp_std: np.ndarray
    name: str

    @property
    def n_points(self) -> int:
        return len(self.mean)

    @property
    def n_id(self) -> int:
        return self.id_basis.shape[-1]

    @property
    def n_exp(self) -> int:
        return self.exp_basis.shape[-1]

    @property
    def basis(self) -> np.ndarray:
        """``[K, 3, n_id + n_exp]``: identity then expression columns."""
        return np.concatenate([self.id_basis, self.exp_basis], axis=-1)

    @property
    def std(self) -> np.ndarray:
        """``[n_id + n_exp]`` coefficient stds, in :attr:`basis` order."""
        return np.concatenate([self.id_std, self.exp_std])

    def shapes(self, a: np.ndarray | None = None, b: np.ndarray | None = None) -> np.ndarray:
        """``[N, K, 3]`` shapes for identity ``a [N, n_id]`` and expression ``b [N, n_exp]``
        coefficients (``None`` = zeros; both ``None`` gives the mean as ``[1, K, 3]``)."""
        n = len(a) if a is not None else len(b) if b is not None else 1
        out = np.broadcast_to(self.mean, (n, *self.mean.shape)).copy()
        if a is not None:
            out += np.einsum("kdi,ni->nkd", self.id_basis, np.asarray(a, dtype=np.float64))
        if b is not None:
            out += np.einsum("kde,ne->nkd", self.exp_basis, np.asarray(b, dtype=np.float64))
        return out


def _normalised(mean: np.ndarray, id_basis: np.ndarray, exp_basis: np.ndarray, id_std, exp_std,
                name: str) -> ShapeModel:
    """Centre the mean and scale mean and bases to an inter-ocular distance of 1."""
    mean = mean - mean.mean(0)
    scale = 1.0 / np.linalg.norm(mean[OUTER_EYE_CORNERS[0]] - mean[OUTER_EYE_CORNERS[1]])
    return ShapeModel(mean * scale, id_basis * scale, exp_basis * scale,
                      np.asarray(id_std, dtype=np.float64), np.asarray(exp_std, dtype=np.float64),
                      name)


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found ({HOW_TO_GET_BFM68})")
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as e:
        raise ValueError(f"{path}: expected {' x '.join(map(str, shape))} numbers ({e})") from None
    if values.size != int(np.prod(shape)) or not np.isfinite(values).all():
        raise ValueError(f"{path}: expected {' x '.join(map(str, shape))} = {int(np.prod(shape))} "
                         f"finite values, got {values.size}")
    return values.reshape(shape)


def load_bfm68(root: str | os.PathLike, n_id: int = 40, n_exp: int = 10) -> ShapeModel:
    """The 3DDFA model at the 68 landmarks from the ``bfm68/`` folder (module doc), in the
    :class:`ShapeModel` frame: y and z flipped (a 180-degree turn about x), centred, scaled.

    ``n_id``/``n_exp`` are the column counts of the files (40 and 10 in the 3DDFA release).
    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a wrong count of values.
    """
    root = Path(root)
    k = 68
    mean = _read(root / "u_base.txt", (k * 3,)).reshape(k, 3)
    ids = _read(root / "w_shp_base.txt", (k * 3, n_id)).reshape(k, 3, n_id)
    exps = _read(root / "w_exp_base.txt", (k * 3, n_exp)).reshape(k, 3, n_exp)
    std = _read(root / "param_std.txt", (12 + n_id + n_exp,))
    flip = np.array([1.0, -1.0, -1.0])  # BFM: y up, z towards the viewer
    return _normalised(mean * flip, ids * flip[:, None], exps * flip[:, None],
                       std[12:12 + n_id], std[12 + n_id:], "bfm68")


# the synthetic generator draws identity coefficients uniformly in [-1, 1] (std 1/sqrt(3)) and
# expression coefficients mostly in [0, 1] (std taken as 0.5)
TEMPLATE_ID_STD = 1 / np.sqrt(3)
TEMPLATE_EXP_STD = 0.5


def template_shape_model() -> ShapeModel:
    """The synthetic faces' 68-point template and its identity/expression deformations
    (:mod:`lmklib.data.face_template`), in the :class:`ShapeModel` frame (the template has z
    towards the camera: z flipped). A stand-in for :func:`load_bfm68` when ``bfm68/`` is absent."""
    from ..face_template import EXPRESSION_BASIS, IDENTITY_BASIS, LM

    flip = np.array([1.0, 1.0, -1.0])
    ids = IDENTITY_BASIS[:, :68].transpose(1, 2, 0) * flip[:, None]
    exps = EXPRESSION_BASIS[:, :68].transpose(1, 2, 0) * flip[:, None]
    return _normalised(LM * flip, ids, exps, np.full(ids.shape[-1], TEMPLATE_ID_STD),
                       np.full(exps.shape[-1], TEMPLATE_EXP_STD), "template")
