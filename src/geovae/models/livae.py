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
from ..modules.livae import LiVAEModule

__all__ = ["LiVAE", "SETUP_KEY"]


class LiVAE(NeuralModel):
    """Lorentz-regularised VAE (Lorentz geometry on an information-bottleneck path).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`. ``adata.X`` is the model input
        (z-scored/clipped on the fly when ``uns["geovae_input"]`` says so, else used
        as-is) and the registered counts layer feeds the likelihood.
    **params
        The parameters of :class:`~geovae.modules.livae.LiVAEModule` (``latent_dim``,
        ``hidden_dim``, ``bottleneck_dim``, ``likelihood``, ``use_bottleneck``, ``geometry``,
        ``lorentz_weight``, ``lorentz_squared``, ``w_recon``, ``w_bn_recon``, ``beta_kl``,
        ``regularization``, ``max_tangent_norm``, ``reconstruction``), whose signature holds
        their defaults (the LiVAE paper's, section 2.7; :meth:`default_params` or
        ``geovae models`` lists them). Values are cast to the type of their default.

    Notes
    -----
    The input z-scoring statistics of the training ``adata`` are stored in the model and
    reused for any ``adata`` passed later (and after :meth:`load`). With
    ``setup_anndata(batch_key=...)`` the decoder is conditioned on the batch.
    """

    model_name = "livae"
    module_class = LiVAEModule

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
