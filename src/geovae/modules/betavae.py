"""Torch modules of the beta-VAE family: the LiVAE encoder/decoder with other latent regularisers.

Every module here subclasses :class:`~geovae.modules.livae.LiVAEModule` built with
``use_bottleneck=False, lorentz_weight=0`` and reuses its ``encode``, ``sample``, ``decode``
and ``_neg_log_lik``, so the networks and count likelihoods are exactly those of LiVAE and
the comparison is about the objective only. Each module replaces the KL term of the ELBO by
its family's regulariser:

- :class:`BetaVAEModule`: ``recon + beta * KL`` (Higgins et al. 2017, eq. 4).
- :class:`BetaVAECapacityModule`: ``recon + gamma * |KL - C|`` with ``C`` raised linearly
  from 0 to ``capacity_max`` (Burgess et al. 2018, section 5).
- :class:`BetaTCVAEModule`: ``recon + alpha * MI + beta * TC + gamma * DWKL`` with the
  minibatch-weighted-sampling estimator (Chen et al. 2018, sections 3 and 4).
- :class:`DIPVAE1Module`, :class:`DIPVAE2Module`: ``recon + KL + lambda_od * sum_{i!=j} C_ij^2
  + lambda_d * sum_i (C_ii - 1)^2`` with ``C = Cov[mu]`` (I) or ``E[Sigma] + Cov[mu]`` (II)
  (Kumar et al. 2018, section 3).
- :class:`InfoVAEModule`: ``recon + (1 - alpha) * KL + (alpha + lambda - 1) * MMD(q(z), p(z))``
  (Zhao et al. 2019, InfoVAE objective with the MMD divergence).

The regularisers are plain functions (:func:`gaussian_kl`, :func:`capacity_schedule`,
:func:`tc_decomposition`, :func:`dip_penalties`, :func:`mmd`) so they can be tested on
known answers. All terms are per-cell quantities averaged over the minibatch, like the
reconstruction NLL (summed over features).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .vae import VAEModule

__all__ = [
    "BetaVAEModule",
    "BetaVAECapacityModule",
    "BetaTCVAEModule",
    "DIPVAE1Module",
    "DIPVAE2Module",
    "InfoVAEModule",
    "KERNELS",
    "gaussian_kl",
    "gaussian_log_density",
    "capacity_schedule",
    "tc_decomposition",
    "dip_penalties",
    "mmd",
]

#: Kernels of :func:`mmd`.
KERNELS = ("rbf", "imq")
_LOG_2PI = math.log(2.0 * math.pi)


# ------------------------------------------------------------------------ regularisers
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-cell ``KL(N(mu, diag exp(logvar)) || N(0, I))``, summed over latent dimensions.

    Parameters
    ----------
    mu, logvar
        Posterior means and log-variances, ``(n, d)``.

    Returns
    -------
    torch.Tensor
        ``(n,)`` KL divergences (nats).
    """
    return 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise ``log N(z; mu, exp(logvar))`` (broadcasting)."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def capacity_schedule(epoch: int, capacity_max: float, capacity_epochs: int) -> float:
    """Target KL ``C`` at the start of 1-based ``epoch`` (Burgess et al. 2018, section 5).

    ``C`` grows linearly from 0 (epoch 1) to ``capacity_max`` (reached at epoch
    ``capacity_epochs + 1``) and stays there; ``capacity_epochs = 0`` means ``C = capacity_max``
    from the start.

    Parameters
    ----------
    epoch
        Current epoch, 1-based (as passed to ``on_epoch_start``).
    capacity_max
        Final capacity in nats.
    capacity_epochs
        Number of epochs of the linear increase.
    """
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    if capacity_epochs <= 0:
        return float(capacity_max)
    return float(capacity_max) * min(1.0, (epoch - 1) / capacity_epochs)


