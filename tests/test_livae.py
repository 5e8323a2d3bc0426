"""LiVAE module, shared trainer and user API on small simulated counts (CPU, fast)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

anndata = pytest.importorskip("anndata")

from geovae.models import MODELS, LiVAE, LiVAEModule, get_model  # noqa: E402
from geovae.training import InputTransform, split_indices  # noqa: E402
from simulated import simulated_counts  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(max_epochs=8, batch_size=128, progress_bar=False)


def simulate(n_cells: int = 200, n_genes: int = 100, n_groups: int = 3, seed: int = 0):
    """NB counts with group-specific expression programs (SIMULATED); returns (adata, labels)."""
    adata = simulated_counts(n_cells, n_genes, n_groups, seed=seed, library_size=800)
    LiVAE.setup_anndata(adata, layer="counts")
    return adata, adata.obs["label"].to_numpy().astype(int)

@pytest.fixture(scope="module")
def data():
    return simulate()


@pytest.fixture(scope="module")
def trained(data):
    adata, _ = data
    model = LiVAE(adata)
    model.train(max_epochs=25, batch_size=128, seed=0, progress_bar=False, early_stopping=False)
    return model


# ---------------------------------------------------------------- setup / registry
def test_setup_anndata_validates(data):
    adata, _ = data
    assert adata.uns["geovae_setup"]["layer"] == "counts"
    bad = adata.copy()
    with pytest.raises(KeyError, match="raw"):
        LiVAE.setup_anndata(bad, layer="raw")
    bad.layers["neg"] = bad.layers["counts"].copy()
    bad.layers["neg"].data[0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        LiVAE.setup_anndata(bad, layer="neg")
    with pytest.raises(KeyError, match="batch_key"):
        LiVAE.setup_anndata(bad, layer="counts", batch_key="nope")
    fresh = anndata.AnnData(X=adata.X.copy())
    with pytest.raises(ValueError, match="setup_anndata"):
        LiVAE(fresh)


def test_registry():
    assert get_model("livae") is LiVAE and get_model("LiVAE") is LiVAE and MODELS["livae"] is LiVAE
    with pytest.raises(KeyError, match="available models"):
        get_model("no_such_model")


def test_celltypes_preset_is_livae_with_lorentz_weight_3(data):
    from geovae.models import LiVAECellTypes

    adata, _ = data
    assert get_model("livae_celltypes") is LiVAECellTypes
    params = LiVAECellTypes.default_params()
    assert params == {**LiVAE.default_params(), "lorentz_weight": 3.0}
    model = LiVAECellTypes(adata)
    assert model.module.lorentz_weight == 3.0 and model.has_bottleneck
    with pytest.raises(ValueError, match="fixes"):
        LiVAECellTypes(adata, lorentz_weight=10.0)


# ------------------------------------------------------------------------ module
def test_module_loss_terms_and_weights():
    torch.manual_seed(0)
    module = LiVAEModule(n_input=30, lorentz_weight=10.0)
    x = torch.randn(16, 30)
    counts = torch.poisson(torch.full((16, 30), 3.0))
    torch.manual_seed(1)
    terms = module(x, counts)
    assert set(terms) == {"recon", "recon_bn", "kl", "geo", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    expected = terms["recon"] + terms["recon_bn"] + terms["kl"] + 10.0 * terms["geo"]
    torch.testing.assert_close(terms["total"], expected)
    assert terms["geo"] > 0 and terms["kl"] >= 0

    plain = LiVAEModule(n_input=30, use_bottleneck=False)
    terms = plain(x, counts)
    assert float(terms["recon_bn"]) == 0.0 and float(terms["geo"]) == 0.0
    torch.testing.assert_close(terms["total"], terms["recon"] + terms["kl"])


@pytest.mark.parametrize("bad", [{"likelihood": "gamma"}, {"geometry": "poincare"}, {"regularization": "x"}])
def test_module_rejects_unknown_options(bad):
    with pytest.raises(ValueError):
        LiVAEModule(n_input=5, **bad)


def test_input_transform_known_answer():
    X = sp.csr_matrix(np.array([[0.0, 2.0, 5.0], [4.0, 0.0, 5.0]], dtype=np.float32))
    t = InputTransform(mean=np.array([2.0, 1.0, 5.0]), std=np.array([2.0, 0.5, 0.0]), center_scale=True, clip=1.5)
    np.testing.assert_allclose(t(X), [[-1.0, 1.5, 0.0], [1.0, -1.5, 0.0]])
    assert t(X).dtype == np.float32
    np.testing.assert_array_equal(InputTransform()(X), X.toarray())


def test_split_is_seeded_and_disjoint():
    tr, va = split_indices(200, 0.1, seed=3)
    assert len(va) == 20 and len(tr) == 180 and not set(tr) & set(va)
    tr2, va2 = split_indices(200, 0.1, seed=3)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_indices(200, 0.1, seed=4)[1])


# ---------------------------------------------------------------------- training
def test_training_history_finite_and_decreasing(trained):
    h = trained.history
    for col in ("train_recon", "train_recon_bn", "train_kl", "train_geo", "train_total",
                "val_recon", "val_recon_bn", "val_kl", "val_geo", "val_total"):
        assert col in h.columns and np.isfinite(h[col]).all(), col
    assert len(h) == 25 and list(h["epoch"]) == list(range(1, 26))
    assert h["train_total"].iloc[-3:].mean() < 0.9 * h["train_total"].iloc[:3].mean()
    assert h["val_total"].iloc[-3:].mean() < h["val_total"].iloc[:3].mean()
    meta = trained.metadata
    assert meta["device"] == "cpu" and meta["n_epochs"] == 25 and meta["stopped_early"] is False
    assert meta["seed"] == 0 and meta["train_seconds"] > 0 and meta["n_val"] == 20
    assert not torch.are_deterministic_algorithms_enabled()  # global flag restored


def test_latent_shapes_and_groups_separate(trained, data):
    adata, labels = data
    z = trained.get_latent_representation()
    assert z.shape == (200, 10) and z.dtype == np.float32
    assert trained.get_bottleneck_representation().shape == (200, 2)
    assert trained.get_latent_representation(give_mean=False).shape == (200, 10)
    # simulated groups are well separated: nearest-centroid accuracy in the latent space
    cent = np.stack([z[labels == k].mean(0) for k in range(3)])
    pred = np.argmin(((z[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == labels).mean() > 0.9


def test_same_seed_identical_latents(data):
    adata, _ = data
    a, b, c = LiVAE(adata), LiVAE(adata), LiVAE(adata)
    a.train(seed=7, **FAST)
    b.train(seed=7, **FAST)
    c.train(seed=8, **FAST)
    za, zb, zc = (m.get_latent_representation() for m in (a, b, c))
    assert np.array_equal(za, zb)
    assert not np.allclose(za, zc)


def test_adam_eps_reaches_the_optimizer(data):
    """torch's default eps gives the default run's weights; scvi-tools' 0.01 damps the small steps."""
    adata, _ = data
    runs = {}
    for name, options in (("default", {}), ("explicit", {"adam_eps": 1e-8}), ("scvi", {"adam_eps": 0.01})):
        model = LiVAE(adata)
        model.train(seed=3, **FAST, **options)
        runs[name] = model.get_latent_representation()
    assert np.array_equal(runs["default"], runs["explicit"])
    assert not np.allclose(runs["default"], runs["scvi"])


