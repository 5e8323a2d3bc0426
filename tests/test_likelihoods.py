"""Count log-likelihoods against scipy.stats reference values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from geovae.distributions.likelihoods import (
    LIKELIHOODS,
    log_gaussian,
    log_likelihood,
    log_nb,
    log_poisson,
    log_zinb,
    log_zip,
)


@pytest.fixture(scope="module")
def values():
    rng = np.random.default_rng(42)
    n = 500
    x = rng.negative_binomial(2, 0.3, size=n).astype(np.float64)
    x[:100] = 0.0  # plenty of zeros for the zero-inflated branches
    mu = rng.gamma(1.5, 3.0, size=n) + 1e-3
    theta = rng.gamma(2.0, 2.0, size=n) + 0.05
    logits = rng.normal(0.0, 2.0, size=n)
    return x, mu, theta, logits


def _t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def test_nb_matches_scipy(values):
    x, mu, theta, _ = values
    ours = log_nb(_t(x), _t(mu), _t(theta)).numpy()
    ref = stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mu))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_poisson_matches_scipy(values):
    x, mu, _, _ = values
    ours = log_poisson(_t(x), _t(mu)).numpy()
    np.testing.assert_allclose(ours, stats.poisson.logpmf(x, mu), rtol=1e-6, atol=1e-6)


def test_zinb_matches_scipy_mixture(values):
    x, mu, theta, logits = values
    pi = 1.0 / (1.0 + np.exp(-logits))
    ref = np.log(pi * (x == 0) + (1 - pi) * stats.nbinom.pmf(x, n=theta, p=theta / (theta + mu)))
    ours = log_zinb(_t(x), _t(mu), _t(theta), _t(logits)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_zip_matches_scipy_mixture(values):
    x, mu, _, logits = values
    pi = 1.0 / (1.0 + np.exp(-logits))
    ref = np.log(pi * (x == 0) + (1 - pi) * stats.poisson.pmf(x, mu))
    ours = log_zip(_t(x), _t(mu), _t(logits)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_gaussian_matches_scipy(values):
    x, mu, theta, _ = values
    ours = log_gaussian(_t(x), _t(mu), _t(theta), eps=0.0).numpy()
    np.testing.assert_allclose(ours, stats.norm.logpdf(x, loc=mu, scale=np.sqrt(theta)), rtol=1e-10)


def test_nb_tends_to_poisson_for_large_theta():
    x = _t([0.0, 1.0, 3.0, 10.0])
    mu = _t([0.5, 2.0, 3.0, 8.0])
    nb = log_nb(x, mu, _t([1e8] * 4))
    np.testing.assert_allclose(nb.numpy(), log_poisson(x, mu).numpy(), atol=1e-5)


def test_zero_inflation_limits():
    x = _t([0.0, 0.0, 2.0])
    mu, theta = _t([3.0, 3.0, 3.0]), _t([2.0, 2.0, 2.0])
    # logits -> -inf: plain NB; logits -> +inf at x = 0: probability 1
    np.testing.assert_allclose(log_zinb(x, mu, theta, _t([-60.0] * 3)).numpy(), log_nb(x, mu, theta).numpy(), atol=1e-10)
    assert abs(float(log_zinb(x[:1], mu[:1], theta[:1], _t([60.0])))) < 1e-10
    assert abs(float(log_zip(x[:1], mu[:1], _t([60.0])))) < 1e-10


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_float32_extremes_finite_with_finite_gradients(name):
    x = torch.tensor([0.0, 0.0, 1.0, 5e4, 0.0, 3.0])
    mu = torch.tensor([0.0, 1e-12, 1e5, 5e4, 1e6, 2.0], requires_grad=True)
    theta = torch.tensor([1e-4, 1.0, 1e4, 0.5, 1.0, 1e6], requires_grad=True)
    logits = torch.tensor([-80.0, 80.0, 0.0, 30.0, -30.0, 0.0], requires_grad=True)
    ll = log_likelihood(name, x, mu, theta, logits)
    assert torch.isfinite(ll).all(), ll
    ll.sum().backward()
    for p in (mu, theta, logits):
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()


def test_dispatch_errors():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="unknown likelihood"):
        log_likelihood("gamma", x, x + 1)
    with pytest.raises(ValueError, match="theta"):
        log_likelihood("nb", x, x + 1)
    with pytest.raises(ValueError, match="zi_logits"):
        log_likelihood("zip", x, x + 1)


def test_distribution_classes_log_prob_match_scipy(values):
    """The classes (``log_prob``) give scipy's log-pmf, and each likelihood name maps to its class."""
    from geovae.distributions.likelihoods import (CountDistribution, NegativeBinomial, Poisson,
                                                  ZeroInflatedNegativeBinomial, ZeroInflatedPoisson)

    x, mu, theta, logits = values
    pi = 1.0 / (1.0 + np.exp(-logits))
    nb = stats.nbinom.pmf(x, n=theta, p=theta / (theta + mu))
    poisson = stats.poisson.pmf(x, mu)
    expected = {
        NegativeBinomial(_t(mu), _t(theta)): np.log(nb),
        ZeroInflatedNegativeBinomial(_t(mu), _t(theta), _t(logits)): np.log(pi * (x == 0) + (1 - pi) * nb),
        Poisson(_t(mu)): np.log(poisson),
        ZeroInflatedPoisson(_t(mu), zi_logits=_t(logits)): np.log(pi * (x == 0) + (1 - pi) * poisson),
    }
    for dist, ref in expected.items():
        np.testing.assert_allclose(dist.log_prob(_t(x)).numpy(), ref, rtol=1e-6, atol=1e-6, err_msg=dist.name)
        assert CountDistribution.named(dist.name) is type(dist)
    assert sorted(k.name for k in CountDistribution.__subclasses__()) == sorted(LIKELIHOODS)
    with pytest.raises(ValueError, match="unknown likelihood 'gaussian'"):
        CountDistribution.named("gaussian")