def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     dataset_size: int) -> dict[str, torch.Tensor]:
    """Index-code MI, total correlation and dimension-wise KL of a minibatch (Chen et al. 2018).

    With ``M`` cells in the minibatch and ``N`` in the dataset, the minibatch-weighted-sampling
    estimator (Chen et al. 2018, section 4) approximates, for each sample ``z_i ~ q(z | x_i)``::

        log q(z_i)        ~ logsumexp_j log q(z_i | x_j)          - log(N M)
        log prod_k q(z_ik) ~ sum_k [logsumexp_j log q(z_ik | x_j) - log(N M)]

    and the KL term of the ELBO splits into (section 3)::

        mi   = mean_i [log q(z_i | x_i) - log q(z_i)]
        tc   = mean_i [log q(z_i) - log prod_k q(z_ik)]
        dwkl = mean_i [log prod_k q(z_ik) - log p(z_i)]

    so ``mi + tc + dwkl = mean_i [log q(z_i | x_i) - log p(z_i)]`` exactly (a one-sample
    estimate of the KL). The estimator is biased (for identical posteriors it gives
    ``mi = log N`` and ``tc = (d - 1) log N``); the offsets are constants without gradient.

    Parameters
    ----------
    z
        Reparameterised samples ``(M, d)``.
    mu, logvar
        Posterior parameters ``(M, d)`` of the same cells.
    dataset_size
        Number of cells ``N`` of the training data.

    Returns
    -------
    dict
        Scalars ``mi``, ``tc`` and ``dwkl``.
    """
    if dataset_size < 1:
        raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
    m = z.shape[0]
    log_norm = math.log(dataset_size * m)
    # (M, M, d): log q(z_i,k | x_j)
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(dim=-1)
    log_qz = torch.logsumexp(pairwise.sum(dim=-1), dim=1) - log_norm
    log_qz_prod = (torch.logsumexp(pairwise, dim=1) - log_norm).sum(dim=-1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=-1)
    return {"mi": (log_qz_x - log_qz).mean(), "tc": (log_qz - log_qz_prod).mean(),
            "dwkl": (log_qz_prod - log_pz).mean()}