class _ScriptedModule(torch.nn.Module):
    """Training pulls w towards 100; validation loss follows a script (one value per epoch)."""

    def __init__(self, val_losses):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.val_losses = list(val_losses)
        self.w_at_epoch = []

    def loss(self, batch):
        if self.training:
            return {"total": ((self.w - 100.0) ** 2).sum()}
        self.w_at_epoch.append(float(self.w))
        return {"total": torch.tensor(self.val_losses[len(self.w_at_epoch) - 1])}


class _ToyData:
    n_obs = 50

    def get(self, idx):
        return {"x": np.zeros((len(idx), 1), dtype=np.float32)}


@pytest.mark.parametrize("min_delta, min_rel_delta, best", [(0.0, 0.0, 5), (0.6, 0.0, 4), (0.0, 0.26, 4)])
def test_early_stopping_restores_best_weights(min_delta, min_rel_delta, best):
    from geovae.training import TrainingConfig, train_module

    # relative 0.26: epoch 2 (4 vs 5: 20 %) does not count, 3 (3 vs 5) and 4 (2 vs 3: 33 %) do, 5 (1.5 vs 2: 25 %) not
    script = [5.0, 4.0, 3.0, 2.0, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2]
    module = _ScriptedModule(script)
    cfg = TrainingConfig(max_epochs=len(script), batch_size=10, lr=0.1, patience=3, min_delta=min_delta,
                         min_rel_delta=min_rel_delta, progress_bar=False, device="cpu")
    result = train_module(module, _ToyData(), cfg)
    meta, hist = result.metadata, result.history
    assert meta["best_epoch"] == best and meta["stopped_early"]
    assert meta["n_epochs"] == best + 3 == len(hist)
    assert list(hist["val_total"]) == script[: best + 3]
    assert float(module.w.detach()) == module.w_at_epoch[best - 1]  # weights of the best epoch restored
    assert module.w_at_epoch[-1] > module.w_at_epoch[best - 1]  # training had moved on


