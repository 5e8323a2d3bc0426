"""Recovery of known gene programs by latent dimensions (for simulated or annotated data).

For each true program (a per-cell usage score), the best absolute Spearman correlation with
any latent dimension; ``program_spearman_mean`` averages that over programs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import rankdata

log = logging.getLogger("geovae.metrics")


def _centred_ranks(X: np.ndarray) -> np.ndarray:
    """Column-wise average ranks, centred and scaled to unit norm (NaN for constant columns)."""
    R = rankdata(X, axis=0)
    R -= R.mean(axis=0)
    norm = np.sqrt(np.sum(R**2, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return R / np.where(norm > 0, norm, np.nan)


def program_recovery(Z: np.ndarray, program_scores: pd.DataFrame | np.ndarray) -> dict[str, float]:
    """Best ``|Spearman|`` between each true program and any latent dimension.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix.
    program_scores
        ``(n, p)`` per-cell program usage: a DataFrame (its column names name the programs)
        or an array (programs named ``0..p-1``).

    Returns
    -------
    dict
        ``program_spearman_<name>`` per program and ``program_spearman_mean`` (mean over the
        programs with a defined value; a constant program is NaN with a warning).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if isinstance(program_scores, pd.DataFrame):
        names = [str(c) for c in program_scores.columns]
        P = program_scores.to_numpy(dtype=np.float64)
    else:
        P = np.asarray(program_scores, dtype=np.float64)
        if P.ndim == 1:
            P = P[:, None]
        names = [str(i) for i in range(P.shape[1])]
    if Z.ndim != 2 or P.ndim != 2 or P.shape[0] != Z.shape[0]:
        raise ValueError(f"program_scores {P.shape} and Z {Z.shape} must be 2-D with the same rows")
    if not (np.isfinite(Z).all() and np.isfinite(P).all()):
        raise ValueError("Z or program_scores contains NaN or infinite values")
    rho = np.abs(_centred_ranks(P).T @ _centred_ranks(Z))  # (p, d) |Spearman|
    out: dict[str, float] = {}
    best = np.full(P.shape[1], np.nan)
    for j, name in enumerate(names):
        row = rho[j][np.isfinite(rho[j])]
        if row.size == 0:
            log.warning("program %s: constant program or latent space; reporting NaN", name)
        else:
            best[j] = row.max()
        out[f"program_spearman_{name}"] = float(best[j])
    if np.isnan(best).all():
        log.warning("program_spearman_mean undefined: no program has a defined correlation")
        out["program_spearman_mean"] = float("nan")
    else:
        out["program_spearman_mean"] = float(np.nanmean(best))
    return out
