"""Tests for latent-component annotation and offline GO enrichment."""

from __future__ import annotations

import gzip
import hashlib
import socket
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import hypergeom, spearmanr

from geovae.interpretation import (
    GeneSetCoverageWarning,
    annotate_components,
    benjamini_hochberg,
    component_gene_correlations,
    component_names,
    components_from_uns,
    default_gene_set_path,
    enrich_components,
    gene_set_coverage,
    read_gmt,
    write_gmt,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHIPPED_SHA256 = "5987ce789053fdd5533393cd65b9abdb5e08e4fade7b0625a1fe234a1207eea4"  # uncompressed GMT


def _toy(n_cells: int = 300, n_genes: int = 40, d: int = 3, seed: int = 0):
    """Sparse-ish noise genes plus planted genes: g_pos == Z1, g_neg == -Z2, g_exp == exp(Z3)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_cells, d))
    x = rng.poisson(0.3, size=(n_cells, n_genes)).astype(np.float64)
    x[:, 5] = z[:, 0]
    x[:, 11] = -z[:, 1]
    x[:, 17] = np.exp(z[:, 2])
    x[:, 20] = 2.5  # constant gene
    genes = [f"g{i}" for i in range(n_genes)]
    genes[5], genes[11], genes[17], genes[20] = "g_pos", "g_neg", "g_exp", "g_const"
    return x, z, genes


# ---------------------------------------------------------------- correlations
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlations_match_brute_force_and_sparse_equals_dense(method):
    x, z, _ = _toy()
    dense = component_gene_correlations(x, z, method=method)
    sparse = component_gene_correlations(sp.csr_matrix(x), z, method=method)
    chunked = component_gene_correlations(sp.csc_matrix(x), z, method=method, chunk_size=7)
    dense_chunked = component_gene_correlations(x.astype(np.float32), z, method=method, chunk_size=3)
    assert dense.shape == (x.shape[1], z.shape[1])
    np.testing.assert_allclose(sparse, dense, atol=1e-10)
    np.testing.assert_allclose(chunked, dense, atol=1e-10)
    np.testing.assert_allclose(dense_chunked, dense, atol=1e-6)
    for gene in (0, 5, 11, 17, 33):
        for k in range(z.shape[1]):
            if method == "pearson":
                expected = np.corrcoef(x[:, gene], z[:, k])[0, 1]
            else:
                expected = spearmanr(x[:, gene], z[:, k]).statistic
            assert dense[gene, k] == pytest.approx(expected, abs=1e-10)


def test_known_answers_and_constant_gene():
    x, z, _ = _toy()
    pear = component_gene_correlations(sp.csr_matrix(x), z)
    spear = component_gene_correlations(sp.csr_matrix(x), z, method="spearman")
    assert pear[5, 0] == pytest.approx(1.0)
    assert pear[11, 1] == pytest.approx(-1.0)
    assert spear[17, 2] == pytest.approx(1.0)  # monotone transform
    assert pear[17, 2] < 0.95  # ... which Pearson does not see as perfect
    assert np.all(pear[20] == 0.0) and np.all(spear[20] == 0.0)  # no variance -> 0, not NaN
    assert np.all(np.abs(pear) <= 1.0)


def test_correlation_input_errors():
    x, z, _ = _toy()
    with pytest.raises(ValueError, match="latent has shape"):
        component_gene_correlations(x, z[:-1])
    with pytest.raises(ValueError, match="method"):
        component_gene_correlations(x, z, method="kendall")


# ---------------------------------------------------------------- annotation
def test_annotate_components_tables_and_storage(tmp_path):
    x, z, genes = _toy()
    adata = ad.AnnData(sp.csr_matrix(x.astype(np.float32)), var=pd.DataFrame(index=genes))
    adata.obsm["X_latent"] = z
    comps, cg = annotate_components(adata, n_top=5)

    assert list(comps["component"]) == component_names(3) == ["Z1", "Z2", "Z3"]
    z1, z2 = comps.iloc[0], comps.iloc[1]
    assert z1["best_marker"] == "g_pos" and z1["best_marker_r"] == pytest.approx(1.0)
    assert z2["best_negative_marker"] == "g_neg" and z2["best_negative_marker_r"] == pytest.approx(-1.0)
    assert (comps["n_genes"] == len(genes)).all()

    assert list(cg.columns) == ["component", "tail", "rank", "gene", "pearson_r", "spearman_r"]
    first = cg[(cg["component"] == "Z1") & (cg["tail"] == "positive")].iloc[0]
    assert (first["gene"], first["rank"]) == ("g_pos", 1)
    assert first["pearson_r"] == pytest.approx(1.0) and first["spearman_r"] == pytest.approx(1.0)
    top_neg = cg[(cg["component"] == "Z2") & (cg["tail"] == "negative")].iloc[0]
    assert top_neg["gene"] == "g_neg" and top_neg["pearson_r"] == pytest.approx(-1.0)
    # tails hold only genes of the matching sign, ranked by strength, at most n_top each
    pos = cg[cg["tail"] == "positive"]
    neg = cg[cg["tail"] == "negative"]
    assert (pos["pearson_r"] > 0).all() and (neg["pearson_r"] < 0).all()
    assert cg.groupby(["component", "tail"]).size().max() == 5
    for _, block in pos.groupby("component"):
        assert np.all(np.diff(block["pearson_r"].to_numpy()) <= 0)
    assert "g_const" not in set(cg["gene"])

    # storage, h5ad round trip
    corr = adata.varm["component_correlation"]
    assert corr.shape == (len(genes), 3) and corr[5, 0] == pytest.approx(1.0)
    path = tmp_path / "annotated.h5ad"
    adata.write_h5ad(path)
    comps2, cg2 = components_from_uns(ad.read_h5ad(path))
    pd.testing.assert_frame_equal(comps2, comps, check_dtype=False)
    pd.testing.assert_frame_equal(cg2, cg, check_dtype=False)


def test_annotate_spearman_ranking_and_missing_key():
    x, z, genes = _toy()
    adata = ad.AnnData(x, var=pd.DataFrame(index=genes))
    adata.obsm["X_latent"] = z
    comps, cg = annotate_components(adata, n_top=3, method="spearman", store=False)
    assert comps.loc[2, "best_marker"] == "g_exp" and comps.loc[2, "best_marker_r"] == pytest.approx(1.0)
    row = cg[(cg["component"] == "Z3") & (cg["gene"] == "g_exp")].iloc[0]
    assert row["spearman_r"] == pytest.approx(1.0) and row["pearson_r"] < 0.95
    assert "component_correlation" not in adata.varm
    with pytest.raises(KeyError, match="X_nope"):
        annotate_components(adata, latent_key="X_nope")


# ---------------------------------------------------------------- GMT + enrichment
def test_read_gmt_round_trip(tmp_path):
    sets = {"term A (GO:0000001)": ["G1", "G2", "G3"], "term B": ["G3", "G4"], "empty": []}
    for name in ("sets.gmt", "sets.gmt.gz"):
        path = write_gmt(sets, tmp_path / name, descriptions={"term B": "a description"})
        assert read_gmt(path) == sets
        assert read_gmt(str(path)) == sets
    raw = tmp_path / "messy.gmt"
    raw.write_text("t1\t\tG1\tG2\tG1\t\n\n t2 \tdesc\tG5\r\n")
    assert read_gmt(raw) == {"t1": ["G1", "G2"], "t2": ["G5"]}
    (tmp_path / "bad.gmt").write_text("t1\t\tG1\nonlyname\n")
    with pytest.raises(ValueError, match=r"bad\.gmt:2"):
        read_gmt(tmp_path / "bad.gmt")
    (tmp_path / "dup.gmt").write_text("t1\t\tG1\nt1\t\tG2\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_gmt(tmp_path / "dup.gmt")


def test_benjamini_hochberg_known_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted: .005 .01 .03 .04 .5 -> *5/rank: .025 .025 .05 .05 .5 (already monotone)
    np.testing.assert_allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.9, 0.8])), [0.9, 0.9])


def _planted(tmp_path):
    background = [f"GENE{i}" for i in range(200)]
    sets = {
        "planted term (GO:0000042)": background[:10],
        "decoy one": background[50:80],
        "decoy two": background[5:7] + background[100:120],
        "tiny": background[150:152],  # below min_size
        "huge": background[:150],  # above max_size
    }
    gmt = write_gmt(sets, tmp_path / "planted.gmt")
    table = pd.DataFrame({
        "component": ["Z1"] * 10 + ["Z2"] * 5,
        "tail": ["positive"] * 10 + ["negative"] * 5,
        "gene": background[:10] + background[60:65],
        "rank": list(range(1, 11)) + list(range(1, 6)),
    })
    return background, gmt, table


def test_enrichment_planted_term_ranks_first(tmp_path):
    background, gmt, table = _planted(tmp_path)
    res = enrich_components(table, gmt, background, min_size=5, max_size=100)
    assert res.attrs["n_terms_tested"] == 3 and res.attrs["coverage"] == pytest.approx(152 / 200)
    assert "tiny" not in set(res["term"]) and "huge" not in set(res["term"])
    z1 = res[(res["component"] == "Z1") & (res["tail"] == "positive")]
    top = z1.iloc[0]
    assert top["term"] == "planted term (GO:0000042)" and top["term_id"] == "GO:0000042"
    assert top["overlap"] == 10 and top["term_size"] == 10
    # universe = 152 annotated background genes (huge + tiny); P[X >= 10], 10 drawn, 10 white
    expected_p = hypergeom.sf(9, 152, 10, 10)
    assert top["p_value"] == pytest.approx(expected_p, rel=1e-9)
    assert top["adj_p_value"] == pytest.approx(min(1.0, expected_p * 3), rel=1e-9)  # 3 sets tested
    assert top["adj_p_value"] < 1e-10
    assert top["genes"].split(";") == background[:10]  # query (rank) order
    z2 = res[res["component"] == "Z2"]
    assert z2.iloc[0]["term"] == "decoy one" and z2.iloc[0]["tail"] == "negative"
    assert list(res["component"]) == sorted(res["component"])  # Z1 block before Z2


def test_enrichment_is_offline_with_shipped_gmt(monkeypatch):
    path = default_gene_set_path()
    assert path.is_relative_to(REPO / "resources" / "go")

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("example.org", 80))

    sets = read_gmt(path)
    assert len(sets) == 6036
    term = "DNA replication (GO:0006260)"
    every = sorted(set().union(*sets.values()))
    background = sorted(set(every[::8]) | set(sets[term]))
    table = pd.DataFrame({"component": "Z1", "tail": "positive", "gene": sets[term][:40]})
    res = enrich_components(table, path, background)  # path string ends in .gmt.gz: read locally
    assert res.iloc[0]["term"] in {t for t, g in sets.items() if set(table["gene"]) <= set(g)} | {term}
    assert res.iloc[0]["adj_p_value"] < 1e-10
    res_dict = enrich_components(table, sets, background)
    pd.testing.assert_frame_equal(res, res_dict)


def test_shipped_gmt_is_the_documented_file():
    path = default_gene_set_path()
    with gzip.open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == SHIPPED_SHA256
    readme = (REPO / "resources" / "go" / "README.md").read_text()
    assert SHIPPED_SHA256 in readme and "CC BY 4.0" in readme


def test_coverage_warning_on_mismatched_identifiers(tmp_path):
    background, gmt, table = _planted(tmp_path)
    ensembl = [f"ENSG{i:011d}" for i in range(200)]
    assert gene_set_coverage(ensembl, gmt) == 0.0
    assert gene_set_coverage(background, read_gmt(gmt)) == pytest.approx(0.76)
    table = table.assign(gene=[ensembl[i] for i in range(len(table))])
    with pytest.warns(GeneSetCoverageWarning, match="do not match"):
        res = enrich_components(table, gmt, ensembl)
    assert res.empty and list(res.columns)[:3] == ["component", "tail", "term"]
    assert "0.0% of the 200 background genes" in res.attrs["warning"]


def test_coverage_warning_on_real_atac_peaks():
    h5ad = SHARED / "granja2019_hemato_atac_600.h5ad"
    if not h5ad.is_file():
        pytest.skip("real scATAC fixture not available because ../shared is missing")
    peaks = list(ad.read_h5ad(h5ad, backed="r").var_names)
    table = pd.DataFrame({"component": "Z1", "tail": "positive", "gene": peaks[:50]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = enrich_components(table, default_gene_set_path(), peaks)
    assert res.empty and "warning" in res.attrs
    assert any(issubclass(w.category, GeneSetCoverageWarning) for w in caught)


# ---------------------------------------------------------------- plots
def test_plots_render(tmp_path):
    from geovae.plotting.enrichment import component_heatmap, enrichment_dotplot

    background, gmt, table = _planted(tmp_path)
    res = enrich_components(table, gmt, background, max_size=100)
    ax = enrichment_dotplot(res, top_n=2, path=tmp_path / "dot.png")
    assert (tmp_path / "dot.png").stat().st_size > 1000
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Z1+", "Z2-"]
    empty = res.iloc[0:0].copy()
    empty.attrs["warning"] = "identifiers do not match"
    enrichment_dotplot(empty, path=tmp_path / "empty.png")
    assert (tmp_path / "empty.png").is_file()

    x, z, genes = _toy()
    corr = pd.DataFrame(component_gene_correlations(x, z), index=genes, columns=component_names(3))
    ax = component_heatmap(corr, top_n=2, include_negative=True, path=tmp_path / "heat.png")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "g_pos" and "g_neg" in labels and len(labels) <= 12
    assert (tmp_path / "heat.png").stat().st_size > 1000


# ---------------------------------------------------------------- pre-ranked GSEA, UMAP panels, interpret_run
def _no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    for target, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                         (socket, "getaddrinfo")):
        monkeypatch.setattr(target, name, no_network)


def _ranked(n_genes: int = 300):
    genes = [f"GENE{i}" for i in range(n_genes)]
    rng = np.random.default_rng(0)
    corr = pd.DataFrame({"Z1": rng.uniform(-0.2, 0.2, n_genes), "Z2": rng.uniform(-0.2, 0.2, n_genes)}, index=genes)
    corr.iloc[:15, 0] = np.linspace(0.9, 0.6, 15)  # "top set" leads Z1
    corr.iloc[15:30, 1] = -np.linspace(0.9, 0.6, 15)  # "bottom set" at the negative end of Z2
    sets = {"top set (GO:0000001)": genes[:15], "bottom set (GO:0000002)": genes[15:30],
            "random set": [genes[i] for i in rng.choice(np.arange(30, n_genes), 20, replace=False)]}
    return corr, sets


def test_prerank_planted_sets_offline(monkeypatch, tmp_path):
    from geovae.interpretation import prerank_components

    _no_network(monkeypatch)
    corr, sets = _ranked()
    gmt = write_gmt(sets, tmp_path / "ranked.gmt")
    res = prerank_components(corr, gmt, permutations=50, seed=1)
    again = prerank_components(corr, sets, permutations=50, seed=1)
    pd.testing.assert_frame_equal(res, again)  # GMT path == dict, same seed -> same numbers
    z1, z2 = res[res["component"] == "Z1"], res[res["component"] == "Z2"]
    assert list(res["component"].unique()) == ["Z1", "Z2"] and len(z1) == 3 and len(z2) == 3
    top = z1.iloc[0]
    assert top["term"] == "top set (GO:0000001)" and top["term_id"] == "GO:0000001"
    assert top["tail"] == "positive" and top["nes"] > 1.5 and top["es"] > 0.9
    assert top["p_value"] == pytest.approx(1 / 51) and top["set_size"] == 15  # p floored at 1/(perm+1)
    assert set(top["leading_genes"].split(";")) <= set(sets["top set (GO:0000001)"])
    bottom = z2.iloc[0]
    assert bottom["term"] == "bottom set (GO:0000002)" and bottom["tail"] == "negative" and bottom["nes"] < -1.5
    rnd = z1.set_index("term").loc["random set"]
    assert abs(rnd["nes"]) < abs(top["nes"]) and rnd["fdr"] > top["fdr"]
    # no FDR of 0: a value below the permutation resolution is reported at the floor, and flagged
    assert (res["fdr"] >= 1 / 51).all() and (res["p_value"] >= 1 / 51).all()
    assert bool(top["at_resolution_limit"]) and not bool(rnd["at_resolution_limit"])


def test_prerank_coverage_warning_and_validation():
    from geovae.interpretation import prerank_components

    corr, sets = _ranked()
    ensembl = corr.set_axis([f"ENSG{i:011d}" for i in range(len(corr))])
    with pytest.warns(GeneSetCoverageWarning, match="GSEA skipped"):
        res = prerank_components(ensembl, sets, permutations=10)
    assert res.empty and "warning" in res.attrs
    with pytest.raises(ValueError, match="permutations"):
        prerank_components(corr, sets, permutations=0)


def test_component_umaps_render(tmp_path):
    from geovae.plotting.enrichment import component_umaps

    rng = np.random.default_rng(0)
    umap, latent = rng.normal(size=(50, 2)), rng.normal(size=(50, 3))
    fig = component_umaps(umap, latent, [("CD3E", latent[:, 0] ** 2), None, ("LYZ", latent[:, 2])],
                          path=tmp_path / "cu.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:2] == ["Z1 activation", "Z1 best marker: CD3E"] and "Z3 best marker: LYZ" in titles
    assert (tmp_path / "cu.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="markers"):
        component_umaps(umap, latent, [None])


def test_interpret_run_gsea_validation_and_markers(tmp_path, monkeypatch):
    from geovae.data.simulate import simulate_programs
    from geovae.interpretation import interpret_run

    _no_network(monkeypatch)
    adata = simulate_programs(n_cells=200, n_genes=300, n_groups=3, n_activity_groups=1, program_size=30, seed=0)
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    adata.obsm["X_latent"] = adata.obsm["program_usage"].to_numpy() + 0.01 * np.random.default_rng(0).normal(
        size=(200, 4))
    # gene sets named after the simulated programs, so enrichment applies to simulated gene ids
    sets = {f"{p} (GO:000000{i})": list(adata.var_names[adata.varm["programs"][p].to_numpy()])
            for i, p in enumerate(adata.varm["programs"].columns)}
    gmt = write_gmt(sets, tmp_path / "programs.gmt")
    # the latent is the true usage itself (Zk = program k): annotated in its own axes, not rotated
    res = interpret_run(adata, gmt=gmt, n_top=20, gsea_permutations=20, seed=0, rotation="none")
    assert not res.warnings and res.validation_note is None
    assert res.validation["agreement"].all() and (res.validation["precision_at_n"] > 0.8).all()
    best = res.gsea.loc[res.gsea.groupby("component", sort=False)["es"].idxmax(), "term"]
    assert [t.split(" (")[0] for t in best] == list(adata.varm["programs"].columns)  # Zk <-> program k
    assert (res.gsea.loc[best.index, "tail"] == "positive").all()
    assert [m is not None for m in res.markers] == [True] * 4 and res.markers[0][1].shape == (200,)
    res.save_component_umaps(np.random.default_rng(1).normal(size=(200, 2)), tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 5000
    skipped = interpret_run(adata, gmt=gmt, n_top=20, gsea_permutations=0, rotation="none")
    assert skipped.gsea.empty and not skipped.enrichment.empty


def test_summary_page_shows_validation_and_gsea():
    from geovae.report import summary_html, validation_summary

    table = pd.DataFrame({"program": ["a", "b"], "program_size": [20, 20], "enriched_component": ["Z1", "Z2"],
                          "adj_p_value": [1e-9, 0.5], "precision_at_n": [1.0, 0.2], "r_precision": [0.8, 0.1],
                          "score_component": ["Z1", "Z1"], "score_r": [0.9, 0.3], "agreement": [True, False]})
    summary = validation_summary({"sim/livae/0": table, "sim/livae/1": table.assign(agreement=[True, True]),
                                  "pbmc/livae/0": table.iloc[0:0]})
    row = summary.loc[("sim", "livae")]
    assert row["found"] == 1 and row["precision_at_n"] == pytest.approx(0.6) and row["agreement"] == 0.75
    assert ("pbmc", "livae") not in summary.index
    comps = pd.DataFrame({"component": ["Z1"], "best_marker": ["CD3E"]})
    gsea = pd.DataFrame({"component": ["Z1", "Z1"], "term": ["T cell thing", "other"], "nes": [2.1, 1.0],
                         "p_value": [0.0099, 0.2], "fdr": [0.0099, 0.4], "at_resolution_limit": [True, False]})
    enrichment = pd.DataFrame({"component": ["Z1", "Z1"], "tail": ["positive", "positive"],
                               "term": ["antigen presentation", "b"], "adj_p_value": [0.18, 0.5]})
    metrics = pd.DataFrame(columns=["dataset", "model", "seed", "metric", "value"])
    page = summary_html(metrics, {"sim/livae/0": comps}, {"sim/livae/0": enrichment}, {},
                        validation={"sim/livae/0": table}, gsea={"sim/livae/0": gsea})
    assert "Ground-truth validation" in page and "T cell thing" in page and "precision_at_n" in page
    assert "&lt; 0.0099" in page and ">0.0<" not in page  # an FDR at the resolution floor, never 0
    assert "top_GO_significant" in page and ">False<" in page  # the top GO term (adj. p 0.18) is flagged


# ---------------------------------------------------------------- offline guarantee
def test_ora_and_prerank_run_offline_and_enrichr_names_are_refused(monkeypatch, tmp_path):
    """With every socket call raising, ORA and prerank on a local GMT succeed, and an Enrichr library
    name (which gseapy itself would download) is refused before gseapy is called."""
    import gseapy

    from geovae.interpretation import prerank_components

    _no_network(monkeypatch)
    with pytest.raises(AssertionError, match="network access"):  # the guard catches gseapy's own download
        gseapy.enrich(gene_list=["CD3E", "CD3D"], gene_sets="GO_Biological_Process_2021", background=20000,
                      outdir=None, no_plot=True)

    corr, sets = _ranked()
    gmt = write_gmt(sets, tmp_path / "ranked.gmt.gz")
    table = pd.DataFrame({"component": "Z1", "tail": "positive", "gene": list(corr.index[:15])})
    ora = enrich_components(table, gmt, corr.index, min_size=5)
    assert ora.iloc[0]["term"] == "top set (GO:0000001)" and ora.iloc[0]["adj_p_value"] < 1e-6
    gsea = prerank_components(corr, gmt, permutations=10, seed=0)
    assert gsea.iloc[0]["term"] == "top set (GO:0000001)"

    for name in ("GO_Biological_Process_2021", "KEGG_2021_Human"):
        with pytest.raises(FileNotFoundError, match="Enrichr library names are not downloaded"):
            enrich_components(table, name, corr.index)
        with pytest.raises(FileNotFoundError, match=name):
            prerank_components(corr, name, permutations=10)
        with pytest.raises(FileNotFoundError, match="not found"):
            gene_set_coverage(corr.index, name)


def test_coverage_warning_reaches_the_report_end_to_end(tmp_path):
    """Ensembl ids against symbol gene sets: interpret_run -> interpret_info warnings -> summary page."""
    import json

    from geovae.interpretation import interpret_run
    from geovae.report import load_run_tables, summary_html

    x, z, genes = _toy()
    adata = ad.AnnData(sp.csr_matrix(x), var=pd.DataFrame(index=[f"ENSG{i:011d}" for i in range(len(genes))]))
    adata.obsm["X_latent"] = z
    res = interpret_run(adata, gmt=default_gene_set_path(), n_top=5, gsea_permutations=0)
    assert res.enrichment.empty and len(res.warnings) == 1 and "0.0% of the 40 background genes" in res.warnings[0]
    run = tmp_path / "results" / "toy" / "livae" / "0"
    run.mkdir(parents=True)
    res.components.to_csv(run / "components.tsv", sep="\t", index=False)
    res.enrichment.to_csv(run / "enrichment.tsv", sep="\t", index=False)
    (run / "interpret_info.json").write_text(json.dumps({"warnings": res.warnings}))
    tables = load_run_tables(components=[run / "components.tsv"], enrichment=[run / "enrichment.tsv"],
                             interpret_info=[run / "interpret_info.json"])
    assert tables["warnings"] == {"toy/livae/0": res.warnings}
    metrics = pd.DataFrame(columns=["dataset", "model", "seed", "metric", "value"])
    page = summary_html(metrics, tables["components"], tables["enrichment"], tables["warnings"])
    assert "<h3>toy/livae/0</h3>" in page and "class='warn'>Warning: only 0.0% of the 40 background genes" in page


def test_component_redundancy_known_answer(tmp_path):
    """Z1 and Z3 are the same signal (r = 1 up to a sign-preserving scale), Z2 is independent."""
    from geovae.interpretation.components import component_redundancy
    from geovae.interpretation.pipeline import _redundancy_messages
    from geovae.plotting.enrichment import component_correlation_heatmap

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(size=500)
    latent = np.column_stack([a, b, 2 * a + 0.01 * rng.normal(size=500)])
    genes = pd.DataFrame({"component": ["Z1", "Z1", "Z2", "Z2", "Z3", "Z3"],
                          "gene": ["G1", "G2", "G3", "G4", "G1", "G5"]})
    table, corr = component_redundancy(latent, genes)
    row = table.set_index("component")
    assert row.loc["Z1", "most_correlated_with"] == "Z3" and row.loc["Z1", "max_abs_corr"] > 0.99
    assert row.loc["Z1", "redundant_with"] == "Z3" and row.loc["Z2", "redundant_with"] == ""
    assert row.loc["Z1", "top_gene_jaccard"] == pytest.approx(1 / 3, abs=1e-4)  # {G1} of {G1, G2, G5}
    assert corr.shape == (3, 3) and corr.loc["Z1", "Z3"] > 0.99
    (message,) = _redundancy_messages(table)
    assert "Z1-Z3" in message and "1 pair" in message
    component_correlation_heatmap(corr, path=tmp_path / "corr.png")
    assert (tmp_path / "corr.png").stat().st_size > 0


def test_go_terms_significant_and_deduplicated(tmp_path):
    from geovae.interpretation.enrichment import collapse_redundant_terms
    from geovae.plotting.enrichment import enrichment_dotplot

    table = pd.DataFrame({
        "component": ["Z1"] * 4 + ["Z2"], "tail": ["positive"] * 4 + ["negative"],
        "term": ["MHC II antigen presentation", "antigen processing via MHC II", "T cell activation",
                 "not significant", "cytolysis"],
        "overlap": [4, 4, 3, 2, 3], "p_value": [1e-8, 1e-7, 1e-5, 0.01, 1e-4],
        "adj_p_value": [1e-6, 1e-5, 1e-3, 0.18, 1e-2],
        "genes": ["HLA-DRA;HLA-DQA1;CD74;HLA-DPB1", "HLA-DRA;HLA-DQA1;CD74;HLA-DMA", "CD3E;CD2;LCK",
                  "CD3E;X", "GZMA;NKG7;PRF1"]})
    kept = collapse_redundant_terms(table)
    assert list(kept["term"]) == ["MHC II antigen presentation", "T cell activation", "cytolysis"]
    first = kept.iloc[0]
    assert first["n_collapsed"] == 1 and first["collapsed_terms"] == "antigen processing via MHC II"  # Jaccard 3/5
    ax = enrichment_dotplot(table)
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert len(shown) == 3 and not any("not significant" in t for t in shown)
    assert any("+1 similar" in t for t in shown)
    ax = enrichment_dotplot(table[table["adj_p_value"] > 0.05], path=tmp_path / "none.png")
    assert (tmp_path / "none.png").stat().st_size > 0


def test_loss_figure_pairs_training_and_validation_and_marks_the_kept_epoch():
    from geovae.plotting.training import loss_curves

    history = pd.DataFrame({"epoch": range(1, 11), "train_total": np.linspace(5, 3, 10),
                            "val_total": np.linspace(6, 4, 10), "train_kl": np.ones(10), "val_kl": np.ones(10),
                            "seconds": np.ones(10)})
    fig = loss_curves(history, best_epoch=7)
    used = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in used] == ["total", "kl"]  # one panel per term, no 'seconds'
    for ax in used:
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["training", "validation", "kept: epoch 7"]


def test_summary_defines_metrics_and_marks_simulated_data():
    from geovae.metrics.statistics import model_ranks
    from geovae.report import summary_html

    metrics = pd.DataFrame({"dataset": ["sim", "sim", "real", "real"] * 2, "model": ["a"] * 4 + ["b"] * 4,
                            "seed": 0, "metric": ["NMI", "DAV", "NMI", "DAV"] * 2,
                            "value": [0.9, 1.0, 0.5, 2.0, 0.8, 0.5, 0.6, 3.0], "category": "clustering"})
    page = summary_html(metrics, {}, {}, {}, simulated_datasets=["sim"])
    assert "sim (SIMULATED)" in page and "real (SIMULATED)" not in page
    assert "What each metric means" in page and "Davies-Bouldin" in page and ">lower<" in page
    settings = pd.concat([metrics, metrics.assign(metric="leiden_resolution")])
    ranks = model_ranks(settings)
    assert "leiden_resolution" not in ranks.columns  # settings are not ranked
    assert ranks.loc["b", "DAV"] == 1.5 and ranks.loc["a", "NMI"] == 1.5  # DAV: lower is better


def test_summary_shows_thumbnails(tmp_path):
    import matplotlib.pyplot as plt

    from geovae.report import summary_html

    fig, ax = plt.subplots(figsize=(8, 6))
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "umap.png", dpi=100)
    plt.close(fig)
    comps = pd.DataFrame({"component": ["Z1"], "best_marker": ["CD3E"]})
    metrics = pd.DataFrame(columns=["dataset", "model", "seed", "metric", "value"])
    page = summary_html(metrics, {"pbmc/livae/0": comps}, {}, {}, thumbnails={"pbmc/livae/0": [tmp_path / "umap.png"]})
    assert page.count("data:image/png;base64,") == 1 and "<figcaption" in page and "umap.png" in page


def test_rotations_known_answers():
    from geovae.interpretation.rotation import rotate_latent, varimax

    rng = np.random.default_rng(0)
    sources = rng.laplace(size=(3000, 3))
    mixed = sources @ np.array([[1.0, 0.5, 0.0], [0.3, 1.0, 0.2], [0.0, 0.4, 1.0]]).T
    rotation = varimax(mixed)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-8)  # orthogonal
    recovered = rotate_latent(mixed, "ica")
    corr = np.abs(np.corrcoef(np.c_[recovered, sources], rowvar=False)[:3, 3:])
    assert (corr.max(axis=1) > 0.99).all()  # ICA unmixes independent sources
    assert rotate_latent(mixed, "none") is not None and np.array_equal(rotate_latent(mixed, "none"), mixed)
    with pytest.raises(ValueError, match="interpret.rotation"):
        rotate_latent(mixed, "promax")


def test_read_normalised_skips_the_count_layer(tmp_path):
    import anndata as ad
    import scipy.sparse as sp

    from geovae.run_folder import read_normalised, read_parts

    rng = np.random.default_rng(0)
    X = sp.random(30, 8, density=0.3, format="csr", random_state=0, dtype=np.float32)
    a = ad.AnnData(X=X, obs=pd.DataFrame({"g": list("ab") * 15}, index=[f"c{i}" for i in range(30)]),
                   layers={"counts": X * 10}, obsm={"program_usage": rng.random((30, 2))}, uns={"simulated": True})
    a.write_h5ad(tmp_path / "pre.h5ad")
    got = read_normalised(tmp_path / "pre.h5ad")
    assert not got.layers and sp.issparse(got.X) and (got.X != X).nnz == 0
    assert list(got.obs_names) == list(a.obs_names) and got.obs["g"].tolist() == a.obs["g"].tolist()
    assert "program_usage" in got.obsm and got.uns["simulated"]
    only = read_parts(tmp_path / "pre.h5ad", ("obs", "layers", "missing"))
    assert only.n_obs == 30 and "counts" in only.layers and only.X is None


def test_marker_dotplot_passes_scanpy_the_labelled_cells_and_shown_genes_only(tmp_path, monkeypatch):
    import anndata as ad
    import scanpy as sc

    from geovae.plotting.enrichment import marker_dotplot

    rng = np.random.default_rng(1)
    a = ad.AnnData(X=rng.random((40, 6)).astype(np.float32), layers={"counts": rng.random((40, 6))},
                   obs=pd.DataFrame({"cell_type": ["t1", "t2", None, "t3"] * 10}, index=[f"c{i}" for i in range(40)]))
    a.var_names = [f"G{i}" for i in range(6)]
    seen = {}
    real = sc.pl.dotplot

    def spy(data, var_names, **kw):
        seen.update(shape=data.shape, genes=list(data.var_names), groups=sorted(data.obs["cell_type"].unique()))
        return real(data, var_names, **kw)

    monkeypatch.setattr(sc.pl, "dotplot", spy)
    marker_dotplot(a, ["G4", "G1", "G4", "absent"], "cell_type", tmp_path / "dot.png")
    assert seen == {"shape": (30, 2), "genes": ["G4", "G1"], "groups": ["t1", "t2", "t3"]}
    assert (tmp_path / "dot.png").stat().st_size > 0
