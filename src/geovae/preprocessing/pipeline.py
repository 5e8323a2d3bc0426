"""One entry point for the workflow: ``preprocess(adata, modality, **settings)``."""

from __future__ import annotations

import inspect
from typing import Any

from anndata import AnnData

from .atac import preprocess_atac
from .rna import preprocess_rna

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
