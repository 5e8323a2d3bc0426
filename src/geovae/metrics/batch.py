"""Batch mixing: integration LISI (Korsunsky et al. 2019, Harmony).

For every cell, its ``n_neighbors`` nearest cells in ``Z`` (itself included, then dropped,
as in the reference implementation) get Gaussian weights ``exp(-beta * d)`` of their
Euclidean distance ``d``, with ``beta`` found per cell by bisection so that the entropy of
the weights equals ``log(perplexity)``; the cell's LISI is the inverse Simpson index
``1 / sum_b p_b^2`` of the weighted batch proportions ``p_b``. ``iLISI`` is the median over
cells (1 = no mixing, B = perfect mixing of B batches) and ``iLISI_scaled`` the scIB
normalisation ``(median - 1) / (B - 1)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

log = logging.getLogger("geovae.metrics")

_TOL = 1e-5
_N_TRIES = 50


def _perplexity_weights(dist: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-normalised Gaussian weights whose entropy is ``log(perplexity)`` (vectorised bisection).

    Follows the reference search: ``beta`` starts at 1, doubles/halves until bracketed, then
    bisects, at most 50 updates, stopping per row when ``|H - log(perplexity)| < 1e-5``.
    """
    n = dist.shape[0]
    log_u = np.log(perplexity)
    beta = np.ones(n)
    beta_min = np.full(n, -np.inf)
    beta_max = np.full(n, np.inf)

    def entropy(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = dist[rows]
        p = np.exp(-d * beta[rows, None])
        p_sum = p.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.log(p_sum) + beta[rows] * (d * p).sum(axis=1) / p_sum
            p /= p_sum[:, None]
        dead = p_sum == 0
        h[dead] = 0.0
        p[dead] = 0.0
        return h, p

    h, P = entropy(np.arange(n))
    active = np.abs(h - log_u) >= _TOL
    for _ in range(_N_TRIES):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        above = h[rows] - log_u > 0
        up, down = rows[above], rows[~above]
        beta_min[up] = beta[up]
        beta[up] = np.where(np.isfinite(beta_max[up]), (beta[up] + beta_max[up]) / 2, beta[up] * 2)
        beta_max[down] = beta[down]
        beta[down] = np.where(np.isfinite(beta_min[down]), (beta[down] + beta_min[down]) / 2, beta[down] / 2)
        h_rows, P[rows] = entropy(rows)
        h[rows] = h_rows
        active[rows] = np.abs(h_rows - log_u) >= _TOL
    failed = h == 0
    if failed.any():
        log.warning("iLISI: kernel underflow for %d cells (all weights 0); they get LISI NaN", int(failed.sum()))
        P[failed] = np.nan
    return P


def lisi_scores(
    Z: np.ndarray, batch: Sequence | np.ndarray, perplexity: float = 30, n_neighbors: int = 90
) -> np.ndarray:
    """Per-cell LISI of the ``batch`` labels in ``Z``.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix.
    batch
        ``n`` batch labels (no missing values).
    perplexity
        Effective neighbourhood size (default 30).
    n_neighbors
        Neighbours searched, the cell itself included and then dropped (default
        ``3 * perplexity`` = 90, as in Harmony's ``compute_lisi``).

    Returns
    -------
    numpy.ndarray
        float64 LISI per cell (NaN where the kernel underflowed).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or not np.isfinite(Z).all():
        raise ValueError("Z must be a finite 2-D (n_cells x n_dims) array")
    labels = pd.Series(batch).reset_index(drop=True)
    if labels.size != Z.shape[0]:
        raise ValueError(f"batch has {labels.size} entries but Z has {Z.shape[0]} rows")
    if labels.isna().any():
        raise ValueError("batch labels contain missing values")
    codes, uniques = pd.factorize(labels, sort=True)
    k = min(n_neighbors, Z.shape[0])
    if k < n_neighbors:
        log.warning("iLISI: only %d cells, using %d neighbours instead of %d", Z.shape[0], k, n_neighbors)
    if k < 2:
        raise ValueError("iLISI needs at least 2 cells")
    dist, idx = NearestNeighbors(n_neighbors=k).fit(Z).kneighbors(Z)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop the cell itself
    P = _perplexity_weights(dist, perplexity)
    n_batches = len(uniques)
    flat = (np.arange(Z.shape[0])[:, None] * n_batches + codes[idx]).ravel()
    props = np.bincount(flat, weights=P.ravel(), minlength=Z.shape[0] * n_batches)
    props = props.reshape(Z.shape[0], n_batches)
    props[np.isnan(P).any(axis=1)] = np.nan
    return 1.0 / np.sum(props**2, axis=1)


def ilisi(
    Z: np.ndarray, batch: Sequence | np.ndarray, perplexity: float = 30, n_neighbors: int = 90
) -> dict[str, float]:
    """Integration LISI of the batches in ``Z``: median and scIB-scaled median.

    Parameters
    ----------
    Z
        ``n x d`` latent matrix.
    batch
        Batch label of every cell.
    perplexity
        Effective neighbourhood size of the Gaussian kernel (30, Korsunsky et al. 2019).
    n_neighbors
        Neighbours searched per cell (90 = 3 x perplexity, as Harmony's LISI).

    Returns
    -------
    dict
        ``iLISI`` (median over cells, in ``[1, B]``) and ``iLISI_scaled``
        (``(iLISI - 1) / (B - 1)``, in ``[0, 1]``; NaN with a warning when ``B = 1``).
    """
    scores = lisi_scores(Z, batch, perplexity=perplexity, n_neighbors=n_neighbors)
    n_batches = pd.Series(batch).nunique()
    median = float(np.nanmedian(scores))
    if n_batches < 2:
        log.warning("iLISI_scaled undefined with a single batch; reporting NaN")
        scaled = float("nan")
    else:
        scaled = (median - 1.0) / (n_batches - 1.0)
    return {"iLISI": median, "iLISI_scaled": float(scaled)}
