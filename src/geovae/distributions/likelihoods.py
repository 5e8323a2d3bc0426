"""Count log-likelihoods in torch (element-wise, numerically stable).

Every function returns the element-wise log-probability (same shape as ``x``);
callers sum over features and average over cells.

Parameterisations
-----------------
* Negative binomial: mean ``mu`` and inverse dispersion ``theta``
  (variance ``mu + mu**2 / theta``); equals ``scipy.stats.nbinom(n=theta, p=theta / (theta + mu))``.
* Zero inflation is given as logits ``zi_logits`` (probability of an extra zero is
  ``sigmoid(zi_logits)``) and handled in log space with ``softplus``/``logaddexp``.

Fast training path
------------------
:func:`sparse_log_likelihood_sum` returns the same log-likelihood summed over a whole
minibatch (the exact log-pmf, constants included, so logged losses stay true negative
log-likelihoods) but touches the counts only at their non-zero entries: every element
is scored as if it were a zero (one ``log`` per element for NB, none for Poisson) and the
non-zero entries add ``log p(x) - log p(0)``. For NB the ``lgamma(x + theta) - lgamma(theta)
- lgamma(x + 1)`` terms vanish at ``x = 0``, so the ``lgamma`` calls, the most expensive
element-wise operations of the dense formula, run on the non-zeros only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "CountDistribution",
    "NegativeBinomial",
    "ZeroInflatedNegativeBinomial",
    "Poisson",
    "ZeroInflatedPoisson",
    "log_nb",
    "log_zinb",
    "log_poisson",
    "log_zip",
    "log_gaussian",
    "log_likelihood",
    "sparse_log_likelihood_sum",
    "LIKELIHOODS",
]

#: Names accepted by :func:`log_likelihood` (and by ``LiVAEModule(likelihood=...)``).
LIKELIHOODS = ("nb", "zinb", "poisson", "zip")


def log_nb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative binomial log-pmf.

    Parameters
    ----------
    x
        Observed counts (non-negative, may be non-integer valued).
    mu
        Mean (>= 0), broadcastable to ``x``.
    theta
        Inverse dispersion (> 0), broadcastable to ``x`` (e.g. one value per gene).
    eps
        Added inside logarithms so ``mu = 0`` stays finite.

    Returns
    -------
    torch.Tensor
        ``log NB(x | mu, theta)`` element-wise.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )


def log_zinb(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    zi_logits: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Zero-inflated negative binomial log-pmf.

    ``P(x) = pi * 1[x = 0] + (1 - pi) * NB(x | mu, theta)`` with ``pi = sigmoid(zi_logits)``.

    Parameters
    ----------
    x, mu, theta, eps
        As in :func:`log_nb`.
    zi_logits
        Logits of the zero-inflation probability, broadcastable to ``x``.

    Returns
    -------
    torch.Tensor
        Element-wise log-probability.
    """
    log_nb_x = log_nb(x, mu, theta, eps)
    # log(1 - pi) = -softplus(l); log(pi) = l - softplus(l)
    log_one_minus_pi = -F.softplus(zi_logits)
    # x == 0: log(pi + (1 - pi) NB(0)) = logaddexp(l, log NB(0)) - softplus(l)
    log_nb_zero = theta * (torch.log(theta + eps) - torch.log(theta + mu + eps))
    zero_case = torch.logaddexp(zi_logits, log_nb_zero) + log_one_minus_pi
    nonzero_case = log_one_minus_pi + log_nb_x
    return torch.where(x < 0.5, zero_case, nonzero_case)


