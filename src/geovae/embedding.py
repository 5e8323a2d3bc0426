"""Two-dimensional embeddings of a latent space: UMAP and t-SNE on one shared kNN graph.

One neighbour search per latent (:func:`geovae.neighbors.latent_neighbors`, exact up to 50,000 cells at 91 neighbours)
serves UMAP (its fuzzy graph, as ``scanpy.tl.umap`` after ``scanpy.pp.neighbors``), t-SNE (openTSNE's
perplexity affinities from the first ``3 * perplexity`` neighbours) and the Leiden clusters of the
embed rule. Computing the UMAP graph in numpy also skips umap-learn's numba compilation of its
neighbour search and graph functions (~13 s in every process).
"""

from __future__ import annotations

import functools
import time

import numpy as np

from geovae.neighbors import Neighbors, latent_neighbors, umap_connectivities
from geovae.options import EMBED

#: Cells from which ``tsne_method="auto"`` uses FFT-interpolated gradients (openTSNE's own switch).
TSNE_FFT_MIN_CELLS = 10_000


def tsne_neighbors(n_cells: int, perplexity: float) -> tuple[float, int]:
    """Perplexity capped for tiny inputs, and the neighbours t-SNE needs (``3 * perplexity``, openTSNE's rule).

    Parameters
    ----------
    n_cells
        Number of cells.
    perplexity
        Requested perplexity.

    Returns
    -------
    perplexity, k
        The perplexity used and the number of non-self neighbours its affinities are computed from.
    """
    perplexity = float(min(perplexity, max(2.0, (n_cells - 1) / 3.0)))
    return perplexity, int(min(n_cells - 1, int(3 * perplexity)))


def tsne_affinities(latent: np.ndarray, perplexity: float = EMBED.tsne_perplexity, neighbors: Neighbors | None = None,
                    seed: int = 0, n_jobs: int = 1):
    """openTSNE's perplexity-based affinities of ``latent`` from its ``3 * perplexity`` nearest neighbours.

    Parameters
    ----------
    latent
        ``n_cells x d`` latent matrix.
    perplexity
        Requested perplexity (capped for tiny inputs, :func:`tsne_neighbors`).
    neighbors
        Precomputed neighbours with enough columns; searched when None or too few.
    seed
        Random state of a neighbour search.
    n_jobs
        Threads.

    Returns
    -------
    openTSNE.affinity.PerplexityBasedNN
        Symmetric, normalised affinities (``.P``).
    """
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    perplexity, k = tsne_neighbors(latent.shape[0], perplexity)
    if neighbors is None or neighbors.n_neighbors < k + 1:
        neighbors = latent_neighbors(latent, k + 1, seed=seed, n_jobs=n_jobs)
    dist, idx = neighbors.first(k + 1)
    knn_index = PrecomputedNeighbors(np.ascontiguousarray(idx[:, 1:]), np.ascontiguousarray(dist[:, 1:]))
    return PerplexityBasedNN(perplexity=perplexity, n_jobs=n_jobs, knn_index=knn_index)


@functools.cache
def _cache_umap_layouts() -> int:
    """Let numba keep umap-learn's compiled layout optimisers on disk, as it does for pynndescent's.

    umap-learn compiles its layout functions without ``cache=True``, so every new process (every embed
    job) compiled them again: ~1 s of a small map's ~3 s. Numba's own ``enable_caching`` turns its file
    cache on for them (next to the package, or in ``NUMBA_CACHE_DIR``); the maps are unchanged.
    Called once per process by :func:`umap_2d`.

    Returns
    -------
    int
        How many of umap-learn's layout functions now cache (0 where numba finds no writable place).
    """
    import numba
    import umap.layouts

    enabled = 0
    for function in vars(umap.layouts).values():
        if isinstance(function, numba.core.registry.CPUDispatcher):
            try:
                function.enable_caching()
            except RuntimeError:  # no writable cache location: compile in memory as before
                continue
            enabled += 1
    return enabled


