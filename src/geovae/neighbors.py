"""One k-nearest-neighbour graph of a latent space, shared by UMAP, t-SNE and Leiden.

The graph is scanpy's (``scanpy.pp.neighbors(..., method="umap")``): ``n_neighbors`` neighbours per
cell, the cell itself included and first, Euclidean distances; exact search while cells x neighbours
stays within :data:`EXACT_MAX_ENTRIES` (50,000 cells at t-SNE's 91 neighbours, ~300,000 at 15) and
pynndescent's approximate search above (scanpy and umap-learn switch at 4,096 cells; scikit-learn's
exact tree search in a 10-dimensional latent stays fast well beyond that: 3.8 s for 15 neighbours of
100,000 cells on 2 cores, against ~40 s for pynndescent's first call in a process, most of it numba
compilation; 119 s against 58 s at 1M cells). UMAP weights: for every cell,
``rho`` = distance to its nearest non-identical neighbour and ``sigma`` found by bisection so that
``sum_j exp(-max(0, d_ij - rho) / sigma) = log2(n_neighbors)`` over the neighbours other than the cell
itself; edge weight ``exp(-max(0, d_ij - rho) / sigma)``; symmetrised as the fuzzy union
``W + W^T - W * W^T``. Written in vectorised numpy (no numba compilation, which costs umap-learn
~10 s per process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import anndata as ad

_TOL = 1e-5
_MIN_SCALE = 1e-3
_N_ITER = 64

#: Largest cells x neighbours searched exactly by ``method="auto"`` (50,000 cells x 91 neighbours).
EXACT_MAX_ENTRIES = 50_000 * 91
#: Neighbours of scanpy's default graph (``scanpy.pp.neighbors``), the cell itself included.
DEFAULT_N_NEIGHBORS = 15


@dataclass(frozen=True)
class Neighbors:
    """The ``k`` nearest neighbours of every cell, the cell itself in column 0.

    Attributes
    ----------
    distances
        ``n x k`` Euclidean distances, ascending per row (column 0 is 0).
    indices
        ``n x k`` neighbour indices (column 0 is the row itself).
    method
        ``"exact"`` or ``"nndescent"``.
    """

    distances: np.ndarray
    indices: np.ndarray
    method: str
    _weights: dict[int, sp.csr_matrix] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_neighbors(self) -> int:
        """Neighbours per cell, the cell itself included."""
        return int(self.indices.shape[1])

    def first(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of the first ``k`` neighbours (the cell itself included)."""
        if k > self.n_neighbors:
            raise ValueError(f"{k} neighbours asked of a graph of {self.n_neighbors}")
        return self.distances[:, :k], self.indices[:, :k]

    def connectivities(self, k: int) -> sp.csr_matrix:
        """scanpy's ``obsp["connectivities"]``: UMAP fuzzy-union weights of the ``k``-neighbour graph.

        Computed once per ``k`` and kept (Leiden and the stored graph of the embed rule share it); a copy
        is returned, so callers may change it.
        """
        if k not in self._weights:
            self._weights[k] = umap_connectivities(*self.first(k))
        return self._weights[k].copy()

    def distance_matrix(self, k: int) -> sp.csr_matrix:
        """scanpy's ``obsp["distances"]``: the ``k - 1`` non-self neighbours' distances as a sparse matrix."""
        dist, idx = self.first(k)
        n = dist.shape[0]
        rows = np.repeat(np.arange(n), k - 1)
        return sp.csr_matrix((dist[:, 1:].ravel(), (rows, idx[:, 1:].ravel())), shape=(n, n))


def latent_neighbors(Z: np.ndarray, n_neighbors: int, method: str = "auto", seed: int = 0,
                     n_jobs: int = 1) -> Neighbors:
    """Nearest neighbours of every row of ``Z`` (itself included and first).

    Parameters
    ----------
    Z
        ``n x d`` latent matrix.
    n_neighbors
        Neighbours per cell, the cell itself included; capped at ``n``.
    method
        ``"exact"`` (scikit-learn), ``"nndescent"`` (pynndescent, approximate) or ``"auto"``: exact
        while ``n x n_neighbors`` is at most :data:`EXACT_MAX_ENTRIES`.
    seed
        Random state of pynndescent (unused by the exact search).
    n_jobs
        Threads of the search.

    Returns
    -------
    Neighbors
    """
    k = int(min(n_neighbors, Z.shape[0]))
    if method == "auto":
        method = "exact" if Z.shape[0] * k <= EXACT_MAX_ENTRIES else "nndescent"
    if method == "exact":
        dist, idx = knn(np.asarray(Z, dtype=np.float64), k, n_jobs=n_jobs)
    elif method == "nndescent":
        from pynndescent import NNDescent

        index = NNDescent(np.ascontiguousarray(Z, dtype=np.float32), n_neighbors=k, metric="euclidean", random_state=seed, n_jobs=n_jobs,
                          low_memory=True, compressed=True)
        idx, dist = index.neighbor_graph
        dist, idx = _self_first(dist.astype(np.float64), idx.astype(np.int64))
    else:
        raise ValueError(f"neighbour search {method!r}: use 'auto', 'exact' or 'nndescent'")
    return Neighbors(distances=dist, indices=idx, method=method)


