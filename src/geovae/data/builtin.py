"""Built-in datasets that need no download: one real (shipped with scanpy), the others SIMULATED.

``load_builtin(name)`` returns a raw AnnData in the pipeline's "raw"
convention: ``.X`` integer counts (CSR float32), unique names, a label column
in ``obs`` (named in the registry entry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .simulate import simulate_atac, simulate_programs, simulate_spatial

#: Maximum tolerated |v - round(v)| / max(v, 1) when undoing pbmc68k's log-normalization.
#: raw.X is stored with ~3 decimals, so the observed maximum is ~4e-4.
PBMC68K_MAX_REL_RESIDUAL = 5e-3


@dataclass(frozen=True)
class BuiltinDataset:
    """Registry entry of a built-in dataset."""

    name: str
    modality: str  # "rna" or "atac"
    label_key: str  # obs column with the cell labels
    simulated: bool
    description: str
    loader: Callable[[], AnnData]


def _load_pbmc68k() -> AnnData:
    """scanpy's ``pbmc68k_reduced`` with integer counts recovered from ``raw``.

    ``raw.X`` holds ``log1p(1e4 * c_ij / n_counts_i)`` where ``n_counts`` is the
    cell's total over the full transcriptome, so ``c_ij = expm1(raw.X) *
    n_counts / 1e4`` (rounded). ``raw`` keeps only 765 genes, so the recovered
    per-cell sums are a fraction (~25 %) of ``obs["n_counts"]``.
    """
    import scanpy as sc  # heavy import, only needed here

    ref = sc.datasets.pbmc68k_reduced()
    if ref.raw is None:
        raise ValueError("pbmc68k: scanpy's pbmc68k_reduced has no .raw to recover counts from")
    logn = sp.csr_matrix(ref.raw.X, dtype=np.float64)
    n_counts = ref.obs["n_counts"].to_numpy(dtype=np.float64)
    values = np.expm1(logn.data) * np.repeat(n_counts, np.diff(logn.indptr)) / 1e4
    counts = np.round(values)
    rel = np.abs(values - counts) / np.maximum(values, 1.0)
    if values.size and (rel.max() > PBMC68K_MAX_REL_RESIDUAL or counts.min() < 1):
        raise ValueError(
            "pbmc68k: raw.X is not log1p(1e4 * counts / obs['n_counts']) "
            f"(max relative residual {rel.max():.3g}, smallest value {values.min():.3g})"
        )
    X = sp.csr_matrix((counts.astype(np.float32), logn.indices, logn.indptr), shape=logn.shape)
    obs = ref.obs.copy()
    var = ref.raw.var.copy()
    adata = AnnData(X=X, obs=obs, var=var)
    adata.obs_names_make_unique()
    adata.var_names_make_unique()
    adata.uns["builtin"] = {
        "name": "pbmc68k",
        "source": "scanpy.datasets.pbmc68k_reduced (700-cell subset of 10x Genomics 68k PBMCs, "
        "Zheng et al. 2017), shipped with scanpy",
        "counts": "round(expm1(raw.X) * obs['n_counts'] / 1e4)",
        "note": "raw keeps 765 genes only; obs n_genes/n_counts refer to the full transcriptome",
        "max_rel_residual": float(rel.max()) if values.size else 0.0,
    }
    return adata


def _load_sim_programs() -> AnnData:
    adata = simulate_programs(n_cells=1500, n_genes=2000, seed=0)
    adata.uns["builtin"] = {"name": "sim_programs", "source": "geovae.data.simulate (SIMULATED)"}
    return adata


def _load_sim_atac() -> AnnData:
    adata = simulate_atac(seed=0)
    adata.uns["builtin"] = {"name": "sim_atac", "source": "geovae.data.simulate (SIMULATED)"}
    return adata


def _load_sim_spatial() -> AnnData:
    adata = simulate_spatial(n_spots=1000, n_genes=500, seed=0)
    adata.uns["builtin"] = {"name": "sim_spatial", "source": "geovae.data.simulate (SIMULATED)",
                            "spatial_key": "spatial"}
    return adata


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset(
            "pbmc68k", "rna", "bulk_labels", False,
            "700 PBMCs x 765 genes, 10 cell types (scanpy pbmc68k_reduced, counts recovered)",
            _load_pbmc68k,
        ),
        BuiltinDataset(
            "sim_programs", "rna", "group", True,
            "SIMULATED 1,500 cells x 2,000 genes, 5 identity programs + 1 activity program",
            _load_sim_programs,
        ),
        BuiltinDataset(
            "sim_atac", "atac", "cell_type", True,
            "SIMULATED scATAC 600 cells x 5,000 peaks, 5 cell types",
            _load_sim_atac,
        ),
        BuiltinDataset(
            "sim_spatial", "rna", "domain", True,
            "SIMULATED spatial 1,000 spots x 500 genes, 5 domains + x/y gradients, coordinates in obsm['spatial']",
            _load_sim_spatial,
        ),
    )
}


def load_builtin(name: str) -> AnnData:
    """Load a built-in dataset by name (no network access needed).

    Parameters
    ----------
    name
        One of ``BUILTIN_DATASETS``: ``"pbmc68k"``, ``"sim_programs"``, ``"sim_atac"``,
        ``"sim_spatial"`` (spot coordinates in ``obsm["spatial"]``).

    Returns
    -------
    AnnData
        Raw counts in ``.X`` (CSR float32), labels in ``obs[BUILTIN_DATASETS[name].label_key]``,
        provenance in ``uns["builtin"]``; simulated ones carry ``uns["simulated"] = True``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known names).
    """
    if name not in BUILTIN_DATASETS:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise ValueError(f"unknown built-in dataset {name!r}; known names: {known}")
    entry = BUILTIN_DATASETS[name]
    adata = entry.loader()
    adata.uns["builtin"].update({"modality": entry.modality, "label_key": entry.label_key})
    return adata
