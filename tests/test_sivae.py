"""siVAE: module losses, three-phase training, loadings, degree centrality, persistence, interpret hook."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

anndata = pytest.importorskip("anndata")

from geovae.data.simulate import simulate_programs  # noqa: E402
from geovae.interpretation import interpret_run  # noqa: E402
from geovae.interpretation.components import LOADING_GENES_COLUMNS, loading_genes  # noqa: E402
from geovae.models import get_model  # noqa: E402
from geovae.models.sivae import (CENTRALITY_FILE, LOADINGS_FILE, SiVAE, feature_input_cells,  # noqa: E402
                                 read_loadings)
from geovae.modules.sivae import PHASE_TERMS, SiVAEModule  # noqa: E402
from geovae.preprocessing import preprocess_rna  # noqa: E402
from geovae.tl import fit_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(latent_dim=3, hidden_dims=[16, 8], feature_cells=60)
QUICK = dict(max_epochs=3, batch_size=64, progress_bar=False, early_stopping=False)


def _programs(n_cells: int, n_genes: int, program_size: int, seed: int) -> anndata.AnnData:
    raw = simulate_programs(n_cells=n_cells, n_genes=n_genes, n_groups=3, n_activity_groups=2,
                            activity_fraction=0.5, program_size=program_size, seed=seed)
    adata = preprocess_rna(raw, min_genes=10, min_cells=3, n_top_genes=n_genes)
    SiVAE.setup_anndata(adata, layer="counts")
    return adata


@pytest.fixture(scope="module")
def tiny() -> anndata.AnnData:
    return _programs(n_cells=120, n_genes=60, program_size=10, seed=3)


@pytest.fixture(scope="module")
def programs_data() -> anndata.AnnData:
    return _programs(n_cells=300, n_genes=200, program_size=25, seed=0)


@pytest.fixture(scope="module")
def trained(programs_data) -> SiVAE:
    model = SiVAE(programs_data, latent_dim=4, hidden_dims=[64, 32], feature_cells=300)
    model.train(max_epochs=25, progress_bar=False, early_stopping=False, seed=0)
    return model


# ------------------------------------------------------------------------ module
def test_module_phase_losses_and_total():
    torch.manual_seed(0)
    module = SiVAEModule(n_input=12, n_feature_input=7, latent_dim=3, hidden_dims=[16, 8], gamma=0.3)
    module.set_feature_input(torch.randn(12, 7))
    module.set_dataset_size(50)
    batch = {"x": torch.randn(5, 12), "counts": torch.poisson(torch.full((5, 12), 2.0)),
             "library": torch.full((5, 1), 24.0)}
    for phase in ("cell", "joint"):
        module.set_phase(phase)
        terms = module.loss(batch)
        assert tuple(terms) == PHASE_TERMS[phase] and all(torch.isfinite(v) for v in terms.values())
    torch.testing.assert_close(terms["total"], terms["recon"] + terms["kl_z"] + terms["kl_v"] / 50
                               + 0.3 * terms["interp"])
    module.set_phase("feature")
    terms = module.loss({"feature_x": torch.randn(4, 7), "target": torch.randn(4, 16)})
    assert tuple(terms) == PHASE_TERMS["feature"]
    torch.testing.assert_close(terms["total"], terms["feature_recon"] + terms["feature_kl"])
    with pytest.raises(ValueError, match="phase"):
        module.set_phase("both")
    with pytest.raises(ValueError, match="shape"):
        module.set_feature_input(torch.zeros(12, 8))


def test_interpretability_term_known_answer():
    """Eq. 13: 0.5 * sum_f [(x_cf - v_f . z_c)^2 + log 2 pi], mean over cells."""
    module = SiVAEModule(n_input=2, n_feature_input=1, latent_dim=2, hidden_dims=[4])
    x = torch.tensor([[1.0, 0.0], [2.0, -1.0]])
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 2.0], [0.5, -1.0]])  # predictions: cell 1 (1, 0.5), cell 2 (2, -1)
    # residuals: cell 1 (0, -0.5), cell 2 (0, 0)
    expected = 0.5 * ((0.25 + 2 * math.log(2 * math.pi)) + (0.0 + 2 * math.log(2 * math.pi))) / 2
    assert float(module.interpretability(x, z, v)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("bad", [{"likelihood": "zinb"}, {"hidden_dims": [8, 0]}, {"gamma": -1.0}])
def test_module_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        SiVAEModule(n_input=5, n_feature_input=3, **bad)


def test_feature_input_cells_stratified_and_seeded():
    labels = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    rows = feature_input_cells(100, 20, labels, seed=1)
    assert len(rows) == 20 and len(np.unique(rows)) == 20 and np.all(np.diff(rows) > 0)
    assert [int(np.sum(labels[rows] == k)) for k in "abc"] == [12, 6, 2]  # 60/30/10 % of 20
    np.testing.assert_array_equal(rows, feature_input_cells(100, 20, labels, seed=1))
    assert not np.array_equal(rows, feature_input_cells(100, 20, labels, seed=2))
    np.testing.assert_array_equal(feature_input_cells(50, 80), np.arange(50))
    assert len(feature_input_cells(100, 7)) == 7


def test_model_validates_params(tiny):
    with pytest.raises(KeyError, match="stratify_key"):
        SiVAE(tiny, stratify_key="nope")
    with pytest.raises(ValueError, match="feature_input"):
        SiVAE(tiny, feature_input="umap")
    with pytest.raises(TypeError, match="unknown parameter"):
        SiVAE(tiny, lorentz_weight=1.0)
    with pytest.raises(RuntimeError, match="train"):
        SiVAE(tiny, **TINY).get_loadings()


# ---------------------------------------------------------------------- training
def test_three_phases_each_decrease(trained):
    h = trained.history
    assert list(h["phase"].unique()) == ["cell", "feature", "joint"]
    assert list(h["epoch"]) == list(range(1, 76))
    for phase, group in h.groupby("phase", sort=False):
        assert len(group) == 25
        for term in PHASE_TERMS[phase]:
            assert np.isfinite(group[f"train_{term}"]).all() and np.isfinite(group[f"val_{term}"]).all()
        assert group["train_total"].iloc[-3:].mean() < group["train_total"].iloc[:3].mean(), phase
    meta = trained.metadata
    assert set(meta["phases"]) == {"cell", "feature", "joint"} and meta["n_epochs"] == 75
    assert meta["train_seconds"] == pytest.approx(sum(p["train_seconds"] for p in meta["phases"].values()),
                                                  abs=0.01)
    assert meta["phases"]["feature"]["n_train"] + meta["phases"]["feature"]["n_val"] == trained.adata.n_vars
    assert meta["feature_input"] == {"feature_input": "subsample", "n_cells": 300, "stratify_key": None}


def test_shapes(trained, programs_data):
    z = trained.get_latent_representation()
    loadings = trained.get_loadings()
    assert z.shape == (programs_data.n_obs, 4) and z.dtype == np.float32
    assert loadings.shape == (programs_data.n_vars, 4)
    assert list(loadings.index) == list(programs_data.var_names) and list(loadings.columns) == ["Z1", "Z2", "Z3", "Z4"]
    centrality = trained.get_degree_centrality()
    assert centrality.shape == (programs_data.n_vars,) and list(centrality.index) == list(programs_data.var_names)
    assert (centrality.dropna() <= 0).all()


def test_loadings_track_gene_programs(trained, programs_data):
    """Genes of a simulated identity program load more on the component that tracks that program's
    usage than genes outside every program (siVAE's PCA-like correspondence, eq. 13)."""
    z = trained.get_latent_representation().astype(np.float64)
    loadings = trained.get_loadings().to_numpy()
    usage = programs_data.obsm["program_usage"]
    member = programs_data.varm["programs"]
    background = ~np.asarray(member).any(axis=1)
    ratios = []
    for name in [c for c in member.columns if c.startswith("identity")]:
        u = usage[name].to_numpy()
        r = [abs(np.corrcoef(z[:, k], u)[0, 1]) for k in range(z.shape[1])]
        k = int(np.argmax(r))
        genes = member[name].to_numpy()
        ratios.append(np.abs(loadings[genes, k]).mean() / np.abs(loadings[background, k]).mean())
    assert min(ratios) > 1.0 and np.mean(ratios) > 1.3, ratios


def test_degree_centrality_favours_program_genes(trained, programs_data):
    """Co-expressed (program) genes are reconstructed better than independent genes (paper's hub rationale)."""
    centrality = trained.get_degree_centrality().to_numpy()
    in_program = np.asarray(programs_data.varm["programs"]).any(axis=1)
    assert np.nanmean(centrality[in_program]) > np.nanmean(centrality[~in_program]) + 0.1


def test_same_seed_same_numbers(tiny):
    runs = []
    for seed in (0, 0, 1):
        model = SiVAE(tiny, **TINY)
        model.train(seed=seed, **QUICK)
        runs.append((model.get_latent_representation(), model.get_loadings().to_numpy(),
                     model.get_degree_centrality().to_numpy()))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_variants_nb_pca_and_stratified(tiny):
    model = SiVAE(tiny, likelihood="nb", feature_input="pca", **{**TINY, "feature_cells": 20})
    model.train(seed=0, **QUICK)
    assert model.module.feature_input.shape == (tiny.n_vars, 20)
    assert model.metadata["feature_input"]["feature_input"] == "pca"
    assert np.isfinite(model.get_loadings().to_numpy()).all()
    assert np.isfinite(model.get_degree_centrality().dropna()).all()
    strat = SiVAE(tiny, stratify_key="group", **TINY)
    strat.train(seed=0, **QUICK)
    assert strat.metadata["feature_input"]["n_cells"] == 60


def test_continue_training_runs_joint_phase(tiny):
    model = SiVAE(tiny, **TINY)
    model.train(seed=0, **QUICK)
    model.train(seed=0, **QUICK)
    assert list(model.history["phase"]) == ["cell"] * 3 + ["feature"] * 3 + ["joint"] * 6
    assert list(model.history["epoch"]) == list(range(1, 13))


def test_fit_model_registry_and_save_load(tiny, tmp_path):
    train = {k: v for k, v in QUICK.items() if k != "progress_bar"}
    model = fit_model(tiny, model="sivae", params=TINY, train=train, device="cpu", seed=0, progress_bar=False)
    assert get_model("sivae") is SiVAE and isinstance(model, SiVAE)
    assert model.params["likelihood"] == "gaussian" and model.params["gamma"] == 0.05
    path = model.save(tmp_path / "model")
    assert (path / LOADINGS_FILE).is_file() and (path / CENTRALITY_FILE).is_file()
    loaded = SiVAE.load(path, tiny, device="cpu")
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())
    pd.testing.assert_frame_equal(loaded.get_loadings(), model.get_loadings())
    loadings, centrality = read_loadings(path)
    np.testing.assert_allclose(loadings.to_numpy(), model.get_loadings().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(centrality.to_numpy(), model.get_degree_centrality().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(loaded.get_degree_centrality().to_numpy(), centrality.to_numpy())
    assert read_loadings(tmp_path) == (None, None)


# ------------------------------------------------------------------ interpretation
def test_loading_genes_known_ranking():
    loadings = pd.DataFrame({"Z1": [0.9, -0.5, 0.1, -1.2], "Z2": [0.0, 0.3, -0.2, 0.1]},
                            index=["a", "b", "c", "d"])
    centrality = pd.Series({"a": -0.9, "b": -0.1, "c": -0.2, "d": -0.5})
    summary, genes = loading_genes(loadings, centrality, n_top=2, n_hubs=1)
    assert list(genes.columns) == LOADING_GENES_COLUMNS
    z1 = genes[genes["component"] == "Z1"]
    assert list(z1.loc[z1["tail"] == "positive", "gene"]) == ["a", "c"]
    assert list(z1.loc[z1["tail"] == "negative", "gene"]) == ["d", "b"]
    # module of Z1 = the two largest |loading| (d, a); its hub = the more central one (d)
    assert summary.set_index("component").loc["Z1", "hub_genes"] == "d"
    assert list(z1.loc[z1["hub"], "gene"]) == ["d"]
    assert summary.set_index("component").loc["Z2", "top_loading_negative"] == "c"
    _, no_hubs = loading_genes(loadings, None, n_top=2)
    assert not no_hubs["hub"].any() and no_hubs["degree_centrality"].isna().all()


def test_interpret_hook_on_saved_model(tiny, tmp_path):
    model = SiVAE(tiny, **TINY)
    model.train(seed=0, **QUICK)
    loadings, centrality = read_loadings(model.save(tmp_path / "model"))
    adata = tiny.copy()
    adata.obsm["X_latent"] = model.get_latent_representation()
    result = interpret_run(adata, gmt=None, n_top=5, gsea_permutations=0, loadings=loadings,
                           centrality=centrality)
    assert {"top_loading_positive", "top_loading_negative", "hub_genes"} <= set(result.components.columns)
    table = result.loading_genes
    assert set(table["component"]) == {"Z1", "Z2", "Z3"} and table["hub"].sum() == 3 * 5
    top = table[(table["component"] == "Z1") & (table["tail"] == "positive")]
    assert top["gene"].iloc[0] == loadings["Z1"].idxmax()
    plain = interpret_run(adata, gmt=None, n_top=5, gsea_permutations=0)
    assert plain.loading_genes.empty and "hub_genes" not in plain.components.columns
    with pytest.raises(ValueError, match="components"):
        interpret_run(adata, gmt=None, n_top=5, gsea_permutations=0, loadings=loadings.iloc[:, :2])


def test_kl_warmup_schedule_and_early_stopping_after_it(tiny):
    """kl_warmup_epochs: the KL weight rises linearly in the cell and joint phases, and the trainer
    neither keeps weights from nor counts patience during the warm-up (stable_from_epoch)."""
    from geovae.modules.sivae import SiVAEModule

    module = SiVAEModule(20, 8, latent_dim=2, hidden_dims=(16, 8), kl_warmup_epochs=4)
    scales = []
    for epoch in (1, 2, 4, 9):
        module.on_epoch_start(epoch, 10)
        scales.append(module.kl_scale)
    assert scales == [0.25, 0.5, 1.0, 1.0] and module.stable_from_epoch == 5
    module.set_phase("feature")
    module.on_epoch_start(1, 10)
    assert module.kl_scale == 1.0 and module.stable_from_epoch == 1
    with pytest.raises(ValueError, match="kl_warmup_epochs"):
        SiVAEModule(20, 8, kl_warmup_epochs=-1)

    model = SiVAE(tiny.copy(), **TINY, kl_warmup_epochs=6)
    model.train(max_epochs=8, patience=1, seed=0, progress_bar=False, device="cpu")
    for phase, meta in model.metadata["phases"].items():
        if phase in ("cell", "joint"):  # no best epoch and no stop inside the warm-up
            assert meta["best_epoch"] >= 7 and meta["n_epochs"] >= 7, (phase, meta)
