"""scATAC-seq preprocessing: QC, optional binarization, TF-IDF, highly variable peaks.

TF-IDF (LiVAE paper: Fu et al., *Lorentz-regularized interpretable VAE for
multi-scale single-cell transcriptomic and epigenomic embeddings*, Front. Genet.
16 (2025), doi:10.3389/fgene.2025.1713727; section 2.6.3, Equation 21). The text
of the paper defines the term frequency of cell ``i`` and peak ``j`` from the
counts of the cell, the inverse document frequency from ``N`` (number of cells)
and ``n_j`` (number of cells in which peak ``j`` is accessible), and a scaling
factor ``s``; the symbols of the equation itself are not legible in the text
version we worked from. We implement, for a count matrix ``x`` (cells x peaks)::

    TF_ij  = x_ij / sum_k x_ik                 (fraction of the cell's counts)
    IDF_j  = log(1 + N / n_j)                  (n_j = #cells with x_ij > 0)
    X_ij   = log(1 + s * TF_ij * IDF_j)        (s = scale_factor = 1e4; log=True)
    X_ij   = s * TF_ij * IDF_j                 (log=False)

This keeps zeros at zero (sparse in, sparse out). It is the Signac
``RunTFIDF(method=1)`` form (``log1p(s * TF * IDF)``) with the smoothed IDF
``log(1 + N/n_j)`` used by the LiVAE authors' wording; a peak never observed
gets IDF 0. Highly variable peaks follow the same section: variance of the
TF-IDF values over peaks accessible in 1 %..95 % of cells, top 10,000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from numpy.typing import ArrayLike

from ..options import ATAC
from ._sparse import (
    as_csr,
    check_counts,
    col_mean_var,
    col_positive_counts,
    row_positive_counts,
    scale_rows,
)
from .input import set_model_input
from .qc import QCRule, apply_cell_qc


def qc_metrics_atac(adata: AnnData) -> pd.DataFrame:
    """Per-cell QC metrics of raw scATAC counts: ``n_peaks`` (accessible peaks) and ``total_counts``.

    Parameters
    ----------
    adata
        AnnData with raw integer counts in ``.X``.

    Returns
    -------
    pandas.DataFrame
        One row per cell (index ``obs_names``).
    """
    X = as_csr(adata.X)
    check_counts(X, "adata.X")
    return pd.DataFrame({"n_peaks": row_positive_counts(X),
                         "total_counts": np.asarray(X.sum(axis=1), dtype=np.float64).ravel()},
                        index=adata.obs_names)


def qc_atac(adata: AnnData, min_peaks: int = ATAC.min_peaks, min_cells: int = ATAC.min_cells,
            qc: str = ATAC.qc, n_mads: float = ATAC.n_mads, qc_sample_key: str = ATAC.qc_sample_key) -> AnnData:
    """Filter cells and peaks of a raw-count scATAC-seq AnnData.

    The paper gives no ATAC QC thresholds. Cells need at least ``min_peaks`` accessible peaks (both
    modes); ``qc="adaptive"`` (default) also removes, within each sample (``obs[qc_sample_key]``
    when present), cells more than ``n_mads`` MADs from the median of log total counts or log
    accessible peaks (see :mod:`geovae.preprocessing.qc`). Then peaks accessible in at least
    ``min_cells`` kept cells are kept. The fraction of reads in peaks is not used: the count
    matrices of GEO deposits do not carry the reads outside peaks.

    Parameters
    ----------
    adata
        AnnData with raw integer counts in ``.X`` (cells x peaks).
    min_peaks
        Minimum number of peaks with count > 0 per cell.
    min_cells
        Minimum number of kept cells in which a peak is accessible.
    qc
        ``"adaptive"`` or ``"fixed"``.
    n_mads, qc_sample_key
        Adaptive QC settings.

    Returns
    -------
    AnnData
        Filtered copy with CSR float32 ``.X``; ``obs`` gains ``n_peaks`` and ``total_counts``, ``var``
        gains ``n_cells``; ``uns["geovae_qc"]`` records what QC did per sample.

    Raises
    ------
    ValueError
        If ``.X`` is not integer counts or nothing passes the filters (naming the rule, the observed
        median and the config key to change).
    """
    X = as_csr(adata.X)
    metrics = qc_metrics_atac(adata)
    key = "preprocess.atac."
    rules = [QCRule("min_peaks", "n_peaks", key + "min_peaks", lower=min_peaks)]
    if qc == "adaptive":
        rules += [QCRule("outlier_counts", "total_counts", key + "n_mads", n_mads=n_mads, log=True),
                  QCRule("outlier_peaks", "n_peaks", key + "n_mads", n_mads=n_mads, log=True)]
    elif qc != "fixed":
        raise ValueError(f"qc_atac: qc must be 'adaptive' or 'fixed', got {qc!r} (config key {key}qc)")
    samples = adata.obs[qc_sample_key].to_numpy() if qc_sample_key in adata.obs else None
    keep_cells, record = apply_cell_qc(metrics, rules, samples, "qc_atac")
    n_cells = col_positive_counts(X[keep_cells])
    keep_peaks = n_cells >= min_cells
    if not keep_peaks.any():
        raise ValueError(
            f"qc_atac: no peak is accessible in min_cells={min_cells} of the {int(keep_cells.sum())} cells kept "
            f"of {adata.n_obs}; lower {key}min_cells, or keep more cells")
    out = adata[keep_cells, keep_peaks].copy()
    out.X = X[keep_cells][:, keep_peaks]
    out.obs["n_peaks"] = metrics["n_peaks"].to_numpy(np.int64)[keep_cells]
    out.obs["total_counts"] = metrics["total_counts"].to_numpy(np.float32)[keep_cells]
    out.var["n_cells"] = n_cells[keep_peaks].astype(np.int64)
    out.uns["geovae_qc"] = {"modality": "atac", "mode": qc, "sample_key": qc_sample_key if samples is not None else "",
                            "n_vars_in": int(adata.n_vars), "n_vars_kept": int(keep_peaks.sum()), **record}
    return out


def binarize(adata: AnnData) -> AnnData:
    """Set every positive count to 1, in ``.X`` and ``layers["counts"]`` (in place).

    Parameters
    ----------
    adata
        AnnData with counts.

    Returns
    -------
    AnnData
        The same object, for chaining; ``uns["binarized"] = True``.
    """
    def _bin(M: ArrayLike | sp.spmatrix) -> sp.csr_matrix:
        B = as_csr(M).copy()
        B.data = (B.data > 0).astype(np.float32)
        B.eliminate_zeros()
        return B

    adata.X = _bin(adata.X)
    if "counts" in adata.layers:
        adata.layers["counts"] = _bin(adata.layers["counts"])
    adata.uns["binarized"] = True
    return adata


_binarize_adata = binarize  # alias: preprocess_atac's ``binarize`` flag shadows the name


def tfidf_matrix(
    counts: ArrayLike | sp.spmatrix, scale_factor: float = 1e4, log: bool = True
) -> sp.csr_matrix:
    """TF-IDF transform of a cells x peaks count matrix (see module docstring).

    Parameters
    ----------
    counts
        Non-negative counts, sparse or dense.
    scale_factor
        ``s`` in ``log1p(s * TF * IDF)``.
    log
        Apply ``log1p`` (default) or return ``s * TF * IDF``.

    Returns
    -------
    scipy.sparse.csr_matrix
        float32 matrix with the sparsity pattern of the positive counts.
    """
    X = as_csr(counts, dtype=np.float64)
    if X.data.size and X.data.min() < 0:
        raise ValueError("tfidf: counts must be non-negative")
    X = X.copy()
    X.eliminate_zeros()
    n_cells = X.shape[0]
    row_tot = np.asarray(X.sum(axis=1)).ravel()
    n_j = col_positive_counts(X).astype(np.float64)
    idf = np.zeros(X.shape[1])
    seen = n_j > 0
    idf[seen] = np.log1p(n_cells / n_j[seen])
    inv_tot = np.divide(1.0, row_tot, out=np.zeros_like(row_tot), where=row_tot > 0)
    T = scale_rows(X, inv_tot * scale_factor)  # s * TF
    T.data *= idf[T.indices]
    if log:
        np.log1p(T.data, out=T.data)
    return T.astype(np.float32)


def tfidf(
    adata: AnnData, scale_factor: float = 1e4, log: bool = True, layer: str | None = None
) -> AnnData:
    """TF-IDF normalize an scATAC-seq AnnData in place (sparse in, sparse out).

    Counts are read from ``layer`` (default: ``layers["counts"]`` if present,
    else ``.X``) and saved to ``layers["counts"]``; ``.X`` becomes the TF-IDF
    matrix of :func:`tfidf_matrix` and ``uns["tfidf"]`` records the parameters.

    Parameters
    ----------
    adata
        AnnData with integer counts.
    scale_factor
        Scaling factor ``s`` (paper: a scaling factor; 1e4 as in Signac).
    log
        Apply ``log1p``.
    layer
        Layer holding the counts.

    Returns
    -------
    AnnData
        The same object, for chaining.
    """
    if layer is None and "counts" in adata.layers:
        layer = "counts"
    counts = as_csr(adata.layers[layer] if layer is not None else adata.X)
    check_counts(counts, f"adata.layers['{layer}']" if layer else "adata.X")
    adata.layers["counts"] = counts
    adata.X = tfidf_matrix(counts, scale_factor, log)
    adata.uns["tfidf"] = {
        "scale_factor": float(scale_factor),
        "log": bool(log),
        "formula": "log1p(s * x_ij / sum_k x_ik * log(1 + N / n_j))" if log
        else "s * x_ij / sum_k x_ik * log(1 + N / n_j)",
    }
    return adata


def hvp(
    adata: AnnData,
    n_top_peaks: int = 10000,
    min_frac: float = 0.01,
    max_frac: float = 0.95,
    subset: bool = False,
) -> AnnData:
    """Select highly variable peaks on TF-IDF values (LiVAE paper, section 2.6.3).

    Among peaks accessible (count > 0) in a fraction of cells within
    ``[min_frac, max_frac]``, the ``n_top_peaks`` with the largest variance of
    the TF-IDF values in ``.X`` are selected (ties broken by peak order).
    Requires :func:`tfidf` to have been run.

    Parameters
    ----------
    adata
        AnnData after :func:`tfidf` (``.X`` TF-IDF, ``layers["counts"]`` counts).
    n_top_peaks
        Number of peaks to keep (capped at the number of peaks in the window).
    min_frac, max_frac
        Inclusive bounds on the fraction of cells in which a peak is accessible.
    subset
        Return a copy restricted to the selected peaks instead of annotating only.

    Returns
    -------
    AnnData
        ``adata`` annotated in place, or the subset copy. ``var`` gains
        ``frac_cells``, ``tfidf_var``, ``highly_variable`` (bool) and
        ``highly_variable_rank`` (0 = most variable, NaN if not selected).
    """
    if "tfidf" not in adata.uns:
        raise ValueError("hvp: adata.uns['tfidf'] is missing; run tfidf(adata) first")
    if not 0.0 <= min_frac <= max_frac <= 1.0:
        raise ValueError(f"hvp: need 0 <= min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
    if n_top_peaks < 1:
        raise ValueError(f"hvp: n_top_peaks must be >= 1, got {n_top_peaks}")
    counts = as_csr(adata.layers["counts"])
    frac = col_positive_counts(counts) / adata.n_obs
    _, var = col_mean_var(as_csr(adata.X))
    in_window = (frac >= min_frac) & (frac <= max_frac)
    if not in_window.any():
        raise ValueError(
            f"hvp: no peak is accessible in {min_frac:.2%}..{max_frac:.2%} of the "
            f"{adata.n_obs} cells"
        )
    candidates = np.flatnonzero(in_window)
    order = candidates[np.argsort(-var[candidates], kind="stable")]
    chosen = order[: min(n_top_peaks, order.size)]
    rank = np.full(adata.n_vars, np.nan)
    rank[chosen] = np.arange(chosen.size)
    selected = np.zeros(adata.n_vars, dtype=bool)
    selected[chosen] = True
    adata.var["frac_cells"] = frac.astype(np.float32)
    adata.var["tfidf_var"] = var.astype(np.float32)
    adata.var["highly_variable"] = selected
    adata.var["highly_variable_rank"] = rank
    adata.uns["hvp"] = {
        "n_top_peaks": int(n_top_peaks),
        "min_frac": float(min_frac),
        "max_frac": float(max_frac),
        "n_selected": int(chosen.size),
    }
    if subset:
        return adata[:, selected].copy()
    return adata


def preprocess_atac(
    adata: AnnData,
    *,
    qc: str = ATAC.qc,
    n_mads: float = ATAC.n_mads,
    qc_sample_key: str = ATAC.qc_sample_key,
    min_peaks: int = ATAC.min_peaks,
    min_cells: int = ATAC.min_cells,
    binarize: bool = ATAC.binarize,
    scale_factor: float = ATAC.scale_factor,
    log: bool = ATAC.log,
    n_top_peaks: int = ATAC.n_top_peaks,
    min_frac: float = ATAC.min_frac,
    max_frac: float = ATAC.max_frac,
    center_scale: bool = ATAC.center_scale,
    clip: float | None = ATAC.clip,
) -> AnnData:
    """Full scATAC-seq preprocessing to the geovae "preprocessed" convention.

    Steps: :func:`qc_atac` -> optional :func:`binarize` -> :func:`tfidf` on
    all kept peaks -> :func:`hvp` (subset) ->
    :func:`~geovae.preprocessing.input.set_model_input`. The z-score/clip at
    +-10 mirrors the RNA recipe: a peak open in 1 % of cells has a z-score of
    about ``sqrt(1/0.01) = 10`` where it is open, so the clip only trims
    extreme outliers.

    Parameters
    ----------
    adata
        Raw AnnData, integer counts in ``.X``. Not modified.
    min_peaks, min_cells, qc, n_mads, qc_sample_key
        See :func:`qc_atac`.
    binarize
        Binarize the counts first (config key ``binarize``); ``layers["counts"]``
        then holds the 0/1 matrix the model is trained on.
    scale_factor, log
        See :func:`tfidf`.
    n_top_peaks, min_frac, max_frac
        See :func:`hvp` (paper: 10,000 peaks, 1 %..95 %).
    center_scale, clip
        Model-input recipe.

    Returns
    -------
    AnnData
        ``layers["counts"]`` counts (CSR) of the kept peaks, ``.X`` sparse
        TF-IDF, ``var["input_mean"]``/``var["input_std"]``,
        ``uns["geovae_input"]`` and all parameters in ``uns["geovae_preprocess"]``.
    """
    n_obs_in, n_vars_in = adata.n_obs, adata.n_vars
    out = qc_atac(adata, min_peaks, min_cells, qc, n_mads, qc_sample_key)
    n_obs_qc, n_vars_qc = out.n_obs, out.n_vars
    if binarize:
        _binarize_adata(out)
    tfidf(out, scale_factor, log)
    out = hvp(out, n_top_peaks, min_frac, max_frac, subset=True)
    set_model_input(out, "atac", center_scale, clip)
    out.uns["geovae_preprocess"] = {
        "modality": "atac",
        "qc": qc,
        "n_mads": float(n_mads),
        "min_peaks": int(min_peaks),
        "min_cells": int(min_cells),
        "binarize": bool(binarize),
        "scale_factor": float(scale_factor),
        "log": bool(log),
        "tfidf_formula": out.uns["tfidf"]["formula"],
        "n_top_peaks": int(n_top_peaks),
        "min_frac": float(min_frac),
        "max_frac": float(max_frac),
        "center_scale": bool(center_scale),
        "clip": None if clip is None else float(clip),
        "n_obs_input": int(n_obs_in),
        "n_vars_input": int(n_vars_in),
        "n_obs_after_qc": int(n_obs_qc),
        "n_vars_after_qc": int(n_vars_qc),
        "n_obs": int(out.n_obs),
        "n_vars": int(out.n_vars),
    }
    return out
