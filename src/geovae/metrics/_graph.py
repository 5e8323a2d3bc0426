"""kNN graph of a latent space with UMAP fuzzy-set weights (private).

The same graph as ``scanpy.pp.neighbors(..., method="umap")`` (exact neighbours, self
included among the ``n_neighbors``): for every cell, ``rho`` = distance to its nearest
non-identical neighbour and ``sigma`` found by bisection so that
``sum_j exp(-max(0, d_ij - rho) / sigma) = log2(n_neighbors)`` over the neighbours other
than the cell itself; edge weight ``exp(-max(0, d_ij - rho) / sigma)``; symmetrised as the
fuzzy union ``W + W^T - W * W^T``. Written in vectorised numpy (no numba compilation, which
costs scanpy ~10 s per process).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

_TOL = 1e-5
_MIN_SCALE = 1e-3
_N_ITER = 64


def knn(Z: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``n_neighbors`` nearest neighbours of every row, the row itself first."""
    nn = NearestNeighbors(n_neighbors=n_neighbors, algorithm="auto").fit(Z)
    dist, idx = nn.kneighbors(Z)
    # Put the query point itself in column 0 (duplicates may have swapped it).
    rows = np.arange(Z.shape[0])
    self_col = np.argmax(idx == rows[:, None], axis=1)
    has_self = idx[rows, self_col] == rows
    swap = has_self & (self_col > 0)
    r = rows[swap]
    idx[r, self_col[swap]] = idx[r, 0]
    dist[r, self_col[swap]] = dist[r, 0]
    idx[:, 0] = rows
    dist[:, 0] = 0.0
    return dist, idx


def umap_connectivities(dist: np.ndarray, idx: np.ndarray) -> sp.csr_matrix:
    """Symmetric UMAP membership-strength graph from kNN distances (self in column 0)."""
    n, k = dist.shape
    target = np.log2(k)
    positive = np.where(dist > 0, dist, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    shifted = np.maximum(dist[:, 1:] - rho[:, None], 0.0)
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    mid = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(_N_ITER):
        psum = np.exp(-shifted[active] / mid[active, None]).sum(axis=1)
        diff = psum - target
        done = np.abs(diff) < _TOL
        a = np.flatnonzero(active)
        too_big = (diff > 0) & ~done
        too_small = (diff <= 0) & ~done
        hi[a[too_big]] = mid[a[too_big]]
        lo[a[too_small]] = mid[a[too_small]]
        grow = a[too_small & ~np.isfinite(hi[a])]
        bisect = a[~done & ~np.isin(a, grow)]
        mid[grow] *= 2.0
        mid[bisect] = (lo[bisect] + hi[bisect]) / 2.0
        active[a[done]] = False
        if not active.any():
            break
    sigma = mid
    floor_row = _MIN_SCALE * dist.mean(axis=1)
    floor_all = _MIN_SCALE * dist.mean()
    small = rho > 0
    sigma = np.where(small, np.maximum(sigma, floor_row), np.maximum(sigma, floor_all))
    weights = np.exp(-np.maximum(dist - rho[:, None], 0.0) / sigma[:, None])
    weights[:, 0] = 0.0  # no self loop
    W = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    W.eliminate_zeros()
    Wt = W.T.tocsr()
    G = W + Wt - W.multiply(Wt)
    G.eliminate_zeros()
    return G.tocsr()
