"""Known-answer tests for geovae.preprocessing (QC, HVG, TF-IDF, HVP, model input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from geovae.data.simulate import simulate_programs
from geovae.preprocessing import (
    batch_input,
    feature_moments,
    hvg,
    hvp,
    model_input,
    preprocess,
    preprocess_atac,
    preprocess_rna,
    qc_atac,
    qc_rna,
    tfidf,
    tfidf_matrix,
)

SHARED = Path(__file__).parents[2] / "shared"
GRANJA = SHARED / "data" / "granja2019_hemato_atac_600.h5ad"


# --------------------------------------------------------------------------- TF-IDF
def test_tfidf_matches_hand_computation():
    counts = np.array([[1, 0, 1, 0], [2, 2, 0, 0], [0, 0, 4, 0], [0, 0, 0, 0]], dtype=float)
    # N = 4 cells; cells with a count: peak0 2, peak1 1, peak2 2, peak3 0
    idf = np.array([np.log(1 + 4 / 2), np.log(1 + 4 / 1), np.log(1 + 4 / 2), 0.0])
    tf = np.array([[0.5, 0, 0.5, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 0]])
    expected = np.log1p(1e4 * tf * idf)
    out = tfidf_matrix(sp.csr_matrix(counts), scale_factor=1e4, log=True)
    assert sp.issparse(out) and out.dtype == np.float32
    np.testing.assert_allclose(out.toarray(), expected, rtol=1e-6)
    # one entry written out: log1p(1e4 * 0.5 * ln 3) = ln(5494.06...) = 8.61142...
    assert out[0, 0] == pytest.approx(8.611423, abs=1e-5)
    # zeros stay zeros, empty cell and never-open peak give 0 (not NaN)
    assert out.nnz == np.count_nonzero(counts)
    assert np.all(np.isfinite(out.toarray()))
    no_log = tfidf_matrix(counts, scale_factor=100.0, log=False).toarray()
    np.testing.assert_allclose(no_log, 100.0 * tf * idf, rtol=1e-6)


def test_tfidf_verb_keeps_counts_and_records_params():
    counts = sp.csr_matrix(np.array([[1, 0, 3], [0, 2, 1]], dtype=np.float32))
    ad = AnnData(counts.copy())
    tfidf(ad, scale_factor=1e4)
    assert sp.issparse(ad.X)
    np.testing.assert_array_equal(ad.layers["counts"].toarray(), counts.toarray())
    np.testing.assert_allclose(ad.X.toarray(), tfidf_matrix(counts).toarray())
    assert ad.uns["tfidf"]["scale_factor"] == 1e4 and ad.uns["tfidf"]["log"] is True
    with pytest.raises(ValueError, match="integer"):
        tfidf(AnnData(sp.csr_matrix(np.array([[0.5, 1.0]], dtype=np.float32))))


# --------------------------------------------------------------------------- HVP
def _atac_with_known_frequencies() -> AnnData:
    """100 cells; peak j is open in freq[j] cells (first cells), counts 1..4."""
    rng = np.random.default_rng(3)
    freq = [0, 1, 2, 3, 5, 10, 20, 50, 80, 90, 95, 96, 100]
    X = np.zeros((100, len(freq)), dtype=np.float32)
    for j, f in enumerate(freq):
        X[:f, j] = rng.integers(1, 5, size=f)
    X[:, 0] = 0
    ad = AnnData(sp.csr_matrix(X))
    ad.uns["freq"] = np.array(freq)
    return ad


def test_hvp_respects_frequency_bounds_and_ranks_by_variance():
    ad = tfidf(_atac_with_known_frequencies())
    freq = ad.uns["freq"] / 100
    hvp(ad, n_top_peaks=100, min_frac=0.05, max_frac=0.9)
    sel = ad.var["highly_variable"].to_numpy()
    np.testing.assert_array_equal(sel, (freq >= 0.05) & (freq <= 0.9))
    np.testing.assert_allclose(ad.var["frac_cells"], freq, rtol=1e-6)
    # variance of TF-IDF values matches a dense computation; ranking follows it
    dense_var = ad.X.toarray().var(axis=0)
    np.testing.assert_allclose(ad.var["tfidf_var"], dense_var, rtol=1e-4, atol=1e-6)
    top2 = hvp(ad, n_top_peaks=2, min_frac=0.05, max_frac=0.9, subset=True)
    cand = np.flatnonzero(sel)
    best = cand[np.argsort(-dense_var[cand], kind="stable")[:2]]
    assert list(top2.var_names) == list(ad.var_names[np.sort(best)])
    assert top2.n_vars == 2 and sp.issparse(top2.X)


def test_hvp_requires_tfidf_and_a_nonempty_window():
    ad = _atac_with_known_frequencies()
    with pytest.raises(ValueError, match="tfidf"):
        hvp(ad)
    tfidf(ad)
    with pytest.raises(ValueError, match="no peak"):
        hvp(ad, min_frac=0.97, max_frac=0.99)


# --------------------------------------------------------------------------- model input
def test_model_input_zscore_and_clip():
    rng = np.random.default_rng(0)
    dense = (rng.poisson(0.4, size=(500, 30)) * rng.gamma(2, 1, size=30)).astype(np.float32)
    dense[:, 5] = 0.0  # constant feature -> std 1, output 0
    X = sp.csr_matrix(dense)
    mean, std = feature_moments(X)
    np.testing.assert_allclose(mean, dense.mean(0), rtol=1e-5, atol=1e-6)
    expected_std = dense.std(0)
    expected_std[5] = 1.0
    np.testing.assert_allclose(std, expected_std, rtol=1e-4)
    z = model_input(X, mean, std, clip=None)
    assert z.dtype == np.float32 and z.shape == (500, 30) and isinstance(z, np.ndarray)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    keep = np.arange(30) != 5
    np.testing.assert_allclose(z.std(0)[keep], 1.0, atol=1e-4)
    assert np.all(z[:, 5] == 0)
    zc = model_input(X, mean, std, clip=1.5)
    assert zc.max() == pytest.approx(1.5) and zc.min() >= -1.5
    np.testing.assert_allclose(zc, np.clip(z, -1.5, 1.5), atol=1e-6)
    # no centering: just densified values
    np.testing.assert_array_equal(model_input(X[:4]), dense[:4])
    with pytest.raises(ValueError, match="features"):
        model_input(X, mean[:3], std[:3])


# --------------------------------------------------------------------------- QC
def _qc_toy() -> AnnData:
    genes = ["MT-CO1", "mt-Nd1", "G1", "G2", "G3", "G4", "G5", "G6"]
    X = np.array(
        [
            [1, 0, 5, 5, 5, 5, 0, 0],   # c0: 5 genes, mito 1/21 = 4.8 %  -> keep
            [0, 0, 3, 0, 2, 0, 0, 0],   # c1: 2 genes                    -> too few genes
            [9, 9, 2, 2, 2, 0, 0, 0],   # c2: 5 genes, mito 18/24 = 75 % -> too much mito
            [0, 1, 1, 1, 1, 0, 1, 0],   # c3: 5 genes, mito 1/5 = 20 %   -> keep (boundary)
            [0, 0, 4, 4, 0, 4, 0, 1],   # c4: 4 genes, mito 0 %          -> keep
        ],
        dtype=np.float32,
    )
    return AnnData(
        sp.csr_matrix(X),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(5)]),
        var=pd.DataFrame(index=genes),
    )


def test_qc_rna_filters_the_right_cells_and_genes():
    ad = _qc_toy()
    out = qc_rna(ad, min_genes=3, min_cells=2, max_pct_mito=20.0, qc="fixed")
    assert list(out.obs_names) == ["c0", "c3", "c4"]
    # gene detection among kept cells: MT-CO1 1, mt-Nd1 1, G1 3, G2 3, G3 2, G4 2, G5 1, G6 1
    assert list(out.var_names) == ["G1", "G2", "G3", "G4"]
    np.testing.assert_array_equal(out.obs["n_genes_by_counts"], [5, 5, 4])
    np.testing.assert_allclose(out.obs["pct_counts_mt"], [100 / 21, 20.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(out.obs["total_counts"], [21, 5, 13])
    np.testing.assert_array_equal(out.var["n_cells"], [3, 3, 2, 2])
    assert sp.issparse(out.X)
    assert ad.n_obs == 5 and "pct_counts_mt" not in ad.obs  # input untouched


def test_qc_refuses_empty_results_and_non_counts():
    ad = _qc_toy()
    with pytest.raises(ValueError, match="QC removed all 5 cells; rule 'min_genes'"):
        qc_rna(ad, min_genes=50, qc="fixed")
    with pytest.raises(ValueError, match="no gene"):
        qc_rna(ad, min_genes=1, min_cells=10, qc="fixed")
    logged = ad.copy()
    logged.X = sp.csr_matrix(np.log1p(ad.X.toarray()))
    with pytest.raises(ValueError, match="integer"):
        qc_rna(logged)
    with pytest.raises(ValueError, match="QC removed all 5 cells; rule 'min_peaks'"):
        qc_atac(ad, min_peaks=50)


# --------------------------------------------------------------------------- RNA pipeline
@pytest.fixture(scope="module")
def sim_rna() -> AnnData:
    return simulate_programs(n_cells=600, n_genes=1500, seed=1)


def test_hvg_seurat_v3_finds_program_genes(sim_rna):
    ad = sim_rna.copy()
    out = hvg(ad, n_top_genes=300, subset=True)
    assert out.n_vars == 300
    is_program = (sim_rna.var["program"].astype(str) != "none").to_numpy()
    # 40 % of genes belong to a program; the top HVGs should be mostly those
    assert is_program[sim_rna.var_names.get_indexer(out.var_names)].mean() > 0.8
    capped = hvg(sim_rna.copy(), n_top_genes=10**6)
    assert capped.var["highly_variable"].all()


def test_preprocess_rna_output_convention(sim_rna):
    out = preprocess_rna(sim_rna, n_top_genes=500)
    # adaptive QC removes the outliers of the SIMULATED library sizes (2 of 600), and records it
    assert out.n_vars == 500 and out.n_obs == out.uns["geovae_qc"]["n_obs_kept"] >= 0.99 * sim_rna.n_obs
    assert sp.issparse(out.X) and sp.issparse(out.layers["counts"])
    counts = out.layers["counts"]
    raw = sim_rna[out.obs_names, out.var_names].X
    np.testing.assert_array_equal(counts.toarray(), raw.toarray())
    # X = log1p(1e4 * counts / library size over all QC-kept genes, not only the HVGs)
    qc_genes = qc_rna(sim_rna).var_names
    assert len(qc_genes) < sim_rna.n_vars  # some genes fail min_cells=3, so this matters
    lib = np.asarray(sim_rna[out.obs_names, qc_genes].X.sum(axis=1)).ravel()
    np.testing.assert_allclose(
        out.X.toarray(), np.log1p(1e4 * counts.toarray() / lib[:, None]), rtol=1e-5, atol=1e-6
    )
    assert out.var["input_mean"].dtype == np.float32 and out.var["input_std"].dtype == np.float32
    np.testing.assert_allclose(out.var["input_mean"], out.X.toarray().mean(0), rtol=1e-4, atol=1e-6)
    assert out.uns["geovae_input"] == {"modality": "rna", "center_scale": True, "clip": 10.0}
    params = out.uns["geovae_preprocess"]
    assert params["n_top_genes"] == 500 and params["min_genes"] == 200 and params["clip"] == 10.0
    z = batch_input(out, np.arange(out.n_obs))
    assert np.abs(z).max() <= 10.0
    assert np.abs(z.mean(0)).max() < 0.05  # ~0 (exactly 0 before clipping)


def test_sparse_helpers_are_the_same_in_chunks(monkeypatch):
    """The atlas-size chunking of col_mean_var / scale_rows gives the one-pass results."""
    from geovae.preprocessing import _sparse

    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    X[5] = 0  # an empty row
    X.eliminate_zeros()
    factors = rng.random(300) * 100
    whole = _sparse.col_mean_var(X), _sparse.scale_rows(X, factors)
    monkeypatch.setattr(_sparse, "NNZ_CHUNK", 7)  # many chunks, with rows split across them
    mean, var = _sparse.col_mean_var(X)
    np.testing.assert_allclose(mean, whole[0][0], rtol=1e-12)
    np.testing.assert_allclose(var, whole[0][1], rtol=1e-9, atol=1e-12)
    blocks = _sparse.row_blocks(X)
    assert blocks[0][0] == 0 and blocks[-1][1] == 300 and all(a < b for a, b in blocks)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(blocks, blocks[1:])) and len(blocks) > 10
    scaled = _sparse.scale_rows(X, factors)
    assert scaled.dtype == np.float32 and np.array_equal(scaled.data, whole[1].data)
    np.testing.assert_array_equal(scaled.toarray(), (X.toarray() * factors[:, None]).astype(np.float32))
    from geovae.interpretation.components import component_gene_correlations

    z = rng.normal(size=(300, 3))
    chunked = component_gene_correlations(X, z)
    monkeypatch.setattr(_sparse, "NNZ_CHUNK", 1 << 24)
    np.testing.assert_allclose(chunked, component_gene_correlations(X, z), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(chunked, component_gene_correlations(X.toarray(), z), rtol=1e-8, atol=1e-10)


def test_preprocess_rna_keeps_its_input_intact_when_everything_passes(sim_rna):
    """With every cell and gene kept, the output shares no buffer with the input."""
    detected = np.flatnonzero(np.asarray((sim_rna.X > 0).sum(axis=0)).ravel() > 0)
    raw = sim_rna[:, detected[:300]].copy()
    before = raw.X.copy()
    out = preprocess_rna(raw, n_top_genes=300, qc="fixed", min_genes=1, min_cells=1, max_pct_mito=100.0)
    assert out.n_obs == raw.n_obs and out.n_vars == raw.n_vars
    out.layers["counts"].data[:] = -1
    assert (raw.X != before).nnz == 0


def test_preprocessed_h5ad_round_trip(sim_rna, tmp_path):
    import anndata

    out = preprocess_rna(sim_rna, n_top_genes=200)
    path = tmp_path / "pre.h5ad"
    out.write_h5ad(path, compression="gzip")
    back = anndata.read_h5ad(path)
    assert sp.issparse(back.X) and sp.issparse(back.layers["counts"])
    assert back.uns["simulated"] and "program_usage" in back.obsm
    np.testing.assert_array_equal(batch_input(back, np.arange(50)), batch_input(out, np.arange(50)))


def test_preprocess_dispatches_and_rejects_unknown_settings(sim_rna):
    out = preprocess(sim_rna, "rna", min_genes=100, n_top_genes=200)
    assert out.uns["geovae_preprocess"]["modality"] == "rna" and out.n_vars == 200
    with pytest.raises(ValueError, match="unknown rna setting"):
        preprocess(sim_rna, "rna", n_top_peaks=100)
    with pytest.raises(ValueError, match="modality"):
        preprocess(sim_rna, "protein")


# --------------------------------------------------------------------------- ATAC pipeline
@pytest.fixture(scope="module")
def granja() -> AnnData:
    if not GRANJA.exists():
        pytest.skip(f"{GRANJA.name} not found because ../shared is missing")
    import anndata

    return anndata.read_h5ad(GRANJA)


def test_preprocess_atac_on_real_granja(granja):
    out = preprocess_atac(granja, binarize=False)  # the default binarizes (LiVAE paper section 2.6.3)
    assert sp.issparse(out.X) and sp.issparse(out.layers["counts"])
    assert 0 < out.n_vars <= 10000 and out.n_obs == granja.n_obs  # all 600 cells have >= 14 peaks
    frac = np.asarray((out.layers["counts"] > 0).mean(axis=0)).ravel()
    assert frac.min() >= 0.01 and frac.max() <= 0.95
    data = out.layers["counts"].data
    assert np.array_equal(data, np.round(data)) and data.max() > 1  # real counts, not binary
    np.testing.assert_array_equal(
        out.layers["counts"].toarray(), granja[out.obs_names, out.var_names].X.toarray()
    )
    assert "BioClassification" in out.obs and {"chr", "start", "end"} <= set(out.var)
    assert out.uns["geovae_input"]["modality"] == "atac"
    assert out.uns["geovae_preprocess"]["n_top_peaks"] == 10000
    z = batch_input(out, slice(0, out.n_obs))
    assert np.abs(z).max() <= 10.0
    np.testing.assert_allclose(out.var["input_mean"], out.X.toarray().mean(0), rtol=1e-4, atol=1e-6)


def test_preprocess_atac_binarize_and_top_n(granja):
    out = preprocess_atac(granja, binarize=True, n_top_peaks=300)
    assert out.n_vars == 300
    assert set(np.unique(out.layers["counts"].data)) == {1.0}
    assert out.uns["geovae_preprocess"]["binarize"] is True
    # the 300 kept are the most variable of the window
    assert (out.var["highly_variable_rank"] < 300).all()


def test_hvg_step_keeps_torch_thread_count():
    """scanpy's seurat_v3 HVG (numba/OpenMP) used to reset torch's intra-op threads (1 -> 2 here)."""
    torch = pytest.importorskip("torch")
    from geovae.data.simulate import simulate_spatial
    from geovae.preprocessing.rna import preprocess_rna

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        raw = simulate_spatial(n_spots=240, n_genes=150, n_domains=4, domain_genes=15, gradient_genes=40, seed=0)
        preprocess_rna(raw, min_genes=10, min_cells=1, n_top_genes=150)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
