"""Tests for the SIMULATED data generators in geovae.data.simulate."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from geovae.data.simulate import simulate_atac, simulate_programs


@pytest.fixture(scope="module")
def sim():
    return simulate_programs(n_cells=800, n_genes=1200, program_size=80, seed=7)


def _same(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a != b).nnz == 0


def test_programs_deterministic_for_a_seed(sim):
    again = simulate_programs(n_cells=800, n_genes=1200, program_size=80, seed=7)
    assert _same(sim.X, again.X)
    assert sim.obs.equals(again.obs)
    assert not _same(sim.X, simulate_programs(n_cells=800, n_genes=1200, program_size=80, seed=8).X)


def test_programs_labelled_simulated_with_integer_counts(sim):
    assert sim.uns["simulated"] is True and sim.obs["simulated"].all()
    assert "SIMULATED" in sim.uns["simulation"]["note"]
    assert sp.isspmatrix_csr(sim.X) and sim.shape == (800, 1200)
    assert np.array_equal(sim.X.data, np.round(sim.X.data)) and sim.X.data.min() > 0
    assert sim.var_names[0] == "Gene0001" and sim.var_names.is_unique


def test_programs_stored(sim):
    names = [f"identity_group_{k}" for k in range(5)] + ["activity"]
    members = sim.varm["programs"]
    assert list(members.columns) == names and members.shape == (1200, 6)
    assert (members.sum(axis=0) == 80).all()
    assert members.sum(axis=1).max() == 1  # disjoint programs
    labels = sim.var["program"].astype(str).to_numpy()
    for k, name in enumerate(names):
        assert np.all(labels[members.iloc[:, k].to_numpy()] == name)
    de = sim.varm["program_de_factor"].to_numpy()
    assert np.all(de[~members.to_numpy()] == 1.0)
    assert 1.0 < np.median(np.log(de[members.to_numpy()])) < 3.0  # log D ~ N(2, 1)
    # program genes are spread over the gene order, not one block
    first = np.flatnonzero(members.iloc[:, 0].to_numpy())
    assert first.max() - first.min() > 600


def test_program_usage_and_activity_groups(sim):
    usage = sim.obsm["program_usage"]
    assert usage.shape == (800, 6)
    np.testing.assert_allclose(usage.sum(axis=1), 1.0)
    act_groups = sim.uns["simulation"]["activity_groups"]
    assert len(act_groups) == 3
    active = sim.obs["activity"].to_numpy()
    eligible = sim.obs["group"].isin(act_groups).to_numpy()
    assert not np.any(active & ~eligible)
    frac = active[eligible].mean()
    n = eligible.sum()
    assert abs(frac - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)  # binomial, 4 sd
    u = usage["activity"].to_numpy()
    assert np.all(u[~active] == 0) and u[active].min() >= 0.1 and u[active].max() <= 0.7
    assert np.all(sim.obs["group"].value_counts() == 160)  # balanced groups


def test_programs_are_visible_in_counts(sim):
    X = sim.X.toarray()
    L = np.log1p(1e4 * X / X.sum(axis=1, keepdims=True))
    members = sim.varm["programs"]
    groups = sim.obs["group"].astype(str).to_numpy()
    for k in range(5):
        genes = members.iloc[:, k].to_numpy()
        inside = groups == f"group_{k}"
        lfc = L[inside][:, genes].mean(0) - L[~inside][:, genes].mean(0)
        assert np.median(lfc) > 0.7, k
        others = ~members.to_numpy().any(axis=1)
        lfc_bg = L[inside][:, others].mean(0) - L[~inside][:, others].mean(0)
        assert abs(np.median(lfc_bg)) < 0.2
    genes = members["activity"].to_numpy()
    active = sim.obs["activity"].to_numpy()
    eligible = sim.obs["group"].isin(sim.uns["simulation"]["activity_groups"]).to_numpy()
    lfc = L[active][:, genes].mean(0) - L[eligible & ~active][:, genes].mean(0)
    assert np.median(lfc) > 0.3


def test_programs_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="program_size"):
        simulate_programs(n_genes=100, program_size=50)
    with pytest.raises(ValueError, match="n_activity_groups"):
        simulate_programs(n_groups=2, n_activity_groups=3, n_genes=300, program_size=10)


def test_atac_sparsity_values_and_names():
    ad = simulate_atac()
    assert ad.shape == (600, 5000) and sp.isspmatrix_csr(ad.X)
    sparsity = 1 - ad.X.nnz / np.prod(ad.shape)
    assert 0.90 <= sparsity <= 0.95
    assert set(np.unique(ad.X.data)) == {1.0, 2.0}
    assert ad.uns["simulated"] is True and ad.obs["simulated"].all()
    pattern = re.compile(r"^(chr[0-9XY]+):(\d+)-(\d+)$")
    for name, chrom, start, end in zip(ad.var_names, ad.var["chr"], ad.var["start"], ad.var["end"]):
        m = pattern.match(name)
        assert m and m.group(1) == chrom and int(m.group(2)) == start and int(m.group(3)) == end
    assert ad.var_names.is_unique
    assert (ad.obs["cell_type"].value_counts() == 120).all()


def test_atac_type_specific_peaks_and_determinism():
    ad = simulate_atac(seed=4)
    assert _same(ad.X, simulate_atac(seed=4).X)
    assert not _same(ad.X, simulate_atac(seed=5).X)
    open_ = (ad.X > 0).toarray()
    types = ad.obs["cell_type"].astype(str).to_numpy()
    sets = ad.var["peak_set"].astype(str).to_numpy()
    for t in np.unique(types):
        peaks = sets == f"specific_{t}"
        assert peaks.sum() == 200
        own = open_[types == t][:, peaks].mean()
        other = open_[types != t][:, peaks].mean()
        assert own > 0.25 and other < 0.05
