"""Small sparse-matrix helpers shared by the preprocessing modules.

Everything here works on the stored non-zeros of a CSR matrix so that a count
matrix is never densified as a whole.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

#: Stored values handled per pass where a float64 temporary of every value would be needed
#: (16M values: 128 MiB per float64 temporary); a matrix with fewer is done in one pass.
NNZ_CHUNK = 1 << 24


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


def col_sums(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Column sums of the stored values and of their squares, in float64.

    The float64 temporaries cover one chunk of ``NNZ_CHUNK`` stored values at a time, so the
    extra memory stays bounded on atlas-size matrices.

    Parameters
    ----------
    X
        CSR matrix (cells x features).

    Returns
    -------
    sums, sums_of_squares
        Arrays of length ``X.shape[1]``.
    """
    s1 = np.zeros(X.shape[1])
    s2 = np.zeros(X.shape[1])
    for start in range(0, X.nnz, NNZ_CHUNK):
        data = X.data[start:start + NNZ_CHUNK].astype(np.float64)
        cols = X.indices[start:start + NNZ_CHUNK]
        s1 += np.bincount(cols, weights=data, minlength=X.shape[1])
        s2 += np.bincount(cols, weights=data * data, minlength=X.shape[1])
    return s1, s2


def row_blocks(X: sp.csr_matrix) -> list[tuple[int, int]]:
    """Consecutive row ranges ``(start, stop)`` of a CSR matrix holding at most ~``NNZ_CHUNK`` stored values each.

    Parameters
    ----------
    X
        CSR matrix.

    Returns
    -------
    list of tuple
        One range (all rows) when the matrix has at most ``NNZ_CHUNK`` stored values.
    """
    n = X.shape[0]
    if X.nnz <= NNZ_CHUNK:
        return [(0, n)]
    bounds = np.searchsorted(X.indptr, np.arange(NNZ_CHUNK, X.nnz, NNZ_CHUNK), side="right") - 1
    edges = np.unique(np.concatenate([[0], np.clip(bounds, 1, n), [n]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


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
    s1, s2 = col_sums(X)
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0)
    return mean, var


def scale_rows(X: sp.csr_matrix, factors: np.ndarray) -> sp.csr_matrix:
    """Return a copy of ``X`` with row ``i`` multiplied by ``factors[i]`` (CSR, same dtype).

    Each value is ``(x * factor)`` in float64, rounded to ``X.dtype``; the products are formed
    one chunk of stored values at a time, so the float64 temporaries stay small on atlas-size data.
    """
    data = np.empty_like(X.data)
    for start in range(0, X.nnz, NNZ_CHUNK):
        stop = min(start + NNZ_CHUNK, X.nnz)
        rows = np.searchsorted(X.indptr, np.arange(start, stop), side="right") - 1
        data[start:stop] = X.data[start:stop] * np.asarray(factors, dtype=np.float64)[rows]
    return sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