def test_relative_min_delta_stops_a_slow_crawl():
    """A loss that still falls by 0.1 % an epoch never stops on min_delta 0, and stops on min_rel_delta 1 %."""
    from geovae.training import TrainingConfig, train_module

    script = [1000.0 * 0.999**k for k in range(30)]
    stops = {}
    for rel in (0.0, 0.01):
        cfg = TrainingConfig(max_epochs=len(script), batch_size=10, lr=0.1, patience=5, min_rel_delta=rel,
                             progress_bar=False, device="cpu")
        stops[rel] = train_module(_ScriptedModule(script), _ToyData(), cfg).metadata
    assert stops[0.0]["n_epochs"] == 30 and not stops[0.0]["stopped_early"] and stops[0.0]["best_epoch"] == 30
    # every epoch after the first falls by 0.1 % of the best (epoch 1): 5 bad epochs, stop at 6, keep epoch 1
    assert stops[0.01]["stopped_early"] and stops[0.01]["n_epochs"] == 6 and stops[0.01]["best_epoch"] == 1


def test_improvement_threshold_is_the_larger_rule():
    from geovae.training import TrainingConfig
    from geovae.training.trainer import _improvement_threshold

    cfg = TrainingConfig(min_delta=2.0, min_rel_delta=1e-3)
    assert _improvement_threshold(float("inf"), cfg) == 2.0  # nothing to be relative to yet
    assert _improvement_threshold(1000.0, cfg) == 2.0
    assert _improvement_threshold(-5000.0, cfg) == pytest.approx(5.0)  # |best|: losses may be negative
    with pytest.raises(ValueError, match="min_rel_delta"):
        TrainingConfig(min_rel_delta=1.0)


def test_epoch_budget_caps_epochs_on_large_data():
    """epochs = min(max_epochs, round(epoch_budget / cells)), at least 1; 0 turns it off."""
    from geovae.training import TrainingConfig, train_module

    cfg = TrainingConfig(max_epochs=300)
    assert [cfg.epochs_for(n) for n in (700, 6_666, 100_000, 1_000_000, 10**9)] == [300, 300, 20, 2, 1]
    assert TrainingConfig(max_epochs=300, epoch_budget=8_000_000).epochs_for(100_000) == 80  # scvi-tools' rule
    assert TrainingConfig(max_epochs=300, epoch_budget=0).epochs_for(1_000_000) == 300
    with pytest.raises(ValueError, match="epoch_budget"):
        TrainingConfig(epoch_budget=-1)
    cfg = TrainingConfig(max_epochs=12, epoch_budget=200, batch_size=10, lr=0.1, early_stopping=False,
                         progress_bar=False, device="cpu")  # 200 cell-epochs / 50 cells = 4 epochs
    result = train_module(_ScriptedModule([1.0] * 12), _ToyData(), cfg)
    assert result.metadata["n_epochs"] == len(result.history) == 4
    assert result.metadata["config"]["max_epochs"] == 4 and result.metadata["config"]["epoch_budget"] == 200


def test_no_validation_set(data):
    adata, _ = data
    model = LiVAE(adata)
    model.train(max_epochs=2, batch_size=128, validation_fraction=0.0, progress_bar=False)
    assert model.metadata["n_val"] == 0 and not any(c.startswith("val_") for c in model.history.columns)


def test_lorentz_weight_lowers_geometric_term(data):
    adata, _ = data

    def geo_after_training(weight):
        model = LiVAE(adata, lorentz_weight=weight)
        model.train(max_epochs=10, batch_size=128, seed=0, progress_bar=False, early_stopping=False)
        z = torch.from_numpy(model.get_latent_representation())
        l_d = model.module.bottleneck(z)[1].detach()
        return float(model.module._geo(z, l_d)), model.history["train_geo"].iloc[-1]

    geo10, hist10 = geo_after_training(10.0)
    geo0, hist0 = geo_after_training(0.0)
    assert geo10 < 0.5 * geo0
    assert hist10 < hist0


@pytest.mark.parametrize(
    "params",
    [{"likelihood": "zinb"}, {"likelihood": "poisson"}, {"likelihood": "zip"},
     {"geometry": "euclidean"}, {"regularization": "two_views"}, {"lorentz_squared": False},
     {"use_bottleneck": False}],
)
def test_variants_train(data, params):
    adata, _ = data
    model = LiVAE(adata, **params)
    model.train(max_epochs=3, batch_size=128, progress_bar=False)
    assert np.isfinite(model.history.drop(columns="epoch").to_numpy()).all()
    assert np.isfinite(model.get_latent_representation()).all()
    if params.get("use_bottleneck") is False:
        with pytest.raises(RuntimeError, match="use_bottleneck"):
            model.get_bottleneck_representation()


