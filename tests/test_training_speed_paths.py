"""The fast training paths give the same numbers as the reference paths.

* device-resident minibatches (:class:`geovae.training.data.DeviceBatches`) equal
  ``AnnDataBatches.get`` for the same rows, dense-input and CSR-input variants;
* the sparse log-likelihood sum equals the dense element-wise log-pmf summed (values and
  gradients), also with two decoder paths stacked;
* LiVAE's loss with the non-zero counts equals its loss without them;
* the epoch-level finiteness check still stops a diverging run.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geovae.distributions.likelihoods import LIKELIHOODS, log_likelihood, sparse_log_likelihood_sum
from geovae.modules.livae import LiVAEModule
from geovae.training.data import NZ_INDEX, NZ_VALUE, AnnDataBatches, InputTransform
from geovae.training.trainer import TrainingConfig, _iter_batches, _run_epoch, train_module


def _counts(n: int = 37, g: int = 23, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.negative_binomial(1, 0.4, size=(n, g)).astype(np.float32)
    dense[rng.random((n, g)) < 0.6] = 0.0
    dense[3] = 0.0  # an empty cell
    return sp.csr_matrix(dense)


def _source(counts: sp.csr_matrix, seed: int = 0) -> AnnDataBatches:
    rng = np.random.default_rng(seed)
    X = counts.copy()
    X.data = np.log1p(X.data)
    mean = np.asarray(X.mean(axis=0)).ravel()
    std = rng.uniform(0.05, 2.0, X.shape[1]).astype(np.float32)
    transform = InputTransform(mean=mean, std=std, center_scale=True, clip=1.5)  # clipping is active
    obs = {"spatial": rng.normal(size=(X.shape[0], 2))}
    return AnnDataBatches(X, counts, transform, obs_arrays=obs)


@pytest.mark.parametrize("budget", [0, 2**30], ids=["csr_input", "dense_input"])
def test_device_batches_equal_reference_batches(budget):
    counts = _counts()
    # an explicit zero and unsorted column indices in one row: the device copy must cope
    counts.data[0] = 0.0
    counts.has_sorted_indices = True
    lo, hi = counts.indptr[5], counts.indptr[6]
    counts.indices[lo:hi] = counts.indices[lo:hi][::-1].copy()
    counts.data[lo:hi] = counts.data[lo:hi][::-1].copy()
    counts.has_sorted_indices = False
    data = _source(counts)
    device_data = data.on_device(torch.device("cpu"), dense_budget_bytes=budget)
    assert (device_data.x_dense is None) == (budget == 0)
    order = np.random.default_rng(1).permutation(data.n_obs)
    host, dev = device_data.permutation(order)
    for start in range(0, data.n_obs, 8):
        rows = order[start:start + 8]
        ref = data.get(rows)
        got = device_data.batch(host[start:start + 8], dev[start:start + 8])
        assert set(got) == set(ref)
        for key in ref:
            np.testing.assert_array_equal(got[key].numpy(), ref[key], err_msg=key)
        dense = np.zeros(ref["counts"].size, dtype=np.float32)
        dense[ref[NZ_INDEX]] = ref[NZ_VALUE]
        np.testing.assert_array_equal(dense.reshape(ref["counts"].shape), counts[rows].toarray())


def test_iter_batches_device_path_matches_generic_path():
    data = _source(_counts())

    class Plain:  # a BatchSource without a device copy: goes through get()
        n_obs = data.n_obs

        def get(self, idx):
            return data.get(idx)

    order = np.random.default_rng(2).permutation(data.n_obs)
    fast = list(_iter_batches(data, order, 10, torch.device("cpu")))
    slow = list(_iter_batches(Plain(), order, 10, torch.device("cpu")))
    assert [n for n, _ in fast] == [n for n, _ in slow] == [10, 10, 10, 7]
    for (_, a), (_, b) in zip(fast, slow):
        for key in b:
            assert torch.equal(a[key], b[key]), key


def _ll_inputs(n_paths: int | None, theta_per_cell: bool = False):
    gen = torch.Generator().manual_seed(0)
    counts = torch.from_numpy(_counts(16, 11).toarray()).double()
    counts[0, 0] = 0.3  # a non-integer count below 0.5: a "zero" for the zero-inflated models
    shape = (counts.shape if n_paths is None else (n_paths, *counts.shape))
    mu = (torch.rand(shape, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    theta_shape = counts.shape if theta_per_cell else (counts.shape[1],)
    theta = (torch.rand(theta_shape, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    zi = torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_()
    flat = counts.reshape(-1).nonzero().squeeze(1)
    return counts, flat, counts.reshape(-1)[flat], mu, theta, zi


@pytest.mark.parametrize("name", LIKELIHOODS)
@pytest.mark.parametrize("theta_per_cell", [False, True])
def test_sparse_log_likelihood_equals_dense(name, theta_per_cell):
    counts, flat, values, mu, theta, zi = _ll_inputs(None, theta_per_cell)
    dense = log_likelihood(name, counts, mu, theta, zi).sum()
    sparse = sparse_log_likelihood_sum(name, flat, values, mu, theta, zi)
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-9)
    used = [mu] + ([theta] if name in ("nb", "zinb") else []) + ([zi] if name in ("zinb", "zip") else [])
    g_dense = torch.autograd.grad(dense, used)
    g_sparse = torch.autograd.grad(sparse, used)
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_sparse_log_likelihood_stacked_paths(name):
    counts, flat, values, mu, theta, zi = _ll_inputs(2)
    both = sparse_log_likelihood_sum(name, flat, values, mu, theta, zi)
    assert both.shape == (2,)
    for p in range(2):
        ref = log_likelihood(name, counts, mu[p], theta, zi[p]).sum()
        torch.testing.assert_close(both[p], ref, rtol=1e-12, atol=1e-9)


def test_sparse_log_likelihood_rejects_missing_parameters():
    _, flat, values, mu, theta, zi = _ll_inputs(None)
    with pytest.raises(ValueError, match="theta"):
        sparse_log_likelihood_sum("nb", flat, values, mu)
    with pytest.raises(ValueError, match="zi_logits"):
        sparse_log_likelihood_sum("zip", flat, values, mu)
    with pytest.raises(ValueError, match="unknown likelihood"):
        sparse_log_likelihood_sum("gauss", flat, values, mu)


@pytest.mark.parametrize("params", [{"likelihood": "nb"}, {"likelihood": "zinb"},
                                    {"likelihood": "nb", "use_bottleneck": False},
                                    {"likelihood": "poisson", "regularization": "two_views"}])
def test_livae_loss_same_with_and_without_nonzeros(params):
    data = _source(_counts(40, 30))
    batch = {k: torch.from_numpy(v) for k, v in data.get(np.arange(32)).items()}
    dense_batch = {k: v for k, v in batch.items() if k not in (NZ_INDEX, NZ_VALUE)}
    torch.manual_seed(0)
    module = LiVAEModule(30, latent_dim=4, hidden_dim=16, **params)
    results = []
    for b in (batch, dense_batch):
        torch.manual_seed(1)  # same reparameterisation noise
        module.zero_grad()
        terms = module.loss(b)
        terms["total"].backward()
        results.append((terms, [p.grad.clone() for p in module.parameters() if p.grad is not None]))
    (fast, g_fast), (ref, g_ref) = results
    for key in ref:
        torch.testing.assert_close(fast[key], ref[key], rtol=1e-5, atol=1e-4)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


class _ExplodingModule(torch.nn.Module):
    """Finite loss except on the batch that holds cell ``bad_cell``."""

    def __init__(self, bad_cell: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.bad_cell = bad_cell

    def loss(self, batch):
        poison = (batch["cell"] == self.bad_cell).any().float()
        total = (self.w * batch["x"].sum()) ** 2 + torch.log(1.0 - poison)  # -inf on the bad batch
        return {"total": total}


class _IdSource:
    n_obs = 20

    def get(self, idx):
        return {"x": np.ones((len(idx), 2), dtype=np.float32), "cell": np.asarray(idx, dtype=np.float32)}


def test_nan_in_the_middle_of_an_epoch_surfaces_in_the_epoch_mean():
    module = _ExplodingModule(bad_cell=7)
    opt = torch.optim.SGD(module.parameters(), lr=0.0)
    terms = _run_epoch(module, _IdSource(), np.arange(20), 4, torch.device("cpu"), None, opt)
    assert not np.isfinite(terms["total"])
    clean = _run_epoch(_ExplodingModule(bad_cell=99), _IdSource(), np.arange(20), 4, torch.device("cpu"), None)
    assert np.isfinite(clean["total"])


def test_training_stops_on_a_non_finite_epoch():
    cfg = TrainingConfig(max_epochs=3, batch_size=4, validation_fraction=0.0, progress_bar=False,
                         divergence_restarts=0, early_stopping=False)
    with pytest.raises(FloatingPointError, match="non-finite"):
        train_module(_ExplodingModule(bad_cell=7), _IdSource(), cfg)


def test_cpu_amp_trains_in_bfloat16_where_the_cpu_supports_it(caplog):
    from geovae.training.trainer import cpu_bf16_supported

    data = _source(_counts(64, 30))
    runs = {}
    for cpu_amp in (False, True):
        torch.manual_seed(0)
        module = LiVAEModule(30, latent_dim=4, hidden_dim=16)
        cfg = TrainingConfig(max_epochs=3, batch_size=16, device="cpu", early_stopping=False, progress_bar=False,
                             validation_fraction=0.0, cpu_amp=cpu_amp)
        with caplog.at_level("WARNING", logger="geovae.training"):
            runs[cpu_amp] = train_module(module, data, cfg)
    fp32, amp = runs[False], runs[True]
    assert fp32.metadata["amp"] is None
    assert np.isfinite(amp.history["train_total"]).all()
    if cpu_bf16_supported():
        assert amp.metadata["amp"] == "bfloat16"
        # bf16 matrix products change the numbers, but not the scale of the loss
        assert not np.allclose(amp.history["train_total"], fp32.history["train_total"], rtol=1e-7, atol=0)
        np.testing.assert_allclose(amp.history["train_total"], fp32.history["train_total"], rtol=0.05)
    else:
        assert amp.metadata["amp"] is None and "no native bfloat16" in caplog.text


def test_lazy_batch_builds_dense_counts_only_when_read():
    from geovae.training.data import LazyBatch

    calls = []

    def build():
        calls.append(1)
        return torch.ones(2)

    batch = LazyBatch({"x": torch.zeros(2)}, {"counts": build})
    assert "counts" in batch and len(batch) == 2 and not calls
    assert batch.get("missing") is None and batch.get("x") is batch["x"] and not calls
    assert torch.equal(batch["counts"], torch.ones(2)) and batch.get("counts") is batch["counts"]
    assert len(calls) == 1  # built once, then stored
    assert set(LazyBatch({"x": torch.zeros(1)}, {"counts": build})) == {"x", "counts"}  # iterating builds
    with pytest.raises(KeyError):
        batch["nope"]


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_training_batches_skip_dense_counts_for_sparse_likelihoods(likelihood):
    data = _source(_counts(40, 30))
    device_data = data.on_device(torch.device("cpu"))
    host, dev = device_data.permutation(np.arange(16))
    batch = device_data.batch(host, dev)
    module = LiVAEModule(30, latent_dim=4, hidden_dim=16, likelihood=likelihood)
    module.loss(batch)["total"].backward()
    assert not dict.__contains__(batch, "counts")  # never built
    with pytest.raises(ValueError, match="counts=None"):
        module(batch["x"], None, None, module._batch_nz(batch))


def test_integer_flag_of_the_counts():
    from geovae.training.data import NZ_INTEGER

    counts = _counts(20, 10)
    data = _source(counts)
    assert bool(data.get(np.arange(4))[NZ_INTEGER][0])
    assert bool(data.on_device(torch.device("cpu")).batch(np.arange(4), torch.arange(4))[NZ_INTEGER][0])
    fractional = counts.copy()
    fractional.data = fractional.data * 0.5
    data = _source(fractional)
    assert not bool(data.get(np.arange(4))[NZ_INTEGER][0])
    assert not bool(data.on_device(torch.device("cpu")).batch(np.arange(4), torch.arange(4))[NZ_INTEGER][0])
    # the module passes the flag on as a bool
    batch = {k: torch.from_numpy(v) for k, v in data.get(np.arange(4)).items()}
    assert LiVAEModule._batch_nz(batch)[3] is False


@pytest.mark.parametrize("fused_class", ["torch", "geovae"])  # torch.optim.Adam(fused=True) / FusedAdam
@pytest.mark.parametrize("scale", [1e-3, 1e3])  # gradient norm below / above the clipping bound
def test_clipping_inside_the_fused_optimizer_step_equals_clip_grad_norm(scale, fused_class):
    from geovae.training.fused_adam import FusedAdam
    from geovae.training.trainer import _clip_and_step

    def run(fused: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Linear(5, 3))
        if fused and fused_class == "geovae":
            opt = FusedAdam(module.parameters(), lr=0.1)
        else:
            opt = torch.optim.Adam(module.parameters(), lr=0.1, fused=fused, foreach=False if not fused else None)
        for step in range(3):
            opt.zero_grad()
            (scale * module(torch.randn(4, 7)).pow(2).sum()).backward()
            if fused:
                _clip_and_step(opt, 1.0)
            else:
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opt.step()
        assert getattr(opt, "grad_scale", None) is None  # nothing left behind for later steps
        return [p.detach().clone() for p in module.parameters()]

    for a, b in zip(run(True), run(False)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_deterministic_training_does_not_fill_new_memory_and_restores_the_setting():
    import torch.utils.deterministic as det

    from geovae.training.trainer import _deterministic

    before = det.fill_uninitialized_memory
    with _deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert det.fill_uninitialized_memory is False
    assert det.fill_uninitialized_memory == before


def test_deterministic_setting_follows_the_compiler_flag_once_the_compiler_is_loaded():
    """Without torch._inductor loaded only the kernels' flag is set (no ~1 s compiler import, see
    tests/test_fused_adam.py); once it is loaded, its ``deterministic`` option follows as with torch."""
    import torch._inductor.config as inductor_config

    from geovae.training.trainer import _set_deterministic_algorithms

    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                inductor_config.deterministic)
    try:
        _set_deterministic_algorithms(True, warn_only=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert inductor_config.deterministic is True
        _set_deterministic_algorithms(False, warn_only=False)
        assert not torch.are_deterministic_algorithms_enabled() and inductor_config.deterministic is False
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        inductor_config.deterministic = previous[2]