def dip_penalties(mu: torch.Tensor, logvar: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Off-diagonal and diagonal DIP penalties of a minibatch (Kumar et al. 2018, section 3).

    The covariance is ``Cov[mu]`` over the minibatch for DIP-VAE-I and the covariance of
    the aggregated posterior ``E[diag(exp(logvar))] + Cov[mu]`` for DIP-VAE-II; both use
    the ``1/M`` (maximum-likelihood) normalisation.

    Parameters
    ----------
    mu, logvar
        Posterior parameters ``(M, d)``.
    kind
        ``"i"`` or ``"ii"``.

    Returns
    -------
    tuple of torch.Tensor
        ``sum_{i != j} C_ij^2`` and ``sum_i (C_ii - 1)^2``.
    """
    if kind not in ("i", "ii"):
        raise ValueError(f"kind must be 'i' or 'ii', got {kind!r}")
    centred = mu - mu.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if kind == "ii":
        cov = cov + torch.diag(torch.exp(logvar).mean(dim=0))
    diag = torch.diagonal(cov)
    off = (cov**2).sum() - (diag**2).sum()
    return off, ((diag - 1.0) ** 2).sum()


def _kernel(a: torch.Tensor, b: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(dim=-1)  # exact, with a finite gradient at 0
    if kind == "rbf":
        return torch.exp(-sq / scale)
    return scale / (scale + sq)


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "rbf", scale: float | None = None) -> torch.Tensor:
    """Biased (V-statistic) estimate of ``MMD^2`` between samples ``x`` and ``y`` (Gretton et al. 2012).

    ``mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` over all pairs, diagonal included: it is
    the squared RKHS distance between the two empirical mean embeddings, so it is ``>= 0`` and
    exactly 0 for identical samples.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)``.
    kernel
        ``"rbf"``: ``exp(-|a - b|^2 / s)`` (Zhao et al. 2019 use a Gaussian kernel);
        ``"imq"``: ``s / (s + |a - b|^2)`` (inverse multiquadratics, Tolstikhin et al. 2018).
    scale
        ``s``; default ``2 d``, the mean squared distance between two draws of ``N(0, I_d)``
        (the ``C = 2 d sigma^2`` of Tolstikhin et al. 2018, section 4, with prior variance 1).
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is not one of {KERNELS}")
    s = float(scale) if scale is not None else 2.0 * x.shape[-1]
    return (_kernel(x, x, kernel, s).mean() + _kernel(y, y, kernel, s).mean()
            - 2.0 * _kernel(x, y, kernel, s).mean())


# ----------------------------------------------------------------------------- modules
def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not float(value) >= 0.0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")


class _RegularisedVAEModule(VAEModule):
    """The neutral VAE with a regulariser in place of the KL term; subclasses define the regulariser.

    Parameters
    ----------
    n_input
        Number of features.
    **vae
        ``latent_dim``, ``hidden_dim``, ``likelihood`` of :class:`~geovae.modules.vae.VAEModule`
        (which holds their defaults).
    """

    def regularizer(self, mu: torch.Tensor, logvar: torch.Tensor,
                    z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted penalty added to the reconstruction NLL, and the named terms to log."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, counts: torch.Tensor | None, library: torch.Tensor | None = None,
                counts_nz: tuple[torch.Tensor, ...] | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one minibatch (``loss(batch)`` is inherited from VAEModule).

        Parameters
        ----------
        x
            Model input ``(n, n_input)``.
        counts
            Raw counts ``(n, n_input)`` scored by the likelihood; may be None when
            ``counts_nz`` and ``library`` are given.
        library
            Library sizes ``(n, 1)``; row sums of ``counts`` when None.
        counts_nz
            Optional non-zero entries of ``counts`` (flat positions, values), passed on to the
            likelihood of VAEModule when given (same value, faster).

        Returns
        -------
        dict
            ``recon`` (NLL summed over features, mean over cells), ``kl`` (analytic, mean over
            cells), the family's own terms and ``total = recon + penalty``.
        """
        library = self._library(counts, library, counts_nz)
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar)
        (recon,) = self.reconstruction_nlls([z], counts, library, counts_nz)
        with torch.autocast(device_type=x.device.type, enabled=False):  # covariances/logsumexp in float32
            penalty, terms = self.regularizer(mu.float(), logvar.float(), z.float())
        return {"recon": recon, **terms, "total": recon + penalty}


class BetaVAEModule(_RegularisedVAEModule):
    """beta-VAE: ``recon + beta * KL`` (Higgins et al. 2017, eq. 4).

    Parameters
    ----------
    beta
        KL weight (default 4, the value of Higgins et al. 2017 for dSprites; Kimmel 2019 found
        ``beta = 10`` best for gene-program recovery on simulated scRNA-seq). ``beta = 1`` is the VAE.
    """

    def __init__(self, n_input: int, beta: float = 4.0, **vae: Any) -> None:
        super().__init__(n_input, **vae)
        _check_nonnegative(beta=beta)
        self.beta = float(beta)

    def regularizer(self, mu: Tensor, logvar: Tensor, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """See the class docstring; ``mu``, ``logvar`` and ``z`` are ``(n, latent_dim)``."""
        kl = gaussian_kl(mu, logvar).mean()
        return self.beta * kl, {"kl": kl}


class BetaVAECapacityModule(_RegularisedVAEModule):
    """beta-VAE with controlled capacity: ``recon + gamma * |KL - C|`` (Burgess et al. 2018, section 5).

    ``C`` follows :func:`capacity_schedule`, updated by :meth:`on_epoch_start` (the trainer calls it
    before each epoch); it is logged as the ``capacity`` term.

    Parameters
    ----------
    gamma
        Weight of ``|KL - C|`` (default 1000, Burgess et al. 2018, dSprites).
    capacity_max
        Final capacity in nats (default 25, Burgess et al. 2018, dSprites).
    capacity_epochs
        Epochs over which ``C`` rises from 0 to ``capacity_max`` (default 100: ours; the paper
        uses 100,000 iterations on images, and 100 epochs leave a third of the pipeline's 300
        epochs at full capacity).
    """

    def __init__(self, n_input: int, gamma: float = 1000.0, capacity_max: float = 25.0, capacity_epochs: int = 100,
                 **vae: Any) -> None:
        super().__init__(n_input, **vae)
        _check_nonnegative(gamma=gamma, capacity_max=capacity_max, capacity_epochs=capacity_epochs)
        self.gamma = float(gamma)
        self.capacity_max = float(capacity_max)
        self.capacity_epochs = int(capacity_epochs)
        #: Epochs trained before the current ``train`` call (set by the model when training continues).
        self.epoch_offset = 0
        self.capacity = capacity_schedule(1, self.capacity_max, self.capacity_epochs)

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Set ``C`` for 1-based ``epoch`` of the current run, i.e. epoch ``epoch + epoch_offset`` overall."""
        self.capacity = capacity_schedule(epoch + self.epoch_offset, self.capacity_max, self.capacity_epochs)

    def regularizer(self, mu: Tensor, logvar: Tensor, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """See the class docstring; ``mu``, ``logvar`` and ``z`` are ``(n, latent_dim)``."""
        kl = gaussian_kl(mu, logvar).mean()
        capacity = torch.full((), self.capacity, device=kl.device, dtype=kl.dtype)
        return self.gamma * (kl - capacity).abs(), {"kl": kl, "capacity": capacity}


class BetaTCVAEModule(_RegularisedVAEModule):
    """beta-TCVAE: ``recon + alpha * mi + beta * tc + gamma * dwkl`` (Chen et al. 2018, section 4).

    The three terms come from :func:`tc_decomposition` (minibatch-weighted sampling), which needs
    the number of training cells: :meth:`set_dataset_size` (called by the model's ``train``).
    The analytic ``kl`` is logged for comparison but is not part of the loss.

    Parameters
    ----------
    alpha, gamma
        Weights of the index-code MI and the dimension-wise KL (default 1 each, Chen et al. 2018,
        section 4: only the TC weight is changed).
    beta
        Weight of the total correlation (default 6: ours, a moderate value inside the range over
        which Chen et al. 2018 report disentanglement gains; ``beta = 1`` is the VAE up to the
        estimator).
    """

    def __init__(self, n_input: int, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0, **vae: Any) -> None:
        super().__init__(n_input, **vae)
        _check_nonnegative(alpha=alpha, beta=beta, gamma=gamma)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.dataset_size: int | None = None

    def set_dataset_size(self, n: int) -> None:
        """Number of training cells ``N`` used by the estimator."""
        if int(n) < 1:
            raise ValueError(f"dataset size must be >= 1, got {n}")
        self.dataset_size = int(n)

    def regularizer(self, mu: Tensor, logvar: Tensor, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """See the class docstring; ``mu``, ``logvar`` and ``z`` are ``(n, latent_dim)``."""
        if self.dataset_size is None:
            raise RuntimeError("BetaTCVAEModule needs the number of training cells: call set_dataset_size(n) "
                               "before computing the loss")
        terms = tc_decomposition(z, mu, logvar, self.dataset_size)
        penalty = self.alpha * terms["mi"] + self.beta * terms["tc"] + self.gamma * terms["dwkl"]
        return penalty, {"kl": gaussian_kl(mu, logvar).mean(), **terms}


class _DIPVAEModule(_RegularisedVAEModule):
    """DIP-VAE: ``recon + KL + lambda_od * dip_od + lambda_d * dip_d`` (Kumar et al. 2018)."""

    kind = "i"

    def __init__(self, n_input: int, lambda_od: float, lambda_d: float, **vae: Any) -> None:
        super().__init__(n_input, **vae)
        _check_nonnegative(lambda_od=lambda_od, lambda_d=lambda_d)
        self.lambda_od, self.lambda_d = float(lambda_od), float(lambda_d)

    def regularizer(self, mu: Tensor, logvar: Tensor, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """See the class docstring; ``mu``, ``logvar`` and ``z`` are ``(n, latent_dim)``."""
        kl = gaussian_kl(mu, logvar).mean()
        off, diag = dip_penalties(mu, logvar, self.kind)
        return kl + self.lambda_od * off + self.lambda_d * diag, {"kl": kl, "dip_od": off, "dip_d": diag}


class DIPVAE1Module(_DIPVAEModule):
    """DIP-VAE-I: penalties on ``Cov[mu]`` (Kumar et al. 2018, section 3; :func:`dip_penalties`).

    Parameters
    ----------
    lambda_od
        Weight of the squared off-diagonal entries (default 10: ours, stable on pbmc68k).
    lambda_d
        Weight of the squared diagonal deviations from 1 (default 100 = 10 * ``lambda_od``,
        the ratio Kumar et al. 2018 use for DIP-VAE-I).
    """

    kind = "i"

    def __init__(self, n_input: int, lambda_od: float = 10.0, lambda_d: float = 100.0, **vae: Any) -> None:
        super().__init__(n_input, lambda_od, lambda_d, **vae)


class DIPVAE2Module(_DIPVAEModule):
    """DIP-VAE-II: penalties on ``E[Sigma] + Cov[mu]`` (Kumar et al. 2018, section 3; :func:`dip_penalties`).

    Parameters
    ----------
    lambda_od
        Weight of the squared off-diagonal entries (default 10: ours, stable on pbmc68k).
    lambda_d
        Weight of the squared diagonal deviations from 1 (default 10 = ``lambda_od``, the ratio
        Kumar et al. 2018 use for DIP-VAE-II).
    """

    kind = "ii"

    def __init__(self, n_input: int, lambda_od: float = 10.0, lambda_d: float = 10.0, **vae: Any) -> None:
        super().__init__(n_input, lambda_od, lambda_d, **vae)


class InfoVAEModule(_RegularisedVAEModule):
    """InfoVAE / MMD-VAE: ``recon + (1 - alpha) * KL + (alpha + lambda_mmd - 1) * mmd`` (Zhao et al. 2019).

    ``mmd`` is :func:`mmd` between the minibatch's reparameterised samples ``z ~ q(z|x)`` (a sample
    of the aggregated posterior ``q(z)``) and as many draws from the prior ``N(0, I)``.

    Parameters
    ----------
    alpha
        Sets the KL weight ``1 - alpha`` (default 0: the full per-cell KL of the ELBO is kept, so the
        posterior variances stay regularised; ``alpha = 1`` drops it, the pure MMD-VAE).
    lambda_mmd
        Sets the MMD weight ``alpha + lambda_mmd - 1`` (default 1000: ours. The MMD of two
        ``d``-dimensional samples is at most 2 while the NLL is summed over thousands of genes, so
        the weight has to be of the order of the number of features to matter).
    kernel
        ``"rbf"`` (default, the Gaussian kernel of Zhao et al. 2019) or ``"imq"``.
    """

    def __init__(self, n_input: int, alpha: float = 0.0, lambda_mmd: float = 1000.0, kernel: str = "rbf",
                 **vae: Any) -> None:
        super().__init__(n_input, **vae)
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is not one of {KERNELS}")
        if not float(alpha) <= 1.0:
            raise ValueError(f"alpha must be <= 1 (KL weight 1 - alpha >= 0), got {alpha!r}")
        if not float(alpha) + float(lambda_mmd) - 1.0 >= 0.0:
            raise ValueError(f"alpha + lambda_mmd - 1 (the MMD weight) must be >= 0, got alpha={alpha!r}, "
                             f"lambda_mmd={lambda_mmd!r}")
        self.alpha, self.lambda_mmd, self.kernel = float(alpha), float(lambda_mmd), kernel

    def regularizer(self, mu: Tensor, logvar: Tensor, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """See the class docstring; ``mu``, ``logvar`` and ``z`` are ``(n, latent_dim)``."""
        kl = gaussian_kl(mu, logvar).mean()
        divergence = mmd(z, torch.randn_like(z), self.kernel)
        penalty = (1.0 - self.alpha) * kl + (self.alpha + self.lambda_mmd - 1.0) * divergence
        return penalty, {"kl": kl, "mmd": divergence}
