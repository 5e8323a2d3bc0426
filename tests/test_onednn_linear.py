"""geovae.nn.Linear: the oneDNN float32 path agrees with nn.Linear, and is taken only where it should be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import geovae.nn.onednn_linear as gl
from geovae.nn import MIN_MACS, Linear, matmul_backend, onednn_linear_available, set_onednn_linear

needs_onednn = pytest.mark.skipif(not onednn_linear_available(),
                                  reason="this torch build has no working oneDNN linear kernel")


@pytest.fixture
def onednn_on():
    previous = set_onednn_linear(True)
    yield
    set_onednn_linear(previous)


@pytest.fixture
def calls(monkeypatch):
    """Count the calls of the oneDNN autograd function."""
    counter = {"n": 0}
    original = gl._OneDNNLinear.apply

    def spy(*args):
        counter["n"] += 1
        return original(*args)

    monkeypatch.setattr(gl._OneDNNLinear, "apply", spy)
    return counter


def _reference(x: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, ...]:
    """Output and gradients of the same layer in float64 autograd (sum of out * probe as the loss)."""
    x64 = x.detach().double().requires_grad_(True)
    w64 = layer.weight.detach().double().requires_grad_(True)
    b64 = layer.bias.detach().double().requires_grad_(True) if layer.bias is not None else None
    out = F.linear(x64, w64, b64)
    probe = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
    (out * probe).sum().backward()
    return out, x64.grad, w64.grad, (b64.grad if b64 is not None else None), probe


@needs_onednn
@pytest.mark.parametrize("n_in, n_out, bias", [(300, 64, True), (64, 300, True), (128, 128, False)])
def test_onednn_path_matches_float64(onednn_on, calls, n_in, n_out, bias):
    # both branches of the weight gradient (n_out >= n_in and n_out < n_in), with and without bias
    torch.manual_seed(0)
    layer = Linear(n_in, n_out, bias=bias)
    x = torch.randn(96, n_in, requires_grad=True)
    ref_out, ref_gx, ref_gw, ref_gb, probe = _reference(x, layer)
    ref_out = ref_out.detach()
    out = layer(x)
    (out * probe.float()).sum().backward()
    assert calls["n"] == 1  # the product (96 x n_in x n_out) is above MIN_MACS
    assert out.dtype == torch.float32
    for got, want in [(out, ref_out), (x.grad, ref_gx), (layer.weight.grad, ref_gw)] + (
            [(layer.bias.grad, ref_gb)] if bias else []):
        assert got.shape == want.shape
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4 * float(want.detach().abs().max()))
    assert layer.weight.grad.is_contiguous()


@needs_onednn
def test_onednn_path_gradcheck_shape_3d(onednn_on, calls):
    # leading dimensions are flattened and restored
    torch.manual_seed(1)
    layer = Linear(256, 64)
    x = torch.randn(2, 40, 256)
    out = layer(x)
    assert calls["n"] == 1 and out.shape == (2, 40, 64)
    assert torch.allclose(out, F.linear(x, layer.weight, layer.bias), rtol=1e-4, atol=1e-4)


@needs_onednn
def test_onednn_path_is_deterministic(onednn_on):
    torch.manual_seed(2)
    layer = Linear(500, 200)
    x = torch.randn(128, 500)
    runs = []
    for _ in range(2):
        layer.zero_grad(set_to_none=True)
        out = layer(x)
        out.square().sum().backward()
        runs.append((out.detach().clone(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_small_products_and_switch_take_torch_path(onednn_on, calls):
    torch.manual_seed(3)
    small = Linear(16, 8)
    x = torch.randn(4, 16)
    assert 4 * 16 * 8 < MIN_MACS
    assert torch.equal(small(x), F.linear(x, small.weight, small.bias))
    big = Linear(512, 512)
    xb = torch.randn(8, 512)  # 8 * 512 * 512 = 2M multiply-adds
    set_onednn_linear(False)
    assert matmul_backend("cpu") == "default"
    assert torch.equal(big(xb), F.linear(xb, big.weight, big.bias))
    assert calls["n"] == 0


@needs_onednn
def test_autocast_and_other_dtypes_take_torch_path(onednn_on, calls):
    layer = Linear(512, 512)
    x = torch.randn(8, 512)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    layer64 = Linear(512, 512).double()
    assert layer64(x.double()).dtype == torch.float64
    assert calls["n"] == 0
    assert matmul_backend("cpu") == "onednn"


def test_same_parameters_and_state_dict_as_nn_linear():
    torch.manual_seed(4)
    ours = Linear(30, 20)
    torch.manual_seed(4)
    theirs = nn.Linear(30, 20)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key in theirs.state_dict():
        assert torch.equal(ours.state_dict()[key], theirs.state_dict()[key])
    assert isinstance(ours, nn.Linear)


@needs_onednn
def test_in_place_weight_updates_are_seen(onednn_on, calls):
    # the optimizer updates weights in place between steps: no stale packed copy may be used
    torch.manual_seed(5)
    layer = Linear(400, 300)
    x = torch.randn(64, 400)
    for _ in range(3):
        out = layer(x)
        assert torch.allclose(out, F.linear(x, layer.weight, layer.bias), rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            layer.weight.mul_(-0.5).add_(0.01)
            layer.bias.add_(1.0)
    assert calls["n"] == 3


@needs_onednn
def test_functional_linear_weight_gradient(onednn_on, calls):
    # siVAE's decoder weights are computed (they need gradients), not parameters
    torch.manual_seed(6)
    base = torch.randn(300, 32, requires_grad=True)
    weight = base * 2.0
    x = torch.randn(128, 32, requires_grad=True)
    out = gl.linear(x, weight)
    out.square().mean().backward()
    assert calls["n"] == 1
    x64, b64 = x.detach().double().requires_grad_(True), base.detach().double().requires_grad_(True)
    F.linear(x64, b64 * 2.0).square().mean().backward()
    assert torch.allclose(base.grad.double(), b64.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)


def _livae_training(n_genes: int, onednn: bool):
    """Train a small LiVAE (NB) for 2 epochs with the oneDNN path on or off; returns (module, result)."""
    import numpy as np
    import scipy.sparse as sp

    from geovae.modules.livae import LiVAEModule
    from geovae.training.data import AnnDataBatches, InputTransform
    from geovae.training.trainer import TrainingConfig, train_module

    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.negative_binomial(2, 0.5, size=(300, n_genes)).astype(np.float32))
    x = counts.copy()
    x.data = np.log1p(x.data)
    transform = InputTransform(mean=np.zeros(n_genes, np.float32), std=np.ones(n_genes, np.float32),
                               center_scale=False, clip=None)
    data = AnnDataBatches(x, counts, transform)
    torch.manual_seed(0)
    module = LiVAEModule(n_genes, latent_dim=10, hidden_dim=128, likelihood="nb")
    previous = set_onednn_linear(onednn)
    try:
        result = train_module(module, data, TrainingConfig(max_epochs=2, batch_size=128, seed=0,
                                                           early_stopping=False, progress_bar=False))
    finally:
        set_onednn_linear(previous)
    return module, result


@needs_onednn
def test_livae_trains_through_onednn_and_records_it(calls):
    # 128 rows x 128 hidden x 1,000 genes = 16M multiply-adds per decoder product: oneDNN path
    fast_module, fast = _livae_training(1000, onednn=True)
    assert calls["n"] > 0
    n_fast = calls["n"]
    ref_module, ref = _livae_training(1000, onednn=False)
    assert calls["n"] == n_fast  # nothing more with the path off
    assert fast.metadata["matmul_backend"] == "onednn" and ref.metadata["matmul_backend"] == "default"
    # the backend is part of the run's identity: a checkpoint of one is not resumed by the other
    assert fast.metadata["checkpoint_hash"] != ref.metadata["checkpoint_hash"]
    # same training to float32 rounding after 2 epochs (other summation order, same arithmetic)
    for (name, a), (_, b) in zip(fast_module.state_dict().items(), ref_module.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name
    np_fast = fast.history["train_total"].to_numpy()
    np_ref = ref.history["train_total"].to_numpy()
    assert abs(np_fast - np_ref).max() < 1e-3 * abs(np_ref).max()


@needs_onednn
@pytest.mark.parametrize("capability, expected", [("AVX512", "onednn"), ("AVX2", "default"), ("DEFAULT", "default")])
def test_default_follows_the_cpu(monkeypatch, capability, expected):
    # without a setting, oneDNN only where the CPU has AVX-512 (on an AVX2-only EPYC MKL was faster)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    previous = set_onednn_linear(None)
    try:
        assert matmul_backend("cpu") == expected
        set_onednn_linear(True)
        assert matmul_backend("cpu") == "onednn"  # a hand setting wins over the CPU
        set_onednn_linear(False)
        assert matmul_backend("cpu") == "default"
    finally:
        set_onednn_linear(previous)


@pytest.mark.parametrize("value, mode", [(None, None), ("", None), ("auto", None), (" AUTO ", None), ("1", True),
                                         ("on", True), ("0", False), ("off", False), ("false", False)])
def test_environment_setting(value, mode):
    assert gl._mode_from_env(value) is mode
