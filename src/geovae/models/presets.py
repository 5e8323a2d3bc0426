"""LiVAE's ablation baselines from the paper (section 3.1) as named models.

- ``vae``: no bottleneck path, no geometric loss (a standard VAE with the same encoder/decoder).
- ``ivae``: bottleneck path with its reconstruction term, no Lorentz term (information-bottleneck VAE).

And a preset for users who favour cell types over global structure:

- ``livae_celltypes``: LiVAE with Lorentz weight 3 instead of the paper's 10. On the real development sets
  (``benchmarks/bench_realdata.py --tradeoff``: pbmc68k, human kidney, CITE-seq cord blood, seeds 0-2) it
  raised KMeans NMI by 0.021 (p < 0.01; ARI +0.031, not significant) and cost global geometry (Q_global of the
  UMAP -0.024, noise resilience -0.38); ``benchmarks/README.md`` has the whole curve.
"""

from __future__ import annotations

from typing import Any

from .livae import LiVAE


class VAE(LiVAE):
    """Standard VAE: LiVAE with ``use_bottleneck=False`` and ``lorentz_weight=0``.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`LiVAE.setup_anndata`.
    **params
        Any other LiVAE parameter (latent_dim, hidden_dim, likelihood, ...); setting a fixed one
        to another value raises :class:`ValueError`.
    """

    model_name = "vae"
    _fixed = {"use_bottleneck": False, "lorentz_weight": 0.0}

    def __init__(self, adata: Any, **params: Any) -> None:
        clash = {k: v for k, v in params.items() if k in self._fixed and v != self._fixed[k]}
        if clash:
            raise ValueError(f"model {self.model_name!r} fixes {self._fixed}; got {clash}")
        super().__init__(adata, **{**params, **self._fixed})


class IVAE(VAE):
    """Information-bottleneck VAE: LiVAE's bottleneck path without the Lorentz term."""

    model_name = "ivae"
    _fixed = {"use_bottleneck": True, "lorentz_weight": 0.0}


class LiVAECellTypes(VAE):
    """LiVAE with Lorentz weight 3: a little more cell-type clustering for less global geometry (see the module)."""

    model_name = "livae_celltypes"
    _fixed = {"use_bottleneck": True, "lorentz_weight": 3.0}
