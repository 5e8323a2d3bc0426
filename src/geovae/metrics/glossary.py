"""What each metric of :func:`geovae.metrics.evaluate` means and which direction is better.

One short line per metric for tables and reports; the definitions are in ``docs/metrics.md``.
A name with a ``_umap``/``_tsne`` suffix is the same metric of that 2-D embedding.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["GLOSSARY", "describe", "glossary_table", "RANKED"]

#: metric -> (meaning, better: "higher" / "lower" / "" for settings and counts that are not ranked).
GLOSSARY: dict[str, tuple[str, str]] = {
    "NMI": ("normalised mutual information of KMeans clusters (k = number of labels) with the labels", "higher"),
    "ARI": ("adjusted Rand index of KMeans clusters with the labels", "higher"),
    "AMI": ("adjusted mutual information of KMeans clusters with the labels", "higher"),
    "ASW": ("average silhouette width of the KMeans clusters in the latent", "higher"),
    "ASW_label": ("average silhouette width of the labels in the latent", "higher"),
    "CAL": ("Calinski-Harabasz index of the KMeans clusters (between / within dispersion)", "higher"),
    "DAV": ("Davies-Bouldin index of the KMeans clusters (cluster similarity)", "lower"),
    "COR": ("coupling degree: mean absolute correlation between latent dimensions", "lower"),
    "NMI_leiden": ("NMI of Leiden clusters (best resolution of the sweep) with the labels", "higher"),
    "ARI_leiden": ("ARI of Leiden clusters (best resolution of the sweep) with the labels", "higher"),
    "leiden_resolution": ("Leiden resolution giving NMI_leiden (a setting, not ranked)", ""),
    "leiden_n_clusters": ("number of Leiden clusters at that resolution (not ranked)", ""),
    "kNN_accuracy": ("accuracy of a kNN classifier of the labels in the latent (held-out cells)", "higher"),
    "DC": ("Spearman correlation of pairwise distances, 2-D embedding vs latent", "higher"),
    "DC_pairs": ("DC computed over the distinct cell pairs only (differs from DC by O(1/n))", "higher"),
    "Q_local": ("co-ranking quality of small neighbourhoods (local structure kept)", "higher"),
    "Q_global": ("co-ranking quality of large neighbourhoods (global structure kept)", "higher"),
    "K_max": ("neighbourhood size splitting local from global in the co-ranking (not ranked)", ""),
    "overall_embedding_quality": ("mean of DC, Q_local and Q_global", "higher"),
    "manifold_dimensionality": ("intrinsic-geometry score of the latent's effective dimensionality", "higher"),
    "spectral_decay": ("intrinsic-geometry score of the decay of the latent's covariance spectrum", "higher"),
    "participation_ratio": ("intrinsic-geometry score of the participation ratio of the spectrum", "higher"),
    "anisotropy": ("intrinsic-geometry score of the latent's anisotropy", "higher"),
    "trajectory_directionality": ("intrinsic-geometry score of directional structure (trajectory data)", "higher"),
    "noise_resilience": ("intrinsic-geometry score of robustness of the structure to noise", "higher"),
    "core_intrinsic_quality": ("mean of the core intrinsic-geometry scores", "higher"),
    "overall_intrinsic_quality": ("mean of all intrinsic-geometry scores", "higher"),
    "iLISI": ("integration LISI: effective number of batches in a cell's neighbourhood", "higher"),
    "iLISI_scaled": ("iLISI scaled to [0, 1] by the number of batches", "higher"),
    "program_spearman_mean": ("SIMULATED data: mean Spearman r of the best component with each true program",
                              "higher"),
}
#: Metrics that rank models (a direction is known).
RANKED = frozenset(name for name, (_, better) in GLOSSARY.items() if better)


def _base(metric: str) -> str:
    for suffix in ("_umap", "_tsne"):
        if metric.endswith(suffix) and metric[: -len(suffix)] in GLOSSARY:
            return metric[: -len(suffix)]
    if metric.startswith("program_spearman_") and metric not in GLOSSARY:
        return "program_spearman_mean"
    return metric


def describe(metric: str) -> tuple[str, str]:
    """Meaning and better direction of ``metric`` (``("", "")`` when unknown).

    Parameters
    ----------
    metric
        A metric name as written by :func:`geovae.metrics.evaluate`.

    Returns
    -------
    tuple of str
    """
    base = _base(metric)
    meaning, better = GLOSSARY.get(base, ("", ""))
    if base != metric and metric.endswith(("_umap", "_tsne")):
        meaning = f"{meaning} ({metric.rsplit('_', 1)[1].upper().replace('TSNE', 't-SNE')})"
    elif base != metric:
        meaning = "SIMULATED data: Spearman r of the best component with one true program"
    return meaning, better


def glossary_table(metrics: list[str]) -> pd.DataFrame:
    """One row per metric name: its meaning and which direction is better.

    Parameters
    ----------
    metrics
        Metric names.

    Returns
    -------
    pandas.DataFrame
        Index ``metric``; columns ``meaning``, ``better``.
    """
    rows = {m: describe(m) for m in dict.fromkeys(metrics)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["meaning", "better"]).rename_axis("metric")
