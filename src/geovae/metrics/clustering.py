"""Clustering and label-structure metrics of a latent space ``Z``.

Definitions (``docs/metrics.md``, section "Clustering"): KMeans with ``k`` = number
of distinct labels (``random_state=42``, ``n_init=10``) gives the predicted clusters;

- ``NMI``, ``ARI`` (the true adjusted Rand index), ``AMI``: labels vs KMeans clusters;
- ``ASW``: silhouette of ``Z`` with the *KMeans* clusters (as the LiVAE authors compute it),
  ``ASW_label``: silhouette with the ground-truth labels;
- ``CAL`` (Calinski-Harabasz) and ``DAV`` (Davies-Bouldin) with the KMeans clusters;
- ``COR`` (coupling degree): mean over latent dimensions of the summed absolute Pearson
  correlation with the other dimensions.

Extra, under their own names: ``NMI_leiden`` / ``ARI_leiden`` (Leiden on the kNN graph of
``Z``, best resolution by NMI) and ``kNN_accuracy`` (cross-validated kNN label accuracy).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

if TYPE_CHECKING:
    from geovae.neighbors import Neighbors

log = logging.getLogger("geovae.metrics")

DEFAULT_RESOLUTIONS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 21))


def _as_latent(Z: np.ndarray) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be a 2-D (n_cells x n_dims) array, got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise ValueError("Z contains NaN or infinite values")
    return Z


def _encode_labels(labels: Sequence | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the labelled cells and the boolean mask of those cells."""
    labels = pd.Series(labels).reset_index(drop=True)
    if labels.size != n:
        raise ValueError(f"labels has {labels.size} entries but Z has {n} rows")
    mask = ~pd.isna(labels).to_numpy()
    codes, _ = pd.factorize(labels[mask], sort=True)
    return codes.astype(np.int64), mask


def coupling_degree(Z: np.ndarray) -> float:
    """``COR``: mean over dimensions of the summed |Pearson r| with the other dimensions.

    ``C = |corrcoef(Z.T)|``, ``COR = mean(C.sum(axis=1) - 1)``; 0 for uncorrelated
    dimensions, ``d - 1`` when all ``d`` dimensions are copies of one another.
    A constant dimension has no correlation: NaN with a warning.

    Parameters
    ----------
    Z
        ``n x d`` latent matrix.
    """
    Z = _as_latent(Z)
    if Z.shape[1] == 1:
        return 0.0
    if np.any(Z.std(axis=0) == 0):
        log.warning("COR undefined: Z has a constant dimension; reporting NaN")
        return float("nan")
    corr = np.abs(np.atleast_2d(np.corrcoef(Z, rowvar=False)))
    return float(np.mean(corr.sum(axis=1) - 1.0))


def clustering_metrics(
    Z: np.ndarray,
    labels: Sequence | np.ndarray,
    seed: int = 42,
    silhouette_indices: np.ndarray | None = None,
) -> dict[str, float]:
    """KMeans-based clustering metrics of ``Z`` against ground-truth labels.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix.
    labels
        ``n`` ground-truth labels; missing values (NaN/None) drop the cell from every metric
        except ``COR`` (computed on all cells).
    seed
        ``random_state`` of KMeans (``n_clusters`` = number of distinct labels, ``n_init=10``).
    silhouette_indices
        Optional row indices (into ``Z``) on which both silhouettes are computed, to bound
        their O(n^2) cost; unlabelled cells among them are skipped. Default: all cells.

    Returns
    -------
    dict
        ``NMI``, ``ARI``, ``AMI``, ``ASW``, ``ASW_label``, ``CAL``, ``DAV``, ``COR``.
    """
    Z = _as_latent(Z)
    codes, mask = _encode_labels(labels, Z.shape[0])
    k = int(codes.max()) + 1 if codes.size else 0
    if k < 2:
        raise ValueError(f"clustering metrics need at least 2 distinct labels, got {k}")
    Zl = Z[mask]
    pred = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(Zl)
    n_pred = np.unique(pred).size
    out = {
        "NMI": float(normalized_mutual_info_score(codes, pred)),
        "ARI": float(adjusted_rand_score(codes, pred)),
        "AMI": float(adjusted_mutual_info_score(codes, pred)),
    }
    if silhouette_indices is None:
        sil_rows = np.arange(Zl.shape[0])
    else:
        # positions among the labelled cells of the requested rows that are labelled
        labelled_pos = np.cumsum(mask) - 1
        rows = np.asarray(silhouette_indices, dtype=np.int64)
        sil_rows = labelled_pos[rows[mask[rows]]]
    out["ASW"] = _silhouette(Zl[sil_rows], pred[sil_rows], "ASW")
    out["ASW_label"] = _silhouette(Zl[sil_rows], codes[sil_rows], "ASW_label")
    if n_pred < 2:
        log.warning("CAL/DAV undefined: KMeans found a single cluster; reporting NaN")
        out["CAL"] = out["DAV"] = float("nan")
    else:
        out["CAL"] = float(calinski_harabasz_score(Zl, pred))
        out["DAV"] = float(davies_bouldin_score(Zl, pred))
    out["COR"] = coupling_degree(Z)
    return out


