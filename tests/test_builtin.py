"""Tests for the built-in datasets registry (geovae.data.builtin)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from geovae.data.builtin import BUILTIN_DATASETS, load_builtin
from geovae.preprocessing import preprocess_rna


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        load_builtin("pbmc3k_typo")
    for name in ("pbmc68k", "sim_programs", "sim_atac"):
        assert name in str(err.value)


@pytest.fixture(scope="module")
def pbmc():
    return load_builtin("pbmc68k")


def test_pbmc68k_counts_are_integers_consistent_with_raw(pbmc):
    import scanpy as sc

    ref = sc.datasets.pbmc68k_reduced()
    assert pbmc.shape == (700, 765) and sp.isspmatrix_csr(pbmc.X)
    data = pbmc.X.data
    assert np.array_equal(data, np.round(data)) and data.min() >= 1
    assert list(pbmc.var_names) == list(ref.raw.var_names)
    assert list(pbmc.obs_names) == list(ref.obs_names)
    # round trip: log1p(1e4 * counts / n_counts) reproduces the stored raw.X
    n_counts = pbmc.obs["n_counts"].to_numpy(dtype=np.float64)
    relog = np.log1p(1e4 * pbmc.X.toarray() / n_counts[:, None])
    np.testing.assert_allclose(relog, ref.raw.X.toarray(), atol=2e-3)
    # the smallest count of each cell is 1: expm1(min raw value) == 1e4 / n_counts
    raw = sp.csr_matrix(ref.raw.X)
    row_min = np.array([raw.data[raw.indptr[i] : raw.indptr[i + 1]].min() for i in range(700)])
    np.testing.assert_allclose(np.expm1(row_min) * n_counts / 1e4, 1.0, atol=2e-3)
    # raw keeps 765 of the genes: per-cell sums are a part of n_counts, never more
    sums = np.asarray(pbmc.X.sum(axis=1)).ravel()
    assert np.all(sums <= n_counts) and 0.1 < np.median(sums / n_counts) < 0.5
    assert pbmc.uns["builtin"]["max_rel_residual"] < 5e-3


def test_pbmc68k_labels_and_default_pipeline(pbmc):
    assert pbmc.obs["bulk_labels"].nunique() == 10
    assert {"n_counts", "percent_mito", "louvain"} <= set(pbmc.obs)
    out = preprocess_rna(pbmc)
    assert sp.issparse(out.X) and out.n_vars == 765  # 5,000 HVGs capped at 765
    assert out.n_obs > 650


@pytest.mark.parametrize("name", ["sim_programs", "sim_atac"])
def test_simulated_builtins(name):
    ad = load_builtin(name)
    entry = BUILTIN_DATASETS[name]
    assert ad.uns["simulated"] is True and entry.simulated
    assert entry.label_key in ad.obs
    assert ad.uns["builtin"]["modality"] == entry.modality
    assert sp.isspmatrix_csr(ad.X) and np.array_equal(ad.X.data, np.round(ad.X.data))
    expected = {"sim_programs": (1500, 2000), "sim_atac": (600, 5000)}[name]
    assert ad.shape == expected
