"""Count log-likelihoods in torch (element-wise, numerically stable).

Every function returns the element-wise log-probability (same shape as ``x``);
callers sum over features and average over cells.

Parameterisations
-----------------
* Negative binomial: mean ``mu`` and inverse dispersion ``theta``
  (variance ``mu + mu**2 / theta``); equals ``scipy.stats.nbinom(n=theta, p=theta / (theta + mu))``.
* Zero inflation is given as logits ``zi_logits`` (probability of an extra zero is
  ``sigmoid(zi_logits)``) and handled in log space with ``softplus``/``logaddexp``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "log_nb",
    "log_zinb",
    "log_poisson",
    "log_zip",
    "log_gaussian",
    "log_likelihood",
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
