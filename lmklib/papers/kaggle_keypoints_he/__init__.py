"""Notebook 05: He & Yang, *Facial Keypoints Detection Using Convolutional Neural Network*
(Tsinghua course report on the Kaggle Facial Keypoints Detection task;
``shared/papers/kaggle_keypoints_he.txt``).

* :mod:`.data`: the data recipe: Kaggle's CSV, a Kaggle-format set built from 300-W, or
  synthetic faces, as :class:`~lmklib.data.faces.FaceCrops` train/validation/test splits.
* :mod:`.experiments`: the smoke/quick/paper profiles, training (through
  :func:`lmklib.train.fit`), the RMSE evaluation, the Sec. 3 ablations and the cascade, and
  the trained models' cards (:func:`model_card`) and their rebuilding (:func:`load_predictor`,
  what :class:`lmklib.landmarker.Landmarker` calls).

The architectures (MLP, CNN, cascade stage 2, the masked loss and the normalisation) are in
:mod:`lmklib.models.kaggle`.
"""

from .experiments import load_predictor, model_card

__all__ = ["load_predictor", "model_card"]
