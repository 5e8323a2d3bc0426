"""User-facing dp-VAE (distance-preserving VAE for spatial transcriptomics).

dp-VAE paper (Zhou and Du, *Distance-Preserving Spatial Representations in Genomic Data*,
arXiv:2408.00911, 2024, doi:10.48550/arXiv.2408.00911): training uses the spots'
coordinates only through the distance-preserving loss (section 4.2, see
:mod:`geovae.modules.dpvae`); new expression data without coordinates can then be
embedded and placed in space by matching distances (section 4.3,
:meth:`DPVAE.reconstruct_spatial`).

Example
-------
>>> DPVAE.setup_anndata(adata, layer="counts")                 # doctest: +SKIP
>>> model = DPVAE(adata, spatial_key="spatial")                # doctest: +SKIP
>>> model.train(max_epochs=200)                                # doctest: +SKIP
>>> coords = model.reconstruct_spatial(adata_new)              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..training.data import AnnDataBatches
from .base import NeuralModel, read_saved_meta
from ..modules.dpvae import DPVAEModule
from ..geometry.spatial_reconstruction import reconstruct_coordinates

__all__ = ["DPVAE", "spatial_coordinates"]


def spatial_coordinates(adata: Any, spatial_key: str, what: str = "dp-VAE") -> np.ndarray:
    """``adata.obsm[spatial_key]`` as a finite float64 ``(n_obs, dims)`` array, with clear errors.

    Parameters
    ----------
    adata
        AnnData holding spot coordinates.
    spatial_key
        Key of ``adata.obsm``.
    what
        Who asks (used in messages).

    Raises
    ------
    KeyError
        When ``adata.obsm`` has no ``spatial_key``.
    ValueError
        When the array is not ``(n_obs, >= 1)`` or holds non-finite values.
    """
    if spatial_key not in adata.obsm:
        raise KeyError(f"{what} needs spatial coordinates in adata.obsm[{spatial_key!r}], which is missing "
                       f"(obsm keys: {list(adata.obsm.keys())}); set spatial_key or the sheet's spatial_key column")
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if coords.ndim != 2 or coords.shape[0] != adata.n_obs or coords.shape[1] < 1:
        raise ValueError(f"{what}: adata.obsm[{spatial_key!r}] must be (n_obs={adata.n_obs}, dims), "
                         f"got shape {coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise ValueError(f"{what}: adata.obsm[{spatial_key!r}] contains NaN or infinite values")
    return coords


class DPVAE(NeuralModel):
    """dp-VAE: a VAE whose latent distances preserve the spots' spatial distances.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, with spot coordinates in
        ``adata.obsm[spatial_key]``.
    spatial_key
        ``adata.obsm`` key of the coordinates (default :attr:`DEFAULT_SPATIAL_KEY`).
    **params
        Network and loss parameters of :class:`~geovae.modules.dpvae.DPVAEModule`, whose
        signature holds the defaults: ``latent_dim``, ``hidden_dim``, ``likelihood``, ``beta_kl``,
        ``elbo_weight``, ``dp_weight``, ``mask_radius`` (paper eq. 4: ``elbo_weight`` = alpha1,
        ``dp_weight`` = alpha2, ``beta_kl`` = beta).

    Notes
    -----
    The coordinates are centred and divided by their RMS distance to the centroid before
    training (stored with the model), so ``mask_radius`` and the learned scale do not depend
    on the units of the coordinates. Coordinates are used in training only; embedding new data
    needs none.
    """

    model_name = "dpvae"
    module_class = DPVAEModule
    #: The workflow runs this model only on datasets with coordinates (sheet column ``spatial_key``).
    requires_spatial: ClassVar[bool] = True

    #: ``adata.obsm`` key of the coordinates when none is given (the scanpy/squidpy convention).
    DEFAULT_SPATIAL_KEY: ClassVar[str] = "spatial"

    def __init__(self, adata: Any, spatial_key: str = DEFAULT_SPATIAL_KEY, **params: Any) -> None:
        coords = spatial_coordinates(adata, spatial_key, f"{type(self).__name__}")
        super().__init__(adata, spatial_key=str(spatial_key), **params)
        center = coords.mean(axis=0)
        scale = float(np.sqrt(((coords - center) ** 2).sum(axis=1).mean()))
        if not scale > 0:
            raise ValueError(f"{type(self).__name__}: all spots in adata.obsm[{spatial_key!r}] have the same "
                             "coordinates")
        #: Normalisation of the training coordinates: ``(s - center) / scale``.
        self.spatial_center: np.ndarray = center
        self.spatial_scale: float = scale

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The module's parameters plus ``spatial_key``."""
        return {"spatial_key": cls.DEFAULT_SPATIAL_KEY, **super().default_params()}

    def __repr__(self) -> str:
        p = self.params
        return (f"{type(self).__name__}(n_vars={len(self.var_names)}, spatial_key={p['spatial_key']!r}, "
                f"latent_dim={p['latent_dim']}, dp_weight={p['dp_weight']}, trained={self.is_trained})")

    # -- module and batches
    def _build_module(self, seed: int) -> nn.Module:
        module_params = {k: v for k, v in self.params.items() if k != "spatial_key"}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._condition_on_batches(self.module_class(n_input=len(self.var_names), **module_params))

    def _normalise(self, coords: np.ndarray) -> np.ndarray:
        return (np.asarray(coords, dtype=np.float64) - self.spatial_center) / self.spatial_scale

    def _batches(self, adata: Any, with_counts: bool) -> AnnDataBatches:
        """Minibatches with the normalised coordinates as ``spatial`` (training only: inference needs none)."""
        if not with_counts:
            return super()._batches(adata, with_counts)
        coords = spatial_coordinates(adata, self.params["spatial_key"], f"{type(self).__name__}.train")
        if coords.shape[1] != len(self.spatial_center):
            raise ValueError(f"{type(self).__name__}: adata.obsm[{self.params['spatial_key']!r}] has "
                             f"{coords.shape[1]} columns, the model was set up with {len(self.spatial_center)}")
        return AnnDataBatches(adata.X, self._counts(adata), self.input_transform,
                              obs_arrays={"spatial": self._normalise(coords), **self._batch_codes(adata)})

    # -- persistence of the coordinate normalisation
    def _extra_meta(self) -> dict[str, Any]:
        return {"spatial": {"center": [float(c) for c in self.spatial_center], "scale": self.spatial_scale}}

    def _restore_state(self, directory: Path, device: str) -> None:
        super()._restore_state(directory, device)
        spatial = read_saved_meta(directory).get("spatial")
        if not spatial:
            raise ValueError(f"{directory}: params.json has no 'spatial' record; not a saved dp-VAE")
        self.spatial_center = np.asarray(spatial["center"], dtype=np.float64)
        self.spatial_scale = float(spatial["scale"])

    # -- spatial reconstruction (paper section 4.3)
    @property
    def dp_scale(self) -> float:
        """The learned scale ``lambda`` (latent distance per normalised spatial distance)."""
        return float(self.module.dp_scale.detach().cpu())

    def _anchors(self, adata: Any, anchors: Any) -> tuple[np.ndarray, np.ndarray]:
        """Anchor rows and their coordinates from a mapping/DataFrame (by obs name) or positions."""
        if isinstance(anchors, pd.DataFrame):
            names, coords = list(anchors.index), anchors.to_numpy(dtype=np.float64)
        elif isinstance(anchors, Mapping):
            names = list(anchors.keys())
            coords = np.asarray([np.asarray(v, dtype=np.float64).reshape(-1) for v in anchors.values()])
        else:
            pos = np.asarray(anchors)
            if pos.dtype == bool:
                if pos.shape != (adata.n_obs,):
                    raise ValueError(f"anchors: boolean mask has shape {pos.shape}, expected ({adata.n_obs},)")
                pos = np.flatnonzero(pos)
            if pos.size and not np.issubdtype(pos.dtype, np.integer):
                raise TypeError("anchors must be a DataFrame or mapping {obs_name: coordinates}, integer "
                                "positions or a boolean mask")
            pos = pos.astype(int).reshape(-1)
            known = spatial_coordinates(adata, self.params["spatial_key"], "reconstruct_spatial(anchors=positions)")
            return pos, known[pos]
        index = pd.Index(adata.obs_names)
        missing = [n for n in names if n not in index]
        if missing:
            raise KeyError(f"anchors: obs names not in adata: {missing[:5]}")
        return index.get_indexer(names), coords.reshape(len(names), -1)

    def reconstruct_spatial(self, adata_new: Any | None = None, anchors: Any = None, penalty: float | None = None,
                            n_init: int = 4, max_iter: int = 300, seed: int = 0,
                            batch_size: int = 1024) -> np.ndarray:
        """Spatial coordinates of (new) spots from their expression alone (paper section 4.3, Algorithm 1).

        The posterior means ``z`` are divided by the learned ``lambda``, so their distances
        estimate the (normalised) spatial distances. When ``latent_dim`` equals the spatial
        dimension they are the coordinates directly; otherwise metric MDS (SMACOF) finds
        coordinates with those distances. With anchors (spots of known position: the imputation
        setting, eq. 7) the other spots are placed by the constrained (or, with ``penalty``,
        penalised) distance-matching problem, in the anchors' frame.

        Parameters
        ----------
        adata_new
            AnnData with the model's ``var_names`` (default: the training data); needs no coordinates
            unless ``anchors`` are given as positions.
        anchors
            None, a DataFrame indexed by obs names (columns: coordinates), a mapping
            ``{obs_name: coordinates}``, or integer positions / a boolean mask of spots whose
            coordinates are read from ``adata_new.obsm[spatial_key]``.
        penalty
            None: anchors are hard constraints; a positive number: the penalised relaxation.
        n_init, max_iter, seed
            SMACOF restarts, iteration cap and random state.
        batch_size
            Cells encoded at once.

        Returns
        -------
        numpy.ndarray
            ``(n_obs, spatial_dim)`` coordinates in the units of the training coordinates. Without
            anchors they are defined up to rotation, reflection and translation (centred on the
            training centroid); compare with :func:`geovae.metrics.spatial.procrustes_disparity`.
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__}.reconstruct_spatial: train the model first")
        adata = self.adata if adata_new is None else adata_new
        embedding = self.get_latent_representation(adata, batch_size=batch_size).astype(np.float64) / self.dp_scale
        dim = len(self.spatial_center)
        if anchors is None:
            coords = reconstruct_coordinates(embedding, dim, n_init=n_init, max_iter=max_iter, seed=seed)
            return coords * self.spatial_scale + self.spatial_center
        idx, known = self._anchors(adata, anchors)
        if known.shape[1] != dim:
            raise ValueError(f"anchors have {known.shape[1]} coordinates per spot, the model's space has {dim}")
        coords = reconstruct_coordinates(embedding, dim, idx, self._normalise(known), penalty=penalty,
                                         n_init=n_init, max_iter=max_iter, seed=seed)
        return coords * self.spatial_scale + self.spatial_center
