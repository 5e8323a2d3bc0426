"""siVAE network and losses (Choi et al., *siVAE: interpretable deep generative models for
single-cell transcriptomes*, Genome Biology 2023; Methods).

Two encoder-decoder pairs share one output layer:

- the **cell-wise** encoder ``phi`` maps a cell ``X_{c,:}`` to ``q(z_{c,1})`` (eq. 11) and the
  cell-wise decoder ``mu_l`` maps ``z_{c,1}`` to the last hidden layer ``z_{c,L}`` (eq. 5);
- the **feature-wise** encoder ``psi`` maps a feature ``X_{:,f}`` (over a reduced set of cells) to
  ``q(v_{f,1})`` (eq. 10) and the feature-wise decoder ``omega_l`` maps ``v_{f,1}`` to ``v_{f,L}``
  (eq. 7), the incoming weights of output node ``f``;
- the output mean is ``v_{f,L}^T z_{c,L} + b_f`` (eq. 8; ``b_f`` is the usual output bias).

The loss is the negative of eqs. 12-13: reconstruction + KL of both embeddings +
``gamma`` x the *interpretability term* ``-log N(X_{c,f}; v_{f,1}^T z_{c,1}, 1)``.

Training runs in three phases (Methods, "Training procedure for siVAE"), selected with
:meth:`SiVAEModule.set_phase`:

``"cell"``
    a canonical VAE whose last weight layer ``V~`` (``n_input x hidden_dims[0]``) is a free
    parameter (eq. 12 without the feature embeddings);
``"feature"``
    a VAE over features whose decoder reconstructs the pre-trained ``V~_{f,:}`` from ``X_{:,f}``;
``"joint"``
    all parameters, full objective (eqs. 12-13).

The module is pure torch; data handling and the phase schedule live in :mod:`geovae.models.sivae`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from ..nn.onednn_linear import Linear, linear
from ..distributions.likelihoods import log_gaussian, log_nb

__all__ = ["SiVAEModule", "SIVAE_LIKELIHOODS", "PHASES", "PHASE_TERMS"]

#: Observation models: ``gaussian`` on the normalised model input (the paper's siVAE, eq. 8) or
#: ``nb`` on raw counts with softmax proportions times the library size (siVAE-NB, eqs. 14-18).
SIVAE_LIKELIHOODS = ("gaussian", "nb")
#: Training phases, in the order the model runs them.
PHASES = ("cell", "feature", "joint")
#: Loss terms returned by :meth:`SiVAEModule.loss` in each phase.
PHASE_TERMS = {
    "cell": ("recon", "kl_z", "total"),
    "feature": ("feature_recon", "feature_kl", "total"),
    "joint": ("recon", "kl_z", "kl_v", "interp", "total"),
}

_LOGVAR_RANGE = (-15.0, 15.0)  # keeps exp(logvar) finite early in training
_LOG_2PI = math.log(2.0 * math.pi)


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    """Hidden layers ``dims[0] -> dims[1] -> ...``, each Linear -> LayerNorm -> ReLU."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(dims[:-1], dims[1:]):
        layers += [Linear(n_in, n_out), nn.LayerNorm(n_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last axis."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)


class _GaussianEncoder(nn.Module):
    """``x -> hidden layers -> (mu, logvar)`` of a diagonal Gaussian posterior."""

    def __init__(self, n_in: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.body = _mlp([n_in, *hidden])
        self.mu = Linear(hidden[-1], latent_dim)
        self.logvar = Linear(hidden[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), torch.clamp(self.logvar(h), *_LOGVAR_RANGE)


class SiVAEModule(nn.Module):
    """Cell-wise and feature-wise VAEs joined by a shared output layer (siVAE).

    Parameters
    ----------
    n_input
        Number of features ``F`` (genes or peaks).
    n_feature_input
        Length ``C_red`` of a feature's input vector (cells kept, or principal components of
        ``X^T``; Methods, "Reducing dimensionality ..."). The matrix itself is the buffer
        ``feature_input`` (``F x C_red``), filled by :meth:`set_feature_input`.
    latent_dim
        Dimension ``K`` of the cell and feature embeddings (default 10, the zoo's common size;
        the paper uses 2 for visualisation and 16-64 for other analyses).
    hidden_dims
        Widths of the encoders' hidden layers, from the input side (default ``(1024, 512, 128)``,
        the paper's genomic architecture); decoders use them reversed, identical for cells and
        features (Methods, "siVAE and VAE network design").
    likelihood
        ``"gaussian"`` (default, the paper's siVAE) or ``"nb"`` (siVAE-NB), see
        :data:`SIVAE_LIKELIHOODS`.
    gamma
        Weight of the interpretability term, eq. 13 (default 0.05, the paper).
    beta_kl
        Weight of the KL terms (default 1).
    kl_warmup_epochs
        Epochs over which the KL weight rises linearly from ``beta_kl / kl_warmup_epochs`` to
        ``beta_kl`` in the cell-wise and joint phases (0: none). Early stopping starts after the
        warm-up (``stable_from_epoch``). A warm-up keeps the cell posterior from collapsing onto
        the prior before the decoder has learnt to use it (Bowman et al. 2016, "Generating
        sentences from a continuous space", CoNLL, doi:10.18653/v1/K16-1002).
    """

    def __init__(
        self,
        n_input: int,
        n_feature_input: int,
        latent_dim: int = 10,
        hidden_dims: Sequence[int] = (1024, 512, 128),
        likelihood: str = "gaussian",
        gamma: float = 0.05,
        beta_kl: float = 1.0,
        kl_warmup_epochs: int = 0,
    ) -> None:
        super().__init__()
        if likelihood not in SIVAE_LIKELIHOODS:
            raise ValueError(f"siVAE likelihood={likelihood!r} is not one of {SIVAE_LIKELIHOODS}")
        hidden = [int(h) for h in (hidden_dims if isinstance(hidden_dims, (list, tuple)) else [hidden_dims])]
        for name, value in (("n_input", n_input), ("n_feature_input", n_feature_input),
                            ("latent_dim", latent_dim), *((f"hidden_dims[{i}]", h) for i, h in enumerate(hidden))):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not hidden:
            raise ValueError("hidden_dims must name at least one hidden layer")
        if gamma < 0 or beta_kl < 0 or kl_warmup_epochs < 0:
            raise ValueError(f"gamma, beta_kl and kl_warmup_epochs must be >= 0, got gamma={gamma}, "
                             f"beta_kl={beta_kl}, kl_warmup_epochs={kl_warmup_epochs}")
        self.n_input = int(n_input)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.gamma = float(gamma)
        self.beta_kl = float(beta_kl)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.kl_scale = 1.0  # share of beta_kl in the current epoch (on_epoch_start)
        self.phase = "joint"
        self.n_cells = 1
        width = hidden[0]  # size of z_{c,L} and v_{f,L}: the decoders end where the encoders start

        self.cell_encoder = _GaussianEncoder(n_input, hidden, latent_dim)
        self.cell_decoder = _mlp([latent_dim, *reversed(hidden)])
        self.feature_encoder = _GaussianEncoder(int(n_feature_input), hidden, latent_dim)
        # last feature-decoder layer is linear: v_{f,L} are weights and may be negative
        self.feature_decoder = nn.Sequential(_mlp([latent_dim, *reversed(hidden[1:])]),
                                             Linear(hidden[1] if len(hidden) > 1 else latent_dim, width))
        # phase "cell": the output weights V~ as free parameters (Methods, first training step)
        self.free_weights = nn.Parameter(torch.randn(n_input, width) / math.sqrt(width))
        self.out_bias = nn.Parameter(torch.zeros(n_input))
        # phase "feature": scalar log-variance of the Gaussian reconstruction of V~
        self.feature_logvar = nn.Parameter(torch.zeros(1))  # 1-element: checkpoint digests cannot view 0-d tensors
        if likelihood == "gaussian":
            self.out_logvar = Linear(width, 1)  # sigma_d(z_{c,L}): one variance per cell (eq. 8)
        else:
            self.log_theta = nn.Parameter(torch.zeros(n_input))  # NB inverse dispersion per feature
        self.register_buffer("feature_input", torch.zeros(n_input, int(n_feature_input)))

    # ----------------------------------------------------------------- set-up
    def set_feature_input(self, matrix: torch.Tensor) -> None:
        """Copy the ``F x C_red`` feature-encoder input into the ``feature_input`` buffer."""
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        if tuple(matrix.shape) != tuple(self.feature_input.shape):
            raise ValueError(f"feature input has shape {tuple(matrix.shape)}, expected "
                             f"{tuple(self.feature_input.shape)}")
        with torch.no_grad():
            self.feature_input.copy_(matrix.to(self.feature_input.device))

    def set_phase(self, phase: str) -> None:
        """Select the loss of a training phase (see :data:`PHASES`)."""
        if phase not in PHASES:
            raise ValueError(f"phase={phase!r} is not one of {PHASES}")
        self.phase = phase

    @property
    def stable_from_epoch(self) -> int:
        """First epoch with the final KL weight (the trainer early-stops from there on)."""
        return self.kl_warmup_epochs + 1 if self.phase in ("cell", "joint") else 1

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """KL warm-up: weight ``beta_kl * min(1, epoch / kl_warmup_epochs)`` in epoch ``epoch`` (1-based)."""
        warm = self.kl_warmup_epochs > 0 and self.phase in ("cell", "joint")
        self.kl_scale = min(1.0, epoch / self.kl_warmup_epochs) if warm else 1.0

    def set_dataset_size(self, n: int) -> None:
        """Number of training cells: the feature KL (a sum over all features) is divided by it so
        that a minibatch loss is the per-cell share of eqs. 12-13."""
        self.n_cells = max(int(n), 1)

    # ----------------------------------------------------------------- pieces
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell posterior ``q(z_{c,1})`` parameters ``(mu, logvar)``, each ``(n, latent_dim)`` (eq. 11)."""
        return self.cell_encoder(x)

    def encode_features(self, feature_x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature posterior ``q(v_{f,1})`` parameters (eq. 10); default: all features of the buffer."""
        return self.feature_encoder(self.feature_input if feature_x is None else feature_x)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised sample ``mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def output_weights(self, v1: torch.Tensor) -> torch.Tensor:
        """``v_{f,L}`` (``F x hidden_dims[0]``) from feature embeddings ``v_{f,1}`` (eq. 7)."""
        return self.feature_decoder(v1)

    def decode(self, z1: torch.Tensor, weights: torch.Tensor, library: torch.Tensor | None = None
               ) -> dict[str, torch.Tensor]:
        """Output distribution of cells ``z1`` under output weights ``weights`` (``F x width``).

        Returns
        -------
        dict
            Gaussian: ``mean`` (``n x F``) and ``var`` (``n x 1``); NB: ``rho`` (softmax
            proportions), ``mu`` (``rho * library``) and ``theta``. Always float32.
        """
        z_last = self.cell_decoder(z1)
        eta = linear(z_last, weights, self.out_bias).float()
        if self.likelihood == "gaussian":
            return {"mean": eta, "var": torch.exp(torch.clamp(self.out_logvar(z_last).float(), *_LOGVAR_RANGE))}
        rho = torch.softmax(eta, dim=-1)
        out = {"rho": rho, "theta": torch.exp(self.log_theta.float())}
        if library is not None:
            out["mu"] = rho * library.float()
        return out

    def _recon(self, batch: Mapping[str, torch.Tensor], px: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Negative log-likelihood summed over features, mean over cells."""
        if self.likelihood == "gaussian":
            ll = log_gaussian(batch["x"].float(), px["mean"], px["var"])
        else:
            ll = log_nb(batch["counts"].float(), px["mu"], px["theta"])
        return -ll.sum(dim=-1).mean()

    def interpretability(self, x: torch.Tensor, z1: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
        """``-log N(X_{c,f}; v_{f,1}^T z_{c,1}, 1)`` summed over features, mean over cells (eq. 13)."""
        resid = x.float() - z1.float() @ v1.float().T
        return 0.5 * (resid**2 + _LOG_2PI).sum(dim=-1).mean()

    # ------------------------------------------------------------------- loss
    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss terms of the current phase (:data:`PHASE_TERMS`) for one minibatch.

        Parameters
        ----------
        batch
            Phases ``"cell"``/``"joint"``: cells with ``x`` (model input), ``counts`` and
            ``library`` (NB only). Phase ``"feature"``: features with ``feature_x`` (rows of the
            feature input) and ``target`` (the pre-trained output weights ``V~``).

        Returns
        -------
        dict
            Scalars; ``total`` is what is minimised. ``recon``/``kl_z``/``interp`` are per-cell
            means (summed over features/dimensions); ``kl_v`` is the feature KL summed over all
            features, entering ``total`` divided by the number of training cells.
        """
        if self.phase == "feature":
            mu, logvar = self.encode_features(batch["feature_x"])
            pred = self.output_weights(self.sample(mu, logvar)).float()
            var = torch.exp(self.feature_logvar.float())
            recon = -log_gaussian(batch["target"].float(), pred, var).sum(dim=-1).mean()
            kl = _kl_normal(mu, logvar).mean()
            return {"feature_recon": recon, "feature_kl": kl, "total": recon + self.beta_kl * kl}

        x = batch["x"]
        mu, logvar = self.encode(x)
        z1 = self.sample(mu, logvar)
        kl_z = _kl_normal(mu, logvar).mean()
        if self.phase == "cell":
            recon = self._recon(batch, self.decode(z1, self.free_weights, batch.get("library")))
            return {"recon": recon, "kl_z": kl_z, "total": recon + self.beta_kl * self.kl_scale * kl_z}

        v_mu, v_logvar = self.encode_features()
        v1 = self.sample(v_mu, v_logvar)
        recon = self._recon(batch, self.decode(z1, self.output_weights(v1), batch.get("library")))
        kl_v = _kl_normal(v_mu, v_logvar).sum()
        interp = self.interpretability(x, z1, v1)
        total = recon + self.beta_kl * self.kl_scale * (kl_z + kl_v / self.n_cells) + self.gamma * interp
        return {"recon": recon, "kl_z": kl_z, "kl_v": kl_v, "interp": interp, "total": total}

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def feature_means(self) -> torch.Tensor:
        """Posterior means of ``v_{f,1}`` for all features: the siVAE loadings (``F x K``)."""
        return self.encode_features()[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, library: torch.Tensor | None = None,
                    feature_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic reconstruction from posterior means: Gaussian mean, or NB proportions ``rho``.

        ``feature_weights`` (``v_{f,L}`` of the loadings) can be passed to avoid recomputing them
        for every chunk of cells.
        """
        weights = self.output_weights(self.feature_means()) if feature_weights is None else feature_weights
        px = self.decode(self.encode(x)[0], weights, library)
        return px["mean"] if self.likelihood == "gaussian" else px["rho"]
