"""Post-hoc rotations of the latent for annotation: the model and its embedding are unchanged.

A VAE's latent is identifiable only up to rotation, so its axes may mix programs. Rotating the latent
means before annotating the components can align axes with programs: varimax (Kaiser 1958, The varimax
criterion for analytic rotation in factor analysis, Psychometrika 23:187, doi:10.1007/BF02289233) keeps
the axes orthogonal and makes each one load on few cells strongly; ICA (FastICA, Hyvarinen 1999,
doi:10.1109/72.761722) makes them statistically independent. ``benchmarks/bench_rotation.py`` measures which
recovers the simulated programs best; the pipeline's default (``interpret.rotation``) comes from it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROTATIONS", "varimax", "rotate_latent"]

ROTATIONS = ("none", "varimax", "ica")


def varimax(latent: np.ndarray, max_iter: int = 500, tol: float = 1e-8) -> np.ndarray:
    """The orthogonal rotation ``R`` (``d x d``) maximising the varimax criterion of ``latent @ R``.

    The centred, unit-variance columns are rotated (Kaiser's normalisation-free form, as
    ``sklearn.decomposition.FactorAnalysis(rotation="varimax")`` computes it).

    Parameters
    ----------
    latent
        ``cells x d`` activations.
    max_iter, tol
        Iteration cap and convergence tolerance on the criterion.

    Returns
    -------
    numpy.ndarray
        Orthogonal ``d x d`` matrix.
    """
    z = np.asarray(latent, dtype=np.float64)
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12)
    n, d = z.shape
    rotation = np.eye(d)
    previous = 0.0
    for _ in range(max_iter):
        y = z @ rotation
        u, s, vt = np.linalg.svd(z.T @ (y**3 - y @ np.diag((y**2).sum(0)) / n))
        rotation = u @ vt
        if s.sum() < previous * (1 + tol):
            break
        previous = s.sum()
    return rotation


def rotate_latent(latent: np.ndarray, method: str = "none", seed: int = 0) -> np.ndarray:
    """``latent`` (cells x d) in rotated axes for annotation.

    Parameters
    ----------
    latent
        Latent means.
    method
        ``"none"``, ``"varimax"`` (orthogonal) or ``"ica"`` (FastICA of the latent means, unit-variance
        sources, signs fixed so each source correlates positively with its largest-loading axis).
    seed
        FastICA's random state.

    Returns
    -------
    numpy.ndarray
        ``cells x d`` activations in the new axes (the input when ``method="none"``).
    """
    if method not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {method!r} (config key interpret.rotation)")
    z = np.asarray(latent, dtype=np.float64)
    if method == "none" or z.shape[1] < 2:
        return z
    if method == "varimax":
        centred = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12)
        return centred @ varimax(z)
    from sklearn.decomposition import FastICA

    ica = FastICA(n_components=z.shape[1], whiten="unit-variance", random_state=seed, max_iter=1000)
    sources = ica.fit_transform(z)
    mixing = ica.mixing_  # d x d: latent ~ sources @ mixing.T
    signs = np.sign(mixing[np.abs(mixing).argmax(axis=0), np.arange(mixing.shape[1])])
    return sources * np.where(signs == 0, 1.0, signs)
