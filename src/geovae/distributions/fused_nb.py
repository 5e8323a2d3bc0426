"""Fused softmax-decoder + negative-binomial log-likelihood with a hand-written backward.

The NB decoders of geovae (LiVAE, its ablations, the beta-VAE family) map the hidden layer
to logits over features, take ``rho = softmax(logits)`` and score the counts with
``NB(x | mu = rho * library, theta = exp(log_theta))``. Left to autograd, that chain stores
and revisits about a dozen dense ``(n, n_features)`` intermediates per step (softmax, means,
logs, their products and the backward of each). :class:`SoftmaxNBLogLik` computes the same
exact log-pmf (constants included, as :func:`~geovae.distributions.likelihoods.log_nb`) from the
non-zero counts and writes the gradients in closed form:

* value: ``sum_ig theta_g (log theta_g - log(theta_g + mu_ig))`` (every entry scored as a zero)
  ``+ sum_nz [x (log mu - log(theta + mu)) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)]``;
* ``d/d mu_ig = -theta_g / (theta_g + mu_ig)`` plus, at the non-zeros, ``x (1/mu - 1/(theta + mu))``;
* through the softmax: ``d/d logits_ig = q_ig - rho_ig sum_h q_ih`` with ``q = mu * d/d mu``;
* ``d/d theta_g`` from column sums of ``log(theta + mu)`` and ``1/(theta + mu)`` and the
  non-zeros (``digamma`` terms), then ``d/d log_theta = theta * d/d theta``.

The small ``eps`` inside the logarithms is placed exactly as in
:func:`~geovae.distributions.likelihoods.log_nb`, so values agree with the dense reference to float
rounding; ``tests/test_fused_nb.py`` checks values and gradients against autograd in float64.
The library sizes are data: no gradient flows to them.
"""

from __future__ import annotations

from typing import Any

import torch

from .likelihoods import NBCountTerms

__all__ = ["SoftmaxNBLogLik", "softmax_nb_log_likelihood"]

_EPS = 1e-8  # as in geovae.distributions.likelihoods.log_nb


