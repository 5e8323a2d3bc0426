"""scRNA-seq preprocessing: QC, highly variable genes, log-normalization.

Defaults follow the LiVAE paper (section 2.6.2): top 5,000 HVGs chosen by
modelling the mean-variance relationship of the counts (scanpy's
``flavor="seurat_v3"``), log1p of library-size-normalized counts, then a
per-gene z-score clipped at +-10 that the data loader applies per minibatch
(see :mod:`geovae.preprocessing.input`). The QC thresholds (200 genes per cell,
3 cells per gene, 20 % mitochondrial reads) are the usual scanpy tutorial
values; the paper does not state its own.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from ..options import RNA
from ._sparse import (
    as_csr,
    check_counts,
    col_positive_counts,
    row_positive_counts,
    scale_rows,
)
from .input import set_model_input
from .qc import QCRule, apply_cell_qc

_COUNT_FLAVORS = ("seurat_v3", "seurat_v3_paper")


def _prefixes(mito_prefix: str | Sequence[str]) -> tuple[str, ...]:
    return (mito_prefix,) if isinstance(mito_prefix, str) else tuple(mito_prefix)


def qc_metrics_rna(adata: AnnData, mito_prefix: str | Sequence[str] = RNA.mito_prefix) -> pd.DataFrame:
    """Per-cell QC metrics of raw counts: ``n_genes_by_counts``, ``total_counts``, ``pct_counts_mt`` (scanpy's names).

    Parameters
    ----------
    adata
        AnnData with raw integer counts in ``.X``.
    mito_prefix
        Gene-name prefix(es) marking mitochondrial genes.

    Returns
    -------
    pandas.DataFrame
        One row per cell (index ``obs_names``).
    """
    X = as_csr(adata.X)
    check_counts(X, "adata.X")
    total = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    mito = _mito_mask(adata, mito_prefix)
    mito_total = np.asarray(X[:, mito].sum(axis=1), dtype=np.float64).ravel()
    pct_mito = np.divide(100.0 * mito_total, total, out=np.zeros_like(total), where=total > 0)
    return pd.DataFrame({"n_genes_by_counts": row_positive_counts(X), "total_counts": total, "pct_counts_mt": pct_mito},
                        index=adata.obs_names)


def _mito_mask(adata: AnnData, mito_prefix: str | Sequence[str]) -> np.ndarray:
    return np.asarray(adata.var_names.str.startswith(_prefixes(mito_prefix)), dtype=bool)


def qc_rules_rna(qc: str = RNA.qc, min_genes: int = RNA.min_genes, max_pct_mito: float = RNA.max_pct_mito,
                 n_mads: float = RNA.n_mads, mito_n_mads: float = RNA.mito_n_mads,
                 min_genes_floor: int = RNA.min_genes_floor) -> list[QCRule]:
    """The cell QC rules of one mode (see :mod:`geovae.preprocessing.qc`).

    Parameters
    ----------
    qc
        ``"adaptive"`` or ``"fixed"``.
    min_genes, max_pct_mito
        Fixed thresholds (``qc="fixed"``).
    n_mads, mito_n_mads, min_genes_floor
        Adaptive outliers and the floor of detected genes (``qc="adaptive"``).

    Returns
    -------
    list of QCRule
    """
    key = "preprocess.rna."
    if qc == "fixed":
        return [QCRule("min_genes", "n_genes_by_counts", key + "min_genes", lower=min_genes),
                QCRule("max_pct_mito", "pct_counts_mt", key + "max_pct_mito", upper=max_pct_mito)]
    if qc != "adaptive":
        raise ValueError(f"qc_rna: qc must be 'adaptive' or 'fixed', got {qc!r} (config key {key}qc)")
    return [QCRule("empty_barcode", "n_genes_by_counts", key + "min_genes_floor", lower=min_genes_floor),
            QCRule("outlier_counts", "total_counts", key + "n_mads", n_mads=n_mads, log=True),
            QCRule("outlier_genes", "n_genes_by_counts", key + "n_mads", n_mads=n_mads, log=True),
            QCRule("outlier_mito", "pct_counts_mt", key + "mito_n_mads", n_mads=mito_n_mads, side="upper")]


def qc_rna(
    adata: AnnData,
    min_genes: int = RNA.min_genes,
    min_cells: int = RNA.min_cells,
    max_pct_mito: float = RNA.max_pct_mito,
    mito_prefix: str | Sequence[str] = RNA.mito_prefix,
    qc: str = RNA.qc,
    n_mads: float = RNA.n_mads,
    mito_n_mads: float = RNA.mito_n_mads,
    min_genes_floor: int = RNA.min_genes_floor,
    qc_sample_key: str = RNA.qc_sample_key,
) -> AnnData:
    """Filter cells and genes of a raw-count scRNA-seq AnnData.

    ``qc="adaptive"`` (default) removes empty barcodes (fewer than ``min_genes_floor`` genes) and,
    within each sample (``obs[qc_sample_key]`` when present), cells more than ``n_mads`` MADs from
    the median of log total counts or log detected genes, or more than ``mito_n_mads`` MADs above
    the median mitochondrial percentage. ``qc="fixed"`` keeps cells with at least ``min_genes``
    genes and at most ``max_pct_mito`` percent mitochondrial counts. Then genes detected in at least
    ``min_cells`` kept cells are kept. The input is not modified.

    Parameters
    ----------
    adata
        AnnData with raw integer counts in ``.X``.
    min_genes, max_pct_mito
        Fixed QC thresholds.
    min_cells
        Minimum number of kept cells in which a gene is detected.
    mito_prefix
        Gene-name prefix(es) marking mitochondrial genes.
    qc
        ``"adaptive"`` or ``"fixed"``.
    n_mads, mito_n_mads, min_genes_floor, qc_sample_key
        Adaptive QC settings (see :mod:`geovae.preprocessing.qc`).

    Returns
    -------
    AnnData
        Filtered copy with CSR float32 ``.X``; ``obs`` gains ``n_genes_by_counts``, ``total_counts`` and
        ``pct_counts_mt`` (computed before filtering; scanpy's names), ``var`` gains ``mt`` and ``n_cells``;
        ``uns["geovae_qc"]`` records per sample the cells in, removed by each rule, kept, and the
        bounds used, plus warnings when fewer than half of the cells are kept.

    Raises
    ------
    ValueError
        If ``.X`` is not integer counts, or no cell or no gene passes (naming the rule, the observed
        median and the config key to change).
    """
    X = as_csr(adata.X)
    metrics = qc_metrics_rna(adata, mito_prefix)
    samples = adata.obs[qc_sample_key].to_numpy() if qc_sample_key in adata.obs else None
    rules = qc_rules_rna(qc, min_genes, max_pct_mito, n_mads, mito_n_mads, min_genes_floor)
    keep_cells, record = apply_cell_qc(metrics, rules, samples, "qc_rna")
    n_cells = col_positive_counts(X[keep_cells])
    keep_genes = n_cells >= min_cells
    if not keep_genes.any():
        raise ValueError(
            f"qc_rna: no gene is detected in min_cells={min_cells} of the {int(keep_cells.sum())} cells kept "
            f"of {adata.n_obs}; lower preprocess.rna.min_cells, or keep more cells (QC record: {record['table']})")

    mito = _mito_mask(adata, mito_prefix)
    # everything but X copied through a shell sharing adata's parts (X itself is subset once, below)
    shell = AnnData(obs=adata.obs, var=adata.var, uns=adata.uns, obsm=adata.obsm, varm=adata.varm,
                    obsp=adata.obsp, varp=adata.varp, layers=adata.layers)
    out = shell[keep_cells, keep_genes].copy()
    kept_X = X if keep_cells.all() else X[keep_cells]
    kept_X = kept_X if keep_genes.all() else kept_X[:, keep_genes]
    raw_data = adata.X.data if sp.issparse(adata.X) else adata.X
    out.X = kept_X.copy() if np.may_share_memory(kept_X.data, raw_data) else kept_X  # adata stays untouched
    kept = metrics[keep_cells]
    out.obs["n_genes_by_counts"] = kept["n_genes_by_counts"].to_numpy(np.int64)
    out.obs["total_counts"] = kept["total_counts"].to_numpy(np.float32)
    out.obs["pct_counts_mt"] = kept["pct_counts_mt"].to_numpy(np.float32)
    out.var["mt"] = mito[keep_genes]
    out.var["n_cells"] = n_cells[keep_genes].astype(np.int64)
    out.uns["geovae_qc"] = {"modality": "rna", "mode": qc, "sample_key": qc_sample_key if samples is not None else "",
                            "n_vars_in": int(adata.n_vars), "n_vars_kept": int(keep_genes.sum()), **record}
    return out


def log_normalize(adata: AnnData, target_sum: float = 1e4) -> AnnData:
    """Library-size normalize and log1p, keeping the counts (in place, sparse).

    ``X_ij <- log1p(target_sum * c_ij / sum_j c_ij)`` where ``c`` are the
    counts; the counts are first saved to ``layers["counts"]`` (if that layer
    does not exist yet they are taken from ``.X``). Cells with zero counts stay 0.

    Parameters
    ----------
    adata
        AnnData with integer counts in ``layers["counts"]`` or ``.X``.
    target_sum
        Counts per cell after normalization (scanpy ``normalize_total`` default 1e4).

    Returns
    -------
    AnnData
        The same object, for chaining.
    """
    where = "adata.layers['counts']" if "counts" in adata.layers else "adata.X"
    counts = as_csr(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    check_counts(counts, where)
    total = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    factors = np.divide(target_sum, total, out=np.zeros_like(total), where=total > 0)
    norm = scale_rows(counts, factors)
    np.log1p(norm.data, out=norm.data)
    adata.layers["counts"] = counts
    adata.X = norm
    return adata



@contextlib.contextmanager
def _keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after code whose OpenMP runtime resets it
    (scanpy's seurat_v3 HVG via numba/scikit-misc); a no-op when torch is not imported."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

def hvg(
    adata: AnnData,
    n_top_genes: int = 5000,
    flavor: str = "seurat_v3",
    layer: str | None = None,
    subset: bool = False,
) -> AnnData:
    """Select highly variable genes with scanpy (``var["highly_variable"]``).

    With ``flavor="seurat_v3"`` (default, as in the paper's mean-variance
    modelling of count data) the genes are ranked on raw counts taken from
    ``layer`` (default: ``layers["counts"]`` if present, else ``.X``); it needs
    the ``scikit-misc`` package. Other scanpy flavors (``"seurat"``,
    ``"cell_ranger"``) are computed on a temporary log1p-normalized copy.
    ``n_top_genes`` is capped at the number of genes.

    Parameters
    ----------
    adata
        AnnData with raw counts available.
    n_top_genes
        Number of genes to select.
    flavor
        scanpy ``highly_variable_genes`` flavor.
    layer
        Layer holding the counts; ``None`` picks ``"counts"`` when present, else ``.X``.
    subset
        Return a copy restricted to the selected genes instead of annotating only.

    Returns
    -------
    AnnData
        ``adata`` annotated in place (``subset=False``) or the subset copy. The
        scanpy columns (``highly_variable``, ``highly_variable_rank``, ``means``,
        ``variances``, ``variances_norm`` for seurat_v3) are written to ``var``.
    """
    if n_top_genes < 1:
        raise ValueError(f"hvg: n_top_genes must be >= 1, got {n_top_genes}")
    if layer is None and "counts" in adata.layers:
        layer = "counts"
    counts = as_csr(adata.layers[layer] if layer is not None else adata.X)
    check_counts(counts, f"adata.layers['{layer}']" if layer else "adata.X")
    n_top = int(min(n_top_genes, adata.n_vars))

    tmp = AnnData(X=counts, obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    if flavor not in _COUNT_FLAVORS:
        log_normalize(tmp)
    with _keep_torch_threads():
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor=flavor)
    for col in tmp.var.columns:
        adata.var[col] = tmp.var[col].to_numpy()
    adata.var["highly_variable"] = adata.var["highly_variable"].astype(bool)
    adata.uns["hvg"] = {"flavor": flavor, "n_top_genes": n_top}
    if subset:
        return adata[:, adata.var["highly_variable"].to_numpy()].copy()
    return adata


def preprocess_rna(
    adata: AnnData,
    *,
    min_genes: int = RNA.min_genes,
    min_cells: int = RNA.min_cells,
    max_pct_mito: float = RNA.max_pct_mito,
    mito_prefix: str | Sequence[str] = RNA.mito_prefix,
    qc: str = RNA.qc,
    n_mads: float = RNA.n_mads,
    mito_n_mads: float = RNA.mito_n_mads,
    min_genes_floor: int = RNA.min_genes_floor,
    qc_sample_key: str = RNA.qc_sample_key,
    n_top_genes: int = RNA.n_top_genes,
    hvg_flavor: str = RNA.hvg_flavor,
    target_sum: float = RNA.target_sum,
    center_scale: bool = RNA.center_scale,
    clip: float | None = RNA.clip,
) -> AnnData:
    """Full scRNA-seq preprocessing to the geovae "preprocessed" convention.

    Steps: :func:`qc_rna` -> :func:`log_normalize` (library size over all genes
    kept by QC, scanpy convention) -> :func:`hvg` on counts (subset) ->
    :func:`~geovae.preprocessing.input.set_model_input`.

    Parameters
    ----------
    adata
        Raw AnnData, integer counts in ``.X``. Not modified.
    min_genes, min_cells, max_pct_mito, mito_prefix, qc, n_mads, mito_n_mads, min_genes_floor, qc_sample_key
        See :func:`qc_rna` (default: adaptive QC per sample).
    n_top_genes, hvg_flavor
        See :func:`hvg` (paper: 5,000 genes).
    target_sum
        See :func:`log_normalize`.
    center_scale, clip
        Model-input recipe (paper: z-score, clip at +-10).

    Returns
    -------
    AnnData
        ``layers["counts"]`` raw counts (CSR) of the kept genes, ``.X`` sparse
        log1p-normalized values, ``var["input_mean"]``/``var["input_std"]``,
        ``uns["geovae_input"]`` and all parameters in ``uns["geovae_preprocess"]``.
    """
    n_obs_in, n_vars_in = adata.n_obs, adata.n_vars
    out = qc_rna(adata, min_genes, min_cells, max_pct_mito, mito_prefix, qc, n_mads, mito_n_mads, min_genes_floor,
                 qc_sample_key)
    n_obs_qc, n_vars_qc = out.n_obs, out.n_vars
    log_normalize(out, target_sum)
    hvg(out, n_top_genes, hvg_flavor, layer="counts")
    if not out.var["highly_variable"].all():  # no copy when every gene is kept
        out = out[:, out.var["highly_variable"].to_numpy()].copy()
    set_model_input(out, "rna", center_scale, clip)
    out.uns["geovae_preprocess"] = {
        "modality": "rna",
        "qc": qc,
        "n_mads": float(n_mads),
        "mito_n_mads": float(mito_n_mads),
        "min_genes_floor": int(min_genes_floor),
        "min_genes": int(min_genes),
        "min_cells": int(min_cells),
        "max_pct_mito": float(max_pct_mito),
        "mito_prefix": list(_prefixes(mito_prefix)),
        "n_top_genes": int(n_top_genes),
        "hvg_flavor": hvg_flavor,
        "target_sum": float(target_sum),
        "library_size": "total counts over all genes kept by QC (before HVG subsetting)",
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
