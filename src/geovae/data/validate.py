"""Checks that an AnnData holds raw integer counts, and coercion to CSR float32.

Pipeline convention: after acquisition ``.X`` is a scipy CSR matrix of integer
counts (float32 dtype allowed) with unique ``obs_names`` and ``var_names``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["as_counts_csr", "check_counts", "check_trainable"]

# Values this close to an integer count as integers (float32 round-off of
# counts stored as float).
_INT_TOL = 1e-4


def _values(x: object) -> np.ndarray:
    """Return the stored values of a dense or sparse matrix as a flat array."""
    if sp.issparse(x):
        return np.asarray(x.data)  # type: ignore[union-attr]
    return np.asarray(x).ravel()


def _duplicates(names: object, limit: int = 5) -> list[str]:
    import pandas as pd

    index = pd.Index(names)
    return [str(v) for v in index[index.duplicated()].unique()[:limit]]


def check_counts(adata: AnnData, source: str) -> None:
    """Raise ``ValueError`` unless ``adata.X`` looks like raw integer counts.

    Parameters
    ----------
    adata
        Object to check (``.X`` dense or sparse, cells x features).
    source
        File or data set name quoted in error messages, e.g. the path that was read.

    Raises
    ------
    ValueError
        If the matrix is empty, contains NaN/inf, negative or non-integer
        values ("looks normalized"), or if cell or feature names are not unique.
    """
    if adata.X is None:
        raise ValueError(f"{source}: the AnnData has no .X matrix")
    n_obs, n_vars = adata.shape
    if n_obs == 0 or n_vars == 0:
        raise ValueError(f"{source}: empty count matrix ({n_obs} cells x {n_vars} features)")
    values = _values(adata.X)
    if values.size == 0 or not np.any(values):
        raise ValueError(f"{source}: empty count matrix (all {n_obs} x {n_vars} entries are zero)")
    if not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
        raise ValueError(f"{source}: count matrix has non-numeric dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            raise ValueError(
                f"{source}: count matrix contains {int((~finite).sum())} NaN/inf values"
            )
    vmin = values.min()
    if vmin < 0:
        raise ValueError(
            f"{source}: count matrix has negative values (min {float(vmin):g}); "
            "it looks normalized or scaled, raw integer counts are required"
        )
    if np.issubdtype(values.dtype, np.floating):
        frac = np.abs(values - np.round(values))
        bad = frac > _INT_TOL
        if bad.any():
            example = float(values[np.argmax(bad)])
            raise ValueError(
                f"{source}: count matrix has {int(bad.sum())} non-integer values "
                f"(e.g. {example:g}); it looks normalized (log/CPM/TPM), raw integer "
                "counts are required"
            )
    for axis, names in (("cell (obs)", adata.obs_names), ("feature (var)", adata.var_names)):
        if not names.is_unique:
            raise ValueError(
                f"{source}: {axis} names are not unique, e.g. {_duplicates(names)}"
            )


def as_counts_csr(adata: AnnData) -> AnnData:
    """Coerce ``adata.X`` in place to a canonical ``scipy.sparse.csr_matrix`` of float32.

    Dense arrays and other sparse formats are converted, duplicate entries
    summed, explicit zeros removed and indices sorted.

    Parameters
    ----------
    adata
        Object whose ``.X`` is converted (modified in place).

    Returns
    -------
    AnnData
        The same object, for chaining.
    """
    x = adata.X
    if x is None:
        raise ValueError("as_counts_csr: the AnnData has no .X matrix")
    if sp.issparse(x):
        csr = sp.csr_matrix(x, dtype=np.float32)
    else:
        csr = sp.csr_matrix(np.asarray(x, dtype=np.float32))
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    adata.X = csr
    return adata


def check_trainable(adata: AnnData, dataset: str, latent_dim: int | None = None,
                    batch_size: int | None = None) -> list[str]:
    """Raise ``ValueError`` when ``adata`` is too small to train a model on; return warnings.

    Parameters
    ----------
    adata
        Preprocessed data the model is trained on.
    dataset
        Dataset id quoted in the messages.
    latent_dim
        Latent dimensions of the model (config field ``<model>.latent_dim``).
    batch_size
        Minibatch size (config field ``train.batch_size``).

    Returns
    -------
    list of str
        Warnings: fewer cells than ``batch_size`` (training then uses all cells in every step).

    Raises
    ------
    ValueError
        No features, fewer than 2 cells, or fewer cells than ``latent_dim`` (the latent
        space would have more dimensions than there are cells to span it).
    """
    n_obs, n_vars = adata.shape
    if n_obs < 2 or n_vars == 0:
        raise ValueError(f"dataset '{dataset}': {n_obs} cells x {n_vars} features left after preprocessing; "
                         "at least 2 cells and 1 feature are needed to train (check the QC thresholds in "
                         "config 'preprocess')")
    if latent_dim is not None and n_obs < int(latent_dim):
        raise ValueError(f"dataset '{dataset}': {n_obs} cells, fewer than the latent dimensions "
                         f"(field latent_dim = {latent_dim}); lower latent_dim or use more cells")
    warnings: list[str] = []
    if batch_size is not None and n_obs < int(batch_size):
        warnings.append(f"dataset '{dataset}': {n_obs} cells, fewer than train.batch_size = {batch_size}; "
                        "every step uses all cells")
    return warnings