class SoftmaxNBLogLik(torch.autograd.Function):
    """Total NB log-likelihood of ``P`` decoder outputs against one minibatch of counts.

    ``forward(logits, library, log_theta, nz_index, nz_value)``:

    * ``logits``: ``(P, n, G)`` decoder logits (``P`` decoder paths scored on the same counts);
    * ``library``: ``(n, 1)`` library sizes;
    * ``log_theta``: ``(G,)`` log inverse dispersion;
    * ``nz_index`` / ``nz_value``: flat row-major positions in one ``(n, G)`` block (int64,
      unique) and values of the non-zero counts;
    * ``nz_feature`` (optional): the feature of each non-zero (``nz_index % G``), when the
      caller has it already;
    * ``positive_integers`` (optional): whether every ``nz_value`` is an integer >= 1, when the
      caller knows it (None: checked here).

    Returns the ``(P,)`` totals (summed over cells and features).
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, library: torch.Tensor, log_theta: torch.Tensor,  # type: ignore[override]
                nz_index: torch.Tensor, nz_value: torch.Tensor, nz_feature: torch.Tensor | None = None,
                positive_integers: bool | None = None) -> torch.Tensor:
        n_paths, n, n_features = logits.shape
        rho = torch.softmax(logits, dim=-1)
        mu = rho * library.reshape(1, n, 1)
        theta = log_theta.exp()
        theta_eps = theta + _EPS
        denom = mu + theta_eps  # (P, n, G), kept for the backward
        log_theta_mu = torch.log(denom)  # the one dense log

        feature_nz = nz_index % n_features if nz_feature is None else nz_feature
        x = nz_value.to(logits.dtype)
        mu_nz = mu.reshape(n_paths, -1).index_select(1, nz_index)  # (P, nnz)
        count_terms = NBCountTerms(x, feature_nz, n_features, positive_integers=positive_integers)

        # per path: n sum_g theta_g log(theta_g + eps) - sum_ig theta_g log(theta_g + mu_ig + eps)
        log_theta_mu_colsum = log_theta_mu.sum(dim=1)  # (P, G), reused by the backward
        zero_total = n * (theta * theta_eps.log()).sum() - log_theta_mu_colsum @ theta
        # per path: sum_nz x (log(mu + eps) - log(theta + mu + eps))
        log_ratio_nz = torch.log(mu_nz + _EPS).sub_(log_theta_mu.reshape(n_paths, -1).index_select(1, nz_index))
        nz_total = log_ratio_nz @ x
        count_total = count_terms.value(theta)

        ctx.save_for_backward(rho, mu, denom, theta, log_theta_mu_colsum, nz_index, feature_nz, x, mu_nz)
        ctx.n_obs = n
        ctx.count_terms = count_terms
        return zero_total + nz_total + count_total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        rho, mu, denom, theta, log_theta_mu_colsum, nz_index, feature_nz, x, mu_nz = ctx.saved_tensors
        n_paths = mu.shape[0]
        w = grad_out.reshape(n_paths, 1, 1)
        w1 = grad_out.reshape(n_paths, 1)
        theta_eps = theta + _EPS
        inv = torch.reciprocal(denom)  # (P, n, G): 1 / (theta + mu + eps)
        inv_colsum = inv.sum(dim=1)  # (P, G)
        inv_nz = inv.reshape(n_paths, -1).index_select(1, nz_index)  # (P, nnz), before inv is reused

        grad_logits = grad_log_theta = None
        if ctx.needs_input_grad[0]:
            # q = mu * dLL/dmu: dense part -theta mu / (theta + mu), non-zeros add x mu (1 / mu - 1 / (theta + mu))
            step = torch.reciprocal(mu_nz + _EPS).sub_(inv_nz).mul_(mu_nz).mul_(x * w1)
            q = inv.mul_(mu).mul_(-w * theta)  # reuses inv's storage
            q.reshape(n_paths, -1).index_add_(1, nz_index, step)
            grad_logits = q.addcmul_(rho, q.sum(dim=-1, keepdim=True), value=-1.0)
        if ctx.needs_input_grad[2]:
            n = ctx.n_obs
            # zero terms: n (log(theta + eps) + theta / (theta + eps)) - sum_i [log(theta + mu + eps) + theta / (theta + mu + eps)]
            dense = n * (theta_eps.log() + theta / theta_eps) - log_theta_mu_colsum - theta * inv_colsum
            # non-zeros, x (log mu - log(theta + mu)): -x / (theta + mu)
            nz_mu = torch.zeros_like(dense).index_add_(1, feature_nz, inv_nz.mul_(x))
            grad_theta = (w1 * (dense - nz_mu)).sum(dim=0)
            grad_theta = grad_theta + grad_out.sum() * ctx.count_terms.grad_theta(theta)
            grad_log_theta = grad_theta * theta
        return grad_logits, None, grad_log_theta, None, None, None, None


def softmax_nb_log_likelihood(logits: torch.Tensor, library: torch.Tensor, log_theta: torch.Tensor,
                              nz_index: torch.Tensor, nz_value: torch.Tensor,
                              nz_feature: torch.Tensor | None = None,
                              positive_integers: bool | None = None) -> torch.Tensor:
    """Exact NB log-likelihood of softmax decoder outputs, from the non-zero counts (fused backward).

    Parameters
    ----------
    logits
        Decoder logits ``(n, G)`` or ``(P, n, G)`` (``P`` paths scored against the same counts);
        computed in float32.
    library
        Library sizes ``(n, 1)`` or ``(n,)``: ``mu = softmax(logits) * library``.
    log_theta
        Per-feature log inverse dispersion ``(G,)``.
    nz_index, nz_value
        Non-zero counts of the ``(n, G)`` minibatch: flat row-major int64 positions (unique) and values.
    nz_feature
        Optional feature (column) of each non-zero, ``nz_index % G`` (computed when None).
    positive_integers
        Whether every ``nz_value`` is an integer >= 1 (known for the dataset, e.g.
        :data:`geovae.training.data.NZ_INTEGER`); None checks the batch. True for
        non-integer values gives wrong results.

    Returns
    -------
    torch.Tensor
        Summed log-likelihood: a scalar for 2-D ``logits``, ``(P,)`` for 3-D. Equals
        ``log_nb(counts, softmax(logits) * library, exp(log_theta)).sum()`` per path.
    """
    squeeze = logits.dim() == 2
    logits3 = logits.unsqueeze(0) if squeeze else logits
    if logits3.dim() != 3:
        raise ValueError(f"logits must be (n, G) or (P, n, G), got shape {tuple(logits.shape)}")
    if log_theta.shape != (logits3.shape[-1],):
        raise ValueError(f"log_theta must have shape ({logits3.shape[-1]},), got {tuple(log_theta.shape)}")
    with torch.autocast(device_type=logits.device.type, enabled=False):  # float32 throughout, also under AMP
        out = SoftmaxNBLogLik.apply(logits3.float(), library.float().reshape(-1, 1), log_theta.float(),
                                    nz_index, nz_value, nz_feature, positive_integers)
    return out[0] if squeeze else out
