"""Embedding fidelity: how well a 2-D embedding ``Y`` (UMAP, t-SNE) keeps the latent space ``Z``.

Definitions (``docs/metrics.md``, section "Embedding fidelity"; the high-dimensional side is
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
processed in blocks (threads), the latent rank matrix is ``n^2`` uint16, and ``DC`` needs a
few arrays of one value per pair. Sorting uses packed uint64 keys (``_ranking``), exact.
Everything is O(n^2): evaluate on a fixed subsample (:func:`subsample_indices`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from scipy.spatial.distance import cdist, pdist

from ._ranking import _CHUNK, argsort_rows_self_first, argsort_with_ties, rank_values

log = logging.getLogger("geovae.metrics")

# Memory budget (bytes) of one float64 block of distance rows.
_BLOCK_BYTES = 2 * 1024**2
_MIN_POINTS = 4

FIDELITY_METRICS = ("DC", "Q_local", "Q_global", "K_max", "overall_embedding_quality")

_T = TypeVar("_T")
_R = TypeVar("_R")


def default_n_jobs() -> int:
    """Threads used by default: the CPUs this process may run on, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(8, available))


def _map_ordered(func: Callable[[_T], _R], items: Iterable[_T], n_jobs: int | None) -> list[_R]:
    """``[func(x) for x in items]``, on threads when ``n_jobs > 1`` (numpy releases the GIL).

    Results keep the order of ``items``, so reductions over them are deterministic.
    """
    n_jobs = default_n_jobs() if n_jobs is None else n_jobs
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        return [func(x) for x in items]
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(func, items))


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
    return argsort_rows_self_first(dist, np.arange(start, stop))


