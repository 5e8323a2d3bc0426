"""geovae's own implementations against the libraries users trust (issue #25, item 4).

Each test computes the same quantity with geovae and with the reference library on real data
(scanpy's ``pbmc68k_reduced`` through ``load_builtin("pbmc68k")``; the Granja 2019 scATAC fixture
in ``../shared``, skipped when that folder is absent) and asserts the largest difference against
a stated tolerance. Where the conventions differ, the test shows that the difference is exactly
the convention (both sides computed under one convention) and says so in its docstring; the
measured maxima are listed in ``docs/equivalence.md``.

References: scanpy (``pp.neighbors``, ``tl.leiden``, ``pp.calculate_qc_metrics``,
``pp.normalize_total``, ``pp.log1p``), muon (``atac.pp.tfidf``, ``atac.tl.lsi``), scib-metrics
(``lisi_knn``, ``ilisi_knn``) and scipy (``stats.false_discovery_control``). muon and
scib-metrics come with the ``equivalence`` extra, which the ``test`` extra includes; they are
imported inside the tests so that collecting the suite does not pay for jax.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from geovae.data.builtin import load_builtin

ATAC_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "granja2019_hemato_atac_600.h5ad"


def report(name: str, value: float, tol: float) -> None:
    """Print a measured maximum difference (visible with ``pytest -s``; the docs table lists them)."""
    print(f"[equivalence] {name}: max |diff| = {value:.3g} (tolerance {tol:g})")


def column(frame: pd.DataFrame, *names: str) -> np.ndarray:
    """The first of ``names`` that ``frame`` has, as float64 (QC columns are being renamed to scanpy's)."""
    for name in names:
        if name in frame.columns:
            return frame[name].to_numpy(dtype=np.float64)
    raise AssertionError(f"none of {names} among the columns {list(frame.columns)}")


# ------------------------------------------------------------------------------------ data


@pytest.fixture(scope="module")
def pbmc() -> anndata.AnnData:
    """pbmc68k raw counts (700 cells x 765 genes) with only the label columns in ``obs``.

    scanpy's own ``n_genes`` / ``percent_mito`` columns (full transcriptome) are dropped so that a
    QC column read back can only come from geovae.
    """
    adata = load_builtin("pbmc68k")
    adata.obs = adata.obs[["bulk_labels", "phase"]].copy()
    return adata


@pytest.fixture(scope="module")
def latent(pbmc: anndata.AnnData) -> np.ndarray:
    """A 30-d PCA of the log-normalised pbmc68k counts: the stand-in for a model's latent."""
    from sklearn.decomposition import PCA

    from geovae.preprocessing import log_normalize

    adata = pbmc.copy()
    out = log_normalize(adata)
    X = (out if out is not None else adata).X
    return PCA(n_components=30, svd_solver="full").fit_transform(X.toarray().astype(np.float64))


@pytest.fixture(scope="module")
def atac_raw() -> anndata.AnnData:
    """Granja 2019 hematopoiesis scATAC: 600 cells x 5000 peaks, raw counts (0..11)."""
    if not ATAC_FIXTURE.exists():
        pytest.skip(f"{ATAC_FIXTURE.name} not found because ../shared is missing")
    adata = anndata.read_h5ad(ATAC_FIXTURE)
    return anndata.AnnData(sp.csr_matrix(adata.X, dtype=np.float32), obs=adata.obs[["Group"]].copy(),
                           var=pd.DataFrame(index=adata.var_names.astype(str)))


@pytest.fixture(scope="module")
def atac_binary(atac_raw: anndata.AnnData) -> anndata.AnnData:
    """The same matrix binarized (geovae's default ``preprocess.atac.binarize: true``)."""
    adata = atac_raw.copy()
    adata.X = adata.X.copy()
    adata.X.data[:] = 1.0
    return adata


def quiet_import(name: str):
    """Import a reference library without its import-time deprecation chatter."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


# ------------------------------------------------------------------ 1. kNN graph for Leiden


@pytest.mark.parametrize("k", [15, 30])
def test_knn_graph_matches_scanpy_neighbors(latent: np.ndarray, k: int) -> None:
    """Leiden's graph (``neighbors.knn`` + ``umap_connectivities``) = ``sc.pp.neighbors``.

    Same ``n_neighbors`` (the cell itself counted, as in scanpy), Euclidean metric, exact search
    (scanpy uses a brute-force ``KNeighborsTransformer`` below 4096 cells), UMAP connectivities.
    Neighbour sets and distances must be identical (1e-10). Connectivities agree within 1e-5
    (measured 3.4e-6): umap-learn casts the distances to float32 before the bandwidth search,
    geovae keeps float64. Given the same float32-rounded distances, geovae agrees within 1e-6
    (measured 1.1e-7), which shows that the rounding is the whole difference.
    """
    from geovae.neighbors import knn, umap_connectivities

    dist, idx = knn(latent, k)
    ours = umap_connectivities(dist, idx)

    ref = anndata.AnnData(np.zeros((latent.shape[0], 1), dtype=np.float32))
    ref.obsm["X_latent"] = latent
    sc.pp.neighbors(ref, n_neighbors=k, use_rep="X_latent", metric="euclidean", method="umap")
    D = ref.obsp["distances"].tocsr()
    C = ref.obsp["connectivities"].tocsr()

    n = latent.shape[0]
    assert np.all(np.diff(D.indptr) == k - 1)
    differing = [i for i in range(n) if set(D.indices[D.indptr[i]:D.indptr[i + 1]]) != set(idx[i, 1:])]
    assert not differing, f"{len(differing)} cells have other neighbours than scanpy's, e.g. {differing[:5]}"
    ref_dist = np.vstack([np.asarray(D[i, idx[i, 1:]].todense()).ravel() for i in range(n)])
    dist_diff = float(np.abs(ref_dist - dist[:, 1:]).max())
    report(f"kNN distances (k={k})", dist_diff, 1e-10)
    assert dist_diff <= 1e-10

    assert ((ours != 0) != (C != 0)).nnz == 0, "connectivity graphs have different edges"
    conn_diff = float(abs(ours - C).max())
    report(f"UMAP connectivities (k={k})", conn_diff, 1e-5)
    assert conn_diff <= 1e-5
    rounded = umap_connectivities(dist.astype(np.float32).astype(np.float64), idx)
    rounded_diff = float(abs(rounded - C).max())
    report(f"UMAP connectivities from float32 distances (k={k})", rounded_diff, 1e-6)
    assert rounded_diff <= 1e-6


def test_leiden_reaches_scanpy_leiden_modularity(latent: np.ndarray) -> None:
    """Leiden partitions: same objective as ``sc.tl.leiden(flavor="igraph")``, not the same RNG.

    Both run igraph's Leiden (modularity, resolution 1, to convergence) on the same graph, but
    geovae seeds igraph with ``random.Random(seed)`` and scanpy with a numpy ``RandomState``,
    so the partitions are not bitwise equal (ARI 0.79 at seed 0 here; 0.79-1.0 over seeds
    0-3). What must agree is the objective: the modularity of both partitions on scanpy's graph
    within 0.01 (measured 0.002).
    """
    import igraph as ig

    from geovae.metrics.clustering import leiden_clusters

    ref = anndata.AnnData(np.zeros((latent.shape[0], 1), dtype=np.float32))
    ref.obsm["X_latent"] = latent
    sc.pp.neighbors(ref, n_neighbors=15, use_rep="X_latent")
    sc.tl.leiden(ref, resolution=1.0, flavor="igraph", n_iterations=-1, random_state=0, directed=False)
    theirs = ref.obs["leiden"].astype(int).to_numpy()
    ours = leiden_clusters(latent, resolution=1.0, n_neighbors=15, seed=0)

    upper = sp.triu(ref.obsp["connectivities"], k=1).tocoo()
    graph = ig.Graph(n=latent.shape[0], edges=np.column_stack([upper.row, upper.col]).tolist())
    weights = upper.data.astype(np.float64).tolist()
    q_ours = graph.modularity(ours.tolist(), weights=weights, resolution=1.0)
    q_ref = graph.modularity(theirs.tolist(), weights=weights, resolution=1.0)
    report("Leiden modularity", abs(q_ours - q_ref), 0.01)
    assert q_ref > 0.5  # a real community structure, so the comparison means something
    assert abs(q_ours - q_ref) <= 0.01


def test_tsne_affinities_match_opentsne_exact_search(latent: np.ndarray) -> None:
    """t-SNE's affinities from the embed rule's shared neighbours = openTSNE's from its own exact search.

    openTSNE's ``PerplexityBasedNN(method="exact")`` searches the ``3 * perplexity`` neighbours with a
    ball tree; geovae passes the same neighbours from its one shared search. The affinity matrices
    must have the same edges and agree within 1e-12 (measured 0: the same neighbours and distances).
    """
    from openTSNE.affinity import PerplexityBasedNN

    from geovae.embedding import tsne_affinities

    ours = tsne_affinities(latent, 30.0).P.tocsr()
    theirs = PerplexityBasedNN(latent, perplexity=30.0, method="exact", random_state=0).P.tocsr()
    assert ((ours != 0) != (theirs != 0)).nnz == 0, "the affinity graphs have different edges"
    diff = float(abs(ours - theirs).max())
    report("t-SNE affinities (perplexity 30)", diff, 1e-12)
    assert diff <= 1e-12


def test_umap_layout_keeps_umap_learn_quality(latent: np.ndarray) -> None:
    """The embed rule's UMAP (scanpy's graph + umap-learn's optimiser) = umap-learn's ``UMAP`` class, in quality.

    The layouts are not bitwise equal: umap-learn's graph comes from float32 distance arithmetic
    (see the kNN test) and the stochastic optimisation amplifies any difference. So the test
    compares what the metrics report, over eight seeds: the mean distance correlation and Q_global
    of the map to the latent within 0.12 and 0.03, Q_local within 0.02 (one seed's distance
    correlation moves by ~0.1). A float64 graph, for
    one, fails it: umap-learn's spectral initialisation then picks other eigenvectors and the mean
    distance correlation drops by ~0.2 (measured on pbmc68k: 0.43 vs 0.64).
    """
    import umap

    from geovae.embedding import umap_2d
    from geovae.metrics.fidelity import LatentNeighbourhood, embedding_fidelity

    reference = LatentNeighbourhood(latent.astype(np.float64))
    scores: dict[str, list[dict[str, float]]] = {"geovae": [], "umap-learn": []}
    for seed in range(8):
        maps = {"geovae": umap_2d(latent, n_neighbors=15, min_dist=0.5, seed=seed),
                "umap-learn": umap.UMAP(n_neighbors=15, min_dist=0.5, random_state=seed).fit_transform(
                    latent.astype(np.float32))}
        for name, xy in maps.items():
            scores[name].append(embedding_fidelity(None, np.asarray(xy, dtype=np.float64), latent=reference))
    for metric, tol in (("DC", 0.12), ("Q_global", 0.03), ("Q_local", 0.02)):
        ours, theirs = (float(np.mean([row[metric] for row in scores[name]])) for name in ("geovae", "umap-learn"))
        report(f"UMAP mean {metric} over 8 seeds (geovae {ours:.3f}, umap-learn {theirs:.3f})", abs(ours - theirs), tol)
        assert abs(ours - theirs) <= tol, (metric, ours, theirs)


# ------------------------------------------------------------------------ 2. TF-IDF and LSI


MUON_EMPTY_PEAKS = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # muon's IDF of empty peaks


@MUON_EMPTY_PEAKS
def test_tfidf_matches_muon_on_binarized_counts(atac_binary: anndata.AnnData) -> None:
    """``tfidf_matrix`` = muon's ``atac.pp.tfidf`` under one convention (binarized counts).

    geovae: ``log1p(s * TF * log(1 + N / n_j))`` with ``n_j`` the number of cells where peak j
    is accessible. muon's default is ``log1p(s * TF) * log1p(N / DF)`` (log TF times log IDF) and
    it refuses to log both the IDF and the product, so the comparison is made on the linear form
    ``s * TF * log1p(N / DF)`` (geovae ``log=False``; muon ``log_tf=False, log_idf=True,
    log_tfidf=False``) and on its ``log1p`` (geovae ``log=True``). muon's DF is the column *sum*
    of the counts, equal to ``n_j`` on binarized counts (geovae's default). Both return float32:
    relative tolerance 1e-6 (linear), absolute 1e-5 on values up to 8.2 (log).
    """
    mu = quiet_import("muon")
    from geovae.preprocessing import tfidf_matrix

    ref = atac_binary.copy()
    mu.atac.pp.tfidf(ref, log_tf=False, log_idf=True, log_tfidf=False, scale_factor=1e4)
    R = sp.csr_matrix(ref.X, dtype=np.float64)
    R.eliminate_zeros()

    lin = tfidf_matrix(atac_binary.X, scale_factor=1e4, log=False).astype(np.float64)
    assert ((lin != 0) != (R != 0)).nnz == 0
    rel = float((abs(lin - R) / abs(R).max()).max())
    report("TF-IDF linear (relative to max)", rel, 1e-6)
    assert rel <= 1e-6

    logged = tfidf_matrix(atac_binary.X, scale_factor=1e4, log=True).astype(np.float64)
    R.data = np.log1p(R.data)
    diff = float(abs(logged - R).max())
    report("TF-IDF log1p", diff, 1e-5)
    assert R.max() > 5 and diff <= 1e-5


@MUON_EMPTY_PEAKS
def test_tfidf_idf_convention_on_raw_counts(atac_raw: anndata.AnnData) -> None:
    """On non-binarized counts geovae's IDF counts cells, muon's sums counts: a documented difference.

    geovae: ``IDF_j = log(1 + N / n_j)``, ``n_j`` = cells with a count in peak j (Signac's and the
    LiVAE paper's "number of cells in which the peak is accessible"); muon: ``log1p(N / DF_j)``,
    ``DF_j`` = total counts of peak j. The outputs differ (up to 0.58 after log1p here), and the
    difference is exactly that column factor: muon / geovae = ``log1p(N/DF_j) / log1p(N/n_j)``
    for every stored entry (relative tolerance 1e-6).
    """
    mu = quiet_import("muon")
    from geovae.preprocessing import tfidf_matrix

    X = atac_raw.X
    assert X.max() > 1  # real multi-count data, else the two conventions coincide
    ref = atac_raw.copy()
    mu.atac.pp.tfidf(ref, log_tf=False, log_idf=True, log_tfidf=False, scale_factor=1e4)
    R = sp.csr_matrix(ref.X, dtype=np.float64)
    R.eliminate_zeros()
    lin = tfidf_matrix(X, log=False).astype(np.float64).tocsr()
    assert ((lin != 0) != (R != 0)).nnz == 0
    lin.sort_indices()
    R.sort_indices()

    n = X.shape[0]
    sums = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
    cells = np.asarray((X > 0).sum(axis=0), dtype=np.float64).ravel()
    seen = cells > 0
    factor = np.ones(X.shape[1])
    factor[seen] = np.log1p(n / sums[seen]) / np.log1p(n / cells[seen])
    ratio_err = float(np.abs(R.data / lin.data / factor[lin.indices] - 1).max())
    report("TF-IDF raw counts, muon/geovae vs IDF factor (relative)", ratio_err, 1e-6)
    assert ratio_err <= 1e-6

    logged = tfidf_matrix(X, log=True).astype(np.float64)
    R.data = np.log1p(R.data)
    gap = float(abs(logged - R).max())
    report("TF-IDF raw counts, geovae vs muon (documented convention gap)", gap, float("nan"))
    assert gap > 0.1  # the conventions do differ on raw counts: docs/equivalence.md says so


def _lsi_pair(adata_tfidf: anndata.AnnData, n_components: int, **params):
    """geovae LSI latent and muon's ``X_lsi`` (``n_components + 1`` computed) on one TF-IDF matrix."""
    mu = quiet_import("muon")
    from geovae.models.classical import LSI

    adata = adata_tfidf.copy()
    LSI.setup_anndata(adata)
    model = LSI(adata, n_components=n_components, **params)
    model.train(seed=0)
    z = np.asarray(model.get_latent_representation(), dtype=np.float64)
    # muon gets the exact matrix geovae's LSI decomposes (float64): its svds then runs in float64 too
    ref = anndata.AnnData(sp.csr_matrix(adata.X, dtype=np.float64))
    mu.atac.tl.lsi(ref, n_comps=n_components + 1)
    return model, z, ref


def _align(z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``ref`` with each column's sign flipped to match ``z`` (singular vectors have no sign)."""
    signs = np.sign(np.sum(z * ref, axis=0))
    signs[signs == 0] = 1.0
    return ref * signs


@pytest.fixture(scope="module")
def atac_tfidf(atac_binary: anndata.AnnData) -> anndata.AnnData:
    """Binarized Granja counts with geovae's TF-IDF in ``.X`` (``geovae.pp.tfidf``)."""
    from geovae.preprocessing import tfidf

    adata = atac_binary.copy()
    out = tfidf(adata)
    return out if out is not None else adata


@pytest.mark.parametrize("drop_first", [False, True])
def test_lsi_exact_solver_matches_muon_lsi(atac_tfidf: anndata.AnnData, drop_first: bool) -> None:
    """geovae ``LSI(algorithm="arpack")`` = muon's ``atac.tl.lsi``, up to sign and two conventions.

    - geovae drops the first (depth) component by default: its component j is muon's j + 1.
    - ``scale_embeddings``: geovae divides by the sample standard deviation (``ddof=1``, as R's
      ``sd`` in Signac's ``RunSVD``), muon by the population one (``ddof=0``): geovae = muon *
      ``sqrt((n - 1) / n)``.
    With those applied, every component agrees within 1e-5 (measured 2e-7) and the singular
    values (muon: ``uns["lsi"]["stdev"] * sqrt(n - 1)``) within 1e-10 relative.
    """
    k = 10
    model, z, ref = _lsi_pair(atac_tfidf, k, drop_first=drop_first, algorithm="arpack")
    n = z.shape[0]
    start = int(drop_first)
    expected = _align(z, ref.obsm["X_lsi"][:, start:start + k] * np.sqrt((n - 1) / n))
    diff = float(np.abs(z - expected).max())
    report(f"LSI arpack (drop_first={drop_first}) embedding", diff, 1e-5)
    assert diff <= 1e-5
    sv_ref = np.asarray(ref.uns["lsi"]["stdev"]) * np.sqrt(n - 1)
    sv = model.estimator.singular_values_
    sv_err = float(np.abs(sv - sv_ref[:sv.size]).max() / sv.max())
    report("LSI singular values (relative)", sv_err, 1e-10)
    assert sv_err <= 1e-10


def test_lsi_default_solver_matches_muon_lsi(atac_tfidf: anndata.AnnData) -> None:
    """geovae's default LSI (ARPACK SVD, first component dropped) against muon's exact LSI. (The
    randomized solver with 7 power iterations, the default until this test found it, did not
    converge on scATAC TF-IDF: components 4-11 differed, canonical correlation 0.64.)

    Tolerances: every component within 1e-3 after the conventions of
    :func:`test_lsi_exact_solver_matches_muon_lsi`, and the 10-d subspaces equal (smallest
    canonical correlation >= 0.999).
    """
    k = 10
    _, z, ref = _lsi_pair(atac_tfidf, k)
    n = z.shape[0]
    exact = ref.obsm["X_lsi"][:, 1:k + 1] * np.sqrt((n - 1) / n)
    qz, _ = np.linalg.qr(z - z.mean(axis=0))
    qr, _ = np.linalg.qr(exact - exact.mean(axis=0))
    canonical = np.linalg.svd(qz.T @ qr, compute_uv=False)
    diff = float(np.abs(z - _align(z, exact)).max())
    report("LSI default (randomized) embedding", diff, 1e-3)
    report("LSI default, 1 - smallest canonical correlation", 1 - canonical.min(), 1e-3)
    assert canonical.min() >= 0.999
    assert diff <= 1e-3


# ------------------------------------------------------------------------------------ 3. iLISI


@pytest.mark.parametrize("key", ["phase", "bulk_labels"])
def test_ilisi_matches_scib_metrics(pbmc: anndata.AnnData, latent: np.ndarray, key: str) -> None:
    """``metrics.batch.lisi_scores`` / ``ilisi`` = scib-metrics' ``lisi_knn`` / ``ilisi_knn``.

    Same kNN graph: the 90 exact neighbours (self included; geovae drops it, scib-metrics masks
    it), perplexity 30 (scib's default ``n_neighbors // 3`` is also 30). Labels: cell-cycle
    phase (3 groups, partly mixed) and cell type (10 groups, barely mixed), standing in for
    batches. Scaling: geovae's ``iLISI`` is the raw median in ``[1, B]`` (Harmony's scale) and
    ``iLISI_scaled = (iLISI - 1) / (B - 1)`` is what ``ilisi_knn(scale=True)`` returns. jax
    computes in float32: per-cell relative tolerance 1e-4 (measured 7e-6).
    """
    scib_metrics = quiet_import("scib_metrics")
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    from geovae.metrics.batch import ilisi, lisi_scores

    batch = pbmc.obs[key].astype(str).to_numpy()
    dist, idx = NearestNeighbors(n_neighbors=90).fit(latent).kneighbors(latent)
    neighbors = NeighborsResults(indices=idx, distances=dist)

    ref = np.asarray(scib_metrics.lisi_knn(neighbors, batch, perplexity=30), dtype=np.float64)
    ours = lisi_scores(latent, batch, perplexity=30, n_neighbors=90)
    assert np.isfinite(ours).all() and np.isfinite(ref).all()
    rel = float(np.max(np.abs(ours - ref) / ref))
    report(f"LISI per cell ({key}, relative)", rel, 1e-4)
    assert rel <= 1e-4

    summary = ilisi(latent, batch, perplexity=30, n_neighbors=90)
    raw = float(scib_metrics.ilisi_knn(neighbors, batch, perplexity=30, scale=False))
    scaled = float(scib_metrics.ilisi_knn(neighbors, batch, perplexity=30, scale=True))
    report(f"iLISI median ({key}, relative)", abs(summary["iLISI"] - raw) / raw, 1e-4)
    report(f"iLISI_scaled ({key})", abs(summary["iLISI_scaled"] - scaled), 1e-4)
    assert summary["iLISI"] == pytest.approx(raw, rel=1e-4)
    assert summary["iLISI_scaled"] == pytest.approx(scaled, abs=1e-4)
    assert 0.0 <= summary["iLISI_scaled"] <= 1.0


# ---------------------------------------------------------------------- 4. Benjamini-Hochberg


def test_benjamini_hochberg_matches_scipy(pbmc: anndata.AnnData) -> None:
    """``interpretation.benjamini_hochberg`` = ``scipy.stats.false_discovery_control(method="bh")``.

    p-values: Mann-Whitney U of every gene, CD14+ monocytes against the other cells (765 tests
    with ties), plus edge cases (one p-value, zeros, ones, ties). Tolerance 1e-12 (measured
    2e-16). The p-values are cast to float64 first: scipy keeps the input dtype, so float32
    p-values come back rounded to float32 (7.7e-8 off), while geovae always works in float64.
    """
    from scipy import stats

    from geovae.interpretation import benjamini_hochberg

    X = pbmc.X.toarray().astype(np.float64)
    group = (pbmc.obs["bulk_labels"] == "CD14+ Monocyte").to_numpy()
    p = stats.mannwhitneyu(X[group], X[~group], axis=0).pvalue.astype(np.float64)
    assert p.size == 765 and np.unique(p).size < p.size and (p < 0.05).sum() > 100
    cases = [p, np.array([0.01]), np.array([0.0, 0.0, 1.0, 0.5, 0.5, 0.02, 1.0]),
             np.random.default_rng(0).uniform(size=1000) ** 3]
    worst = 0.0
    for case in cases:
        ours = benjamini_hochberg(case)
        ref = stats.false_discovery_control(case, method="bh")
        worst = max(worst, float(np.abs(ours - ref).max()))
    report("Benjamini-Hochberg", worst, 1e-12)
    assert worst <= 1e-12


# ----------------------------------------------------------------------------- 5. QC metrics


@pytest.mark.parametrize("prefixes", [None, ("MT-", "RPL", "RPS")], ids=["default", "mt+ribo"])
def test_rna_qc_metrics_match_scanpy(pbmc: anndata.AnnData, prefixes) -> None:
    """``pp.qc_metrics(adata, "rna")`` = ``sc.pp.calculate_qc_metrics`` with ``var["mt"]``.

    Per cell: total counts and detected genes exactly; the mitochondrial percentage within 1e-5
    percentage points (scanpy's result is float32, whose resolution near 50 % is 4e-6; measured
    3.2e-7). The column names are read under either
    convention (``n_genes``/``n_genes_by_counts``, ``pct_mito``/``pct_counts_mt``). The second
    case passes extra prefixes (ribosomal genes) so that the percentage sums several genes
    (pbmc68k keeps one mitochondrial gene, MT-ND3).
    """
    import geovae

    if prefixes is None:
        ours = geovae.pp.qc_metrics(pbmc, "rna")
        mask = pbmc.var_names.str.startswith(("MT-", "mt-"))
    else:
        ours = geovae.pp.qc_metrics(pbmc, "rna", mito_prefix=list(prefixes))
        mask = pbmc.var_names.str.startswith(prefixes)
    ref = pbmc.copy()
    ref.var["mt"] = np.asarray(mask)
    obs, _ = sc.pp.calculate_qc_metrics(ref, qc_vars=["mt"], percent_top=None, log1p=False, inplace=False)
    assert list(ours.index) == list(obs.index)

    total = np.abs(column(ours, "total_counts") - obs["total_counts"].to_numpy(np.float64)).max()
    genes = np.abs(column(ours, "n_genes_by_counts", "n_genes") - obs["n_genes_by_counts"].to_numpy(np.float64)).max()
    pct_ref = obs["pct_counts_mt"].to_numpy(np.float64)
    pct = np.abs(column(ours, "pct_counts_mt", "pct_mito") - pct_ref).max()
    report(f"QC total_counts / n_genes / pct_counts_mt ({'default' if prefixes is None else 'mt+ribo'})",
           max(total, genes, pct), 1e-5)
    assert (pct_ref > 0).sum() > 100  # the percentage is non-trivial on many cells
    assert total == 0 and genes == 0 and pct <= 1e-5


def test_qc_rna_columns_match_scanpy(pbmc: anndata.AnnData) -> None:
    """The QC columns ``qc_rna`` writes on the kept cells = scanpy's, computed on the unfiltered input.

    ``obs`` total counts / detected genes / mitochondrial percentage (either naming convention)
    and the mitochondrial gene flag (``var["mt"]`` or ``var["mito"]``) against scanpy's
    ``var["mt"] = var_names.str.startswith("MT-")``. geovae stores these columns as float32:
    compared within float32 rounding (1e-6 relative + 1e-6 absolute).
    """
    import geovae

    out = geovae.pp.qc_rna(pbmc, copy=True)
    ref = pbmc.copy()
    ref.var["mt"] = ref.var_names.str.startswith("MT-")
    obs, _ = sc.pp.calculate_qc_metrics(ref, qc_vars=["mt"], percent_top=None, log1p=False, inplace=False)
    obs = obs.loc[out.obs_names]
    assert out.n_obs > 0.5 * pbmc.n_obs

    for ours_names, ref_name in ((("total_counts",), "total_counts"),
                                 (("n_genes_by_counts", "n_genes"), "n_genes_by_counts"),
                                 (("pct_counts_mt", "pct_mito"), "pct_counts_mt")):
        expected = obs[ref_name].to_numpy(np.float64)
        np.testing.assert_allclose(column(out.obs, *ours_names), expected, rtol=1e-6, atol=1e-6,
                                   err_msg=ref_name)
    flag = next((out.var[name] for name in ("mt", "mito") if name in out.var.columns), None)
    assert flag is not None, f"no mitochondrial flag among {list(out.var.columns)}"
    np.testing.assert_array_equal(flag.to_numpy(bool), out.var_names.str.startswith("MT-"))
    assert flag.sum() == 1  # MT-ND3 is kept


def test_atac_qc_metrics_match_scanpy(atac_raw: anndata.AnnData) -> None:
    """``pp.qc_metrics(adata, "atac")``: accessible peaks and total counts = scanpy's
    ``n_genes_by_counts`` and ``total_counts`` (exact)."""
    import geovae

    ours = geovae.pp.qc_metrics(atac_raw, "atac")
    obs, _ = sc.pp.calculate_qc_metrics(atac_raw, percent_top=None, log1p=False, inplace=False)
    peaks = np.abs(column(ours, "n_genes_by_counts", "n_peaks") - obs["n_genes_by_counts"].to_numpy(np.float64)).max()
    total = np.abs(column(ours, "total_counts") - obs["total_counts"].to_numpy(np.float64)).max()
    report("ATAC QC n_peaks / total_counts", max(peaks, total), 0)
    assert peaks == 0 and total == 0


# ---------------------------------------------------------------- 6. normalisation and log1p


def _log_normalize(adata: anndata.AnnData, **kwargs) -> sp.csr_matrix:
    from geovae.preprocessing import log_normalize

    adata = adata.copy()
    out = log_normalize(adata, **kwargs)
    return sp.csr_matrix((out if out is not None else adata).X)


@pytest.mark.parametrize("target", ["1e4", "median"])
def test_log_normalize_matches_scanpy(pbmc: anndata.AnnData, target: str) -> None:
    """``log_normalize`` = ``sc.pp.normalize_total`` + ``sc.pp.log1p``.

    ``target_sum=1e4`` on both sides (geovae's default). scanpy's default ``target_sum=None`` is
    the median of the cells' totals, a different convention: with geovae given that median
    the results agree too. Same sparsity pattern; values within float32 rounding (1e-6 absolute
    plus 1e-6 relative, on values up to 8; measured 4.8e-7).
    """
    totals = np.asarray(pbmc.X.sum(axis=1), dtype=np.float64).ravel()
    ref = pbmc.copy()
    if target == "1e4":
        ours = _log_normalize(pbmc, target_sum=1e4)
        sc.pp.normalize_total(ref, target_sum=1e4)
    else:
        ours = _log_normalize(pbmc, target_sum=float(np.median(totals)))
        sc.pp.normalize_total(ref)
    sc.pp.log1p(ref)
    R = sp.csr_matrix(ref.X)
    assert ((ours != 0) != (R != 0)).nnz == 0
    diff = float(abs(ours.astype(np.float64) - R.astype(np.float64)).max())
    report(f"log-normalisation (target {target})", diff, 1e-6)
    np.testing.assert_allclose(ours.toarray(), R.toarray(), rtol=1e-6, atol=1e-6)
    assert R.max() > 5