def umap_2d(latent: np.ndarray, n_neighbors: int = EMBED.umap_n_neighbors, min_dist: float = EMBED.umap_min_dist,
            seed: int = 0, neighbors: Neighbors | None = None) -> np.ndarray:
    """UMAP of ``latent`` to two dimensions (McInnes et al. 2018, umap-learn's optimiser).

    The graph is scanpy's UMAP graph of the ``n_neighbors`` nearest neighbours (the cell itself
    included); the layout is umap-learn's ``simplicial_set_embedding`` with its defaults (spectral
    initialisation, 500 epochs up to 10,000 cells and 200 above, spread 1), as ``scanpy.tl.umap``.

    Parameters
    ----------
    latent
        ``n_cells x d`` latent matrix.
    n_neighbors
        Size of the local neighbourhood (umap-learn default 15).
    min_dist
        Minimum distance between embedded points (0.5 as in ``scanpy.tl.umap``).
    seed
        Random state; the optimisation runs single-threaded and is reproducible.
    neighbors
        Precomputed neighbours of ``latent`` with at least ``n_neighbors`` per cell; searched when None.

    Returns
    -------
    ``n_cells x 2`` float32 array.
    """
    from umap.umap_ import find_ab_params, simplicial_set_embedding

    _cache_umap_layouts()
    latent = np.asarray(latent, dtype=np.float32)
    n_neighbors = int(min(n_neighbors, latent.shape[0]))
    if neighbors is None:
        neighbors = latent_neighbors(latent, n_neighbors, seed=seed)
    # umap-learn's graph: weights from float32 distances, stored as float32. The precision matters beyond
    # rounding: with a float64 graph the spectral initialisation picks other eigenvectors (measured on
    # pbmc68k, mean over 10 seeds: UMAP distance correlation 0.43 instead of umap-learn's 0.64; 0.62 now).
    dist, idx = neighbors.first(n_neighbors)
    graph = umap_connectivities(dist.astype(np.float32).astype(np.float64), idx).astype(np.float32).tocoo()
    a, b = find_ab_params(1.0, min_dist)
    coords, _ = simplicial_set_embedding(
        data=latent, graph=graph, n_components=2, initial_alpha=1.0, a=a, b=b, gamma=1.0, negative_sample_rate=5,
        n_epochs=None, init="spectral", random_state=np.random.RandomState(seed), metric="euclidean", metric_kwds={},
        densmap=False, densmap_kwds={}, output_dens=False, parallel=False)
    return np.asarray(coords, dtype=np.float32)


def tsne_2d(latent: np.ndarray, perplexity: float = EMBED.tsne_perplexity, seed: int = 0, n_jobs: int = 1,
            method: str = EMBED.tsne_method, neighbors: Neighbors | None = None) -> np.ndarray:
    """t-SNE of ``latent`` with openTSNE (Policar et al. 2024), on exact or shared neighbours.

    Parameters
    ----------
    latent
        ``n_cells x d`` latent matrix.
    perplexity
        Effective neighbourhood size (30, van der Maaten and Hinton 2008); capped for tiny inputs.
    seed
        Random state of the PCA-based initialisation and optimisation.
    n_jobs
        Threads for the neighbour search and gradients.
    method
        Negative gradients: ``"bh"`` (Barnes-Hut), ``"fft"`` (interpolation, Linderman et al. 2019) or
        ``"auto"``: Barnes-Hut below :data:`TSNE_FFT_MIN_CELLS` cells, FFT from there (openTSNE's rule).
    neighbors
        Precomputed neighbours of ``latent`` with at least ``3 * perplexity + 1`` per cell; searched when None.

    Returns
    -------
    ``n_cells x 2`` float32 array.
    """
    from openTSNE import TSNE

    latent = np.asarray(latent, dtype=np.float64)
    n = latent.shape[0]
    if method == "auto":
        method = "fft" if n >= TSNE_FFT_MIN_CELLS else "bh"
    if method not in ("bh", "fft"):
        raise ValueError(f"t-SNE method {method!r}: use 'auto', 'bh' or 'fft'")
    affinities = tsne_affinities(latent, perplexity, neighbors=neighbors, seed=seed, n_jobs=n_jobs)
    tsne = TSNE(n_components=2, random_state=seed, n_jobs=n_jobs, negative_gradient_method=method, verbose=False)
    return np.asarray(tsne.fit(latent, affinities=affinities), dtype=np.float32)


def place_cells(maps: dict[str, np.ndarray], fitted: np.ndarray, latent: np.ndarray,
                k: int = EMBED.umap_n_neighbors, n_jobs: int = 1, block: int = 100_000) -> dict[str, np.ndarray]:
    """Place the cells maps were not fit on at the weighted mean of their nearest fitted cells' positions.

    For every other cell the ``k`` nearest fitted cells in the latent are found once by an exact search
    (scikit-learn's tree search: ~1 s per 100,000 cells against 50,000 fitted cells in a 10-dimensional
    latent); in every map its position is their positions' mean weighted by inverse latent distance
    (Shepard interpolation: a duplicate of a fitted cell lands on it).

    Parameters
    ----------
    maps
        Name -> ``len(fitted) x 2`` map of the fitted cells (e.g. UMAP and t-SNE).
    fitted
        Increasing row indices of the fitted cells.
    latent
        ``n_cells x d`` latent matrix.
    k
        Fitted neighbours averaged per placed cell.
    n_jobs
        Threads of the search.
    block
        Placed cells searched at a time (bounds memory at atlas size).

    Returns
    -------
    dict
        Name -> ``n_cells x 2`` float32 map of every cell (the fitted cells keep their positions).
    """
    from sklearn.neighbors import NearestNeighbors

    latent = np.asarray(latent, dtype=np.float32)
    anchors = {name: np.asarray(xy, dtype=np.float64) for name, xy in maps.items()}
    out = {name: np.empty((latent.shape[0], 2), dtype=np.float64) for name in maps}
    for name, xy in anchors.items():
        out[name][fitted] = xy
    rest = np.setdiff1d(np.arange(latent.shape[0]), fitted)
    if rest.size:
        search = NearestNeighbors(n_neighbors=int(min(k, fitted.size)), n_jobs=n_jobs).fit(latent[fitted])
        for start in range(0, rest.size, block):
            rows = rest[start:start + block]
            dist, idx = search.kneighbors(latent[rows])
            weights = 1.0 / np.maximum(dist, 1e-12)
            weights /= weights.sum(axis=1, keepdims=True)
            for name, xy in anchors.items():
                out[name][rows] = np.einsum("ij,ijc->ic", weights, xy[idx])
    return {name: xy.astype(np.float32) for name, xy in out.items()}


