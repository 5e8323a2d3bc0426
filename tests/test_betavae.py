"""beta-VAE family: regularisers on known answers, modules, models through the registry (CPU, tiny data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

anndata = pytest.importorskip("anndata")

from geovae.models import LiVAEModule, get_model, load_model  # noqa: E402
from geovae.models.betavae import BetaTCVAE, BetaVAE, BetaVAECapacity, DIPVAE1, DIPVAE2, InfoVAE  # noqa: E402
from geovae.modules.betavae import (  # noqa: E402
    BetaTCVAEModule,
    BetaVAECapacityModule,
    BetaVAEModule,
    DIPVAE1Module,
    DIPVAE2Module,
    InfoVAEModule,
    capacity_schedule,
    dip_penalties,
    gaussian_kl,
    gaussian_log_density,
    mmd,
    tc_decomposition,
)
from geovae.tl import fit_model, resolve_params  # noqa: E402
from simulated import simulated_counts  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODELS = {"betavae": (BetaVAE, {"kl"}), "betavae_c": (BetaVAECapacity, {"kl", "capacity"}),
          "betatcvae": (BetaTCVAE, {"kl", "mi", "tc", "dwkl"}), "dipvae1": (DIPVAE1, {"kl", "dip_od", "dip_d"}),
          "dipvae2": (DIPVAE2, {"kl", "dip_od", "dip_d"}), "infovae": (InfoVAE, {"kl", "mmd"})}
TRAIN = dict(max_epochs=12, batch_size=64, early_stopping=False, validation_fraction=0.1)


def tiny(n_cells: int = 160, n_genes: int = 50, seed: int = 0, modality: str = "rna") -> anndata.AnnData:
    """SIMULATED NB counts from three group profiles, with the preprocessed-AnnData fields."""
    return simulated_counts(n_cells, n_genes, seed=seed, library_size=600, modality=modality)


# ------------------------------------------------------------------ regularisers
def test_gaussian_kl_and_density_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))
    z = torch.randn(7, 4, generator=g)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), q.log_prob(z))
    assert float(gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 2)).abs().max()) == 0.0


def test_capacity_schedule_values():
    assert capacity_schedule(1, 25.0, 100) == 0.0
    assert capacity_schedule(51, 25.0, 100) == pytest.approx(12.5)
    assert capacity_schedule(101, 25.0, 100) == pytest.approx(25.0)
    assert capacity_schedule(300, 25.0, 100) == pytest.approx(25.0)
    assert capacity_schedule(1, 25.0, 0) == 25.0
    with pytest.raises(ValueError, match="1-based"):
        capacity_schedule(0, 25.0, 100)


def test_tc_decomposition_identical_posteriors_closed_form():
    # all M cells share one posterior: logsumexp over j adds log M, so (derivation in the docstring)
    # log q(z_i) = log q(z_i|x_i) - log N and log prod_k q(z_ik) = log q(z_i|x_i) - d log N
    n_data, m, d = 500, 8, 3
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(1, d, generator=g).expand(m, d)
    logvar = torch.randn(1, d, generator=g).expand(m, d)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(m, d, generator=g)
    terms = tc_decomposition(z, mu, logvar, n_data)
    assert float(terms["mi"]) == pytest.approx(math.log(n_data), rel=1e-5)
    assert float(terms["tc"]) == pytest.approx((d - 1) * math.log(n_data), rel=1e-5)
    one = tc_decomposition(z[:1], mu[:1], logvar[:1], 1)  # N = M = 1: q(z) = q(z|x), factorised
    assert abs(float(one["mi"])) < 1e-5 and abs(float(one["tc"])) < 1e-5


def test_tc_decomposition_sums_to_the_kl_estimate_and_sees_dependence():
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g) - 1.0
    z = mu + torch.exp(0.5 * logvar) * torch.randn(16, 4, generator=g)
    terms = tc_decomposition(z, mu, logvar, 1000)
    kl_sample = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, 0 * z, 0 * z)).sum(-1).mean()
    torch.testing.assert_close(terms["mi"] + terms["tc"] + terms["dwkl"], kl_sample)
    # near-deterministic posteriors at the points of a k x k grid (independent coordinates) or on
    # the diagonal z2 = z1 (dependent): each grid value occurs k times per dimension, so the
    # product of marginals gains 2 log k; the diagonal's TC is larger by exactly log M = 2 log k
    k, n_data, tiny_logvar = 4, 100, math.log(1e-6)
    a = torch.arange(k, dtype=torch.float32)
    grid = torch.cartesian_prod(a, a)
    diag = torch.arange(k * k, dtype=torch.float32)[:, None].repeat(1, 2)
    lv = torch.full_like(grid, tiny_logvar)
    tc_grid = float(tc_decomposition(grid, grid, lv, n_data)["tc"])
    tc_diag = float(tc_decomposition(diag, diag, lv, n_data)["tc"])
    assert tc_grid == pytest.approx(math.log(n_data), rel=1e-4)
    assert tc_diag - tc_grid == pytest.approx(math.log(k * k), rel=1e-4)


def test_dip_penalties_known_answers():
    square = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # Cov = I (1/M)
    for value in dip_penalties(square, torch.zeros_like(square), "i"):
        assert float(value) == pytest.approx(0.0, abs=1e-6)
    # II: E[Sigma] = 0.5 I plus Cov[mu] = 0.5 I
    for value in dip_penalties(square * math.sqrt(0.5), torch.full_like(square, math.log(0.5)), "ii"):
        assert float(value) == pytest.approx(0.0, abs=1e-6)
    # Cov = [[1, 1], [1, 1]]: off-diagonal 1^2 + 1^2, diagonal exactly 1
    line = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    off, diag = dip_penalties(line, torch.zeros_like(line), "i")
    assert float(off) == pytest.approx(2.0) and float(diag) == pytest.approx(0.0, abs=1e-6)
    # II adds E[Sigma] = I to the diagonal: (2 - 1)^2 twice
    assert float(dip_penalties(line, torch.zeros_like(line), "ii")[1]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="kind"):
        dip_penalties(line, line, "iii")


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_known_answers(kernel):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 5, generator=g)
    assert abs(float(mmd(x, x.clone(), kernel))) < 1e-6
    shifts = [float(mmd(x, x + s, kernel)) for s in (0.5, 1.0, 2.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    # one point each: k(a,a) = k(b,b) = 1, so MMD^2 = 2 - 2 k(a, b); scale s = 2 d = 4 for d = 2
    a, b = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    k_ab = math.exp(-2.0 / 4.0) if kernel == "rbf" else 4.0 / (4.0 + 2.0)
    assert float(mmd(a, b, kernel)) == pytest.approx(2.0 - 2.0 * k_ab, rel=1e-5)
    # zero self-distances on the kernel diagonal must not poison the gradient
    leaf = x.clone().requires_grad_(True)
    mmd(leaf, x + 1.0, kernel).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_mmd_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="kernel"):
        mmd(torch.zeros(2, 2), torch.zeros(2, 2), "laplace")


# ----------------------------------------------------------------------- modules
def _batch(n: int = 24, p: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=g), torch.poisson(torch.full((n, p), 3.0), generator=g)


def test_betavae_beta1_is_the_plain_vae_of_livae():
    x, counts = _batch()
    torch.manual_seed(0)
    ours = BetaVAEModule(30, beta=1.0)
    torch.manual_seed(0)
    plain = LiVAEModule(30, use_bottleneck=False, lorentz_weight=0.0)
    assert sorted(ours.state_dict()) == sorted(plain.state_dict())
    torch.manual_seed(5)
    a = ours(x, counts)
    torch.manual_seed(5)
    b = plain(x, counts)
    for key in ("recon", "kl", "total"):
        torch.testing.assert_close(a[key], b[key])


@pytest.mark.parametrize("cls, params, weights", [
    (BetaVAEModule, {"beta": 3.0}, lambda t: t["recon"] + 3.0 * t["kl"]),
    (BetaTCVAEModule, {"alpha": 2.0, "beta": 5.0, "gamma": 0.5},
     lambda t: t["recon"] + 2.0 * t["mi"] + 5.0 * t["tc"] + 0.5 * t["dwkl"]),
    (DIPVAE1Module, {"lambda_od": 3.0, "lambda_d": 7.0},
     lambda t: t["recon"] + t["kl"] + 3.0 * t["dip_od"] + 7.0 * t["dip_d"]),
    (DIPVAE2Module, {"lambda_od": 3.0, "lambda_d": 7.0},
     lambda t: t["recon"] + t["kl"] + 3.0 * t["dip_od"] + 7.0 * t["dip_d"]),
    (InfoVAEModule, {"alpha": 0.25, "lambda_mmd": 10.0}, lambda t: t["recon"] + 0.75 * t["kl"] + 9.25 * t["mmd"]),
], ids=["betavae", "betatcvae", "dipvae1", "dipvae2", "infovae"])
def test_module_total_is_the_weighted_sum(cls, params, weights):
    torch.manual_seed(0)
    module = cls(30, **params)
    if hasattr(module, "set_dataset_size"):
        module.set_dataset_size(500)
    terms = module(*_batch())
    assert all(torch.isfinite(v) for v in terms.values())
    torch.testing.assert_close(terms["total"], weights(terms))


def test_sparse_counts_are_passed_to_the_likelihood():
    """When LiVAEModule scores the non-zero counts directly, the family's losses agree with the dense path."""
    import inspect

    if "counts_nz" not in inspect.signature(LiVAEModule._neg_log_lik).parameters:
        pytest.skip("LiVAEModule has no sparse-count likelihood path")
    x, counts = _batch()
    flat = counts.reshape(-1)
    nz = torch.nonzero(flat).squeeze(1)
    module = InfoVAEModule(30)
    torch.manual_seed(0)
    dense = module.loss({"x": x, "counts": counts})
    torch.manual_seed(0)
    sparse = module.loss({"x": x, "counts": counts, "counts_nz_index": nz, "counts_nz_value": flat[nz]})
    for key in dense:
        torch.testing.assert_close(sparse[key], dense[key])
    torch.manual_seed(0)  # the sparse entries are really used: other values, other NLL
    other = module.loss({"x": x, "counts": counts, "counts_nz_index": nz, "counts_nz_value": 2 * flat[nz]})
    assert not torch.isclose(other["recon"], dense["recon"])


