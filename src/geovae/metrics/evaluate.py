"""One call that computes every metric of an embedded AnnData as a tidy table."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..options import METRICS
from .batch import ilisi
from .clustering import (
    clustering_metrics,
    coupling_degree,
    graph_subsample,
    knn_accuracy,
    leiden_metrics,
)
from .fidelity import (
    FIDELITY_METRICS,
    LatentNeighbourhood,
    embedding_fidelity,
    subsample_indices,
)
from .intrinsic import Mode, intrinsic_metrics
from .programs import program_recovery

log = logging.getLogger("geovae.metrics")

DEFAULT_EMBEDDINGS: Mapping[str, str] = {"umap": "X_umap", "tsne": "X_tsne"}
CATEGORIES = ("clustering", "umap", "tsne", "intrinsic", "batch", "programs")
#: Metrics that compare the latent space with ground-truth labels (need >= 2 distinct labels).
LABEL_METRICS = ("NMI", "ARI", "AMI", "ASW", "ASW_label", "CAL", "DAV")
LEIDEN_LABEL_METRICS = ("NMI_leiden", "ARI_leiden", "leiden_resolution", "leiden_n_clusters", "kNN_accuracy")


def _obsm_array(adata, key: str, what: str) -> np.ndarray:
    if key not in adata.obsm:
        raise KeyError(f"{what}: adata.obsm has no {key!r} (available: {sorted(adata.obsm.keys())})")
    value = adata.obsm[key]
    if isinstance(value, pd.DataFrame):
        return value.to_numpy(dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def _obs_column(adata, key: str, what: str) -> pd.Series:
    if key not in adata.obs.columns:
        raise KeyError(f"{what}: adata.obs has no column {key!r}")
    return adata.obs[key].reset_index(drop=True)


def evaluate(
    adata,
    latent_key: str = "X_latent",
    label_key: str | None = None,
    batch_key: str | None = None,
    embedding_keys: Mapping[str, str] | None = None,
    n_subsample: int | None = METRICS.n_subsample,
    n_graph_subsample: int | None = METRICS.n_graph_subsample,
    seed: int = METRICS.seed,
    mode: Mode = METRICS.mode,  # type: ignore[assignment]
    program_key: str | None = None,
    leiden: bool = True,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Compute all metrics of the latent space (and its 2-D embeddings) of ``adata``.

    Parameters
    ----------
    adata
        AnnData with the latent matrix in ``obsm[latent_key]``.
    latent_key
        ``obsm`` key of the latent matrix ``Z`` (posterior means).
    label_key
        ``obs`` column of ground-truth cell types; enables the clustering metrics (cells with
        a missing label are skipped there).
    batch_key
        ``obs`` column of batches; enables ``iLISI`` when there are at least 2 batches (cells
        with a missing batch are skipped).
    embedding_keys
        Name -> ``obsm`` key of the 2-D embeddings to score (default
        ``{"umap": "X_umap", "tsne": "X_tsne"}``). A missing key is reported as NaN metrics
        with a warning.
    n_subsample
        Cells (seeded, :func:`subsample_indices`) used for the O(n^2) metrics: embedding
        fidelity and the silhouettes. ``None``: all cells.
    n_graph_subsample
        Labelled cells (seeded) used by the Leiden resolution sweep and the kNN accuracy when
        there are more; ``None`` or 0: all labelled cells. KMeans and its scores always use
        every labelled cell.
    seed
        Seed of the subsample, of Leiden and of the kNN-accuracy folds (KMeans keeps the
        authors' ``random_state=42``).
    mode
        Intrinsic-metric mode, ``"trajectory"`` or ``"steady_state"``.
    program_key
        ``obsm`` key of true per-cell program usages (DataFrame or array); enables the
        program-recovery metrics.
    leiden
        Also run the Leiden resolution sweep and kNN accuracy (clustering category).
    n_jobs
        Threads: of the fidelity metrics (default: the available CPUs, at most 8) and, when
        given, the limit of OpenMP/BLAS threads (KMeans, silhouettes) for the whole call,
        e.g. a Snakemake rule's ``threads``. The numbers do not depend on it.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric``, ``value`` (float), ``category`` (one of :data:`CATEGORIES`;
        an embedding's category is its name).
        Fidelity metrics carry the embedding name as suffix (``DC_umap``, ``Q_local_tsne``, ...).
        ``attrs`` records ``n_cells``, ``n_fidelity_cells``, ``n_graph_cells`` (cells of the Leiden sweep
        and kNN accuracy; 0 when not run), ``seed``, ``latent_key``, ``mode`` and
        ``not_applicable`` (metrics reported as NaN because ``label_key`` has fewer than 2 labels).
    """
    limits = threadpool_limits(limits=n_jobs) if n_jobs is not None else contextlib.nullcontext()
    with limits:
        return _evaluate(
            adata, latent_key, label_key, batch_key, embedding_keys, n_subsample, n_graph_subsample, seed, mode,
            program_key, leiden, n_jobs,
        )


