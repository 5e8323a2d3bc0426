"""Cell QC shared by scRNA-seq and scATAC-seq: fixed thresholds or data-driven (MAD) outliers, per sample.

Adaptive QC flags a cell as an outlier when a QC metric lies more than ``n_mads`` median absolute
deviations from the median of its sample, on a log scale for counts (the scverse single-cell best
practices use 5 unscaled MADs, about 3.4 standard deviations for normal data; scater's ``isOutlier``
uses 3 scaled MADs; Heumos et al. 2023, Nat. Rev. Genet. 24:550, doi:10.1038/s41576-023-00586-w).
A metric whose MAD is 0 in a sample (e.g. no mitochondrial counts at all) flags nobody there. A
floor on detected features always removes empty barcodes. Every decision is recorded per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["QCRule", "mad_bounds", "apply_cell_qc", "QC_WARN_FRACTION"]

#: Below this fraction of cells kept, QC warns (log, preprocessed file, report).
QC_WARN_FRACTION = 0.5


@dataclass(frozen=True)
class QCRule:
    """One way a cell fails QC.

    Attributes
    ----------
    name
        Rule name recorded per sample (e.g. ``"low_genes"``).
    metric
        Column of the per-cell metrics table.
    lower, upper
        Fixed bounds (None: none). For adaptive rules the bounds are computed per sample.
    n_mads
        Adaptive rule: MADs from the sample median (None: a fixed rule).
    side
        Adaptive rule: ``"lower"``, ``"upper"`` or ``"both"``.
    log
        Adaptive rule: compute the bounds on ``log1p(metric)``.
    config_key
        The option a user changes to relax the rule (named in messages).
    """

    name: str
    metric: str
    config_key: str
    lower: float | None = None
    upper: float | None = None
    n_mads: float | None = None
    side: str = "both"
    log: bool = False


def mad_bounds(values: np.ndarray, n_mads: float, side: str = "both", log: bool = False) -> tuple[float, float]:
    """Bounds ``median -+ n_mads * MAD`` of ``values`` (unscaled MAD), on ``log1p`` when ``log``.

    Parameters
    ----------
    values
        One metric of the cells of one sample.
    n_mads
        Number of median absolute deviations.
    side
        ``"lower"``, ``"upper"`` or ``"both"``; the other bound is infinite.
    log
        Bounds on ``log1p(values)``, returned on the original scale.

    Returns
    -------
    (float, float)
        Lower and upper bound; ``(-inf, inf)`` when the MAD is 0 or there are no values.
    """
    x = np.log1p(values) if log else np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return -np.inf, np.inf
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    if mad == 0.0:
        return -np.inf, np.inf
    lo = med - n_mads * mad if side in ("lower", "both") else -np.inf
    hi = med + n_mads * mad if side in ("upper", "both") else np.inf
    if log:
        lo = float(np.expm1(lo)) if np.isfinite(lo) else lo
        hi = float(np.expm1(hi)) if np.isfinite(hi) else hi
    return float(lo), float(hi)


def _fails(rule: QCRule, values: np.ndarray) -> tuple[np.ndarray, float, float]:
    if rule.n_mads is None:
        lo = -np.inf if rule.lower is None else float(rule.lower)
        hi = np.inf if rule.upper is None else float(rule.upper)
    else:
        lo, hi = mad_bounds(values, rule.n_mads, rule.side, rule.log)
    return (values < lo) | (values > hi), lo, hi


def apply_cell_qc(metrics: pd.DataFrame, rules: Sequence[QCRule], samples: np.ndarray | None,
                  what: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Which cells pass every rule, with a per-sample record of what QC did.

    Parameters
    ----------
    metrics
        Per-cell QC metrics (one column per rule metric).
    rules
        Fixed and adaptive rules; adaptive bounds are computed within each sample.
    samples
        Sample of each cell (None: one sample, ``"all"``).
    what
        Name of the calling step in messages (``"qc_rna"``).

    Returns
    -------
    keep : numpy.ndarray of bool
        Cells that pass.
    record : dict
        ``table`` (DataFrame, per sample: cells in, failing each rule, kept, each rule's bounds; NaN
        where a rule has none), ``rules`` (DataFrame: name, metric, config key of each rule),
        ``n_obs_in``, ``n_obs_kept``, ``fraction_kept`` and ``warnings``.

    Raises
    ------
    ValueError
        When no cell passes: names the rule that removed the most cells, the observed median of its
        metric and the config key to change.
    """
    n = len(metrics)
    samples = np.full(n, "all", dtype=object) if samples is None else np.asarray(samples, dtype=str)
    keep = np.ones(n, dtype=bool)
    failed = {rule.name: np.zeros(n, dtype=bool) for rule in rules}
    rows = []
    for sample in pd.unique(samples):
        idx = np.flatnonzero(samples == sample)
        row: dict[str, Any] = {"sample": str(sample), "cells_in": int(idx.size)}
        for rule in rules:
            bad, lo, hi = _fails(rule, metrics[rule.metric].to_numpy(dtype=np.float64)[idx])
            failed[rule.name][idx] = bad
            row[f"removed_{rule.name}"] = int(bad.sum())
            row[f"{rule.name}_min"] = round(lo, 4) if np.isfinite(lo) else np.nan
            row[f"{rule.name}_max"] = round(hi, 4) if np.isfinite(hi) else np.nan
        sample_keep = ~np.any([failed[r.name][idx] for r in rules], axis=0) if rules else np.ones(idx.size, bool)
        keep[idx] = sample_keep
        row["cells_kept"] = int(sample_keep.sum())
        rows.append(row)
    if n and not keep.any():
        worst = max(rules, key=lambda r: failed[r.name].sum())
        median = float(np.median(metrics[worst.metric]))
        raise ValueError(
            f"{what}: QC removed all {n} cells; rule {worst.name!r} alone removed {int(failed[worst.name].sum())} "
            f"(median {worst.metric} {median:.4g}); change config key {worst.config_key}")
    kept = int(keep.sum())
    record: dict[str, Any] = {"table": pd.DataFrame(rows), "n_obs_in": n,
                              "rules": pd.DataFrame([{"name": r.name, "metric": r.metric, "config_key": r.config_key}
                                                     for r in rules]), "n_obs_kept": kept,
                              "fraction_kept": round(kept / n, 4) if n else 0.0, "warnings": []}
    if n and kept / n < QC_WARN_FRACTION:
        counts = ", ".join(f"{r.name} {int(failed[r.name].sum())}" for r in rules)
        record["warnings"].append(
            f"{what}: QC kept {kept} of {n} cells ({100 * kept / n:.0f} %); cells failing each rule: {counts}; "
            f"see the QC figure and relax {', '.join(sorted({r.config_key for r in rules}))} if this is wrong")
    return keep, record
