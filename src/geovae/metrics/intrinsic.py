"""Intrinsic geometry of a latent space from the spectrum of its covariance.

Definitions: ``docs/metrics.md``, section "Intrinsic geometry". ``l_1 >= ... >= l_d`` are
the eigenvalues of the covariance of ``Z`` (squared singular values of the centred ``Z``
divided by ``n - 1``; zeros are appended when ``n <= d``). Two modes: ``"trajectory"`` (the
paper's tables) rewards a few dominant axes, ``"steady_state"`` rewards spread. These are
heuristics: report them, do not tune a model to them alone.

Edge cases (documented choices, not in the reference): the elbow ratio ``l_i / l_{i+1}`` is
taken only where ``l_{i+1} > 0`` (no valid ratio -> ``k_E = 1``); "the rest is ~0" means
below ``1e-12`` of the total variance; with ``d = 1`` the spectrum has no shape, so
``manifold_dimensionality``, ``spectral_decay``, ``anisotropy`` and the two aggregates are
NaN (logged); a zero-variance ``Z`` raises.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

log = logging.getLogger("geovae.metrics")

Mode = Literal["trajectory", "steady_state"]
INTRINSIC_METRICS = (
    "manifold_dimensionality",
    "spectral_decay",
    "participation_ratio",
    "anisotropy",
    "trajectory_directionality",
    "noise_resilience",
    "core_intrinsic_quality",
    "overall_intrinsic_quality",
)
_REST_TOL = 1e-12


def covariance_spectrum(Z: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance of ``Z``, descending, length ``d``.

    Computed as the squared singular values of the column-centred ``Z`` over ``n - 1``.

    Parameters
    ----------
    Z
        ``n x d`` latent matrix (at least 2 rows, finite).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z must be a 2-D array with at least 2 rows, got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise ValueError("Z contains NaN or infinite values")
    s = np.linalg.svd(Z - Z.mean(axis=0), compute_uv=False)
    eig = np.zeros(Z.shape[1])
    eig[: s.size] = s**2 / (Z.shape[0] - 1)
    return np.sort(eig)[::-1]


def _decay_slope(eig: np.ndarray) -> float:
    """Least-squares slope of ``log(l_i + 1e-10)`` against ``i``."""
    i = np.arange(1, eig.size + 1, dtype=np.float64)
    return float(np.polyfit(i, np.log(eig + 1e-10), 1)[0])


def _n_to_explain(eig: np.ndarray, fraction: float) -> int:
    cum = np.cumsum(eig) / eig.sum()
    return int(np.argmax(cum >= fraction)) + 1 if np.any(cum >= fraction) else eig.size


def _elbow_k(eig: np.ndarray) -> int:
    valid = eig[1:] > 0
    if not valid.any():
        return 1
    ratios = np.full(eig.size - 1, -np.inf)
    ratios[valid] = eig[:-1][valid] / eig[1:][valid]
    return int(np.argmax(ratios)) + 1


def _participation(eig: np.ndarray, floor: float) -> tuple[float, int]:
    kept = eig[eig > floor]
    return float(kept.sum() ** 2 / np.sum(kept**2)), int(kept.size)


def manifold_dimensionality(eig: np.ndarray) -> float:
    """Mean of six dimension efficiencies (variance 80/90/95 %, Kaiser, elbow, decay), in [0, 1]."""
    d = eig.size
    eff = [1 - (_n_to_explain(eig, t) - 1) / (d - 1) for t in (0.80, 0.90, 0.95)]
    eff.append(1 - (int(np.sum(eig > eig.mean())) - 1) / (d - 1))
    eff.append(1 - (_elbow_k(eig) - 1) / (d - 1))
    eff.append(1 / (1 + np.exp(_decay_slope(eig))))
    return float(np.clip(np.mean(eff), 0.0, 1.0))


def spectral_decay(eig: np.ndarray) -> float:
    """``0.6 / (1 + exp(slope)) + 0.4 * l_1 / sum(l)``, clipped to [0, 1]."""
    value = 0.6 / (1 + np.exp(_decay_slope(eig))) + 0.4 * eig[0] / eig.sum()
    return float(np.clip(value, 0.0, 1.0))


def participation_score(eig: np.ndarray, mode: Mode) -> float:
    """``p = PR / count`` over eigenvalues > 1e-10; ``1 - p`` (trajectory) or ``p``."""
    pr, count = _participation(eig, 1e-10)
    p = pr / count
    return float(1 - p if mode == "trajectory" else p)


def anisotropy(eig: np.ndarray, mode: Mode) -> float:
    """Weighted sum of six anisotropy terms over eigenvalues > 1e-12 (``1 - score`` if steady-state)."""
    d = eig.size
    kept = eig[eig > 1e-12]
    if kept.size < 2:
        log.warning("anisotropy undefined: fewer than 2 non-zero eigenvalues; reporting NaN")
        return float("nan")
    log_ratios = np.log(kept[:-1] / kept[1:])
    p = kept / kept.sum()
    entropy = float(-np.sum(p * np.log(p)))
    rest = kept[1:].sum()
    dominance = np.tanh(np.log(kept[0] / rest + 1) / 2) if rest > _REST_TOL * kept.sum() else 1.0
    pr, _ = _participation(kept, 1e-12)
    score = (
        0.25 * np.tanh(np.log(kept[0] / kept[-1]) / 4)
        + 0.25 * np.tanh(log_ratios.mean() / 2)
        + 0.20 * np.tanh(log_ratios.var())
        + 0.15 * (1 - entropy / np.log(d))
        + 0.10 * dominance
        + 0.05 * (1 - pr / d)
    )
    return float(score if mode == "trajectory" else 1 - score)


def trajectory_directionality(eig: np.ndarray) -> float:
    """``q / (1 + q)`` with ``q = r_1 / sum_{i>1} r_i`` (r: explained-variance ratios); 1 if the rest is ~0."""
    r = eig / eig.sum()
    rest = r[1:].sum()
    if rest <= _REST_TOL:
        return 1.0
    q = r[0] / rest
    return float(q / (1 + q))


def noise_resilience(eig: np.ndarray) -> float:
    """``min(((l_1 + l_2) / sum_{i>2} l_i) / 10, 1)``; 1 if the rest is ~0."""
    rest = eig[2:].sum()
    if rest <= _REST_TOL * eig.sum():
        return 1.0
    return float(min(eig[:2].sum() / rest / 10, 1.0))


def intrinsic_metrics(Z: np.ndarray, mode: Mode = "trajectory") -> dict[str, float]:
    """All intrinsic-geometry scores of a latent matrix.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix.
    mode
        ``"trajectory"`` (default, the paper's tables) or ``"steady_state"``.

    Returns
    -------
    dict
        Keys of :data:`INTRINSIC_METRICS`.
    """
    if mode not in ("trajectory", "steady_state"):
        raise ValueError(f"mode must be 'trajectory' or 'steady_state', got {mode!r}")
    eig = covariance_spectrum(Z)
    if eig.sum() <= 0:
        raise ValueError("intrinsic metrics undefined: Z has zero variance")
    nan = float("nan")
    out: dict[str, float] = {
        "participation_ratio": participation_score(eig, mode),
        "trajectory_directionality": trajectory_directionality(eig),
        "noise_resilience": noise_resilience(eig),
    }
    if eig.size < 2:
        log.warning("intrinsic spectrum shape undefined for a 1-D latent space; reporting NaN")
        out.update(manifold_dimensionality=nan, spectral_decay=nan, anisotropy=nan)
    else:
        out.update(
            manifold_dimensionality=manifold_dimensionality(eig),
            spectral_decay=spectral_decay(eig),
            anisotropy=anisotropy(eig, mode),
        )
    core = float(
        np.mean([out[k] for k in ("manifold_dimensionality", "spectral_decay", "participation_ratio", "anisotropy")])
    )
    out["core_intrinsic_quality"] = core
    if mode == "trajectory":
        overall = 0.5 * core + 0.3 * out["trajectory_directionality"] + 0.2 * out["noise_resilience"]
    else:
        overall = 0.7 * core + 0.3 * out["noise_resilience"]
    out["overall_intrinsic_quality"] = float(overall)
    return {k: out[k] for k in INTRINSIC_METRICS}
