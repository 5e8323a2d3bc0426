"""Embedding fidelity: how well a 2-D embedding ``Y`` (UMAP, t-SNE) keeps the latent space ``Z``.

Definitions (``/work/shared/reference/metrics.md``, section 2; the high-dimensional side is
the latent space, not the genes):

- ``DC``: Spearman correlation of all pairwise Euclidean distances in ``Z`` and in ``Y``.
- rank matrices: for every point ``i`` the other points ranked ``1..n-1`` by distance (self
  excluded; ties broken by index, i.e. the order of a stable argsort).
- co-ranking matrix ``Q[a-1, b-1]`` = number of ordered pairs ``(i, j)``, ``i != j``, of rank
  ``a`` in ``Z`` and ``b`` in ``Y``; ``Q_NX(K) = sum_{a, b <= K} Q[a-1, b-1] / (K n)``.
- ``LCMC(K) = Q_NX(K) - (K-1)/(n-2)`` (the authors' indexing), ``K_max = argmax LCMC + 1``,
  ``Q_local = mean Q_NX(1..K_max)``, ``Q_global = mean Q_NX(K_max+1..n-2)``,
  ``overall_embedding_quality = mean(DC, Q_local, Q_global)``.

Implementation: the top-left ``K x K`` block of ``Q`` counts the pairs whose *larger* rank is
``<= K``, so ``Q_NX`` for every ``K`` is the cumulative sum of one histogram of
``max(rank_Z, rank_Y)``: no ``(n-1)^2`` co-ranking matrix and no loop over ``K`` (the
explicit matrix is still available as :func:`coranking_matrix` for checks). Rows are
processed in blocks, so besides the latent rank matrix (``n^2`` uint16) memory stays small.
Everything is O(n^2): evaluate on a fixed subsample (:func:`subsample_indices`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from scipy.spatial.distance import cdist, pdist

from ._ranking import average_ranks, stable_argsort_rows

log = logging.getLogger("geovae.metrics")

# Memory budget (bytes) of one float64 block of distance rows.
_BLOCK_BYTES = 16 * 1024**2
_MIN_POINTS = 4

FIDELITY_METRICS = ("DC", "Q_local", "Q_global", "K_max", "overall_embedding_quality")


def subsample_indices(n: int, n_max: int | None, seed: int = 0) -> np.ndarray:
    """Sorted, seeded subsample of ``range(n)`` of size ``min(n, n_max)``.

    Parameters
    ----------
    n
        Number of cells.
    n_max
        Largest subsample; ``None`` or ``n <= n_max`` keeps every cell.
    seed
        Seed of ``numpy.random.default_rng``; same ``(n, n_max, seed)`` -> same cells, so
        every model of a dataset is evaluated on the same cells.

    Returns
    -------
    numpy.ndarray
        int64 indices in increasing order.
    """
    if n < 0:
        raise ValueError(f"subsample_indices: n must be >= 0, got {n}")
    if n_max is None or n <= n_max:
        return np.arange(n, dtype=np.int64)
    if n_max < 1:
        raise ValueError(f"subsample_indices: n_max must be >= 1, got {n_max}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_max, replace=False)).astype(np.int64)


def _as_points(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_cells x n_dims) array, got shape {X.shape}")
    if X.shape[0] < _MIN_POINTS:
        raise ValueError(f"{name} needs at least {_MIN_POINTS} points, got {X.shape[0]}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(X)


def _row_blocks(n: int) -> Iterator[tuple[int, int]]:
    step = max(1, _BLOCK_BYTES // (8 * n))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _rank_dtype(n: int) -> type[np.unsignedinteger]:
    return np.uint16 if n <= 2**16 else np.uint32


def _neighbour_order(X: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop``: all points sorted by Euclidean distance, self first, ties by index."""
    dist = cdist(X[start:stop], X, metric="sqeuclidean")
    np.sqrt(dist, out=dist)
    return stable_argsort_rows(dist, first=np.arange(start, stop))