def log_poisson(x: torch.Tensor, mu: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Poisson log-pmf ``x log(mu) - mu - log(x!)``.

    Parameters
    ----------
    x
        Observed counts.
    mu
        Rate (>= 0), broadcastable to ``x``.
    eps
        Added inside the logarithm so ``mu = 0`` stays finite.

    Returns
    -------
    torch.Tensor
        Element-wise log-probability.
    """
    return x * torch.log(mu + eps) - mu - torch.lgamma(x + 1.0)


def log_zip(x: torch.Tensor, mu: torch.Tensor, zi_logits: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-inflated Poisson log-pmf (``pi = sigmoid(zi_logits)``).

    Parameters
    ----------
    x, mu, eps
        As in :func:`log_poisson`.
    zi_logits
        Logits of the zero-inflation probability.

    Returns
    -------
    torch.Tensor
        Element-wise log-probability.
    """
    log_one_minus_pi = -F.softplus(zi_logits)
    zero_case = torch.logaddexp(zi_logits, -mu) + log_one_minus_pi
    nonzero_case = log_one_minus_pi + log_poisson(x, mu, eps)
    return torch.where(x < 0.5, zero_case, nonzero_case)


def log_gaussian(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Gaussian log-density.

    Parameters
    ----------
    x
        Observations.
    mean
        Mean, broadcastable to ``x``.
    var
        Variance (> 0), broadcastable to ``x``; ``eps`` is added for stability.

    Returns
    -------
    torch.Tensor
        Element-wise ``log N(x | mean, var)``.
    """
    var = var + eps
    return -0.5 * (math.log(2.0 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def log_likelihood(
    name: str,
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor | None = None,
    zi_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatch to a count log-likelihood by name.

    Parameters
    ----------
    name
        One of :data:`LIKELIHOODS` (``"nb"``, ``"zinb"``, ``"poisson"``, ``"zip"``).
    x, mu
        Counts and means.
    theta
        Inverse dispersion (required for ``nb``/``zinb``).
    zi_logits
        Zero-inflation logits (required for ``zinb``/``zip``).

    Returns
    -------
    torch.Tensor
        Element-wise log-probability.
    """
    if name in ("nb", "zinb") and theta is None:
        raise ValueError(f"likelihood {name!r} needs theta (inverse dispersion)")
    if name in ("zinb", "zip") and zi_logits is None:
        raise ValueError(f"likelihood {name!r} needs zi_logits (zero-inflation logits)")
    if name == "nb":
        return log_nb(x, mu, theta)
    if name == "zinb":
        return log_zinb(x, mu, theta, zi_logits)
    if name == "poisson":
        return log_poisson(x, mu)
    if name == "zip":
        return log_zip(x, mu, zi_logits)
    raise ValueError(f"unknown likelihood {name!r}; choose one of {LIKELIHOODS}")


#: Counts up to this value go through the per-feature histogram of :class:`NBCountTerms`.
HISTOGRAM_MAX_COUNT = 32


class CountDistribution:
    """A count distribution with ``log_prob(x)``, parameterised per element like the decoder outputs.

    Subclasses set :attr:`name` (a key of :data:`LIKELIHOODS`); ``log_prob`` dispatches to the
    element-wise functions of this module (:func:`log_nb`, :func:`log_zinb`, :func:`log_poisson`,
    :func:`log_zip`), which the training loop also uses.

    Parameters
    ----------
    mu
        Means (``rho * library``), broadcastable against the counts.
    theta
        Inverse dispersion (NB and ZINB).
    zi_logits
        Logits of the zero-inflation probability (ZINB and ZIP).
    """

    name: str = ""

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor | None = None,
                 zi_logits: torch.Tensor | None = None) -> None:
        self.mu, self.theta, self.zi_logits = mu, theta, zi_logits

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise log-probability of the counts ``x``.

        Parameters
        ----------
        x
            Counts (non-negative, integer-valued; float tensors accepted).

        Returns
        -------
        torch.Tensor
        """
        return log_likelihood(self.name, x, self.mu, self.theta, self.zi_logits)

    @classmethod
    def named(cls, name: str) -> type["CountDistribution"]:
        """The distribution class of a likelihood name (``"nb"``, ``"zinb"``, ``"poisson"``, ``"zip"``).

        Parameters
        ----------
        name
            A key of :data:`LIKELIHOODS`.

        Returns
        -------
        type
        """
        for klass in cls.__subclasses__():
            if klass.name == name:
                return klass
        raise ValueError(f"unknown likelihood {name!r}; choose one of {LIKELIHOODS}")


class NegativeBinomial(CountDistribution):
    """NB with mean ``mu`` and inverse dispersion ``theta`` (variance ``mu + mu**2 / theta``)."""

    name = "nb"


class ZeroInflatedNegativeBinomial(CountDistribution):
    """NB mixed with a point mass at 0 of probability ``sigmoid(zi_logits)``."""

    name = "zinb"


class Poisson(CountDistribution):
    """Poisson with rate ``mu``."""

    name = "poisson"


class ZeroInflatedPoisson(CountDistribution):
    """Poisson mixed with a point mass at 0 of probability ``sigmoid(zi_logits)``."""

    name = "zip"


class NBCountTerms:
    """``sum_nz [lgamma(x + theta_g) - lgamma(theta_g) - lgamma(x + 1)]`` and its theta-gradient.

    For integer counts ``lgamma(x + theta) - lgamma(theta) = sum_{k < x} log(theta + k)``, so
    with ``H[g, k]`` = number of non-zeros of feature ``g`` above ``k`` (``k < K``,
    :data:`HISTOGRAM_MAX_COUNT`) the sum is ``sum_gk H[g, k] log(theta_g + k)`` plus, for the
    few counts above ``K``, ``lgamma(x + theta) - lgamma(K + theta)``; the gradient is
    ``sum_k H[g, k] / (theta_g + k)`` plus ``digamma`` at those few counts. This replaces one
    ``lgamma`` and one ``digamma`` (the slowest element-wise kernels on the CPU) per non-zero
    by ``G x K`` logs and one histogram. Used on the CPU for integer counts (building the
    histogram needs the number of large counts, a host synchronisation on CUDA); otherwise
    the terms are evaluated at every non-zero. ``positive_integers`` (when the caller knows
    it for the whole dataset) skips the per-batch check.

    Shared by :func:`sparse_log_likelihood_sum` (NB with per-feature theta; autograd through
    :meth:`value`) and the fused softmax + NB of :mod:`geovae.distributions.fused_nb` (closed-form
    gradient from :meth:`grad_theta`).
    """

    def __init__(self, x: torch.Tensor, feature_nz: torch.Tensor, n_features: int,
                 max_count: int = HISTOGRAM_MAX_COUNT, positive_integers: bool | None = None) -> None:
        self.x, self.feature_nz = x, feature_nz
        if positive_integers is None and x.device.type == "cpu":
            positive_integers = bool((x == x.round()).all()) and bool((x >= 1).all())
        self.histogram = x.device.type == "cpu" and x.numel() > 0 and bool(positive_integers)
        if not self.histogram:
            self.nnz_per_feature = torch.zeros(n_features, dtype=x.dtype, device=x.device).index_add_(
                0, feature_nz, torch.ones_like(x))
            return
        k = int(max_count)
        self.k = k
        key = (feature_nz * (k + 1)).add_(x.long().clamp_(max=k))  # feature g, count capped at K
        hist = torch.bincount(key, minlength=n_features * (k + 1)).reshape(n_features, k + 1).to(x.dtype)
        # above[g, j] = #{non-zeros of g with x > j}, j = 0..K-1
        self.above = hist.flip(1).cumsum(1).flip(1)[:, 1:]
        self.steps = torch.arange(k, dtype=x.dtype, device=x.device)
        tail = torch.nonzero(x > k).squeeze(1)
        self.tail_x = x.index_select(0, tail)
        self.tail_feature = feature_nz.index_select(0, tail)
        counts_above = self.above.sum(0)
        self.log_factorial_total = ((counts_above * torch.log1p(self.steps)).sum()
                                    + (torch.lgamma(self.tail_x + 1.0) - math.lgamma(k + 1.0)).sum())

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        """The summed count terms (a scalar)."""
        if not self.histogram:
            theta_nz = theta.index_select(0, self.feature_nz)
            return (torch.lgamma(self.x + theta_nz).sum() - torch.lgamma(self.x + 1.0).sum()
                    - (self.nnz_per_feature * torch.lgamma(theta)).sum())
        theta_tail = theta.index_select(0, self.tail_feature)
        rising = (self.above * torch.log(theta.unsqueeze(1) + self.steps)).sum()
        tail = (torch.lgamma(self.tail_x + theta_tail) - torch.lgamma(theta_tail + self.k)).sum()
        return rising + tail - self.log_factorial_total

    def grad_theta(self, theta: torch.Tensor) -> torch.Tensor:
        """Derivative of :meth:`value` with respect to each ``theta_g``."""
        if not self.histogram:
            theta_nz = theta.index_select(0, self.feature_nz)
            return (torch.zeros_like(theta).index_add_(0, self.feature_nz, torch.digamma(self.x + theta_nz))
                    - self.nnz_per_feature * torch.digamma(theta))
        theta_tail = theta.index_select(0, self.tail_feature)
        grad = (self.above / (theta.unsqueeze(1) + self.steps)).sum(1)
        tail = torch.digamma(self.tail_x + theta_tail) - torch.digamma(theta_tail + self.k)
        return grad.index_add_(0, self.tail_feature, tail)


def sparse_log_likelihood_sum(
    name: str,
    nz_index: torch.Tensor,
    nz_value: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor | None = None,
    zi_logits: torch.Tensor | None = None,
    eps: float = 1e-8,
    nz_feature: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of the element-wise log-pmf over a minibatch, from the non-zero counts only.

    For ``mu`` of shape ``(n, n_features)`` this equals
    ``log_likelihood(name, counts, mu, theta, zi_logits).sum()`` (up to float rounding), where
    ``counts`` is zero except ``counts.reshape(-1)[nz_index] = nz_value``. The dense work is
    the log-probability of a zero count (``theta * (log theta - log(theta + mu))`` for NB,
    ``-mu`` for Poisson, the zero-inflated mixtures of those); each non-zero entry then adds
    ``log p(x) - log p(0)``. For the zero-inflated likelihoods, entries with ``x < 0.5`` count
    as zeros, as in :func:`log_zinb`.

    ``mu`` (and ``zi_logits``) may carry leading dimensions, e.g. ``(2, n, n_features)`` for
    two decoder outputs scored against the same counts (LiVAE's main and bottleneck paths);
    the result then has those leading dimensions, and the terms that depend only on the
    counts and ``theta`` (``lgamma``) are computed once for all of them.

    Parameters
    ----------
    name
        One of :data:`LIKELIHOODS`.
    nz_index
        Flat (row-major) int64 positions of the non-zero counts in one ``(n, n_features)``
        block (unique).
    nz_value
        The counts at those positions.
    mu
        Means ``(..., n, n_features)``.
    theta
        Inverse dispersion (``nb``/``zinb``): ``(n_features,)``, or broadcastable to ``mu``
        without leading dimensions (``(n, n_features)``).
    zi_logits
        Zero-inflation logits shaped like ``mu`` (``zinb``/``zip``).
    eps
        As in :func:`log_nb`.
    nz_feature
        Optional feature (column) of each non-zero, ``nz_index % n_features`` (computed when
        None); the training batches carry it (:data:`geovae.training.data.NZ_FEATURE`).

    Returns
    -------
    torch.Tensor
        The total log-likelihood, shape ``mu.shape[:-2]`` (a scalar for 2-D ``mu``).
    """
    if name in ("nb", "zinb") and theta is None:
        raise ValueError(f"likelihood {name!r} needs theta (inverse dispersion)")
    if name in ("zinb", "zip") and zi_logits is None:
        raise ValueError(f"likelihood {name!r} needs zi_logits (zero-inflation logits)")
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {LIKELIHOODS}")
    if mu.dim() < 2:
        raise ValueError(f"mu must be (..., n, n_features), got shape {tuple(mu.shape)}")
    lead, block = mu.shape[:-2], mu.shape[-2:]
    n_features = block[1]
    mu3 = mu.reshape(-1, *block)  # (paths, n, n_features)
    n_paths = mu3.shape[0]
    x = nz_value.to(mu.dtype)

    def gather(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n_paths, -1).index_select(1, nz_index)

    mu_nz = gather(mu3)

    if name in ("nb", "zinb"):
        theta = theta.to(mu.dtype)
        per_feature = theta.numel() == n_features
        if per_feature:
            theta_row = theta.reshape(-1)
            feature_nz = nz_index % n_features if nz_feature is None else nz_feature
            theta_nz = theta_row.index_select(0, feature_nz)
            theta_b = theta_row
        else:
            theta_b = theta.expand(block)
            theta_nz = theta_b.reshape(-1).index_select(0, nz_index)
        log_theta_mu = torch.log(mu3 + (theta_b + eps))  # the one dense log of the NB path
        # log NB(x) - log NB(0) = x (log mu - log(theta + mu)) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1);
        # the logs are taken of the gathered means (no second dense gather)
        nb_step = x * (torch.log(mu_nz + eps) - torch.log(mu_nz + (theta_nz + eps)))
        if name == "nb" and per_feature:
            # sum_ig theta_g (log theta_g - log(theta_g + mu_ig)) as one matrix-vector product; the count-only
            # terms sum_nz lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) once for all paths (NBCountTerms)
            constant = ((block[0] * theta_row) * torch.log(theta_row + eps)).sum() + NBCountTerms(
                x, feature_nz, n_features).value(theta_row)
            zero_total = constant - (log_theta_mu @ theta_row).sum(1)
            return (zero_total + nb_step.sum(1)).reshape(lead)
        count_terms = torch.lgamma(x + theta_nz) - torch.lgamma(theta_nz) - torch.lgamma(x + 1.0)  # shared by all paths
        if name == "nb":
            zero_total = (theta_b * (torch.log(theta_b + eps) - log_theta_mu)).sum((1, 2)) + count_terms.sum()
            return (zero_total + nb_step.sum(1)).reshape(lead)
        nb_step = nb_step + count_terms
        log_nb_zero = theta_b * (torch.log(theta_b + eps) - log_theta_mu)
        zi = zi_logits.reshape(mu3.shape)
        log_one_minus_pi = -F.softplus(zi)
        zero_case = torch.logaddexp(zi, log_nb_zero) + log_one_minus_pi
        nonzero_nz = gather(log_one_minus_pi) + gather(log_nb_zero) + nb_step
    else:
        # Poisson: log p(0) = -mu; log p(x) - log p(0) = x log mu - lgamma(x + 1)
        poisson_step = x * torch.log(mu_nz + eps) - torch.lgamma(x + 1.0)
        if name == "poisson":
            return (-mu3.sum((1, 2)) + poisson_step.sum(1)).reshape(lead)
        zi = zi_logits.reshape(mu3.shape)
        log_one_minus_pi = -F.softplus(zi)
        zero_case = torch.logaddexp(zi, -mu3) + log_one_minus_pi
        nonzero_nz = gather(log_one_minus_pi) - mu_nz + poisson_step
    step = torch.where(x < 0.5, torch.zeros_like(nonzero_nz), nonzero_nz - gather(zero_case))
    return (zero_case.sum((1, 2)) + step.sum(1)).reshape(lead)
