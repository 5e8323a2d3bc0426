"""Known-answer tests of geovae.metrics (definitions: shared/reference/metrics.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.special import gammaln
from scipy.stats import rankdata, spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from geovae.metrics import (
    LatentNeighbourhood,
    clustering_metrics,
    coranking_matrix,
    coranking_qnx,
    coupling_degree,
    embedding_fidelity,
    evaluate,
    fidelity_from_qnx,
    graph_subsample,
    ilisi,
    intrinsic_metrics,
    knn_accuracy,
    leiden_metrics,
    lisi_scores,
    program_recovery,
    qnx_from_coranking,
    rank_matrix,
    subsample_indices,
)
from geovae.neighbors import knn, umap_connectivities
from geovae.metrics._ranking import argsort_rows_self_first, argsort_with_ties, average_ranks

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def single_native_thread():
    """One OpenMP/BLAS thread: KMeans' OpenMP spin-waits badly on a busy 2-core runner."""
    with threadpool_limits(limits=1):
        yield


def blobs(n: int, k: int, d: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centres = rng.normal(size=(k, d)) * sep
    return centres[labels] + rng.normal(size=(n, d)), labels


# ---------------------------------------------------------------- slow reference (fidelity)


def reference_fidelity(Z: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Straightforward co-ranking: per-row ranking loop, np.add.at, Python loop over K."""
    n = Z.shape[0]

    def ranks(X: np.ndarray) -> np.ndarray:
        D = squareform(pdist(X))
        R = np.zeros((n, n), dtype=np.int64)
        for i in range(n):
            row = D[i].copy()
            row[i] = -np.inf  # self first, then by distance, ties by index
            R[i, np.argsort(row, kind="stable")] = np.arange(n)
        return R

    rz, ry = ranks(Z), ranks(Y)
    off = ~np.eye(n, dtype=bool)
    Q = np.zeros((n - 1, n - 1), dtype=np.int64)
    np.add.at(Q, (rz[off] - 1, ry[off] - 1), 1)
    qnx, block = [], 0
    for K in range(1, n - 1):  # grow the top-left K x K block by row K and column K
        block += Q[K - 1, :K].sum() + Q[:K, K - 1].sum() - Q[K - 1, K - 1]
        qnx.append(block / (K * n))
    dc = spearmanr(squareform(pdist(Z)).ravel(), squareform(pdist(Y)).ravel())[0]
    return np.array(qnx), Q, float(dc)


@pytest.mark.parametrize("duplicates", [False, True])
def test_coranking_matches_slow_reference(duplicates: bool) -> None:
    rng = np.random.default_rng(3)
    n = 150
    Z = rng.normal(size=(n, 5))
    Y = Z[:, :2] + 0.5 * rng.normal(size=(n, 2))
    if duplicates:  # exact ties: zero distances and equal distances
        Z[7] = Z[3]
        Z[40] = Z[3]
        Y[11] = Y[12]
        Y = np.round(Y, 1)
    qnx_ref, Q_ref, dc_ref = reference_fidelity(Z, Y)
    np.testing.assert_allclose(coranking_qnx(Z, Y), qnx_ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(coranking_matrix(Z, Y), Q_ref)
    np.testing.assert_allclose(qnx_from_coranking(Q_ref), qnx_ref, rtol=0, atol=1e-12)
    out = embedding_fidelity(Z, Y)
    assert out["DC"] == pytest.approx(dc_ref, abs=1e-12)
    assert out["DC_pairs"] == pytest.approx(spearmanr(pdist(Z), pdist(Y))[0], abs=1e-12)
    expected = fidelity_from_qnx(qnx_ref, dc_ref)
    for key in ("Q_local", "Q_global", "K_max", "overall_embedding_quality"):
        assert out[key] == pytest.approx(expected[key], abs=1e-12)


def test_fidelity_definitions_by_hand() -> None:
    qnx = np.array([0.9, 0.8, 0.85, 0.9])  # n = 6, LCMC = qnx - [0, 1, 2, 3] / 4
    out = fidelity_from_qnx(qnx, dc=0.5)
    assert out["K_max"] == 1  # LCMC = [0.9, 0.55, 0.35, 0.15]
    assert out["Q_local"] == pytest.approx(0.9)
    assert out["Q_global"] == pytest.approx(np.mean([0.8, 0.85, 0.9]))
    assert out["overall_embedding_quality"] == pytest.approx(np.mean([0.5, 0.9, 0.85]))


def test_identical_embedding_is_perfect() -> None:
    Z = np.random.default_rng(0).normal(size=(300, 2))
    np.testing.assert_allclose(coranking_qnx(Z, Z), 1.0, rtol=0, atol=1e-15)
    out = embedding_fidelity(Z, Z.copy())
    assert out["DC"] == pytest.approx(1.0, abs=1e-12)
    assert out["DC_pairs"] == pytest.approx(1.0, abs=1e-12)
    assert out["Q_local"] == pytest.approx(1.0) and out["Q_global"] == pytest.approx(1.0)


def test_random_embedding_qnx_is_chance() -> None:
    n, reps = 400, 8
    chance = np.arange(1, n - 1) / (n - 1)  # E[Q_NX(K)] = K / (n - 1) for an unrelated Y
    bias = []
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        Z, Y = rng.normal(size=(n, 8)), rng.normal(size=(n, 2))
        qnx = coranking_qnx(Z, Y)
        # Q_NX(K) averages n hypergeometric overlaps / K: sd ~ 1/n (max over K seen ~7/n)
        assert np.max(np.abs(qnx - chance)) < 12 / n
        bias.append(np.mean(qnx - chance))
    # the K-average of one run has sd ~1.3/n; the mean of `reps` runs is unbiased
    assert abs(np.mean(bias)) < 5 * 1.3 / n / np.sqrt(reps)
    assert abs(embedding_fidelity(Z, Y)["DC"]) < 0.05


def test_latent_reuse_and_rank_matrix() -> None:
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(200, 6))
    latent = LatentNeighbourhood(Z)
    threaded = LatentNeighbourhood(Z, n_jobs=3)
    for Y in (Z[:, :2], rng.normal(size=(200, 2))):
        single = embedding_fidelity(None, Y, latent=latent)
        assert single == embedding_fidelity(Z, Y) == embedding_fidelity(None, Y, latent=threaded)
    R = rank_matrix(Z)
    assert R.dtype == np.uint16
    np.testing.assert_array_equal(np.diag(R), 0)
    np.testing.assert_array_equal(np.sort(R, axis=1)[:, 1:], np.tile(np.arange(1, 200), (200, 1)))
    with pytest.raises(ValueError, match="points"):
        embedding_fidelity(None, Y[:50], latent=latent)


def test_fast_ranking_helpers_are_exact() -> None:
    rng = np.random.default_rng(5)
    m, n = 6, 2000
    # values that collide once low bits are dropped, exact ties, zeros and huge ranges
    for values in (
        rng.choice([0.0, 5e-324, 1.0, 1.0 + 2**-52, 3.0, 1e300], size=(m, n)),
        1.0 + rng.integers(0, 2**12, size=(m, n)) * 2.0**-52,
        np.abs(rng.standard_cauchy(size=(m, n))),
    ):
        first = rng.integers(0, n, m)
        forced = values.copy()
        forced[np.arange(m), first] = -np.inf
        expected = np.argsort(forced, axis=1, kind="stable")
        np.testing.assert_array_equal(argsort_rows_self_first(values.copy(), first), expected)
        flat = values.ravel()
        order, ties = argsort_with_ties(flat)
        np.testing.assert_array_equal(order, np.argsort(flat, kind="stable"))
        np.testing.assert_array_equal(ties, np.flatnonzero(np.diff(flat[order]) == 0))
        np.testing.assert_array_equal(average_ranks(flat), rankdata(flat))


def test_subsample_indices() -> None:
    a = subsample_indices(10_000, 3000, seed=4)
    assert a.size == 3000 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subsample_indices(10_000, 3000, seed=4))
    assert not np.array_equal(a, subsample_indices(10_000, 3000, seed=5))
    np.testing.assert_array_equal(subsample_indices(50, 3000, seed=4), np.arange(50))


# ---------------------------------------------------------------- clustering


def expected_abs_r(n: int) -> float:
    """E|r| of the Pearson correlation of two independent Gaussian samples of size n."""
    m = (n - 2) / 2  # density of r: (1 - r^2)^(m - 1) / B(1/2, m)
    log_beta = gammaln(0.5) + gammaln(m) - gammaln(m + 0.5)
    return float(2.0 / (n - 2) / np.exp(log_beta))


def test_coupling_degree_known_answers() -> None:
    rng = np.random.default_rng(6)
    n, d, reps = 2000, 10, 30
    # identical columns: every |r| = 1 -> COR = d - 1 exactly
    x = rng.normal(size=(n, 1))
    assert coupling_degree(np.repeat(x, d, axis=1) * np.arange(1, d + 1)) == pytest.approx(d - 1)
    e = expected_abs_r(n)
    assert e == pytest.approx(np.sqrt(2 / (np.pi * n)), rel=0.01)
    independent = np.mean([coupling_degree(rng.normal(size=(n, d))) for _ in range(reps)])
    sd = (d - 1) * np.sqrt(1 - 2 / np.pi) / np.sqrt(n * d * (d - 1) / 2 * reps)
    assert independent == pytest.approx((d - 1) * e, abs=5 * sd)
    # [X, X]: each column has its copy (|r| = 1) and 2 d0 - 2 independent partners
    d0 = 5
    dup = []
    for _ in range(reps):
        X = rng.normal(size=(n, d0))
        dup.append(coupling_degree(np.hstack([X, 2 * X])))
    assert np.mean(dup) == pytest.approx(1 + (2 * d0 - 2) * e, abs=5 * sd)
    assert coupling_degree(x) == 0.0


def test_perfect_clustering_and_true_ari(caplog: pytest.LogCaptureFixture) -> None:
    Z, labels = blobs(900, 4, 6, sep=8.0, seed=7)
    names = np.array([f"type{c}" for c in labels], dtype=object)
    names[:20] = None  # unlabelled cells are skipped
    out = clustering_metrics(Z, names)
    assert out["NMI"] == pytest.approx(1.0) and out["ARI"] == pytest.approx(1.0)
    assert out["AMI"] == pytest.approx(1.0)
    assert out["ASW"] == pytest.approx(out["ASW_label"])

    # overlapping clusters: ARI and AMI differ and each is the named index
    Z2, labels2 = blobs(600, 3, 4, sep=1.0, seed=8)
    out2 = clustering_metrics(Z2, labels2)
    pred = KMeans(n_clusters=3, random_state=42, n_init=10).fit_predict(Z2)
    assert out2["ARI"] == pytest.approx(adjusted_rand_score(labels2, pred))
    assert out2["AMI"] == pytest.approx(adjusted_mutual_info_score(labels2, pred))
    assert abs(out2["ARI"] - out2["AMI"]) > 1e-3
    assert out2["ASW"] == pytest.approx(silhouette_score(Z2, pred))
    assert out2["ASW_label"] == pytest.approx(silhouette_score(Z2, labels2))
    sub = clustering_metrics(Z2, labels2, silhouette_indices=np.arange(0, 600, 2))
    assert sub["ASW"] == pytest.approx(silhouette_score(Z2[::2], pred[::2]))
    with pytest.raises(ValueError, match="2 distinct labels"):
        clustering_metrics(Z2, np.zeros(600))


def test_leiden_and_knn_accuracy() -> None:
    Z, labels = blobs(600, 3, 5, sep=10.0, seed=9)
    out = leiden_metrics(Z, labels, resolutions=(0.2, 0.5, 1.0))
    assert out["NMI_leiden"] == pytest.approx(1.0) and out["ARI_leiden"] == pytest.approx(1.0)
    assert out == leiden_metrics(Z, labels, resolutions=(0.2, 0.5, 1.0))  # seeded
    assert knn_accuracy(Z, labels)["kNN_accuracy"] == pytest.approx(1.0)
    shuffled = np.random.default_rng(0).permutation(labels)
    assert knn_accuracy(Z, shuffled)["kNN_accuracy"] < 0.5


def test_umap_graph_properties() -> None:
    Z, _ = blobs(300, 2, 4, sep=3.0, seed=10)
    dist, idx = knn(Z, 15)
    np.testing.assert_array_equal(idx[:, 0], np.arange(300))
    G = umap_connectivities(dist, idx)
    assert abs(G - G.T).max() < 1e-12
    assert G.diagonal().sum() == 0 and G.data.min() > 0 and G.data.max() <= 1 + 1e-12
    # every cell's nearest neighbour gets weight 1 (distance - rho = 0)
    np.testing.assert_allclose(np.asarray(G[np.arange(300), idx[:, 1]]).ravel(), 1.0)


# ---------------------------------------------------------------- intrinsic


def data_with_spectrum(eig: np.ndarray, n: int = 500, seed: int = 0) -> np.ndarray:
    """n x d data whose covariance eigenvalues are exactly ``eig``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, eig.size))
    X -= X.mean(axis=0)
    Q, _ = np.linalg.qr(X)  # orthonormal, centred columns
    rotation, _ = np.linalg.qr(rng.normal(size=(eig.size, eig.size)))
    return Q * np.sqrt(eig * (n - 1)) @ rotation.T + 5.0


