"""Spatial reconstruction error: Procrustes disparity between true and reconstructed coordinates.

dp-VAE paper (Zhou and Du, *Distance-Preserving Spatial Representations in Genomic Data*,
arXiv:2408.00911, 2024, doi:10.48550/arXiv.2408.00911), section 5.1, "Evaluation protocols":
the spatial reconstruction error is the Procrustes distance between the reconstructed and the
ground-truth coordinates, i.e. the residual after the optimal translation, rotation
(orthogonal map) and scaling of one onto the other. See also ``docs/metrics.md``, section
"Spatial reconstruction".
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import procrustes

__all__ = ["procrustes_disparity"]


def _as_coordinates(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"procrustes_disparity: {name} must be a 2-D array (points x dims), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"procrustes_disparity: {name} contains NaN or infinite values")
    if arr.shape[0] < 2 or np.allclose(arr, arr[0]):
        raise ValueError(f"procrustes_disparity: {name} needs at least two distinct points")
    return arr


def procrustes_disparity(true: np.ndarray, pred: np.ndarray) -> float:
    """Procrustes disparity of reconstructed coordinates ``pred`` against ``true``.

    Both configurations are centred and scaled to unit Frobenius norm, ``pred`` is then
    rotated/reflected and scaled optimally onto ``true`` (:func:`scipy.spatial.procrustes`),
    and the sum of squared differences is returned. It is invariant to translation,
    rotation, reflection and scaling of either input, 0 for a perfect reconstruction and
    at most 1.

    Parameters
    ----------
    true
        Ground-truth coordinates ``(n_points, n_dims)``.
    pred
        Reconstructed coordinates of the same points, same shape and row order.

    Returns
    -------
    float
        Disparity in ``[0, 1]`` (the dp-VAE paper's spatial reconstruction error).

    Raises
    ------
    ValueError
        On shape mismatch, non-finite values or fewer than two distinct points.
    """
    a = _as_coordinates(true, "true")
    b = _as_coordinates(pred, "pred")
    if a.shape != b.shape:
        raise ValueError(f"procrustes_disparity: true has shape {a.shape} but pred has shape {b.shape}")
    return float(procrustes(a, b)[2])
