"""The beta-VAE family as geovae models (registry names ``betavae``, ``betavae_c``, ``betatcvae``,
``dipvae1``, ``dipvae2``, ``infovae``).

All six share LiVAE's encoder, decoder and count likelihoods (see
:mod:`geovae.modules.betavae`) and differ only in the latent regulariser, so they compare
objectives, not architectures. Disentanglement objectives were proposed for images; on
single-cell counts Kimmel (*Disentangling latent representations of single cell RNA-seq
experiments*, bioRxiv 2020, doi:10.1101/2020.03.04.972166) found that ``beta = 10`` improves the
correspondence of latent dimensions with simulated gene programs.

Example
-------
>>> BetaVAE.setup_anndata(adata, layer="counts")        # doctest: +SKIP
>>> model = BetaVAE(adata, beta=10)                      # doctest: +SKIP
>>> model.train(max_epochs=300)                          # doctest: +SKIP
>>> adata.obsm["X_latent"] = model.get_latent_representation()  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import NeuralModel
from ..modules.betavae import (
    BetaTCVAEModule,
    BetaVAECapacityModule,
    BetaVAEModule,
    DIPVAE1Module,
    DIPVAE2Module,
    InfoVAEModule,
)

__all__ = ["BetaVAE", "BetaVAECapacity", "BetaTCVAE", "DIPVAE1", "DIPVAE2", "InfoVAE"]


class _BetaFamilyModel(NeuralModel):
    """Shared constructor: the architecture parameters, then the family's own weights.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (``.X`` model input, counts layer for the
        likelihood), as for :class:`~geovae.models.livae.LiVAE`.
    **params
        The module's parameters (its signature holds the defaults): ``latent_dim``, ``hidden_dim``,
        ``likelihood`` (``"auto"`` in the pipeline config) and the regulariser's weights (see each
        class); unknown names raise :class:`TypeError`.
    """


class BetaVAE(_BetaFamilyModel):
    """beta-VAE (Higgins et al. 2017): ``recon + beta * KL``.

    Parameters
    ----------
    beta
        KL weight (default 4, Higgins et al. 2017; 1 is the VAE).

    See :class:`~geovae.modules.betavae.BetaVAEModule` and ``_BetaFamilyModel`` for the
    shared parameters.
    """

    model_name = "betavae"
    module_class = BetaVAEModule


class BetaVAECapacity(_BetaFamilyModel):
    """beta-VAE with a capacity schedule (Burgess et al. 2018): ``recon + gamma * |KL - C|``.

    Parameters
    ----------
    gamma
        Weight of ``|KL - C|`` (default 1000, Burgess et al. 2018).
    capacity_max
        Final capacity ``C`` in nats (default 25, Burgess et al. 2018).
    capacity_epochs
        Epochs of the linear increase of ``C`` from 0 (default 100, ours).

    Notes
    -----
    The objective changes while ``C`` rises (and ``gamma * |KL - C|`` on validation cells grows
    with it), so early stopping during the ramp would stop at whatever capacity the validation
    loss happened to peak at. :meth:`train` therefore trains the first ``capacity_epochs`` epochs
    without early stopping and applies it only at full capacity. A second call to ``train``
    continues the schedule where the first stopped.
    """

    model_name = "betavae_c"
    module_class = BetaVAECapacityModule

    def train(self, max_epochs: int = 200, early_stopping: bool = True, **kwargs: Any) -> None:
        """Train as :meth:`NeuralModel.train <geovae.models.base.NeuralModel.train>`, early-stopping
        only once the capacity has reached ``capacity_max``.

        Parameters
        ----------
        max_epochs
            Epoch cap of this call (ramp included).
        early_stopping
            Early stopping (validation ``total``, ``patience``) after the capacity ramp.
        **kwargs
            Other options of :meth:`NeuralModel.train <geovae.models.base.NeuralModel.train>`.
        """
        done = int(self.history["epoch"].max()) if self.is_trained and len(self.history) else 0
        ramp = min(max(0, int(self.params["capacity_epochs"]) - done), max_epochs)
        if not early_stopping or ramp == 0 or ramp == max_epochs:  # one run; no early stopping in the ramp
            self._train_from(done, max_epochs, early_stopping and ramp == 0, kwargs)
            return
        checkpoints = kwargs.pop("checkpoint_dir", None)  # one resumable checkpoint folder per phase
        phase = {} if checkpoints is None else {"checkpoint_dir": Path(checkpoints) / "capacity_ramp"}
        self._train_from(done, ramp, False, {**kwargs, **phase})
        ramp_meta = dict(self.metadata)
        phase = {} if checkpoints is None else {"checkpoint_dir": Path(checkpoints) / "full_capacity"}
        self._train_from(done + ramp, max_epochs - ramp, True, {**kwargs, **phase})
        meta = self.metadata
        meta["n_epochs"] = int(ramp_meta["n_epochs"]) + int(meta["n_epochs"])
        meta["best_epoch"] = ramp + int(meta["best_epoch"])
        meta["train_seconds"] = round(float(ramp_meta["train_seconds"]) + float(meta["train_seconds"]), 3)
        meta["early_stopping_from_epoch"] = done + ramp + 1
        meta["config"] = {**meta["config"], "max_epochs": int(max_epochs), "early_stopping": True}

    def _train_from(self, offset: int, max_epochs: int, early_stopping: bool, kwargs: dict[str, Any]) -> None:
        if self.is_trained:  # a fresh module (built by NeuralModel.train) starts at offset 0
            self.module.epoch_offset = offset
        super().train(max_epochs=max_epochs, early_stopping=early_stopping, **kwargs)


class BetaTCVAE(_BetaFamilyModel):
    """beta-TCVAE (Chen et al. 2018): ``recon + alpha * mi + beta * tc + gamma * dwkl``.

    Parameters
    ----------
    alpha, beta, gamma
        Weights of index-code MI, total correlation and dimension-wise KL (defaults 1, 6, 1;
        minibatch-weighted-sampling estimator, see
        :func:`~geovae.modules.betavae.tc_decomposition`).
    """

    model_name = "betatcvae"
    module_class = BetaTCVAEModule


class DIPVAE1(_BetaFamilyModel):
    """DIP-VAE-I (Kumar et al. 2018): ELBO plus penalties on the covariance of the posterior means.

    Parameters
    ----------
    lambda_od, lambda_d
        Weights of the off-diagonal and diagonal penalties (defaults 10 and 100).
    """

    model_name = "dipvae1"
    module_class = DIPVAE1Module


class DIPVAE2(_BetaFamilyModel):
    """DIP-VAE-II (Kumar et al. 2018): ELBO plus penalties on the aggregated posterior's covariance.

    Parameters
    ----------
    lambda_od, lambda_d
        Weights of the off-diagonal and diagonal penalties (defaults 10 and 10).
    """

    model_name = "dipvae2"
    module_class = DIPVAE2Module


class InfoVAE(_BetaFamilyModel):
    """InfoVAE / MMD-VAE (Zhao et al. 2019): ``recon + (1 - alpha) KL + (alpha + lambda_mmd - 1) MMD``.

    Parameters
    ----------
    alpha, lambda_mmd
        Set the KL and MMD weights (defaults 0 and 1000).
    kernel
        ``"rbf"`` (default) or ``"imq"`` kernel of the MMD.
    """

    model_name = "infovae"
    module_class = InfoVAEModule
