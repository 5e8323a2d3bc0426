"""Spatial coordinates from latent codes by distance matching (dp-VAE paper, section 4.3).

Given embeddings ``e_i`` whose pairwise distances should equal the spatial distances
(for dp-VAE ``e = z / lambda``, see :mod:`geovae.modules.dpvae`), the coordinates
``s_i`` solve (paper eq. 6-7)

    min_s  sum_{i<j} (||s_i - s_j|| - ||e_i - e_j||)^2   subject to  s_i = a_i for i in O,

where ``O`` are anchor spots with known coordinates ``a_i``. Without anchors this is
metric multidimensional scaling, solved with SMACOF (de Leeuw 1977;
:func:`sklearn.manifold.smacof`); when the embedding already has the spatial dimension the
optimisation is skipped and the embedding is the reconstruction (section 4.3). With
anchors the free spots are optimised (L-BFGS on the stress) with the anchors held fixed,
or, for the penalised relaxation, all spots with the penalty
``penalty * sum_{i in O} ||s_i - a_i||^2`` added.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.distance import pdist, squareform

__all__ = ["stress", "align_similarity", "reconstruct_coordinates"]


def _stress_and_grad(coords: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Raw stress ``sum_{i<j} (d_ij - t_ij)^2`` of ``coords`` and its gradient w.r.t. ``coords``."""
    dist = squareform(pdist(coords))
    resid = dist - target
    np.fill_diagonal(resid, 0.0)
    value = 0.5 * float((resid**2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(dist > 0, 2.0 * resid / dist, 0.0)
    grad = w.sum(axis=1, keepdims=True) * coords - w @ coords
    return value, grad


def stress(coords: np.ndarray, target: np.ndarray) -> float:
    """Raw stress ``sum_{i<j} (||s_i - s_j|| - t_ij)^2`` (paper eq. 6 objective).

    Parameters
    ----------
    coords
        Configuration ``(n, d)``.
    target
        Symmetric target distances ``(n, n)``.
    """
    return _stress_and_grad(np.asarray(coords, dtype=np.float64), np.asarray(target, dtype=np.float64))[0]


def align_similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity transform (scale, orthogonal map, translation) taking ``source`` closest to ``target``.

    Least squares (Umeyama/Procrustes): returns ``(c, R, t)`` with ``c * source @ R + t ~ target``.
    One point gives a pure translation.

    Parameters
    ----------
    source, target
        Corresponding points ``(m, d)``.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    mu_s, mu_t = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_t
    norm = float((a**2).sum())
    if src.shape[0] < 2 or norm == 0.0:
        return 1.0, np.eye(src.shape[1]), mu_t - mu_s
    u, sing, vt = np.linalg.svd(a.T @ b)
    rot = u @ vt
    scale = float(sing.sum() / norm)
    return scale, rot, mu_t - scale * mu_s @ rot


def _check_inputs(embedding: np.ndarray, n_components: int, anchor_index: np.ndarray | None,
                  anchor_coords: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    emb = np.asarray(embedding, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise ValueError(f"reconstruct_coordinates: embedding must be (n >= 2, dims), got shape {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise ValueError("reconstruct_coordinates: embedding contains NaN or infinite values")
    if n_components < 1:
        raise ValueError(f"reconstruct_coordinates: n_components must be >= 1, got {n_components}")
    if (anchor_index is None) != (anchor_coords is None):
        raise ValueError("reconstruct_coordinates: give both anchor_index and anchor_coords, or neither")
    if anchor_index is None:
        return emb, np.zeros(0, dtype=int), np.zeros((0, n_components))
    idx = np.asarray(anchor_index, dtype=int).reshape(-1)
    coords = np.asarray(anchor_coords, dtype=np.float64).reshape(len(idx), -1)
    if coords.shape[1] != n_components:
        raise ValueError(f"reconstruct_coordinates: anchor coordinates have {coords.shape[1]} columns, "
                         f"expected n_components={n_components}")
    if len(idx) and (idx.min() < 0 or idx.max() >= emb.shape[0]):
        raise ValueError(f"reconstruct_coordinates: anchor index out of range 0..{emb.shape[0] - 1}")
    if len(np.unique(idx)) != len(idx):
        raise ValueError("reconstruct_coordinates: anchor indices must be unique")
    if not np.all(np.isfinite(coords)):
        raise ValueError("reconstruct_coordinates: anchor coordinates contain NaN or infinite values")
    return emb, idx, coords


def reconstruct_coordinates(
    embedding: np.ndarray,
    n_components: int = 2,
    anchor_index: np.ndarray | None = None,
    anchor_coords: np.ndarray | None = None,
    penalty: float | None = None,
    n_init: int = 4,
    max_iter: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Coordinates whose pairwise distances match those of ``embedding`` (paper eq. 6-7).

    Parameters
    ----------
    embedding
        ``(n, k)`` points whose Euclidean distances are the target spatial distances.
    n_components
        Spatial dimension of the result.
    anchor_index, anchor_coords
        Rows with known coordinates and those coordinates ``(len(anchor_index), n_components)``
        (the imputation setting, index set ``O`` of eq. 7).
    penalty
        None (default): anchors are hard constraints (eq. 7). A positive number: the
        penalised relaxation with this Lagrange coefficient.
    n_init, max_iter, seed
        SMACOF restarts, iteration cap (also of L-BFGS) and random state.

    Returns
    -------
    numpy.ndarray
        ``(n, n_components)`` coordinates. Without anchors they are defined up to rotation,
        reflection and translation (and are centred); with anchors they are in the anchors'
        frame.

    Raises
    ------
    ValueError
        For malformed embeddings or anchors.
    """
    emb, idx, fixed = _check_inputs(embedding, n_components, anchor_index, anchor_coords)
    if penalty is not None and not penalty > 0:
        raise ValueError(f"reconstruct_coordinates: penalty must be > 0 or None, got {penalty}")
    target = squareform(pdist(emb))
    if emb.shape[1] == n_components:  # section 4.3: latent dimension = spatial dimension, no optimisation
        init = emb - emb.mean(axis=0)
    else:
        from sklearn.manifold import smacof

        init = smacof(target, metric=True, n_components=n_components, n_init=n_init, max_iter=max_iter,
                      random_state=seed, normalized_stress=False)[0]
    if len(idx) == 0:
        return init

    scale, rot, shift = align_similarity(init[idx], fixed)
    start = scale * init @ rot + shift
    n, d = start.shape
    if penalty is None:
        free = np.setdiff1d(np.arange(n), idx)
        full = start.copy()
        full[idx] = fixed
        if len(free) == 0:
            return full

        def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
            full[free] = flat.reshape(-1, d)
            value, grad = _stress_and_grad(full, target)
            return value, grad[free].ravel()

        res = minimize(objective, full[free].ravel(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        full[free] = res.x.reshape(-1, d)
        return full

    def penalised(flat: np.ndarray) -> tuple[float, np.ndarray]:
        coords = flat.reshape(n, d)
        value, grad = _stress_and_grad(coords, target)
        diff = coords[idx] - fixed
        grad[idx] += 2.0 * penalty * diff
        return value + penalty * float((diff**2).sum()), grad.ravel()

    res = minimize(penalised, start.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(n, d)
