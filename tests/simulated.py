"""SIMULATED count data shared by the model tests (imported as ``from simulated import ...``)."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp


def simulated_counts(n_cells: int = 160, n_genes: int = 50, n_groups: int = 3, seed: int = 0,
                     library_size: float = 600.0, modality: str = "rna", spatial: bool = False) -> anndata.AnnData:
    """SIMULATED NB counts from group-specific profiles, with the fields geovae's preprocessing writes.

    Parameters
    ----------
    n_cells, n_genes, n_groups
        Shape and number of groups (``obs["label"]``).
    seed
        Seed of the generator.
    library_size
        Median library size (log-normal, sd 0.3 on the log scale).
    modality
        Recorded in ``uns["geovae_input"]``.
    spatial
        Also draw 2-D coordinates into ``obsm["spatial"]`` (after the counts, so the counts do
        not depend on it).

    Returns
    -------
    anndata.AnnData
        ``layers["counts"]`` (CSR), log-normalised ``X``, ``var["input_mean"/"input_std"]``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_groups, n_cells)
    profiles = rng.gamma(0.6, 1.0, size=(n_groups, n_genes))
    profiles /= profiles.sum(axis=1, keepdims=True)
    mu = profiles[labels] * rng.lognormal(np.log(library_size), 0.3, n_cells)[:, None]
    counts = rng.negative_binomial(4, 4 / (4 + mu)).astype(np.float32)
    norm = np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4).astype(np.float32)
    adata = anndata.AnnData(X=sp.csr_matrix(norm))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.var["input_mean"] = norm.mean(0)
    adata.var["input_std"] = norm.std(0)
    adata.uns["geovae_input"] = {"modality": modality, "center_scale": True, "clip": 10.0}
    adata.obs["label"] = pd.Categorical(labels.astype(str))
    if spatial:
        adata.obsm["spatial"] = rng.uniform(0, 10, size=(n_cells, 2)).astype(np.float32)
    return adata