def rank_matrix(X: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
    """Neighbourhood rank matrix: ``R[i, j]`` = rank of ``j`` among the neighbours of ``i``.

    Parameters
    ----------
    X
        ``(n, d)`` points.
    n_jobs
        Threads over row blocks (default :func:`default_n_jobs`); the result does not
        depend on it.

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
    blocks = list(_row_blocks(n))
    # positions 0..n-1 repeated for every row of the largest block
    positions = np.tile(np.arange(n, dtype=ranks.dtype), blocks[0][1] - blocks[0][0])

    def fill(block: tuple[int, int]) -> None:
        start, stop = block
        order = _neighbour_order(X, start, stop)
        order += (np.arange(stop - start) * n)[:, None]
        ranks[start:stop].reshape(-1)[order.reshape(-1)] = positions[: order.size]

    _map_ordered(fill, blocks, n_jobs)
    return ranks


class LatentNeighbourhood:
    """Latent-side part of the fidelity metrics, computed once per latent subsample.

    Holds the rank matrix of ``Z`` and the centred ranks of its condensed pairwise
    distances, so that UMAP and t-SNE of the same ``Z`` only pay for their own side.
    Memory: ``n^2`` uint16 plus ``n (n-1) / 2`` int32 ranks and two float64/uint64 work
    buffers of that size (~300 MB at 5,000 points). Not safe to share between threads.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix (``n >= 4``).
    n_jobs
        Threads for this and every embedding scored against it (default
        :func:`default_n_jobs`); results do not depend on it.

    Attributes
    ----------
    n
        Number of points.
    ranks
        ``(n, n)`` rank matrix of ``Z`` (see :func:`rank_matrix`).
    """

    def __init__(self, Z: np.ndarray, n_jobs: int | None = None) -> None:
        Z = _as_points(Z, "Z")
        self.n: int = Z.shape[0]
        self.n_jobs = n_jobs
        self.ranks: np.ndarray = rank_matrix(Z, n_jobs=n_jobs)
        # Work buffers of one value per pair, reused by every embedding: allocating fresh
        # n(n-1)/2-sized arrays for each call costs page faults comparable to the sort.
        self._dist = pdist(Z)
        self._keys = np.empty(self._dist.size, dtype=np.uint64)
        self._zero_pairs = np.flatnonzero(self._dist == 0.0)
        order, tie_pos = argsort_with_ties(self._dist, keys=self._keys)
        # Centred average ranks r - (N+1)/2 of the pair distances, stored doubled as exact
        # integers (average ranks are multiples of 1/2): half the memory of float64.
        n_pairs = self._dist.size
        twice = np.empty(n_pairs, dtype=np.int32 if n_pairs < 2**31 - 1 else np.int64)
        if tie_pos.size:
            twice[order] = (2 * rank_values(n_pairs, tie_pos) - (n_pairs + 1)).astype(twice.dtype)
        else:
            for s in range(0, n_pairs, _CHUNK):
                e = min(n_pairs, s + _CHUNK)
                twice[order[s:e]] = np.arange(2 * s + 1 - n_pairs, 2 * e + 1 - n_pairs, 2, dtype=twice.dtype)
        del order
        self._twice_ranks = twice
        self._sum = 0.5 * float(twice.sum(dtype=np.int64))
        norm2 = 0.0
        for s in range(0, n_pairs, _CHUNK):
            chunk = twice[s : s + _CHUNK].astype(np.float64)
            norm2 += float(np.einsum("i,i->", chunk, chunk))
        self._norm2 = 0.25 * norm2

    def distance_correlations(self, Y: np.ndarray) -> tuple[float, float]:
        """Spearman correlations of the pairwise distances of ``Z`` and ``Y``.

        Returns
        -------
        tuple of float
            ``(DC, DC_pairs)``: ``DC`` over the full ``n x n`` distance matrices flattened
            (diagonal zeros and both triangles included, as the LiVAE authors compute it);
            ``DC_pairs`` over the ``n (n-1) / 2`` distinct pairs. They differ by O(1/n).
        """
        Y = self._check(Y)
        n = self.n
        n_pairs = self._twice_ranks.size
        dist_y = pdist(Y, out=self._dist)
        zeros_y = int(np.count_nonzero(dist_y == 0.0))
        order, tie_pos = argsort_with_ties(dist_y, keys=self._keys)
        centre = (n_pairs + 1) / 2.0
        twice_a = self._twice_ranks
        # Centred Y ranks by sorted position: rank_y[order[k]] = values[k].
        if tie_pos.size:
            values = rank_values(n_pairs, tie_pos) - centre
            sum_b, norm2_b = float(values.sum()), float(np.einsum("i,i->", values, values))
        else:
            values = None
            sum_b, norm2_b = 0.0, n_pairs * (n_pairs**2 - 1.0) / 12.0

        steps = np.arange(_CHUNK, dtype=np.float64)

        def partial_cross(s: int) -> float:
            e = min(n_pairs, s + _CHUNK)
            a = twice_a.take(order[s:e]).astype(np.float64)
            a *= 0.5
            if values is not None:
                return float(np.einsum("i,i->", a, values[s:e]))
            # Y rank at sorted position k is k + 1 - centre = (s + 1 - centre) + (k - s)
            return float((s + 1 - centre) * a.sum() + np.einsum("i,i->", a, steps[: e - s]))

        cross = float(sum(_map_ordered(partial_cross, range(0, n_pairs, _CHUNK), self.n_jobs)))
        if self._norm2 == 0.0 or norm2_b == 0.0:
            log.warning("DC undefined: all pairwise distances are equal in Z or in Y; reporting NaN")
            return float("nan"), float("nan")
        dc_pairs = cross / np.sqrt(self._norm2 * norm2_b)

        # Full matrices: each pair twice plus n diagonal zeros. With r the centred pair ranks,
        # the centred full rank of a pair is 2 r + n/2 (distance > 0) or 2 r (distance 0) and
        # that of a diagonal entry z + n/2 - n^2/2 (z = number of zero distances).
        zeros_a = self._zero_pairs.size
        y_first = values[:zeros_y] if values is not None else np.arange(1, zeros_y + 1) - centre
        a_on_pos_b = self._sum - 0.5 * float(twice_a[order[:zeros_y]].sum(dtype=np.int64))
        a_on_pos_a = self._sum - 0.5 * float(twice_a[self._zero_pairs].sum(dtype=np.int64))
        b_on_pos_b = sum_b - float(np.sum(y_first))
        if zeros_a:
            at = np.flatnonzero(np.isin(order, self._zero_pairs))
            y_at = values[at] if values is not None else at + 1 - centre
            b_on_pos_a = sum_b - float(np.sum(y_at))
            both_zero = int(np.count_nonzero(dist_y[self._zero_pairs] == 0.0))
        else:
            b_on_pos_a, both_zero = sum_b, 0
        both_pos = n_pairs - zeros_a - zeros_y + both_zero
        h = n / 2.0
        ab = 4 * cross + n * a_on_pos_b + n * b_on_pos_a + h * h * both_pos
        aa = 4 * self._norm2 + 2 * n * a_on_pos_a + h * h * (n_pairs - zeros_a)
        bb = 4 * norm2_b + 2 * n * b_on_pos_b + h * h * (n_pairs - zeros_y)
        diag_a = zeros_a + h - n * h
        diag_b = zeros_y + h - n * h
        cov = 2 * ab + n * diag_a * diag_b
        var_a = 2 * aa + n * diag_a**2
        var_b = 2 * bb + n * diag_b**2
        return float(cov / np.sqrt(var_a * var_b)), float(dc_pairs)

    def qnx(self, Y: np.ndarray) -> np.ndarray:
        """``Q_NX(K)`` for ``K = 1..n-2`` (see :func:`coranking_qnx`)."""
        Y = self._check(Y)
        n = self.n
        positions = np.arange(n, dtype=self.ranks.dtype)[None, :]

        def block_hist(block: tuple[int, int]) -> np.ndarray:
            start, stop = block
            order_y = _neighbour_order(Y, start, stop)  # column k: the point of Y-rank k
            order_y += (np.arange(stop - start) * n)[:, None]
            rank_z = self.ranks[start:stop].ravel().take(order_y)  # its Z-rank
            np.maximum(rank_z, positions, out=rank_z)
            return np.bincount(rank_z.ravel(), minlength=n)

        hist = np.zeros(n, dtype=np.int64)
        for block in _map_ordered(block_hist, _row_blocks(n), self.n_jobs):
            hist += block
        # hist[m] = ordered pairs whose larger rank is m (hist[0] = the n self pairs).
        k = np.arange(1, n - 1, dtype=np.float64)
        return np.cumsum(hist[1 : n - 1]) / (k * n)

    def _check(self, Y: np.ndarray) -> np.ndarray:
        Y = _as_points(Y, "Y")
        if Y.shape[0] != self.n:
            raise ValueError(f"Y has {Y.shape[0]} points but the latent neighbourhood has {self.n}")
        return Y


def precompute_latent(Z: np.ndarray, n_jobs: int | None = None) -> LatentNeighbourhood:
    """Build the reusable :class:`LatentNeighbourhood` of ``Z``.

    Parameters
    ----------
    Z
        ``n x d`` latent matrix.
    n_jobs
        Threads of the neighbour ranking (default: available CPUs, at most 8).
    """
    return LatentNeighbourhood(Z, n_jobs=n_jobs)


def coranking_qnx(
    Z: np.ndarray | None, Y: np.ndarray, latent: LatentNeighbourhood | None = None
) -> np.ndarray:
    """Quality of neighbourhood preservation ``Q_NX(K)`` for every ``K = 1..n-2``.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix; may be None when ``latent`` is given.
    Y
        ``(n, 2)`` embedding of the same points.
    latent
        Optional precomputed :class:`LatentNeighbourhood` of ``Z``.

    Returns
    -------
    numpy.ndarray
        float64 array of length ``n - 2``; entry ``K - 1`` is ``Q_NX(K)``.
    """
    if latent is None:
        if Z is None:
            raise ValueError("coranking_qnx needs Z or a precomputed latent neighbourhood")
        latent = LatentNeighbourhood(Z)
    return latent.qnx(Y)


def coranking_matrix(Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Explicit ``(n-1) x (n-1)`` co-ranking matrix (O(n^2) memory; for checks and small n).

    ``Q[a-1, b-1]`` is the number of ordered pairs ``(i, j)``, ``i != j``, with rank ``a`` in
    ``Z`` and rank ``b`` in ``Y``.

    Parameters
    ----------
    Z, Y
        High- and low-dimensional coordinates of the same ``n`` points.
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
    """``Q_NX(K)``, ``K = 1..n-2``, from a co-ranking matrix via 2-D cumulative sums.

    Parameters
    ----------
    Q
        ``(n-1) x (n-1)`` co-ranking matrix (:func:`coranking_matrix`).
    """
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
        ``DC``, ``Q_local``, ``Q_global``, ``K_max`` (1-based, as float),
        ``overall_embedding_quality`` and ``DC_pairs`` (Spearman over the distinct pairs
        only, the upper triangle; ``DC`` is over the full matrices as the authors compute it).
    """
    if latent is None:
        if Z is None:
            raise ValueError("embedding_fidelity needs Z or a precomputed latent neighbourhood")
        latent = LatentNeighbourhood(Z)
    elif Z is not None and np.shape(Z)[0] != latent.n:
        raise ValueError(f"Z has {np.shape(Z)[0]} points but the latent neighbourhood has {latent.n}")
    dc, dc_pairs = latent.distance_correlations(Y)
    out = fidelity_from_qnx(latent.qnx(Y), dc)
    out["DC_pairs"] = dc_pairs
    return out
