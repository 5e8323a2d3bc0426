"""The kNN graph shared by UMAP, t-SNE and Leiden (``geovae.neighbors``)."""

from __future__ import annotations

import numpy as np
import pytest

from geovae.neighbors import Neighbors, latent_neighbors


def clustered(n: int = 1500, d: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(8, d))
    return (centres[rng.integers(0, 8, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_exact_neighbours_put_each_cell_first_and_sort_by_distance() -> None:
    Z = clustered(400)
    Z[1] = Z[0]  # an exact duplicate: the cell itself must still come first
    nb = latent_neighbors(Z, 20, method="exact")
    assert nb.method == "exact" and nb.indices.shape == (400, 20)
    np.testing.assert_array_equal(nb.indices[:, 0], np.arange(400))
    assert np.all(nb.distances[:, 0] == 0) and np.all(np.diff(nb.distances, axis=1) >= -1e-12)
    brute = np.linalg.norm(Z[:, None, :].astype(np.float64) - Z[None, :, :], axis=2)
    np.testing.assert_allclose(np.sort(brute, axis=1)[:, :20], nb.distances, atol=1e-5)


def test_nndescent_finds_the_exact_neighbours_and_auto_switches_on_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynndescent's approximate search (used above 50,000 cells x 91 neighbours) recalls >= 0.98 of the exact 30-NN."""
    import geovae.neighbors as N

    Z = clustered(3000)
    exact = latent_neighbors(Z, 30, method="exact")
    approx = latent_neighbors(Z, 30, method="nndescent", seed=0)
    np.testing.assert_array_equal(approx.indices[:, 0], np.arange(3000))
    recall = np.mean([len(set(a[1:]) & set(b[1:])) / 29 for a, b in zip(exact.indices, approx.indices)])
    assert recall >= 0.98, recall
    assert latent_neighbors(Z, 5).method == "exact"
    monkeypatch.setattr(N, "EXACT_MAX_ENTRIES", 3000 * 10)  # the switch is on cells x neighbours
    assert latent_neighbors(Z, 10).method == "exact" and latent_neighbors(Z, 11).method == "nndescent"
    with pytest.raises(ValueError, match="neighbour search 'annoy'"):
        latent_neighbors(Z, 5, method="annoy")


def test_scanpy_matrices_of_a_graph() -> None:
    nb = latent_neighbors(clustered(300), 40)
    D = nb.distance_matrix(15)
    assert np.all(np.diff(D.indptr) == 14) and D.diagonal().sum() == 0
    C = nb.connectivities(15)
    assert (C != C.T).nnz == 0 and C.diagonal().sum() == 0
    with pytest.raises(ValueError, match="41 neighbours asked of a graph of 40"):
        nb.first(41)


def test_embeddings_and_leiden_accept_the_shared_graph() -> None:
    """Passing the shared neighbours gives the same UMAP, t-SNE and Leiden as letting each search its own."""
    from geovae.embedding import embed_2d, tsne_2d, umap_2d
    from geovae.metrics.clustering import leiden_clusters

    Z = clustered(500)
    coords, seconds, shared, fitted = embed_2d(Z, seed=3, extra_neighbors=15)
    assert isinstance(shared, Neighbors) and set(seconds) == {"neighbors", "umap", "tsne"} and fitted.all()
    np.testing.assert_array_equal(coords["X_umap"], umap_2d(Z, seed=3))
    np.testing.assert_array_equal(coords["X_tsne"], tsne_2d(Z, seed=3))
    np.testing.assert_array_equal(leiden_clusters(Z, seed=3, neighbors=shared), leiden_clusters(Z, seed=3))
    assert len(np.unique(leiden_clusters(Z, seed=3))) >= 6  # the 8 simulated groups, roughly
    with pytest.raises(ValueError, match="t-SNE method 'exact'"):
        tsne_2d(Z, method="exact")


def test_connectivities_are_computed_once_per_k_and_returned_as_copies():
    rng = np.random.default_rng(0)
    nb = latent_neighbors(rng.normal(size=(200, 5)), 20, method="exact")
    first = nb.connectivities(15)
    first.data[:] = 0.0  # a caller changing its copy does not change the kept graph
    again = nb.connectivities(15)
    assert again.nnz and np.all(again.data > 0)
    assert list(nb._weights) == [15]
    assert (nb.connectivities(10) != again).nnz  # another k, another graph


def test_tl_umap_uses_a_fitting_stored_graph_and_searches_otherwise():
    import anndata as ad

    from geovae import tl
    from geovae.neighbors import store_neighbors, stored_neighbors

    rng = np.random.default_rng(1)
    latent = rng.normal(size=(150, 4)).astype(np.float32)
    adata = ad.AnnData(np.zeros((150, 1), dtype=np.float32), obsm={"X_latent": latent})
    fresh = ad.AnnData(np.zeros((150, 1), dtype=np.float32), obsm={"X_latent": latent})
    tl.umap(fresh, seed=0)  # no graph stored: searched

    store_neighbors(adata, latent_neighbors(latent, 15, method="exact"), 15, use_rep="X_latent")
    back = stored_neighbors(adata, "X_latent", 15)
    exact = latent_neighbors(latent, 15, method="exact")
    assert np.array_equal(back.indices, exact.indices) and np.allclose(back.distances, exact.distances)
    tl.umap(adata, seed=0)
    assert np.array_equal(adata.obsm["X_umap"], fresh.obsm["X_umap"])  # the same graph, the same map

    # a graph of other points stored under the same key is used (proof that it is read) ...
    other = rng.normal(size=(150, 4))
    store_neighbors(adata, latent_neighbors(other, 15, method="exact"), 15, use_rep="X_latent")
    tl.umap(adata, seed=0)
    assert not np.allclose(adata.obsm["X_umap"], fresh.obsm["X_umap"])
    tl.umap(adata, seed=0, neighbors_key=None)  # ... unless asked to search
    assert np.array_equal(adata.obsm["X_umap"], fresh.obsm["X_umap"])
    # graphs that do not fit are ignored: another representation, too few neighbours
    assert stored_neighbors(adata, "X_pca", 15) is None and stored_neighbors(adata, "X_latent", 30) is None
    # t-SNE needs 3 x perplexity neighbours: the stored 15 are not enough, it searches
    tl.tsne(adata, seed=0, perplexity=10)
    tl.tsne(fresh, seed=0, perplexity=10)
    assert np.array_equal(adata.obsm["X_tsne"], fresh.obsm["X_tsne"])


def _labelled_clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(8, 10))
    labels = rng.integers(0, 8, n)
    return (centres[labels] + rng.normal(size=(n, 10))).astype(np.float32), labels


def test_maps_above_map_cells_are_fit_on_a_seeded_subsample_and_place_the_rest() -> None:
    """Fitted cells get the map of the subsample alone; placed cells land among their own cluster."""
    from geovae.embedding import embed_2d, tsne_2d, umap_2d
    from geovae.metrics import neighbour_label_accuracy

    Z, labels = _labelled_clusters(900)
    coords, seconds, shared, fitted = embed_2d(Z, seed=2, extra_neighbors=15, map_cells=300)
    assert fitted.sum() == 300 and shared.indices.shape[0] == 900
    assert {"map_neighbors", "place"} <= set(seconds)
    rows = np.flatnonzero(fitted)
    np.testing.assert_array_equal(coords["X_umap"][rows], umap_2d(Z[rows], seed=2))
    np.testing.assert_array_equal(coords["X_tsne"][rows], tsne_2d(Z[rows], seed=2))
    placed = np.flatnonzero(~fitted)
    for key in ("X_umap", "X_tsne"):
        assert coords[key].shape == (900, 2) and np.isfinite(coords[key]).all()
        assert neighbour_label_accuracy(coords[key], labels, placed) >= 0.95
    again, _, _, fitted_again = embed_2d(Z, seed=2, extra_neighbors=15, map_cells=300)
    np.testing.assert_array_equal(fitted, fitted_again)
    np.testing.assert_array_equal(coords["X_tsne"], again["X_tsne"])
    # map_cells at or above the cell count (or 0) fits every cell
    assert embed_2d(Z[:200], seed=2, map_cells=200)[3].all() and embed_2d(Z[:200], seed=2, map_cells=0)[3].all()


def test_place_cells_weights_nearest_fitted_cells_by_inverse_distance() -> None:
    from geovae.embedding import place_cells

    Z, _ = _labelled_clusters(300, seed=4)
    Z[7] = Z[3]  # duplicate of a fitted cell: lands exactly on it
    fitted = np.arange(0, 300, 3)  # cells 0, 3, 6, ...
    fitted_xy = np.random.default_rng(0).normal(size=(fitted.size, 2)).astype(np.float32)
    placed = place_cells({"a": fitted_xy, "b": -2 * fitted_xy}, fitted, Z, k=5, block=64)  # several blocks
    xy = placed["a"]
    np.testing.assert_allclose(placed["b"], -2 * xy, rtol=1e-5, atol=1e-6)  # one search, the same weights
    assert xy.shape == (300, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy[fitted], fitted_xy)
    np.testing.assert_allclose(xy[7], fitted_xy[1], atol=1e-4)
    # by hand for one placed cell: its 5 nearest fitted cells by brute force
    row = 200
    d = np.linalg.norm(Z[fitted].astype(np.float64) - Z[row], axis=1)
    near = np.argsort(d)[:5]
    w = 1.0 / d[near]
    np.testing.assert_allclose(xy[row], (w[:, None] * fitted_xy[near]).sum(axis=0) / w.sum(), rtol=1e-4)
    np.testing.assert_array_equal(place_cells({"a": fitted_xy}, fitted, Z, k=5)["a"], xy)


def test_shared_graph_keeps_only_the_neighbours_leiden_needs_when_maps_are_subsampled() -> None:
    from geovae.embedding import embed_2d

    Z, _ = _labelled_clusters(500, seed=6)
    _, _, small, _ = embed_2d(Z, seed=1, extra_neighbors=15, map_cells=200)
    _, _, full, _ = embed_2d(Z, seed=1, extra_neighbors=15, map_cells=0)
    assert small.n_neighbors == 15 and full.n_neighbors == 91  # t-SNE's 3 * perplexity + 1
    np.testing.assert_array_equal(small.indices, full.indices[:, :15])


def test_leiden_runs_two_iterations_above_the_convergence_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    import geovae.metrics.clustering as C

    Z, _ = _labelled_clusters(400, seed=5)
    nb = latent_neighbors(Z, 15, method="exact")
    converged = C.leiden_clusters(Z, neighbors=nb, n_iterations=-1)
    two = C.leiden_clusters(Z, neighbors=nb, n_iterations=2)
    np.testing.assert_array_equal(C.leiden_clusters(Z, neighbors=nb), converged)
    monkeypatch.setattr(C, "LEIDEN_CONVERGE_MAX_CELLS", 100)
    np.testing.assert_array_equal(C.leiden_clusters(Z, neighbors=nb), two)


def test_umap_layout_functions_are_compiled_into_numbas_file_cache() -> None:
    """After a map, umap-learn's layout optimisers have a file cache with an index for the next process."""
    import numba
    import umap.layouts

    from geovae.embedding import _cache_umap_layouts, umap_2d

    umap_2d(np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32), seed=0)
    dispatchers = [f for f in vars(umap.layouts).values() if isinstance(f, numba.core.registry.CPUDispatcher)]
    assert dispatchers and _cache_umap_layouts() == len(dispatchers)
    assert all(type(f._cache).__name__ == "FunctionCache" for f in dispatchers)
    # the optimiser that ran wrote its index (where numba keeps it: next to umap-learn or NUMBA_CACHE_DIR)
    used = umap.layouts._nb_optimize_layout_euclidean_single_epoch
    assert __import__("os").path.exists(used._cache._cache_file._index_path)