def _evaluate(
    adata,
    latent_key: str,
    label_key: str | None,
    batch_key: str | None,
    embedding_keys: Mapping[str, str] | None,
    n_subsample: int | None,
    n_graph_subsample: int | None,
    seed: int,
    mode: Mode,
    program_key: str | None,
    leiden: bool,
    n_jobs: int | None,
) -> pd.DataFrame:
    Z = _obsm_array(adata, latent_key, "latent")
    if Z.ndim != 2:
        raise ValueError(f"obsm[{latent_key!r}] must be 2-D, got shape {Z.shape}")
    n = Z.shape[0]
    embeddings = DEFAULT_EMBEDDINGS if embedding_keys is None else embedding_keys
    idx = subsample_indices(n, n_subsample, seed)
    rows: list[tuple[str, float, str]] = []

    def add(values: Mapping[str, float], category: str, suffix: str = "") -> None:
        rows.extend((f"{name}{suffix}", float(value), category) for name, value in values.items())

    not_applicable: list[str] = []
    n_graph = 0
    if label_key is not None:
        labels = _obs_column(adata, label_key, "labels")
        n_labels = int(labels.nunique(dropna=True))
        if n_labels < 2:
            # one cell type: the label metrics are undefined, not failed (reported as NaN)
            names = [*LABEL_METRICS, *(LEIDEN_LABEL_METRICS if leiden else ())]
            log.warning("clustering metrics not applicable: obs column %r has %d distinct label(s); "
                        "%s reported as NaN", label_key, n_labels, ", ".join(names))
            not_applicable.extend(names)
            add({name: float("nan") for name in names}, "clustering")
            add({"COR": coupling_degree(Z)}, "clustering")
        else:
            add(clustering_metrics(Z, labels, silhouette_indices=idx), "clustering")
            if leiden:
                rows_g = graph_subsample(labels, n_graph_subsample, seed)
                n_graph = int(rows_g.size)
                Zg, labels_g = Z[rows_g], labels.iloc[rows_g].reset_index(drop=True)
                add(leiden_metrics(Zg, labels_g, seed=seed), "clustering")
                add(knn_accuracy(Zg, labels_g, seed=seed), "clustering")

    latent: LatentNeighbourhood | None = None
    for name, key in embeddings.items():
        if key not in adata.obsm:
            log.warning("embedding %r: adata.obsm has no %r; its fidelity metrics are NaN", name, key)
            add({m: float("nan") for m in (*FIDELITY_METRICS, "DC_pairs")}, name, f"_{name}")
            continue
        Y = _obsm_array(adata, key, f"embedding {name!r}")
        if Y.shape[0] != n:
            raise ValueError(f"obsm[{key!r}] has {Y.shape[0]} rows but obsm[{latent_key!r}] has {n}")
        if latent is None:
            latent = LatentNeighbourhood(Z[idx], n_jobs=n_jobs)  # shared by every embedding
        add(embedding_fidelity(None, Y[idx], latent=latent), name, f"_{name}")

    add(intrinsic_metrics(Z, mode=mode), "intrinsic")

    if batch_key is not None:
        batches = _obs_column(adata, batch_key, "batches")
        keep = ~batches.isna().to_numpy()
        if not keep.all():
            log.warning("iLISI: skipping %d cells with a missing %r", int((~keep).sum()), batch_key)
        n_batches = batches[keep].nunique()
        if n_batches > 1:
            add(ilisi(Z[keep], batches[keep]), "batch")
        else:
            log.warning("batch metrics skipped: %r has %d batch(es)", batch_key, n_batches)

    if program_key is not None:
        value = adata.obsm[program_key] if program_key in adata.obsm else None
        if value is None:
            raise KeyError(f"programs: adata.obsm has no {program_key!r}")
        add(program_recovery(Z, value), "programs")

    table = pd.DataFrame(rows, columns=["metric", "value", "category"])
    table.attrs.update(
        n_cells=n, n_fidelity_cells=int(idx.size), n_graph_cells=n_graph, seed=seed, latent_key=latent_key, mode=mode,
        not_applicable=not_applicable,
    )
    return table