def rank_matrix(X: np.ndarray) -> np.ndarray:
    """Neighbourhood rank matrix: ``R[i, j]`` = rank of ``j`` among the neighbours of ``i``.

    Parameters
    ----------
    X
        ``(n, d)`` points.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` unsigned integers (uint16 up to 65,536 points), ``R[i, i] = 0`` and the
        other entries of row ``i`` a permutation of ``1..n-1`` by increasing Euclidean
        distance, ties broken by index.
    """
    X = _as_points(X, "X")
    n = X.shape[0]
    ranks = np.empty((n, n), dtype=_rank_dtype(n))
    positions = np.arange(n, dtype=ranks.dtype)
    for start, stop in _row_blocks(n):
        order = _neighbour_order(X, start, stop)
        np.put_along_axis(ranks[start:stop], order, positions[None, :], axis=1)
    return ranks


class LatentNeighbourhood:
    """Latent-side part of the fidelity metrics, computed once per latent subsample.

    Holds the rank matrix of ``Z`` and the centred ranks of its condensed pairwise
    distances, so that UMAP and t-SNE of the same ``Z`` only pay for their own side.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix (``n >= 4``).

    Attributes
    ----------
    n
        Number of points.
    ranks
        ``(n, n)`` rank matrix of ``Z`` (see :func:`rank_matrix`).
    """

    def __init__(self, Z: np.ndarray) -> None:
        Z = _as_points(Z, "Z")
        self.n: int = Z.shape[0]
        self.ranks: np.ndarray = rank_matrix(Z)
        self._dist_ranks, self._dist_norm = _centred_distance_ranks(Z)

    def spearman_distance_correlation(self, Y: np.ndarray) -> float:
        """``DC``: Spearman correlation of the pairwise distances of ``Z`` and ``Y``."""
        Y = self._check(Y)
        ranks_y, norm_y = _centred_distance_ranks(Y)
        if self._dist_norm == 0.0 or norm_y == 0.0:
            log.warning("DC undefined: all pairwise distances are equal in Z or in Y; reporting NaN")
            return float("nan")
        return float(np.dot(self._dist_ranks, ranks_y) / (self._dist_norm * norm_y))

    def qnx(self, Y: np.ndarray) -> np.ndarray:
        """``Q_NX(K)`` for ``K = 1..n-2`` (see :func:`coranking_qnx`)."""
        Y = self._check(Y)
        n = self.n
        hist = np.zeros(n, dtype=np.int64)
        positions = np.arange(n, dtype=self.ranks.dtype)[None, :]
        for start, stop in _row_blocks(n):
            order_y = _neighbour_order(Y, start, stop)  # column k holds the point of Y-rank k
            rank_z = np.take_along_axis(self.ranks[start:stop], order_y, axis=1)
            np.maximum(rank_z, positions, out=rank_z)
            hist += np.bincount(rank_z.ravel(), minlength=n)
        # hist[m] = ordered pairs whose larger rank is m (hist[0] = the n self pairs).
        k = np.arange(1, n - 1, dtype=np.float64)
        return np.cumsum(hist[1 : n - 1]) / (k * n)

    def _check(self, Y: np.ndarray) -> np.ndarray:
        Y = _as_points(Y, "Y")
        if Y.shape[0] != self.n:
            raise ValueError(f"Y has {Y.shape[0]} points but the latent neighbourhood has {self.n}")
        return Y


def precompute_latent(Z: np.ndarray) -> LatentNeighbourhood:
    """Build the reusable :class:`LatentNeighbourhood` of ``Z``."""
    return LatentNeighbourhood(Z)


def _centred_distance_ranks(X: np.ndarray) -> tuple[np.ndarray, float]:
    ranks = average_ranks(pdist(X))
    ranks -= (ranks.size + 1) / 2.0  # average ranks always sum to N(N+1)/2
    return ranks, float(np.sqrt(np.dot(ranks, ranks)))


def coranking_qnx(Z: np.ndarray, Y: np.ndarray, latent: LatentNeighbourhood | None = None) -> np.ndarray:
    """Quality of neighbourhood preservation ``Q_NX(K)`` for every ``K = 1..n-2``.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix (ignored when ``latent`` is given).
    Y
        ``(n, 2)`` embedding of the same points.
    latent
        Optional precomputed :class:`LatentNeighbourhood` of ``Z``.

    Returns
    -------
    numpy.ndarray
        float64 array of length ``n - 2``; entry ``K - 1`` is ``Q_NX(K)``.
    """
    latent = latent if latent is not None else LatentNeighbourhood(Z)
    return latent.qnx(Y)


