"""LiVAE network and loss (paper sections 2.2-2.4, eq. 2).

The neutral VAE (:class:`geovae.modules.vae.VAEModule`: encoder, decoder, likelihoods, batch
conditioning) plus LiVAE's information-bottleneck path ``z -> l_e -> l_d`` and the geometric loss
between ``z`` and ``l_d``. The user API is :class:`geovae.models.LiVAE`.
"""

from __future__ import annotations


from typing import Any

import torch

from ..geometry.lorentz import DEFAULT_MAX_TANGENT_NORM, tangent_lorentz_distance
from ..nn.onednn_linear import Linear
from .vae import SparseCounts, VAEModule

__all__ = ["LiVAEModule", "GEOMETRIES", "REGULARIZATIONS", "RECONSTRUCTIONS", "LOSS_TERMS"]

GEOMETRIES = ("lorentz", "euclidean")
#: ``bottleneck``: geometric loss between z and its bottleneck reconstruction l_d (the paper).
#: ``two_views``: geometric loss between two independent reparameterised samples of z
#: (a bottleneck-free consistency regulariser for ablations).
REGULARIZATIONS = ("bottleneck", "two_views")
#: Reconstruction paths in the loss (paper section 3.6 ablations): ``both`` (eq. 2),
#: ``without_main`` (drop NLL(x | z)) or ``without_bottleneck`` (drop NLL(x | l_d)).
RECONSTRUCTIONS = ("both", "without_main", "without_bottleneck")
#: Keys of the dict returned by :meth:`LiVAEModule.forward`.
LOSS_TERMS = ("recon", "recon_bn", "kl", "geo", "total")

