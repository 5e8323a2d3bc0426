"""User-facing LiVAE model (scvi-tools style API).

Example
-------
>>> LiVAE.setup_anndata(adata, layer="counts")          # doctest: +SKIP
>>> model = LiVAE(adata, likelihood="nb")                # doctest: +SKIP
>>> model.train(max_epochs=200)                          # doctest: +SKIP
>>> adata.obsm["X_latent"] = model.get_latent_representation()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..training.data import AnnDataBatches, InputTransform, input_transform_from_adata
from ..training.trainer import TrainingConfig, geovae_version, resolve_device, train_module
from .livae_module import LiVAEModule
from .lorentz import DEFAULT_MAX_TANGENT_NORM

__all__ = ["LiVAE", "SETUP_KEY"]

#: ``adata.uns`` key holding the registry written by :meth:`LiVAE.setup_anndata`.
SETUP_KEY = "geovae_setup"
_FORMAT_VERSION = 1
_FILES = {"weights": "model.pt", "params": "params.json", "var_names": "var_names.json",
          "stats": "input_stats.npz", "history": "history.csv"}


def _counts_matrix(adata: Any, layer: str | None) -> Any:
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found in adata.layers (available: {list(adata.layers.keys())})")
    return adata.layers[layer]


def _check_counts(matrix: Any, where: str) -> None:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if values.size == 0:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where} contains NaN or infinite values; LiVAE needs raw counts")
    if values.min() < 0:
        raise ValueError(f"{where} contains negative values (min {values.min()}); LiVAE needs raw counts")
    if not np.all(values == np.round(values)):
        warnings.warn(f"{where} is not integer-valued; count likelihoods expect raw counts", stacklevel=3)


def _check_var_names(expected: list[str], adata: Any, what: str) -> None:
    got = [str(v) for v in adata.var_names]
    if got == expected:
        return
    if len(got) != len(expected):
        raise ValueError(f"{what}: adata has {len(got)} features but the model was trained on {len(expected)}")
    first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    raise ValueError(
        f"{what}: adata.var_names differ from the model's (first difference at position {first}: "
        f"{got[first]!r} vs {expected[first]!r}); subset/reorder adata to the model's features"
    )


class LiVAE:
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
        All are passed to :class:`~geovae.models.livae_module.LiVAEModule`.

    Notes
    -----
    The input z-scoring statistics of the training ``adata`` are stored in the model and
    reused for any ``adata`` passed later (and after :meth:`load`). ``batch_key`` is
    recorded by :meth:`setup_anndata` but the network does not condition on it.
    """

    model_name = "livae"

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
    ) -> None:
        if SETUP_KEY not in adata.uns:
            raise ValueError(f"adata is not registered: call LiVAE.setup_anndata(adata, layer=...) first "
                             f"(adata.uns[{SETUP_KEY!r}] is missing)")
        registry = dict(adata.uns[SETUP_KEY])
        if int(registry.get("n_vars", adata.n_vars)) != adata.n_vars:
            raise ValueError("adata changed shape since setup_anndata; call LiVAE.setup_anndata again")
        params = dict(latent_dim=int(latent_dim), hidden_dim=int(hidden_dim), bottleneck_dim=int(bottleneck_dim),
                      likelihood=likelihood, use_bottleneck=bool(use_bottleneck), geometry=geometry,
                      lorentz_weight=float(lorentz_weight), lorentz_squared=bool(lorentz_squared),
                      w_recon=float(w_recon), w_bn_recon=float(w_bn_recon), beta_kl=float(beta_kl),
                      regularization=regularization, max_tangent_norm=float(max_tangent_norm))
        self._init(adata, params, registry, input_transform_from_adata(adata), [str(v) for v in adata.var_names])
        self.module = self._build_module(seed=0)

    def _init(self, adata: Any, params: dict[str, Any], registry: dict[str, Any],
              transform: InputTransform, var_names: list[str]) -> None:
        self.adata = adata
        self.params = params
        self.registry = registry
        self.input_transform = transform
        self.var_names = var_names
        self.is_trained = False
        self.history = pd.DataFrame()
        self.metadata: dict[str, Any] = {}

    def _build_module(self, seed: int) -> LiVAEModule:
        # seeded initialisation without disturbing the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return LiVAEModule(n_input=len(self.var_names), **self.params)

    def __repr__(self) -> str:
        p = self.params
        return (f"LiVAE(n_vars={len(self.var_names)}, latent_dim={p['latent_dim']}, "
                f"bottleneck_dim={p['bottleneck_dim']}, likelihood={p['likelihood']!r}, "
                f"geometry={p['geometry']!r}, lorentz_weight={p['lorentz_weight']}, trained={self.is_trained})")

    # ------------------------------------------------------------------ setup
    @staticmethod
    def setup_anndata(adata: Any, layer: str | None = "counts", batch_key: str | None = None) -> None:
        """Register where the raw counts (and optional batch labels) live.

        Writes ``adata.uns["geovae_setup"]`` (h5ad-safe: ``layer`` is ``""`` for
        ``adata.X``, ``batch_key`` is ``""`` when unset).

        Parameters
        ----------
        adata
            AnnData object.
        layer
            Layer with raw, non-negative counts; None uses ``adata.X``.
        batch_key
            Optional ``adata.obs`` column with batch labels (recorded only).

        Raises
        ------
        KeyError
            If the layer or batch column is missing.
        ValueError
            If the counts contain negative or non-finite values.
        """
        where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
        counts = _counts_matrix(adata, layer)
        if counts.shape != adata.shape:
            raise ValueError(f"{where} has shape {counts.shape}, adata has {adata.shape}")
        _check_counts(counts, where)
        if batch_key is not None and batch_key not in adata.obs.columns:
            raise KeyError(f"batch_key {batch_key!r} not found in adata.obs columns")
        adata.uns[SETUP_KEY] = {
            "model": "livae",
            "layer": layer if layer is not None else "",
            "batch_key": batch_key if batch_key is not None else "",
            "n_vars": int(adata.n_vars),
            "n_batches": int(adata.obs[batch_key].nunique()) if batch_key is not None else 1,
        }

    def _counts(self, adata: Any) -> Any:
        layer = self.registry.get("layer", "counts")
        return _counts_matrix(adata, layer if layer else None)

    # --------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int = 200,
        batch_size: int = 128,
        lr: float = 1e-3,
        device: str = "auto",
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        patience: int = 20,
        seed: int = 0,
        progress_bar: bool = True,
        min_delta: float = 0.0,
        grad_clip: float | None = 1.0,
        use_amp: bool = True,
    ) -> None:
        """Train with Adam (see :class:`geovae.training.TrainingConfig` for the options).

        For a model that has not been trained yet, ``seed`` also determines the weight
        initialisation, so ``(data, params, seed)`` fully determines the result on CPU.
        Calling ``train`` again continues from the current weights and appends to
        :attr:`history`. Sets :attr:`history` and :attr:`metadata`.

        Parameters
        ----------
        max_epochs
            Epoch cap (default 200; the pipeline uses 300 with early stopping).
        batch_size
            Minibatch size (default 128, LiVAE paper section 2.7).
        lr
            Adam learning rate (default 1e-3; not stated in the paper, see ``benchmarks/lr_sweep.py``).
        device
            ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        early_stopping, validation_fraction, patience, min_delta
            Stop when the validation ``total`` loss (a seeded ``validation_fraction`` of the cells,
            default 0.1) has not improved by more than ``min_delta`` for ``patience`` (20) epochs,
            then restore the best weights.
        seed
            Seed of weights (first training only), validation split and minibatch order.
        progress_bar
            Show a tqdm bar over epochs.
        grad_clip
            Max global gradient norm (default 1.0, paper); None disables clipping.
        use_amp
            Mixed precision on CUDA (ignored on CPU).
        """
        config = TrainingConfig(max_epochs=max_epochs, batch_size=batch_size, lr=lr, device=device,
                                early_stopping=early_stopping, validation_fraction=validation_fraction,
                                patience=patience, min_delta=min_delta, seed=seed, progress_bar=progress_bar,
                                grad_clip=grad_clip, use_amp=use_amp)
        if not self.is_trained:
            self.module = self._build_module(seed)
        data = AnnDataBatches(self.adata.X, self._counts(self.adata), self.input_transform)
        result = train_module(self.module, data, config)
        history = result.history
        if self.is_trained and len(self.history):
            history = history.assign(epoch=history["epoch"] + int(self.history["epoch"].max()))
            history = pd.concat([self.history, history], ignore_index=True)
        self.history = history
        self.metadata = {"model": self.model_name, **result.metadata, "params": dict(self.params)}
        self.is_trained = True

    # -------------------------------------------------------------- inference
    @property
    def device(self) -> torch.device:
        """Device holding the module's weights."""
        return next(self.module.parameters()).device

    @torch.no_grad()
    def _encode_all(self, adata: Any | None, batch_size: int, give_mean: bool, bottleneck: bool) -> np.ndarray:
        adata = self.adata if adata is None else adata
        what = "get_bottleneck_representation" if bottleneck else "get_latent_representation"
        _check_var_names(self.var_names, adata, what)
        data = AnnDataBatches(adata.X, None, self.input_transform)
        self.module.eval()
        device = self.device
        chunks = []
        for start in range(0, data.n_obs, batch_size):
            idx = np.arange(start, min(start + batch_size, data.n_obs))
            x = torch.from_numpy(data.get(idx, with_counts=False)["x"]).to(device)
            mu, logvar = self.module.encode(x)
            z = mu if give_mean else self.module.sample(mu, logvar)
            if bottleneck:
                z = self.module.bottleneck(z)[0]
            chunks.append(z.float().cpu().numpy())
        width = self.params["bottleneck_dim"] if bottleneck else self.params["latent_dim"]
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, width), dtype=np.float32)

    def get_latent_representation(
        self, adata: Any | None = None, give_mean: bool = True, batch_size: int = 1024
    ) -> np.ndarray:
        """Latent codes ``(n_obs, latent_dim)``: posterior means, or one sample if ``give_mean=False``.

        Parameters
        ----------
        adata
            AnnData with the model's ``var_names`` (default: the training data).
        give_mean
            Return the posterior mean (deterministic) instead of a sample.
        batch_size
            Cells encoded at once.
        """
        return self._encode_all(adata, batch_size, give_mean, bottleneck=False)

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
        return self._encode_all(adata, batch_size, give_mean=True, bottleneck=True)

    # ------------------------------------------------------------ persistence
    def save(self, dir_path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Save weights, parameters, var_names, input statistics and history to a directory.

        Files are written to a temporary sibling directory that is renamed into place,
        so an interrupted save never leaves a half-written model at ``dir_path``.

        Parameters
        ----------
        dir_path
            Target directory.
        overwrite
            Replace an existing directory; otherwise raise :class:`FileExistsError`.

        Returns
        -------
        pathlib.Path
            The target directory.
        """
        target = Path(dir_path)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
            torch.save(state, tmp / _FILES["weights"])
            meta = {"format_version": _FORMAT_VERSION, "model": self.model_name, "params": self.params,
                    "registry": self.registry, "input": self.input_transform.to_dict(),
                    "is_trained": self.is_trained, "metadata": self.metadata,
                    "saved_with_geovae": geovae_version()}
            (tmp / _FILES["params"]).write_text(json.dumps(meta, indent=2, default=str))
            (tmp / _FILES["var_names"]).write_text(json.dumps(self.var_names))
            stats = {}
            if self.input_transform.mean is not None:
                stats = {"mean": self.input_transform.mean, "std": self.input_transform.std}
            np.savez(tmp / _FILES["stats"], **stats)
            self.history.to_csv(tmp / _FILES["history"], index=False)
            if target.exists():
                backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                backup.rmdir()
                os.replace(target, backup)
                os.replace(tmp, target)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, dir_path: str | os.PathLike, adata: Any, device: str = "auto") -> "LiVAE":
        """Load a model written by :meth:`save` and attach it to ``adata``.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            AnnData with exactly the saved ``var_names`` (same order).
        device
            Where to put the weights (``"auto"``, ``"cpu"``, ``"cuda"``).

        Raises
        ------
        FileNotFoundError
            If a model file is missing.
        ValueError
            If ``adata.var_names`` differ from the saved ones.
        """
        src = Path(dir_path)
        for name in (_FILES["weights"], _FILES["params"], _FILES["var_names"]):
            if not (src / name).is_file():
                raise FileNotFoundError(f"{src / name} not found; is {src} a saved LiVAE?")
        meta = json.loads((src / _FILES["params"]).read_text())
        if meta.get("model") != cls.model_name:
            raise ValueError(f"{src / _FILES['params']} holds model {meta.get('model')!r}, not {cls.model_name!r}")
        var_names = json.loads((src / _FILES["var_names"]).read_text())
        _check_var_names(var_names, adata, f"LiVAE.load({str(src)!r})")

        mean = std = None
        if (src / _FILES["stats"]).is_file():
            with np.load(src / _FILES["stats"]) as npz:
                if "mean" in npz:
                    mean, std = npz["mean"], npz["std"]
        inp = meta.get("input", {})
        transform = InputTransform(mean=mean, std=std, center_scale=bool(inp.get("center_scale", False)),
                                   clip=inp.get("clip"))
        model = cls.__new__(cls)
        model._init(adata, dict(meta["params"]), dict(meta.get("registry", {})), transform, var_names)
        model.module = model._build_module(seed=0)
        state = torch.load(src / _FILES["weights"], map_location="cpu", weights_only=True)
        model.module.load_state_dict(state)
        model.module.to(resolve_device(device)).eval()
        model.is_trained = bool(meta.get("is_trained", False))
        model.metadata = dict(meta.get("metadata", {}))
        if (src / _FILES["history"]).is_file() and (src / _FILES["history"]).stat().st_size > 1:
            model.history = pd.read_csv(src / _FILES["history"])
        if SETUP_KEY not in adata.uns and model.registry:
            adata.uns[SETUP_KEY] = dict(model.registry)
        return model