def store_neighbors(adata: ad.AnnData, neighbors: Neighbors, n_neighbors: int = DEFAULT_N_NEIGHBORS,
                    use_rep: str = "X_latent", seed: int = 0) -> None:
    """Write the ``n_neighbors`` graph where ``scanpy.pp.neighbors`` writes it, so scanpy's tools use it as is.

    Sets ``obsp["distances"]``, ``obsp["connectivities"]`` and ``uns["neighbors"]`` (keys and
    parameters), e.g. for ``scanpy.tl.leiden(adata)`` or ``scanpy.tl.umap(adata)``.

    Parameters
    ----------
    adata
        AnnData of the cells of ``neighbors``; modified in place.
    neighbors
        Neighbours of ``adata.obsm[use_rep]``.
    n_neighbors
        Neighbours of the stored graph (the cell itself included, as scanpy counts).
    use_rep
        ``obsm`` key the neighbours were searched in.
    seed
        Random state of the search (recorded).
    """
    k = min(n_neighbors, neighbors.n_neighbors)
    adata.obsp["distances"] = neighbors.distance_matrix(k)
    adata.obsp["connectivities"] = neighbors.connectivities(k)
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities", "distances_key": "distances",
        "params": {"n_neighbors": k, "method": "umap", "metric": "euclidean", "random_state": seed,
                   "use_rep": use_rep, "search": neighbors.method},
    }


def stored_neighbors(adata: ad.AnnData, use_rep: str, n_neighbors: int,
                     key: str = "neighbors") -> Neighbors | None:
    """The graph of :func:`store_neighbors` (or ``scanpy.pp.neighbors``) as :class:`Neighbors`, when it fits.

    It fits when ``uns[key]`` says it was searched in ``obsm[use_rep]`` with the Euclidean metric and at
    least ``n_neighbors`` neighbours, and every row of its distance matrix holds the same number of
    neighbours (a sparse format that dropped zero distances does not).

    Parameters
    ----------
    adata
        AnnData that may hold a graph.
    use_rep
        ``obsm`` key the caller works on.
    n_neighbors
        Neighbours the caller needs, the cell itself included.
    key
        ``uns`` key of the graph's description (scanpy's ``neighbors_key``).

    Returns
    -------
    Neighbors or None
        The stored neighbours (the cell itself first, then by distance; ``method`` from the stored
        ``search``, else ``"stored"``); None when there is no fitting graph.
    """
    info = adata.uns.get(key)
    if not isinstance(info, dict):
        return None
    params = info.get("params", {})
    dist_key = info.get("distances_key", "distances")
    k = int(params.get("n_neighbors", 0))
    if (params.get("use_rep") != use_rep or params.get("metric", "euclidean") != "euclidean" or k < n_neighbors
            or dist_key not in adata.obsp):
        return None
    D = sp.csr_matrix(adata.obsp[dist_key])
    per_row = np.diff(D.indptr)
    if D.shape[0] != adata.n_obs or per_row.size == 0 or per_row.min() != k - 1 or per_row.max() != k - 1:
        return None
    n = D.shape[0]
    dist = D.data.reshape(n, k - 1)
    cols = D.indices.reshape(n, k - 1)
    order = np.argsort(dist, axis=1, kind="stable")
    distances = np.hstack([np.zeros((n, 1)), np.take_along_axis(dist, order, axis=1)]).astype(np.float64)
    indices = np.hstack([np.arange(n)[:, None], np.take_along_axis(cols, order, axis=1)]).astype(np.int64)
    return Neighbors(distances=distances, indices=indices, method=str(params.get("search", "stored")))


def knn(Z: np.ndarray, n_neighbors: int, n_jobs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``n_neighbors`` nearest neighbours of every row, the row itself first.

    Parameters
    ----------
    Z
        ``n x d`` matrix.
    n_neighbors
        Neighbours per row, the row itself included.
    n_jobs
        Threads of scikit-learn's search.

    Returns
    -------
    distances, indices
        ``n x n_neighbors`` arrays.
    """
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=n_neighbors, algorithm="auto", n_jobs=n_jobs).fit(Z)
    return _self_first(*nn.kneighbors(Z))


def _self_first(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put every query point itself in column 0 (exact duplicates may have displaced it)."""
    rows = np.arange(idx.shape[0])
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
    """Symmetric UMAP membership-strength graph from kNN distances (scanpy's ``obsp["connectivities"]``).

    Parameters
    ----------
    dist
        ``n x k`` neighbour distances, the cell itself in column 0.
    idx
        ``n x k`` neighbour indices, the cell itself in column 0.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``n x n`` symmetric weights, no self loops.
    """
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