class LiVAEModule(VAEModule):
    """Lorentz-regularised VAE with an information-bottleneck path.

    Parameters
    ----------
    n_input
        Number of features (genes or peaks).
    bottleneck_dim
        Dimension ``d_bn`` of the compressed code ``l_e`` (paper: 2).
    use_bottleneck
        If False there is no bottleneck path: ``recon_bn = 0`` and, with
        ``regularization="bottleneck"``, ``geo = 0`` (a plain VAE).
    geometry
        ``"lorentz"`` (distance on the hyperboloid after :func:`expmap0`) or
        ``"euclidean"`` (plain Euclidean distance) for the geometric loss.
    lorentz_weight
        Weight of the geometric loss (paper: 10).
    lorentz_squared
        Average the squared distance (paper eq. 6) when True, the distance itself when
        False (the authors' code). Applies to either geometry.
    w_recon, w_bn_recon, beta_kl
        Weights of the primary reconstruction, bottleneck reconstruction and KL terms.
    regularization
        ``"bottleneck"`` or ``"two_views"``, see :data:`REGULARIZATIONS`.
    max_tangent_norm
        Norm clamp of :func:`expmap0`.
    reconstruction
        Which reconstruction terms enter the loss, see :data:`RECONSTRUCTIONS` (both are
        still computed and logged).
    **vae
        ``latent_dim`` (paper: 10), ``hidden_dim`` (paper: 128) and ``likelihood`` of
        :class:`~geovae.modules.vae.VAEModule`, which holds their defaults.
    """

    def __init__(
        self,
        n_input: int,
        bottleneck_dim: int = 2,
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
        **vae: Any,
    ) -> None:
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction={reconstruction!r} is not one of {RECONSTRUCTIONS}")
        if reconstruction == "without_bottleneck" and not use_bottleneck:
            raise ValueError("reconstruction='without_bottleneck' needs use_bottleneck=True")
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry={geometry!r} is not one of {GEOMETRIES}")
        if regularization not in REGULARIZATIONS:
            raise ValueError(f"regularization={regularization!r} is not one of {REGULARIZATIONS}")
        if int(bottleneck_dim) < 1:
            raise ValueError(f"bottleneck_dim must be a positive integer, got {bottleneck_dim!r}")
        # read by _build_latent_path, which the base class calls between encoder and decoder
        self._bottleneck_spec = (bool(use_bottleneck), int(bottleneck_dim))
        super().__init__(n_input, **vae)
        self.use_bottleneck, self.bottleneck_dim = self._bottleneck_spec
        self.geometry = geometry
        self.lorentz_weight = float(lorentz_weight)
        self.lorentz_squared = bool(lorentz_squared)
        self.w_recon = float(w_recon)
        self.w_bn_recon = float(w_bn_recon)
        self.beta_kl = float(beta_kl)
        self.regularization = regularization
        self.max_tangent_norm = float(max_tangent_norm)
        self.reconstruction = reconstruction

    def _build_latent_path(self) -> None:
        """The bottleneck path ``z -> l_e`` (compress) ``-> l_d`` (expand), when used."""
        use, dim = self._bottleneck_spec
        if use:
            self.bn_compress = Linear(self.latent_dim, dim)
            self.bn_expand = Linear(dim, self.latent_dim)

    def bottleneck(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compressed code ``l_e`` (``n x bottleneck_dim``) and its expansion ``l_d`` (``n x latent_dim``)."""
        if not self.use_bottleneck:
            raise RuntimeError("this LiVAEModule was built with use_bottleneck=False")
        l_e = self.bn_compress(z)
        return l_e, self.bn_expand(l_e)

    def _geo(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.float(), b.float()
        if self.geometry == "lorentz":
            dist = tangent_lorentz_distance(a, b, self.max_tangent_norm)  # = lorentz_distance(expmap0(a), expmap0(b))
            return (dist**2).mean() if self.lorentz_squared else dist.mean()
        sq = ((a - b) ** 2).sum(dim=-1)
        return sq.mean() if self.lorentz_squared else torch.sqrt(sq + 1e-12).mean()

    # ------------------------------------------------------------------- loss
    def forward(
        self, x: torch.Tensor, counts: torch.Tensor | None, library: torch.Tensor | None = None,
        counts_nz: SparseCounts | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms for one minibatch (paper eq. 2).

        Parameters
        ----------
        x
            Model input ``(n, n_input)``.
        counts
            Raw counts ``(n, n_input)`` that the likelihood scores; may be None when
            ``counts_nz`` and ``library`` are given.
        library
            Library sizes ``(n, 1)``; row sums of ``counts`` when None.
        counts_nz
            Optional non-zero entries of ``counts`` (flat positions, values): same loss,
            computed faster (see :meth:`_neg_log_lik`).

        Returns
        -------
        dict
            Scalars ``recon`` (NLL of the primary path, summed over features, mean over
            cells), ``recon_bn`` (same for the bottleneck path), ``kl`` (summed over latent
            dimensions, mean over cells), ``geo`` (unweighted geometric loss) and
            ``total = w_recon*recon + w_bn_recon*recon_bn + beta_kl*kl + lorentz_weight*geo``.
        """
        library = self._library(counts, library, counts_nz)
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar)
        zero = torch.zeros((), device=x.device, dtype=torch.float32)

        kl = self.kl(mu, logvar)

        recon_bn, geo = zero, zero
        if self.use_bottleneck:
            _, l_d = self.bottleneck(z)
            recon, recon_bn = self.reconstruction_nlls([z, l_d], counts, library, counts_nz)
            if self.regularization == "bottleneck":
                geo = self._geo(z, l_d)
        else:
            (recon,) = self.reconstruction_nlls([z], counts, library, counts_nz)
        if self.regularization == "two_views":
            geo = self._geo(z, self.sample(mu, logvar))

        total = self.beta_kl * kl
        if self.reconstruction != "without_main":
            total = total + self.w_recon * recon
        if self.use_bottleneck and self.reconstruction != "without_bottleneck":
            total = total + self.w_bn_recon * recon_bn
        if self.lorentz_weight != 0.0:
            total = total + self.lorentz_weight * geo
        return {"recon": recon, "recon_bn": recon_bn, "kl": kl, "geo": geo, "total": total}