def test_intrinsic_known_spectrum() -> None:
    eig = np.array([5.0, 2.0, 1.0, 0.5])
    total = eig.sum()
    Z = data_with_spectrum(eig)
    out = intrinsic_metrics(Z)
    slope = np.polyfit(np.arange(1, 5), np.log(eig + 1e-10), 1)[0]
    decay = 1 / (1 + np.exp(slope))
    # cum = .588 .824 .941 1 -> k = 2, 3, 4; Kaiser 1; elbow (ratios 2.5, 2, 2) 1
    eff = [1 - 1 / 3, 1 - 2 / 3, 1 - 3 / 3, 1.0, 1.0, decay]
    assert out["manifold_dimensionality"] == pytest.approx(np.mean(eff))
    assert out["spectral_decay"] == pytest.approx(0.6 * decay + 0.4 * 5 / total)
    pr = total**2 / np.sum(eig**2)
    assert out["participation_ratio"] == pytest.approx(1 - pr / 4)
    logr = np.log(eig[:-1] / eig[1:])
    p = eig / total
    aniso = (
        0.25 * np.tanh(np.log(10) / 4)
        + 0.25 * np.tanh(logr.mean() / 2)
        + 0.20 * np.tanh(logr.var())
        + 0.15 * (1 + np.sum(p * np.log(p)) / np.log(4))
        + 0.10 * np.tanh(np.log(5 / 3.5 + 1) / 2)
        + 0.05 * (1 - pr / 4)
    )
    assert out["anisotropy"] == pytest.approx(aniso)
    assert out["trajectory_directionality"] == pytest.approx((5 / 3.5) / (1 + 5 / 3.5))
    assert out["noise_resilience"] == pytest.approx(7 / 1.5 / 10)
    core = np.mean([out[k] for k in ("manifold_dimensionality", "spectral_decay", "participation_ratio", "anisotropy")])
    assert out["core_intrinsic_quality"] == pytest.approx(core)
    assert out["overall_intrinsic_quality"] == pytest.approx(0.5 * core + 0.3 * 5 / 8.5 + 0.2 * 7 / 15)
    steady = intrinsic_metrics(Z, mode="steady_state")
    assert steady["participation_ratio"] == pytest.approx(pr / 4)
    assert steady["anisotropy"] == pytest.approx(1 - aniso)
    assert steady["overall_intrinsic_quality"] == pytest.approx(
        0.7 * steady["core_intrinsic_quality"] + 0.3 * 7 / 15
    )