def test_plain_anndata_without_preprocessing_metadata():
    adata, _ = simulate(n_cells=60, n_genes=20, seed=5)
    raw = anndata.AnnData(X=adata.layers["counts"].copy())  # X = counts, no uns/var stats
    LiVAE.setup_anndata(raw, layer=None)
    model = LiVAE(raw, likelihood="poisson")
    model.train(max_epochs=3, batch_size=32, progress_bar=False)
    assert model.input_transform.center_scale is False
    assert model.get_latent_representation().shape == (60, 10)


# ------------------------------------------------------------------- persistence
def test_save_load_round_trip(trained, data, tmp_path):
    adata, _ = data
    out = tmp_path / "model"
    trained.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp leftovers
    with pytest.raises(FileExistsError):
        trained.save(out)
    trained.save(out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    loaded = LiVAE.load(out, adata.copy(), device="cpu")
    assert np.array_equal(loaded.get_latent_representation(), trained.get_latent_representation())
    assert np.array_equal(loaded.get_bottleneck_representation(), trained.get_bottleneck_representation())
    assert loaded.params == trained.params and loaded.is_trained
    pd.testing.assert_frame_equal(loaded.history, trained.history, check_dtype=False)
    assert loaded.metadata["n_epochs"] == 25

    # the stored input statistics are used, not those of the adata passed later
    other = adata.copy()
    other.var["input_mean"] = 0.0
    assert np.array_equal(loaded.get_latent_representation(other), trained.get_latent_representation())

    wrong = adata[:, ::-1].copy()
    with pytest.raises(ValueError, match="var_names"):
        LiVAE.load(out, wrong)
    with pytest.raises(ValueError, match="features"):
        LiVAE.load(out, adata[:, :50].copy())
    with pytest.raises(FileNotFoundError):
        LiVAE.load(tmp_path / "missing", adata)


def test_load_without_adata_restores_the_registered_data(trained, data, tmp_path):
    """scvi-tools' habit: save(..., save_anndata=True), then load(path) with no adata."""
    from geovae.models import load_model

    with pytest.raises(ValueError, match="save_anndata=True"):
        trained.save(tmp_path / "bare")
        LiVAE.load(tmp_path / "bare")
    trained.save(tmp_path / "full", save_anndata=True)
    for loaded in (LiVAE.load(tmp_path / "full", device="cpu"), load_model(tmp_path / "full", device="cpu")):
        setup, saved = trained.adata.uns["geovae_setup"], loaded.adata.uns["geovae_setup"]
        assert set(saved) == set(setup) and saved.get("layer") == setup.get("layer")
        assert list(loaded.adata.obs_names) == list(data[0].obs_names)
        np.testing.assert_array_equal(loaded.get_latent_representation(), trained.get_latent_representation())


def test_scvi_tools_training_arguments(data):
    """accelerator/devices/train_size/plan_kwargs... are translated, or refused naming geovae's argument."""
    from geovae.options import scvi_training_names, training_config

    cfg = training_config({"accelerator": "cpu", "devices": 1, "train_size": 0.8,
                           "plan_kwargs": {"lr": 5e-4, "eps": 0.01}, "early_stopping_patience": 7,
                           "enable_progress_bar": False})
    assert (cfg.device, cfg.lr, cfg.adam_eps, cfg.patience, cfg.progress_bar) == ("cpu", 5e-4, 0.01, 7, False)
    assert cfg.validation_fraction == pytest.approx(0.2)
    assert scvi_training_names({"accelerator": "gpu", "devices": [1]})["device"] == "cuda:1"
    assert scvi_training_names({"accelerator": "auto"})["device"] == "auto"
    with pytest.raises(TypeError, match="one device"):
        scvi_training_names({"accelerator": "gpu", "devices": 2})
    with pytest.raises(TypeError, match="n_epochs_kl_warmup"):
        scvi_training_names({"plan_kwargs": {"n_epochs_kl_warmup": 10}})
    with pytest.raises(TypeError, match="validation runs every epoch"):
        scvi_training_names({"check_val_every_n_epoch": 5})
    with pytest.raises(ValueError, match="device given twice"):
        scvi_training_names({"accelerator": "cpu", "device": "cuda"})
    adata, _ = data
    model = LiVAE(adata.copy(), latent_dim=4)  # through a model's own train()
    model.train(max_epochs=2, accelerator="cpu", train_size=0.9, batch_size=64, progress_bar=False)
    assert model.metadata["device"] == "cpu" and model.history.shape[0] == 2