def test_capacity_module_follows_the_schedule():
    module = BetaVAECapacityModule(30, gamma=50.0, capacity_max=10.0, capacity_epochs=4)
    x, counts = _batch()
    for epoch, expected in ((1, 0.0), (3, 5.0), (9, 10.0)):
        module.on_epoch_start(epoch, 10)
        terms = module(x, counts)
        assert float(terms["capacity"]) == pytest.approx(expected)
        torch.testing.assert_close(terms["total"], terms["recon"] + 50.0 * (terms["kl"] - expected).abs())


def test_tcvae_module_needs_the_dataset_size():
    with pytest.raises(RuntimeError, match="set_dataset_size"):
        BetaTCVAEModule(30)(*_batch())


@pytest.mark.parametrize("cls, bad", [(BetaVAEModule, {"beta": -1.0}), (DIPVAE1Module, {"lambda_od": -0.1}),
                                      (InfoVAEModule, {"kernel": "laplace"}), (InfoVAEModule, {"alpha": 1.5}),
                                      (InfoVAEModule, {"alpha": 0.0, "lambda_mmd": 0.5}),
                                      (BetaVAEModule, {"likelihood": "gamma"})])
def test_modules_reject_bad_parameters(cls, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        cls(30, **bad)


# ------------------------------------------------------------------------ models
def test_registry_defaults_and_auto_likelihood():
    assert get_model("betavae") is BetaVAE and get_model("dipvae2") is DIPVAE2
    assert BetaVAE.default_params() == {"latent_dim": 10, "hidden_dim": 128, "likelihood": "nb", "beta": 4.0}
    assert DIPVAE1.default_params()["lambda_d"] == 10 * DIPVAE1.default_params()["lambda_od"]
    assert DIPVAE2.default_params()["lambda_d"] == DIPVAE2.default_params()["lambda_od"]
    assert resolve_params(tiny(modality="atac"), {}, InfoVAE)["likelihood"] == "zinb"
    adata = tiny()
    BetaTCVAE.setup_anndata(adata)
    with pytest.raises(TypeError, match="capacity_max"):
        BetaTCVAE(adata, capacity_max=3.0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_is_seeded_and_round_trips(name, tmp_path):
    cls, terms = MODELS[name]
    adata = tiny()
    model = fit_model(adata, model=name, train=TRAIN, device="cpu", seed=4, progress_bar=False)
    assert type(model) is cls and model.is_trained
    h = model.history
    for term in terms | {"recon", "total"}:
        assert np.isfinite(h[f"train_{term}"]).all() and np.isfinite(h[f"val_{term}"]).all(), term
    assert h["train_total"].iloc[-3:].mean() < h["train_total"].iloc[:3].mean()
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, 10) and np.isfinite(z).all()

    again = fit_model(tiny(), model=name, train=TRAIN, device="cpu", seed=4, progress_bar=False)
    np.testing.assert_array_equal(again.get_latent_representation(), z)

    model.save(tmp_path / name)
    loaded = load_model(tmp_path / name, tiny(), device="cpu")
    assert type(loaded) is cls and loaded.params == model.params
    np.testing.assert_allclose(loaded.get_latent_representation(), z, rtol=1e-5, atol=1e-5)


def test_capacity_model_early_stops_only_at_full_capacity():
    adata = tiny()
    BetaVAECapacity.setup_anndata(adata)
    model = BetaVAECapacity(adata, capacity_max=8.0, capacity_epochs=4)
    model.train(max_epochs=40, batch_size=64, patience=2, seed=0, progress_bar=False)
    h = model.history
    np.testing.assert_allclose(h["train_capacity"].iloc[:6], [0.0, 2.0, 4.0, 6.0, 8.0, 8.0], rtol=1e-6)
    assert list(h["epoch"]) == list(range(1, len(h) + 1)) and len(h) >= 4 + 2
    meta = model.metadata
    assert meta["early_stopping_from_epoch"] == 5 and meta["n_epochs"] == len(h)
    assert 5 <= meta["best_epoch"] <= len(h) and meta["config"]["max_epochs"] == 40
    n_before = len(h)
    model.train(max_epochs=2, batch_size=64, seed=0, progress_bar=False)  # continues at full capacity
    assert len(model.history) == n_before + 2
    np.testing.assert_allclose(model.history["train_capacity"].iloc[-2:], 8.0)


def test_different_seeds_give_different_latents():
    a = fit_model(tiny(), model="betavae", train=TRAIN, device="cpu", seed=0, progress_bar=False)
    b = fit_model(tiny(), model="betavae", train=TRAIN, device="cpu", seed=1, progress_bar=False)
    assert not np.allclose(a.get_latent_representation(), b.get_latent_representation())


# ------------------------------------------------------------------- behaviour
@pytest.mark.slow
def test_beta10_recovers_simulated_programs_better_than_beta1():
    """Kimmel (2019, section 2.2): beta = 10 raises the best |Spearman| between latent dimensions and
    the true gene programs over beta = 1 (SIMULATED data, mean over 3 seeds)."""
    from geovae.data.simulate import simulate_programs
    from geovae.metrics.programs import program_recovery
    from geovae.preprocessing import preprocess_rna

    sim = simulate_programs(n_cells=600, n_genes=1000, program_size=50, seed=0)
    base = preprocess_rna(sim, min_genes=10, n_top_genes=1000)
    train = dict(max_epochs=30, batch_size=128, early_stopping=False, validation_fraction=0.0)
    score = {}
    for beta in (1.0, 10.0):
        values = []
        for seed in range(3):
            adata = base.copy()
            model = fit_model(adata, model="betavae", params={"beta": beta}, train=train, device="cpu",
                              seed=seed, progress_bar=False)
            result = program_recovery(model.get_latent_representation(), adata.obsm["program_usage"])
            values.append(result["program_spearman_mean"])
        score[beta] = float(np.mean(values))
    assert score[10.0] > score[1.0], score