def test_participation_ratio_isotropic() -> None:
    Z = np.random.default_rng(11).normal(size=(20_000, 8))
    # all eigenvalues ~1: PR ~ d, p ~ 1
    assert intrinsic_metrics(Z)["participation_ratio"] == pytest.approx(0.0, abs=0.01)
    assert intrinsic_metrics(Z, mode="steady_state")["participation_ratio"] == pytest.approx(1.0, abs=0.01)
    exact = data_with_spectrum(np.ones(6))
    assert intrinsic_metrics(exact, mode="steady_state")["participation_ratio"] == pytest.approx(1.0)


def test_intrinsic_edge_cases(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(12)
    with caplog.at_level(logging.WARNING, logger="geovae.metrics"):
        one = intrinsic_metrics(rng.normal(size=(100, 1)))
    assert np.isnan(one["manifold_dimensionality"]) and np.isnan(one["overall_intrinsic_quality"])
    assert one["trajectory_directionality"] == 1.0 and "1-D latent" in caplog.text
    # a dead (constant) dimension: zero eigenvalue, everything still finite
    Z = np.column_stack([rng.normal(size=(300, 3)) * [3, 2, 1], np.full(300, 0.7)])
    assert all(np.isfinite(v) for v in intrinsic_metrics(Z).values())
    # rank 2 in 4 dims: the rest beyond l_2 is 0 -> noise_resilience 1
    flat = data_with_spectrum(np.array([4.0, 1.0, 0.0, 0.0]))
    assert intrinsic_metrics(flat)["noise_resilience"] == 1.0
    with pytest.raises(ValueError, match="zero variance"):
        intrinsic_metrics(np.ones((10, 3)))


# ---------------------------------------------------------------- batch, programs


def reference_lisi(Z: np.ndarray, batch: np.ndarray, perplexity: float = 30) -> np.ndarray:
    """Per-cell loop following Harmony's compute_lisi (90 neighbours incl. self, self dropped)."""
    D = squareform(pdist(Z))
    out = []
    for i in range(Z.shape[0]):
        nbr = np.argsort(D[i], kind="stable")[:90]
        nbr = nbr[nbr != i][:89]
        d = D[i, nbr]

        def h_p(beta: float) -> tuple[float, np.ndarray]:
            p = np.exp(-d * beta)
            return np.log(p.sum()) + beta * np.sum(d * p) / p.sum(), p / p.sum()

        beta, lo, hi = 1.0, -np.inf, np.inf
        h, p = h_p(beta)
        for _ in range(50):
            if abs(h - np.log(perplexity)) < 1e-5:
                break
            if h > np.log(perplexity):
                lo, beta = beta, beta * 2 if np.isinf(hi) else (beta + hi) / 2
            else:
                hi, beta = beta, beta / 2 if np.isinf(lo) else (beta + lo) / 2
            h, p = h_p(beta)
        out.append(1 / sum(p[batch[nbr] == b].sum() ** 2 for b in np.unique(batch)))
    return np.array(out)


def test_ilisi_known_answers() -> None:
    rng = np.random.default_rng(13)
    Z = rng.normal(size=(2000, 5))
    two = rng.integers(0, 2, 2000)
    mixed = ilisi(Z, two)
    assert 1.85 < mixed["iLISI"] <= 2.0 and mixed["iLISI_scaled"] == pytest.approx(mixed["iLISI"] - 1)
    three = ilisi(Z, np.array(["a", "b", "c"])[rng.integers(0, 3, 2000)])
    assert 2.6 < three["iLISI"] <= 3.0
    separated = Z.copy()
    separated[two == 1] += 100.0
    sep = ilisi(separated, two)
    assert sep["iLISI"] == pytest.approx(1.0) and sep["iLISI_scaled"] == pytest.approx(0.0)
    small = Z[:250] * 0.5
    np.testing.assert_allclose(lisi_scores(small, two[:250]), reference_lisi(small, two[:250]), rtol=1e-9)


def test_program_recovery() -> None:
    rng = np.random.default_rng(14)
    Z = rng.normal(size=(500, 4))
    programs = pd.DataFrame({"monotone": np.exp(-2 * Z[:, 2]), "noise": rng.normal(size=500)})
    out = program_recovery(Z, programs)
    assert out["program_spearman_monotone"] == pytest.approx(1.0)
    assert out["program_spearman_noise"] < 0.2
    assert out["program_spearman_mean"] == pytest.approx((1.0 + out["program_spearman_noise"]) / 2)
    by_array = program_recovery(Z, programs.to_numpy())
    assert by_array["program_spearman_0"] == pytest.approx(1.0)


# ---------------------------------------------------------------- evaluate


def make_adata(n: int = 700, seed: int = 15) -> ad.AnnData:
    Z, labels = blobs(n, 4, 6, sep=6.0, seed=seed)
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(X=np.zeros((n, 1), dtype=np.float32))
    adata.obsm["X_latent"] = Z.astype(np.float32)
    adata.obsm["X_umap"] = Z[:, :2] + 0.1 * rng.normal(size=(n, 2))
    adata.obsm["X_tsne"] = Z[:, 2:4]
    adata.obs["cell_type"] = pd.Categorical([f"t{c}" for c in labels])
    adata.obs.loc[adata.obs_names[:10], "cell_type"] = np.nan
    adata.obs["batch"] = np.where(rng.random(n) < 0.5, "b1", "b2")
    adata.obs["one_batch"] = "b1"
    return adata


def test_evaluate_table(caplog: pytest.LogCaptureFixture) -> None:
    adata = make_adata()
    table = evaluate(adata, label_key="cell_type", batch_key="batch", n_subsample=400, seed=1)
    assert list(table.columns) == ["metric", "value", "category"]
    got = dict(zip(table.metric, table.value))
    for name in ("NMI", "ARI", "AMI", "ASW", "ASW_label", "CAL", "DAV", "COR", "NMI_leiden", "ARI_leiden",
                 "leiden_resolution", "kNN_accuracy", "iLISI", "iLISI_scaled", "participation_ratio",
                 "overall_intrinsic_quality"):
        assert name in got, name
    for emb in ("umap", "tsne"):
        for name in ("DC", "Q_local", "Q_global", "K_max", "overall_embedding_quality"):
            assert f"{name}_{emb}" in got
    assert set(table.category) == {"clustering", "umap", "tsne", "intrinsic", "batch"}
    assert got["NMI"] == pytest.approx(1.0)
    idx = subsample_indices(700, 400, seed=1)
    direct = embedding_fidelity(adata.obsm["X_latent"][idx], adata.obsm["X_umap"][idx])
    assert got["Q_local_umap"] == pytest.approx(direct["Q_local"]) and got["DC_umap"] == pytest.approx(direct["DC"])
    assert table.attrs["n_fidelity_cells"] == 400
    assert table.equals(evaluate(adata, label_key="cell_type", batch_key="batch", n_subsample=400, seed=1))

    del adata.obsm["X_tsne"]
    with caplog.at_level(logging.WARNING, logger="geovae.metrics"):
        bare = evaluate(adata, batch_key="one_batch", n_subsample=300, leiden=False)
    got = dict(zip(bare.metric, bare.value))
    assert np.isnan(got["DC_tsne"]) and "X_tsne" in caplog.text
    assert "NMI" not in got and "iLISI" not in got and "1 batch" in caplog.text
    with pytest.raises(KeyError, match="X_missing"):
        evaluate(adata, latent_key="X_missing")


def test_evaluate_graph_subsample() -> None:
    """Above n_graph_subsample labelled cells, the Leiden sweep and kNN accuracy use a seeded subsample."""
    adata = make_adata()
    adata.obsm["X_latent"] = adata.obsm["X_latent"] + 2.0 * np.random.default_rng(3).normal(
        size=adata.obsm["X_latent"].shape)  # overlapping types: the scores depend on the cells
    labels = adata.obs["cell_type"]
    rows = graph_subsample(labels, 300, seed=2)
    assert rows.size == 300 and np.all(np.diff(rows) > 0) and not labels.iloc[rows].isna().any()
    assert np.array_equal(graph_subsample(labels, 0), np.flatnonzero(labels.notna()))
    assert np.array_equal(graph_subsample(labels, None), graph_subsample(labels, 10_000))
    kw = dict(label_key="cell_type", embedding_keys={}, seed=2)
    got = evaluate(adata, n_graph_subsample=300, **kw)
    values = dict(zip(got.metric, got.value))
    Z, lab = adata.obsm["X_latent"], labels.to_numpy()
    assert got.attrs["n_graph_cells"] == 300
    assert values["NMI_leiden"] == pytest.approx(leiden_metrics(Z[rows], lab[rows], seed=2)["NMI_leiden"])
    assert values["kNN_accuracy"] == pytest.approx(knn_accuracy(Z[rows], lab[rows], seed=2)["kNN_accuracy"])
    full = evaluate(adata, n_graph_subsample=None, **kw)
    full_values = dict(zip(full.metric, full.value))
    assert full.attrs["n_graph_cells"] == 690
    assert full_values["kNN_accuracy"] == pytest.approx(knn_accuracy(Z, lab, seed=2)["kNN_accuracy"])
    assert full_values["kNN_accuracy"] != pytest.approx(values["kNN_accuracy"])
    assert full_values["NMI"] == values["NMI"]  # KMeans always on every labelled cell


def test_evaluate_programs() -> None:
    adata = make_adata(300)
    Z = adata.obsm["X_latent"]
    adata.obsm["programs"] = pd.DataFrame({"p": Z[:, 1] ** 3}, index=adata.obs_names)
    table = evaluate(adata, embedding_keys={}, program_key="programs")
    got = dict(zip(table.metric, table.value))
    assert got["program_spearman_p"] == pytest.approx(1.0)
    assert set(table.category) == {"intrinsic", "programs"}


def test_evaluate_real_atac_fixture() -> None:
    path = SHARED / "data" / "granja2019_hemato_atac_600.h5ad"
    if not path.exists():
        pytest.skip("granja2019 fixture absent because ../shared is missing")
    from sklearn.decomposition import TruncatedSVD

    adata = ad.read_h5ad(path)
    X = adata.X.tocsr().astype(np.float64)
    X.data = np.log1p(X.data)
    svd = TruncatedSVD(n_components=11, random_state=0).fit_transform(X)[:, 1:]  # drop depth axis
    adata.obsm["X_latent"] = svd
    adata.obsm["X_umap"] = svd[:, :2]
    table = evaluate(adata, label_key="BioClassification", embedding_keys={"umap": "X_umap"}, n_subsample=500)
    got = dict(zip(table.metric, table.value))
    assert 0.2 < got["NMI"] <= 1.0 and np.isfinite(got["ARI"])
    assert got["K_max_umap"] >= 1 and 0 < got["Q_local_umap"] <= 1
    assert np.isfinite(got["overall_intrinsic_quality"])


def test_neighbour_label_accuracy_counts_majority_votes_by_hand() -> None:
    from geovae.metrics import neighbour_label_accuracy

    # a line: four "a" cells, four "b" cells far away, and one "b" cell among the "a" ones
    xy = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0], [10, 0], [11, 0], [12, 0], [13, 0], [1.5, 0]])
    labels = ["a"] * 4 + ["b"] * 5
    # every cell's 3 neighbours vote its own label except the stray "b" (its neighbours are 1, 2 and 0 or 3)
    assert neighbour_label_accuracy(xy, labels, k=3) == pytest.approx(8 / 9)
    assert neighbour_label_accuracy(xy, labels, rows=np.array([8]), k=3) == 0.0
    assert np.isnan(neighbour_label_accuracy(xy, labels, rows=np.array([], dtype=int)))
    # a tie between two labels goes to the first in sorted order
    line = np.array([[0.0, 0], [1, 0], [2, 0]])
    assert neighbour_label_accuracy(line, ["b", "a", "a"], rows=np.array([1]), k=2) == 1.0
    assert neighbour_label_accuracy(line, ["a", "b", "b"], rows=np.array([1]), k=2) == 0.0
    with pytest.raises(ValueError, match="missing"):
        neighbour_label_accuracy(line, ["a", None, "b"])