def _silhouette(X: np.ndarray, groups: np.ndarray, name: str) -> float:
    n_groups = np.unique(groups).size
    if not 2 <= n_groups <= X.shape[0] - 1:
        log.warning("%s undefined: %d groups among %d cells; reporting NaN", name, n_groups, X.shape[0])
        return float("nan")
    return float(silhouette_score(X, groups))


def graph_subsample(labels: Sequence | np.ndarray, n_max: int | None, seed: int = 0) -> np.ndarray:
    """Rows of the labelled cells used by the kNN-graph label metrics, seeded when there are more than ``n_max``.

    The Leiden resolution sweep and the kNN accuracy grow faster than the number of cells (a
    graph search and 20 Leiden runs); above ``n_max`` labelled cells they run on a seeded uniform
    subsample of them (:func:`geovae.metrics.subsample_indices` over the labelled cells), as the
    fidelity metrics do, so every model of a dataset is scored on the same cells.

    Parameters
    ----------
    labels
        One label per cell; missing values mark unlabelled cells (never selected).
    n_max
        Largest number of cells; ``None`` or 0 keeps every labelled cell.
    seed
        Seed of the subsample.

    Returns
    -------
    numpy.ndarray
        Increasing int64 row indices into ``labels``.
    """
    from .fidelity import subsample_indices

    labelled = np.flatnonzero(~pd.isna(pd.Series(labels)).to_numpy())
    return labelled[subsample_indices(labelled.size, n_max or None, seed)]


def leiden_metrics(
    Z: np.ndarray,
    labels: Sequence | np.ndarray,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    n_neighbors: int = 15,
    seed: int = 0,
) -> dict[str, float]:
    """Leiden clustering of the kNN graph of ``Z`` scored against the labels.

    The graph is scanpy's default neighbour graph (exact ``n_neighbors`` neighbours, self
    included, UMAP fuzzy-set connectivities; computed in numpy by
    :func:`geovae.neighbors.umap_connectivities`). Each resolution is clustered by
    igraph's Leiden (modularity objective with resolution, connectivities as weights,
    iterated to convergence, igraph's RNG seeded with ``seed``); the resolution with the best
    NMI is kept.

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix.
    labels
        ``n`` labels; missing values drop the cell (before the graph is built).
    resolutions
        Resolutions to sweep (default 0.1, 0.2, ..., 2.0).
    n_neighbors
        Neighbours of the kNN graph (the cell itself included, as in scanpy).
    seed
        Seed of Leiden.

    Returns
    -------
    dict
        ``NMI_leiden``, ``ARI_leiden`` (at the best resolution), ``leiden_resolution`` and
        ``leiden_n_clusters``.
    """
    Z = _as_latent(Z)
    codes, mask = _encode_labels(labels, Z.shape[0])
    if not len(resolutions):
        raise ValueError("leiden_metrics needs at least one resolution")
    Zl = Z[mask]
    if Zl.shape[0] <= n_neighbors:
        raise ValueError(
            f"leiden_metrics needs more than n_neighbors={n_neighbors} labelled cells, got {Zl.shape[0]}"
        )
    graph, weights = _leiden_graph(Zl, n_neighbors)
    best: dict[str, float] | None = None
    for res in resolutions:
        pred = _leiden(graph, weights, float(res), seed)
        nmi = float(normalized_mutual_info_score(codes, pred))
        if best is None or nmi > best["NMI_leiden"]:
            best = {
                "NMI_leiden": nmi,
                "ARI_leiden": float(adjusted_rand_score(codes, pred)),
                "leiden_resolution": float(res),
                "leiden_n_clusters": float(np.unique(pred).size),
            }
    assert best is not None
    return best


def _leiden_graph(Z: np.ndarray, n_neighbors: int, neighbors: Neighbors | None = None) -> tuple[Any, list[float]]:
    """scanpy's default neighbour graph of ``Z`` (or of given neighbours) as an igraph graph and its edge weights."""
    import igraph as ig

    from geovae.neighbors import knn, umap_connectivities

    weights = (neighbors.connectivities(n_neighbors) if neighbors is not None
               else umap_connectivities(*knn(Z, n_neighbors)))
    upper = sp.triu(weights, k=1).tocoo()
    graph = ig.Graph(n=Z.shape[0], edges=np.column_stack([upper.row, upper.col]), directed=False)
    return graph, upper.data.astype(np.float64).tolist()


#: Cells up to which :func:`leiden_clusters` iterates to convergence by default (2 iterations above).
LEIDEN_CONVERGE_MAX_CELLS = 50_000