def embed_2d(latent: np.ndarray, n_neighbors: int = EMBED.umap_n_neighbors, min_dist: float = EMBED.umap_min_dist,
             perplexity: float = EMBED.tsne_perplexity, seed: int = 0, n_jobs: int = 1,
             tsne_method: str = EMBED.tsne_method, neighbors_method: str = EMBED.neighbors_method,
             extra_neighbors: int = 0, map_cells: int = EMBED.map_cells,
             ) -> tuple[dict[str, np.ndarray], dict[str, float], Neighbors, np.ndarray]:
    """UMAP and t-SNE of ``latent`` from one neighbour search, each timed.

    Up to ``map_cells`` cells both maps are fit on every cell. Above it they are fit on a seeded
    uniform subsample of ``map_cells`` cells (their own neighbour search) and every other cell is placed
    by :func:`place_cells`; the graph of all cells then holds only the ``max(n_neighbors, extra_neighbors)``
    neighbours Leiden and the stored graph need (at 1M cells pynndescent's search for t-SNE's 91 neighbours
    costs ~12x that of 15).

    Parameters
    ----------
    latent
        ``n_cells x d`` latent matrix.
    n_neighbors, min_dist
        UMAP's neighbourhood size and minimum distance.
    perplexity
        t-SNE's perplexity.
    seed
        Random state of the search, the map subsample, UMAP and t-SNE.
    n_jobs
        Threads of the search and of t-SNE.
    tsne_method
        t-SNE's gradient method (see :func:`tsne_2d`).
    neighbors_method
        Neighbour search (see :func:`geovae.neighbors.latent_neighbors`).
    extra_neighbors
        Neighbours other callers need (e.g. Leiden's graph); the search covers the largest need.
    map_cells
        Largest number of cells the maps are fit on (0: every cell).

    Returns
    -------
    embeddings
        ``{"X_umap": ..., "X_tsne": ...}``.
    seconds
        Wall time of each step, ``{"neighbors": s, "umap": s, "tsne": s}``, plus ``"map_neighbors"`` and
        ``"place"`` when the maps were fit on a subsample.
    neighbors
        The shared neighbours of all cells, for further use (Leiden, ``obsp``).
    map_fitted
        Boolean mask of the cells the maps were fit on (all True up to ``map_cells`` cells).
    """
    from geovae.metrics.fidelity import subsample_indices

    latent = np.asarray(latent, dtype=np.float32)
    n = latent.shape[0]
    fitted = subsample_indices(n, map_cells or None, seed)
    subsampled = fitted.size < n
    # the graph of all cells serves UMAP and t-SNE only when the maps are fit on every cell
    k_shared = max(n_neighbors, extra_neighbors)
    if not subsampled:
        k_shared = max(k_shared, tsne_neighbors(n, perplexity)[1] + 1)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    shared = latent_neighbors(latent, k_shared, method=neighbors_method, seed=seed, n_jobs=n_jobs)
    seconds["neighbors"] = time.perf_counter() - start
    map_latent, map_graph = latent, shared
    if subsampled:
        start = time.perf_counter()
        map_latent = latent[fitted]
        k_map = max(n_neighbors, tsne_neighbors(fitted.size, perplexity)[1] + 1)
        map_graph = latent_neighbors(map_latent, k_map, method=neighbors_method, seed=seed, n_jobs=n_jobs)
        seconds["map_neighbors"] = time.perf_counter() - start
    start = time.perf_counter()
    umap_xy = umap_2d(map_latent, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed, neighbors=map_graph)
    seconds["umap"] = time.perf_counter() - start
    start = time.perf_counter()
    tsne_xy = tsne_2d(map_latent, perplexity=perplexity, seed=seed, n_jobs=n_jobs, method=tsne_method,
                      neighbors=map_graph)
    seconds["tsne"] = time.perf_counter() - start
    is_fitted = np.zeros(n, dtype=bool)
    is_fitted[fitted] = True
    if subsampled:
        start = time.perf_counter()
        placed = place_cells({"umap": umap_xy, "tsne": tsne_xy}, fitted, latent, k=n_neighbors, n_jobs=n_jobs)
        umap_xy, tsne_xy = placed["umap"], placed["tsne"]
        seconds["place"] = time.perf_counter() - start
    return {"X_umap": umap_xy, "X_tsne": tsne_xy}, seconds, shared, is_fitted