def coranking_matrix(Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Explicit ``(n-1) x (n-1)`` co-ranking matrix (O(n^2) memory; for checks and small n).

    ``Q[a-1, b-1]`` is the number of ordered pairs ``(i, j)``, ``i != j``, with rank ``a`` in
    ``Z`` and rank ``b`` in ``Y``.
    """
    rz = rank_matrix(Z)
    ry = rank_matrix(Y)
    n = rz.shape[0]
    if ry.shape[0] != n:
        raise ValueError(f"Z has {n} points but Y has {ry.shape[0]}")
    off = ~np.eye(n, dtype=bool)
    flat = (rz[off].astype(np.int64) - 1) * (n - 1) + (ry[off].astype(np.int64) - 1)
    return np.bincount(flat, minlength=(n - 1) ** 2).reshape(n - 1, n - 1)


def qnx_from_coranking(Q: np.ndarray) -> np.ndarray:
    """``Q_NX(K)``, ``K = 1..n-2``, from a co-ranking matrix via 2-D cumulative sums."""
    Q = np.asarray(Q, dtype=np.int64)
    n = Q.shape[0] + 1
    block_sums = np.diagonal(Q.cumsum(axis=0).cumsum(axis=1))[: n - 2]
    return block_sums / (np.arange(1, n - 1) * float(n))


def fidelity_from_qnx(qnx: np.ndarray, dc: float) -> dict[str, float]:
    """``Q_local``, ``Q_global``, ``K_max`` and the overall score from ``Q_NX`` and ``DC``.

    Parameters
    ----------
    qnx
        ``Q_NX(K)`` for ``K = 1..n-2``.
    dc
        Distance correlation ``DC``.

    Returns
    -------
    dict
        Keys of :data:`FIDELITY_METRICS`.
    """
    qnx = np.asarray(qnx, dtype=np.float64)
    m = qnx.size  # n - 2
    if m < 1:
        raise ValueError("Q_NX is empty: at least 3 points are needed")
    lcmc = qnx - np.arange(m) / m  # the authors' LCMC: index j = K-1, subtract j/(n-2)
    k_max = int(np.argmax(lcmc)) + 1
    q_local = float(qnx[:k_max].mean())
    if k_max < m:
        q_global = float(qnx[k_max:].mean())
    else:
        log.warning("Q_global undefined: K_max = n-2 leaves no K > K_max; reporting NaN")
        q_global = float("nan")
    return {
        "DC": float(dc),
        "Q_local": q_local,
        "Q_global": q_global,
        "K_max": float(k_max),
        "overall_embedding_quality": float(np.mean([dc, q_local, q_global])),
    }


def embedding_fidelity(
    Z: np.ndarray | None, Y: np.ndarray, latent: LatentNeighbourhood | None = None
) -> dict[str, float]:
    """Fidelity of a 2-D embedding ``Y`` of the latent space ``Z``.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix; may be None when ``latent`` is given.
    Y
        ``(n, 2)`` embedding of the same points, same row order.
    latent
        Optional :class:`LatentNeighbourhood` of ``Z``, to share the latent-side work
        between several embeddings (UMAP and t-SNE).

    Returns
    -------
    dict
        ``DC``, ``Q_local``, ``Q_global``, ``K_max`` (1-based, as float) and
        ``overall_embedding_quality``.
    """
    if latent is None:
        if Z is None:
            raise ValueError("embedding_fidelity needs Z or a precomputed latent neighbourhood")
        latent = LatentNeighbourhood(Z)
    elif Z is not None and np.shape(Z)[0] != latent.n:
        raise ValueError(f"Z has {np.shape(Z)[0]} points but the latent neighbourhood has {latent.n}")
    dc = latent.spearman_distance_correlation(Y)
    return fidelity_from_qnx(latent.qnx(Y), dc)
