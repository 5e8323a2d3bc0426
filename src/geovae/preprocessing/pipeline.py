"""One entry point for the workflow: ``preprocess(adata, modality, **settings)``."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from anndata import AnnData

from .atac import preprocess_atac, qc_metrics_atac
from .rna import preprocess_rna, qc_metrics_rna

_PIPELINES = {"rna": preprocess_rna, "atac": preprocess_atac}


def preprocess(adata: AnnData, modality: str, **settings: Any) -> AnnData:
    """Run :func:`preprocess_rna` or :func:`preprocess_atac` with config settings.

    Parameters
    ----------
    adata
        Raw AnnData (integer counts in ``.X``); not modified.
    modality
        ``"rna"`` or ``"atac"``.
    **settings
        Keyword parameters of the chosen pipeline (the ``preprocess.<modality>``
        block of the config, e.g. ``min_genes``, ``n_top_genes`` or
        ``binarize``, ``n_top_peaks``).

    Returns
    -------
    AnnData
        The preprocessed AnnData (see the pipeline functions).

    Raises
    ------
    ValueError
        For an unknown modality or a setting the pipeline does not accept.
    """
    if modality not in _PIPELINES:
        raise ValueError(
            f"preprocess: modality must be one of {sorted(_PIPELINES)}, got {modality!r}"
        )
    func = _PIPELINES[modality]
    accepted = [p for p in inspect.signature(func).parameters if p != "adata"]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(
            f"preprocess: unknown {modality} setting(s) {unknown}; accepted: {', '.join(accepted)}"
        )
    return func(adata, **settings)


def qc_metrics(adata: AnnData, modality: str, **settings: Any) -> "pd.DataFrame":
    """Per-cell QC metrics of raw counts for ``modality`` (the ones QC decides on).

    Parameters
    ----------
    adata
        Raw AnnData (integer counts in ``.X``).
    modality
        ``"rna"`` (``n_genes_by_counts``, ``total_counts``, ``pct_counts_mt``) or ``"atac"`` (``n_peaks``,
        ``total_counts``).
    **settings
        The ``preprocess.<modality>`` block; only ``mito_prefix`` is used.

    Returns
    -------
    pandas.DataFrame
        One row per cell.
    """
    if modality == "rna":
        return qc_metrics_rna(adata, **({"mito_prefix": settings["mito_prefix"]} if "mito_prefix" in settings else {}))
    if modality == "atac":
        return qc_metrics_atac(adata)
    raise ValueError(f"qc_metrics: modality must be one of {sorted(_PIPELINES)}, got {modality!r}")
