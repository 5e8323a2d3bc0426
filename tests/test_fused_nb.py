"""The fused softmax + NB log-likelihood equals the autograd reference (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from geovae.modules.betavae import BetaTCVAEModule
from geovae.distributions.fused_nb import SoftmaxNBLogLik, softmax_nb_log_likelihood
from geovae.distributions.likelihoods import log_nb


def _problem(n_paths: int = 2, n: int = 9, g: int = 6, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.rand(n, g, generator=gen, dtype=dtype) * 4, generator=gen)
    counts[0] = 0.0  # an empty cell
    counts[:, 1] = 0.0  # a feature with no counts
    counts[2, 3] = 250.0  # a large count
    flat = counts.reshape(-1)
    nz_index = torch.nonzero(flat).squeeze(1)
    library = counts.sum(1, keepdim=True).clamp_min(1.0)
    logits = (3 * torch.randn(n_paths, n, g, generator=gen, dtype=dtype)).requires_grad_()
    log_theta = torch.randn(g, generator=gen, dtype=dtype).requires_grad_()
    return counts, nz_index, flat[nz_index], library, logits, log_theta


def _reference(counts, library, logits, log_theta):
    mu = torch.softmax(logits, dim=-1) * library
    return torch.stack([log_nb(counts, mu[p], log_theta.exp()).sum() for p in range(logits.shape[0])])


def test_value_and_gradients_match_autograd_reference():
    counts, nz_index, nz_value, library, logits, log_theta = _problem()
    weights = torch.tensor([0.7, -1.3], dtype=torch.float64)
    fused = SoftmaxNBLogLik.apply(logits, library, log_theta, nz_index, nz_value)
    ref = _reference(counts, library, logits, log_theta)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-9)
    g_fused = torch.autograd.grad((fused * weights).sum(), (logits, log_theta))
    g_ref = torch.autograd.grad((ref * weights).sum(), (logits, log_theta))
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gradcheck_finite_differences():
    _, nz_index, nz_value, library, logits, log_theta = _problem(n=5, g=4, seed=3)
    assert torch.autograd.gradcheck(
        lambda lg, lt: SoftmaxNBLogLik.apply(lg, library, lt, nz_index, nz_value), (logits, log_theta))


def test_two_dimensional_logits_give_a_scalar_in_float32():
    counts, nz_index, nz_value, library, logits, log_theta = _problem(n_paths=1, dtype=torch.float32)
    value = softmax_nb_log_likelihood(logits[0], library.squeeze(1), log_theta, nz_index, nz_value)
    assert value.dim() == 0
    torch.testing.assert_close(value, _reference(counts, library, logits, log_theta)[0], rtol=1e-5, atol=1e-3)


def test_shape_errors_name_the_argument():
    _, nz_index, nz_value, library, logits, log_theta = _problem()
    with pytest.raises(ValueError, match="log_theta"):
        softmax_nb_log_likelihood(logits, library, log_theta[:-1], nz_index, nz_value)
    with pytest.raises(ValueError, match="logits"):
        softmax_nb_log_likelihood(logits[None], library, log_theta, nz_index, nz_value)


def test_beta_vae_family_loss_same_with_fused_and_dense_likelihood():
    counts, nz_index, nz_value, library, _, _ = _problem(n_paths=1, n=16, g=12, dtype=torch.float32)
    torch.manual_seed(0)
    module = BetaTCVAEModule(12, latent_dim=3, hidden_dim=8)
    module.set_dataset_size(100)
    x = torch.log1p(counts)
    results = []
    for nz in ((nz_index, nz_value), None):
        torch.manual_seed(1)
        module.zero_grad()
        terms = module(x, counts, library, nz)
        terms["total"].backward()
        results.append((terms["recon"].detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]))
    (fast, g_fast), (ref, g_ref) = results
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_non_integer_counts_take_the_direct_path_and_still_match():
    counts, nz_index, nz_value, library, logits, log_theta = _problem(seed=5)
    counts = counts * 1.5  # half-integers: the histogram of integer counts does not apply
    nz_value = nz_value * 1.5
    fused = SoftmaxNBLogLik.apply(logits, library, log_theta, nz_index, nz_value)
    ref = _reference(counts, library, logits, log_theta)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-9)
    g_fused = torch.autograd.grad(fused.sum(), (logits, log_theta))
    g_ref = torch.autograd.grad(ref.sum(), (logits, log_theta))
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_known_integer_counts_skip_the_check_with_the_same_result():
    counts, nz_index, nz_value, library, logits, log_theta = _problem()
    weights = torch.tensor([0.4, 1.1], dtype=torch.float64)
    results = {}
    for flag in (None, True, False):  # checked here, known integers, per-non-zero lgamma path
        value = SoftmaxNBLogLik.apply(logits, library, log_theta, nz_index, nz_value, None, flag)
        results[flag] = (value, torch.autograd.grad((value * weights).sum(), (logits, log_theta)))
    for flag, tol in ((True, 0.0), (False, 1e-10)):
        torch.testing.assert_close(results[flag][0], results[None][0], rtol=tol, atol=tol * 1e3)
        for a, b in zip(results[flag][1], results[None][1]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    torch.testing.assert_close(results[True][0], _reference(counts, library, logits, log_theta), rtol=1e-12, atol=1e-9)