def _leiden(graph: Any, weights: list[float], resolution: float, seed: int, n_iterations: int = -1) -> np.ndarray:
    """igraph's Leiden (modularity with resolution; to convergence when ``n_iterations`` < 0), RNG seeded with ``seed``."""
    import igraph as ig

    try:
        ig.set_random_number_generator(random.Random(seed))
        part = graph.community_leiden(objective_function="modularity", weights=weights, resolution=resolution,
                                      n_iterations=n_iterations)
        return np.asarray(part.membership)
    finally:
        ig.set_random_number_generator(random)  # igraph's default: the random module


def leiden_clusters(Z: np.ndarray, resolution: float = 1.0, n_neighbors: int = 15, seed: int = 0,
                    neighbors: Neighbors | None = None, n_iterations: int | None = None) -> np.ndarray:
    """Leiden clusters of the kNN graph of ``Z`` at one resolution (the graph of :func:`leiden_metrics`).

    Parameters
    ----------
    Z
        ``(n, d)`` latent matrix.
    resolution
        Leiden resolution (1.0, scanpy's default).
    n_neighbors
        Neighbours of the kNN graph (the cell itself included).
    seed
        Seed of Leiden.
    neighbors
        Precomputed neighbours of ``Z`` (at least ``n_neighbors`` per cell, e.g. the embed rule's
        shared search); searched exactly when None.
    n_iterations
        Leiden iterations; negative: until no cell moves. None: to convergence up to
        :data:`LEIDEN_CONVERGE_MAX_CELLS` cells and 2 iterations above (the default of scanpy's igraph
        flavour), which bounds the time on atlases (to convergence took minutes on 1M cells).

    Returns
    -------
    numpy.ndarray
        Cluster index of every cell (int).
    """
    Z = _as_latent(Z)
    if n_iterations is None:
        n_iterations = -1 if Z.shape[0] <= LEIDEN_CONVERGE_MAX_CELLS else 2
    if Z.shape[0] <= n_neighbors:
        return np.zeros(Z.shape[0], dtype=int)
    graph, weights = _leiden_graph(Z, n_neighbors, neighbors)
    return _leiden(graph, weights, float(resolution), seed, n_iterations)


def knn_accuracy(
    Z: np.ndarray, labels: Sequence | np.ndarray, k: int = 15, folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """Cross-validated accuracy of a ``k``-nearest-neighbour label classifier on ``Z``.

    Stratified ``folds``-fold split (shuffled with ``seed``; plain KFold when a label has
    fewer than ``folds`` cells); mean accuracy over the folds.

    Parameters
    ----------
    Z
        ``n x d`` latent matrix.
    labels
        Cell labels.
    k
        Neighbours of the classifier (default 15).
    folds
        Cross-validation folds (default 5).
    seed
        Shuffling seed of the folds.

    Returns
    -------
    dict
        ``kNN_accuracy``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    Z = _as_latent(Z)
    codes, mask = _encode_labels(labels, Z.shape[0])
    Zl = Z[mask]
    if Zl.shape[0] < folds:
        raise ValueError(f"knn_accuracy needs at least folds={folds} labelled cells, got {Zl.shape[0]}")
    counts = np.bincount(codes)
    if counts.min() >= folds:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    accs = []
    for train, test in splitter.split(Zl, codes):
        clf = KNeighborsClassifier(n_neighbors=min(k, train.size)).fit(Zl[train], codes[train])
        accs.append(float(np.mean(clf.predict(Zl[test]) == codes[test])))
    return {"kNN_accuracy": float(np.mean(accs))}


def neighbour_label_accuracy(xy: np.ndarray, labels: Sequence | np.ndarray, rows: np.ndarray | None = None,
                             k: int = 15) -> float:
    """Share of ``rows`` whose ``k`` nearest other cells in ``xy`` mostly carry the row's own label.

    A majority vote of each cell's neighbours among all cells (ties go to the first label in sorted
    order), without cross-validation: the check of a map, e.g. of the cells placed on maps fit on a
    subsample (:func:`geovae.embedding.place_cells`). :func:`knn_accuracy` is the cross-validated
    classifier of the metric suite.

    Parameters
    ----------
    xy
        ``n x d`` coordinates (a 2-D map or a latent).
    labels
        ``n`` cell labels (no missing values).
    rows
        Cells to score (default: all).
    k
        Neighbours that vote (default 15).

    Returns
    -------
    float
        Accuracy in [0, 1]; NaN when ``rows`` is empty.

    Raises
    ------
    ValueError
        If ``labels`` does not have one entry per row of ``xy`` or has missing values.
    """
    from sklearn.neighbors import NearestNeighbors

    xy = _as_latent(xy)
    codes, mask = _encode_labels(labels, xy.shape[0])
    if not mask.all():
        raise ValueError(f"labels has {int((~mask).sum())} missing values")
    rows = np.arange(xy.shape[0]) if rows is None else np.asarray(rows)
    if rows.size == 0:
        return float("nan")
    idx = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy[rows], return_distance=False)[:, 1:]
    votes = np.zeros((rows.size, int(codes.max()) + 1), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(rows.size), idx.shape[1]), codes[idx].ravel()), 1)
    return float(np.mean(votes.argmax(axis=1) == codes[rows]))
