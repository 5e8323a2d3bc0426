"""Small sparse-matrix helpers shared by the preprocessing modules.

Everything here works on the stored non-zeros of a CSR matrix so that a count
matrix is never densified as a whole.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike


def as_csr(X: ArrayLike | sp.spmatrix, dtype: type = np.float32) -> sp.csr_matrix:
    """Return ``X`` as a canonical CSR matrix of ``dtype`` (copies only when needed).

    Parameters
    ----------
    X
        Dense array or any scipy sparse matrix/array.
    dtype
        Target dtype of the stored values.

    Returns
    -------
    scipy.sparse.csr_matrix
        CSR matrix with sorted indices and no duplicate entries.
    """
    if sp.issparse(X):
        out = sp.csr_matrix(X)  # no copy for an existing csr_matrix
        if out.dtype != dtype:
            out = out.astype(dtype)
    else:
        out = sp.csr_matrix(np.asarray(X, dtype=dtype))
    if not out.has_canonical_format:
        out = out.copy()
        out.sum_duplicates()
    return out


def check_counts(X: sp.csr_matrix, where: str) -> None:
    """Raise ``ValueError`` unless ``X`` holds non-negative integer values.

    Parameters
    ----------
    X
        CSR matrix to check (only its stored values are inspected).
    where
        Name of the field being checked, used in the error message
        (e.g. ``"adata.X"`` or ``"adata.layers['counts']"``).
    """
    data = X.data
    if data.size == 0:
        return
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{where} contains NaN or infinite values; raw counts are required.")
    if data.min() < 0:
        raise ValueError(f"{where} contains negative values; raw counts are required.")
    if not np.array_equal(data, np.round(data)):
        bad = data[data != np.round(data)][:3]
        raise ValueError(
            f"{where} is not integer-valued (e.g. {bad.tolist()}); raw counts are required, "
            "not normalized or log-transformed data."
        )


def row_positive_counts(X: sp.csr_matrix) -> np.ndarray:
    """Number of strictly positive entries in each row (explicit zeros ignored)."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    return np.bincount(rows[X.data > 0], minlength=X.shape[0])


def col_positive_counts(X: sp.csr_matrix) -> np.ndarray:
    """Number of strictly positive entries in each column (explicit zeros ignored)."""
    return np.bincount(X.indices[X.data > 0], minlength=X.shape[1])


def col_nonzero_counts(X: sp.csr_matrix) -> np.ndarray:
    """Number of entries different from zero in each column (explicit zeros ignored)."""
    return np.bincount(X.indices[X.data != 0], minlength=X.shape[1])


def col_mean_var(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Column means and population variances (ddof=0) of a sparse matrix, in float64.

    Uses ``E[x^2] - E[x]^2`` accumulated over the stored values only, so the
    implicit zeros cost nothing and the matrix is never densified.

    Parameters
    ----------
    X
        CSR matrix (cells x features).

    Returns
    -------
    mean, var
        Arrays of length ``X.shape[1]``.
    """
    n = X.shape[0]
    if n == 0:
        raise ValueError("cannot compute feature moments of a matrix with 0 rows")
    data = X.data.astype(np.float64)
    s1 = np.bincount(X.indices, weights=data, minlength=X.shape[1])
    s2 = np.bincount(X.indices, weights=data * data, minlength=X.shape[1])
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0)
    return mean, var


def scale_rows(X: sp.csr_matrix, factors: np.ndarray) -> sp.csr_matrix:
    """Return a copy of ``X`` with row ``i`` multiplied by ``factors[i]`` (CSR, same dtype)."""
    out = X.copy()
    out.data = (out.data * np.repeat(factors, np.diff(out.indptr))).astype(X.dtype)
    return out
