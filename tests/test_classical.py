"""Classical baselines (scikit-learn) behind the BaseModel contract, on tiny RNA and ATAC data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

anndata = pytest.importorskip("anndata")

from geovae.models import SPECS, get_model, load_model  # noqa: E402
from geovae.models.classical import (  # noqa: E402
    LSI, NEURAL_TRAIN_OPTIONS, PCA, KernelPCA, NMF, SklearnModel, TruncatedSVD)
from geovae.preprocessing.input import model_input  # noqa: E402
from geovae.tl import fit_model  # noqa: E402
from simulated import simulated_counts  # noqa: E402

RNA_MODELS = ["pca", "kpca", "ica", "fa", "nmf", "tsvd", "dicl"]
K = 3
NEURAL = dict(max_epochs=5, batch_size=64, lr=1e-3, early_stopping=True, validation_fraction=0.1, patience=3)


def simulate_rna(n_cells: int = 150, n_genes: int = 60, n_groups: int = 3, seed: int = 0) -> anndata.AnnData:
    """NB counts with group-specific profiles, log-normalised into ``.X`` with the geovae input recipe."""
    return simulated_counts(n_cells, n_genes, n_groups, seed=seed, library_size=600)

@pytest.fixture(scope="module")
def rna() -> anndata.AnnData:
    return simulate_rna()


@pytest.fixture(scope="module")
def atac() -> anndata.AnnData:
    from geovae.data.builtin import load_builtin
    from geovae.preprocessing import preprocess_atac

    return preprocess_atac(load_builtin("sim_atac"), n_top_peaks=1500)


def small_params(name: str) -> dict:
    """Tiny settings; subsampled estimators fit on 100 of the 150 cells (exercises the subsample path)."""
    params = {"n_components": K}
    if get_model(name).subsampled:
        params["n_fit"] = 100
    return params


# ------------------------------------------------------------------------- contract
def test_registry_entries_are_sklearn_models() -> None:
    classical = [name for name, spec in SPECS.items() if spec["family"] == "classical"]
    assert sorted(classical) == sorted(RNA_MODELS + ["lsi"])
    for name in classical:
        cls = get_model(name)
        assert issubclass(cls, SklearnModel) and cls.model_name == name


@pytest.mark.parametrize("name", RNA_MODELS)
def test_fit_model_contract_determinism_and_round_trip(name: str, rna: anndata.AnnData, tmp_path) -> None:
    adata = rna.copy()
    model = fit_model(adata, name, params=small_params(name), train=NEURAL, seed=3, device="cpu", progress_bar=False)
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, K) and z.dtype == np.float32 and np.isfinite(z).all()
    assert z.std(axis=0).min() > 0  # every component varies across cells
    # same seed -> identical numbers, also for a copy of the data
    again = fit_model(rna.copy(), name, params=small_params(name), train=NEURAL, seed=3, device="cpu", progress_bar=False)
    np.testing.assert_array_equal(again.get_latent_representation(), z)
    np.testing.assert_array_equal(model.get_latent_representation(rna.copy()), z)
    # one-row history and provenance
    assert list(model.history["epoch"]) == [1] and "seconds" in model.history
    meta = model.metadata
    assert meta["seed"] == 3 and meta["device"] == "cpu" and meta["sklearn_version"]
    assert meta["n_fit"] == (100 if model.subsampled else adata.n_obs) and meta["train_seconds"] >= 0
    assert not model.has_bottleneck
    loadings = model.get_loadings()
    if name == "kpca":
        assert loadings is None
    else:
        assert loadings.shape == (adata.n_vars, K) and list(loadings.index) == list(adata.var_names)
    # save/load through BaseModel: same latents, same history
    model.save(tmp_path / name)
    assert (tmp_path / name / "state.joblib").is_file()
    loaded = load_model(tmp_path / name, rna.copy())
    assert type(loaded) is type(model) and loaded.params == model.params
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)
    pd.testing.assert_frame_equal(loaded.history, model.history)
    with pytest.raises(ValueError, match="var_names"):
        loaded.get_latent_representation(rna[:, ::-1].copy())


def test_subsampled_fit_transforms_every_cell(rna: anndata.AnnData) -> None:
    KernelPCA.setup_anndata(rna)
    fits, fitted_rows = {}, {}
    rows = {r.tobytes() for r in rna.X.toarray().astype(np.float64)}
    for seed in (0, 1):
        model = KernelPCA(rna, n_components=K, n_fit=40)
        model.train(seed=seed)
        assert model.estimator.X_fit_.shape[0] == 40 and model.metadata["n_fit"] == 40
        fitted = np.asarray(model.estimator.X_fit_)
        assert all(r.tobytes() in rows for r in fitted)  # fitted on cells of the data
        fitted_rows[seed] = fitted
        z = model.get_latent_representation(batch_size=17)  # chunks that do not divide n_obs
        assert z.shape == (rna.n_obs, K) and np.isfinite(z).all()
        np.testing.assert_allclose(z, model.get_latent_representation(batch_size=1000), rtol=1e-5, atol=1e-6)
        fits[seed] = z
    assert not np.array_equal(fitted_rows[0], fitted_rows[1])  # the seed picks the subsample
    assert not np.allclose(fits[0], fits[1])


def test_train_accepts_neural_options_only(rna: anndata.AnnData) -> None:
    assert {"max_epochs", "lr", "batch_size", "device", "early_stopping"} <= NEURAL_TRAIN_OPTIONS
    PCA.setup_anndata(rna)
    model = PCA(rna, n_components=K)
    with pytest.raises(TypeError, match="max_epoch"):
        model.train(max_epoch=3)
    with pytest.raises(RuntimeError, match="not trained"):
        model.get_latent_representation()
    with pytest.raises(TypeError, match="unknown parameter"):
        PCA(rna, latent_dim=K)
    with pytest.raises(ValueError, match="n_components"):
        PCA(rna, n_components=0)
    too_many = PCA(rna, n_components=rna.n_vars + 1)
    with pytest.raises(ValueError, match="exceeds"):
        too_many.train()


# ------------------------------------------------------------------- known answers
def _centred_svd(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.linalg.svd(X - X.mean(axis=0), full_matrices=False)


def _assert_same_up_to_sign(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4) -> None:
    signs = np.sign(np.sum(a * b, axis=0))
    np.testing.assert_allclose(a, b * signs, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("scale", [False, True])
def test_pca_matches_numpy_svd(rna: anndata.AnnData, scale: bool) -> None:
    PCA.setup_anndata(rna)
    model = PCA(rna, n_components=K, scale=scale)
    model.train(seed=0)
    X = rna.X.toarray().astype(np.float64)
    if scale:  # the neural models' input: z-score with the stored statistics, clipped at 10
        X = model_input(rna.X, rna.var["input_mean"], rna.var["input_std"], 10.0).astype(np.float64)
    U, S, Vt = _centred_svd(X)
    _assert_same_up_to_sign(model.get_latent_representation().astype(np.float64), U[:, :K] * S[:K], rtol=1e-3)
    _assert_same_up_to_sign(model.get_loadings().to_numpy(), Vt[:K].T, rtol=1e-3)
    expected_ratio = (S[:K] ** 2).sum() / (S ** 2).sum()
    assert model.history["train_explained_variance_ratio"].iloc[0] == pytest.approx(expected_ratio, rel=1e-4)


def test_tsvd_is_uncentred(rna: anndata.AnnData) -> None:
    TruncatedSVD.setup_anndata(rna)
    model = TruncatedSVD(rna, n_components=K, algorithm="arpack")
    model.train(seed=0)
    X = rna.X.toarray().astype(np.float64)
    U, S, _ = np.linalg.svd(X, full_matrices=False)  # no centring: differs from PCA's first component
    _assert_same_up_to_sign(model.get_latent_representation().astype(np.float64), U[:, :K] * S[:K], rtol=1e-3)


def test_nmf_factors_are_non_negative_and_error_is_recorded(rna: anndata.AnnData) -> None:
    from sklearn.decomposition import NMF as SkNMF

    NMF.setup_anndata(rna)
    model = NMF(rna, n_components=K)
    model.train(seed=0)
    X = rna.X.toarray().astype(np.float64)
    z, H = model.get_latent_representation(), model.get_loadings().to_numpy().T
    assert (z >= 0).all() and (H >= 0).all()
    # the recorded error is ||X - W H||_F of the fit (W from an identical, independent fit)
    W = SkNMF(n_components=K, init="nndsvda", solver="cd", max_iter=400, random_state=0).fit_transform(rna.X)
    error = model.history["train_reconstruction_error"].iloc[0]
    assert error == pytest.approx(np.linalg.norm(X - W @ H), rel=1e-6)
    # the latent (W solved with H fixed) reconstructs the data about as well as the fit itself
    assert np.linalg.norm(X - z.astype(np.float64) @ H) == pytest.approx(error, rel=0.02)
    negative = rna.copy()
    negative.X = sp.csr_matrix(model_input(rna.X, rna.var["input_mean"], rna.var["input_std"], 10.0))
    NMF.setup_anndata(negative)
    with pytest.raises(ValueError, match="non-negative"):
        NMF(negative, n_components=K).train()
    with pytest.raises(TypeError, match="scale"):
        NMF(rna, scale=True)


# ------------------------------------------------------------------------------- LSI
def _log_depth(adata: anndata.AnnData) -> np.ndarray:
    return np.log1p(np.asarray(adata.layers["counts"].sum(axis=1)).ravel())


def _max_abs_corr(Z: np.ndarray, depth: np.ndarray) -> float:
    return max(abs(np.corrcoef(Z[:, j], depth)[0, 1]) for j in range(Z.shape[1]))


def test_lsi_drops_the_depth_component(atac: anndata.AnnData, tmp_path) -> None:
    depth = _log_depth(atac)
    full = fit_model(atac.copy(), "lsi", params={"n_components": 6, "drop_first": False}, seed=0)
    z_full = full.get_latent_representation()
    first = abs(np.corrcoef(z_full[:, 0], depth)[0, 1])
    assert first == pytest.approx(abs(full.metadata["depth_correlation"][0]), abs=1e-4)
    assert first > 0.9  # component 1 of TF-IDF SVD tracks sequencing depth (sim_atac varies depth per cell)
    dropped = fit_model(atac.copy(), "lsi", params={"n_components": 6}, seed=0)
    z = dropped.get_latent_representation()
    assert z.shape == (atac.n_obs, 6) and dropped.metadata["n_dropped"] == 1
    assert _max_abs_corr(z, depth) < first - 0.3
    # Signac scaling: unit variance per kept component; the kept components are components 2.. of the full SVD
    np.testing.assert_allclose(z.std(axis=0, ddof=1), 1.0, rtol=1e-4)
    assert abs(np.corrcoef(z[:, 0], z_full[:, 1])[0, 1]) > 0.99
    assert dropped.get_loadings().shape == (atac.n_vars, 6)
    dropped.save(tmp_path / "lsi")
    np.testing.assert_array_equal(load_model(tmp_path / "lsi", atac.copy()).get_latent_representation(), z)


def test_lsi_tfidf_source(atac: anndata.AnnData, rna: anndata.AnnData) -> None:
    LSI.setup_anndata(atac)
    auto, from_x = LSI(atac, n_components=K), LSI(atac, n_components=K, tfidf="X")
    for m in (auto, from_x):
        m.train(seed=0)
    np.testing.assert_array_equal(auto.get_latent_representation(), from_x.get_latent_representation())
    # without uns["tfidf"] (RNA-style input) "auto" computes TF-IDF from the counts layer
    LSI.setup_anndata(rna)
    counts_auto, counts = LSI(rna, n_components=K), LSI(rna, n_components=K, tfidf="counts")
    for m in (counts_auto, counts):
        m.train(seed=0)
    np.testing.assert_array_equal(counts_auto.get_latent_representation(), counts.get_latent_representation())
    with pytest.raises(ValueError, match="tfidf"):
        LSI(rna, tfidf="raw")
