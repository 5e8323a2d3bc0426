"""User-facing LiVAE model (scvi-tools style API).

Example
-------
>>> LiVAE.setup_anndata(adata, layer="counts")          # doctest: +SKIP
>>> model = LiVAE(adata, likelihood="nb")                # doctest: +SKIP
>>> model.train(max_epochs=200)                          # doctest: +SKIP
>>> adata.obsm["X_latent"] = model.get_latent_representation()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import SETUP_KEY, NeuralModel
from .livae_module import LiVAEModule
from .lorentz import DEFAULT_MAX_TANGENT_NORM

__all__ = ["LiVAE", "SETUP_KEY"]


class LiVAE(NeuralModel):
    """Lorentz-regularised VAE (Lorentz geometry on an information-bottleneck path).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`. ``adata.X`` is the model input
        (z-scored/clipped on the fly when ``uns["geovae_input"]`` says so, else used
        as-is) and the registered counts layer feeds the likelihood.
    latent_dim
        Dimension of z (default 10, LiVAE paper section 2.7).
    hidden_dim
        Width of the hidden layer of encoder and decoder (default 128, section 2.7).
    bottleneck_dim
        Dimension of the bottleneck code (default 2, section 2.7).
    likelihood
        ``"nb"`` (default; RNA, Lopez et al. 2018), ``"zinb"`` (the paper's choice for ATAC),
        ``"poisson"`` or ``"zip"``.
    use_bottleneck
        Build the bottleneck path (default True); False gives a plain VAE.
    geometry
        ``"lorentz"`` (default, section 2.4) or ``"euclidean"`` distance for the geometric loss.
    lorentz_weight
        Weight of the geometric loss (default 10, section 2.7).
    lorentz_squared
        Average the squared distance (default True, paper eq. 6) or the distance (authors' code).
    w_recon, w_bn_recon, beta_kl
        Weights of the reconstruction, bottleneck-reconstruction and KL terms (default 1 each, eq. 2).
    regularization
        ``"bottleneck"`` (default, the paper) or ``"two_views"`` (ablation).
    max_tangent_norm
        Norm clamp of the tangent vector before the exponential map (default 15, numerical safety).
    reconstruction
        ``"both"`` (default), ``"without_main"`` or ``"without_bottleneck"`` (section 3.6 ablations).
        All are passed to :class:`~geovae.models.livae_module.LiVAEModule`.

    Notes
    -----
    The input z-scoring statistics of the training ``adata`` are stored in the model and
    reused for any ``adata`` passed later (and after :meth:`load`). ``batch_key`` is
    recorded by :meth:`setup_anndata` but the network does not condition on it.
    """

    model_name = "livae"
    module_class = LiVAEModule

    def __init__(
        self,
        adata: Any,
        latent_dim: int = 10,
        hidden_dim: int = 128,
        bottleneck_dim: int = 2,
        likelihood: str = "nb",
        use_bottleneck: bool = True,
        geometry: str = "lorentz",
        lorentz_weight: float = 10.0,
        lorentz_squared: bool = True,
        w_recon: float = 1.0,
        w_bn_recon: float = 1.0,
        beta_kl: float = 1.0,
        regularization: str = "bottleneck",
        max_tangent_norm: float = DEFAULT_MAX_TANGENT_NORM,
        reconstruction: str = "both",
        **extra: Any,
    ) -> None:
        super().__init__(
            adata, latent_dim=int(latent_dim), hidden_dim=int(hidden_dim), bottleneck_dim=int(bottleneck_dim),
            likelihood=likelihood, use_bottleneck=bool(use_bottleneck), geometry=geometry,
            lorentz_weight=float(lorentz_weight), lorentz_squared=bool(lorentz_squared), w_recon=float(w_recon),
            w_bn_recon=float(w_bn_recon), beta_kl=float(beta_kl), regularization=regularization,
            max_tangent_norm=float(max_tangent_norm), reconstruction=reconstruction, **extra)

    def __repr__(self) -> str:
        p = self.params
        return (f"{type(self).__name__}(n_vars={len(self.var_names)}, latent_dim={p['latent_dim']}, "
                f"bottleneck_dim={p['bottleneck_dim']}, likelihood={p['likelihood']!r}, "
                f"geometry={p['geometry']!r}, lorentz_weight={p['lorentz_weight']}, trained={self.is_trained})")

    @property
    def has_bottleneck(self) -> bool:
        """Whether the model has a bottleneck path (False for the ``vae`` preset)."""
        return bool(self.params["use_bottleneck"])

    def get_bottleneck_representation(self, adata: Any | None = None, batch_size: int = 1024) -> np.ndarray:
        """Bottleneck codes ``l_e`` ``(n_obs, bottleneck_dim)`` computed from the posterior means.

        Parameters
        ----------
        adata
            AnnData with the model's ``var_names`` (default: the training data).
        batch_size
            Cells encoded at once.
        """
        if not self.params["use_bottleneck"]:
            raise RuntimeError("this LiVAE was built with use_bottleneck=False; it has no bottleneck codes")

        def bottleneck(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
            return module.bottleneck(module.encode(x)[0])[0]

        return self._encode_all(adata, batch_size, bottleneck, self.params["bottleneck_dim"],
                                "get_bottleneck_representation")
