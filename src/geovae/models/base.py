"""The contract every model of the zoo follows, and its shared implementation for torch models.

Two base classes (scvi-tools style split: a torch *module* holds the network and the loss,
the *model* class is the user API around AnnData):

- :class:`BaseModel`: the interface of every model, neural or not: ``setup_anndata``,
  ``__init__(adata, **params)``, ``train(...)``, ``get_latent_representation()``,
  ``save()``/``load()``, ``history`` (one row per epoch, may be empty) and ``metadata``
  (provenance of the training run). Optional: ``has_bottleneck`` +
  ``get_bottleneck_representation()``, ``get_loadings()`` (features x latent).
- :class:`NeuralModel`: a :class:`BaseModel` around an ``nn.Module`` trained by
  :func:`geovae.training.train_module`. A subclass names its ``module_class``; the
  parameters and their defaults are those of the module's ``__init__`` (after ``n_input``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from ..training.data import AnnDataBatches, InputTransform, input_transform_from_adata
from ..training.trainer import geovae_version, resolve_device, train_module, training_config

__all__ = ["BaseModel", "NeuralModel", "SETUP_KEY", "FILES", "counts_matrix", "check_counts",
           "check_var_names", "atomic_directory", "read_saved_meta"]

#: ``adata.uns`` key holding the registry written by :meth:`BaseModel.setup_anndata`.
SETUP_KEY = "geovae_setup"
FORMAT_VERSION = 1
#: File names inside a saved model directory.
FILES = {"weights": "model.pt", "params": "params.json", "var_names": "var_names.json",
         "stats": "input_stats.npz", "history": "history.csv", "state": "state.joblib", "adata": "adata.h5ad"}


# ---------------------------------------------------------------------------- helpers
def counts_matrix(adata: Any, layer: str | None) -> Any:
    """``adata.layers[layer]`` (``adata.X`` when ``layer`` is None or ``""``), with a clear error."""
    if not layer:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found in adata.layers (available: {list(adata.layers.keys())})")
    return adata.layers[layer]


def check_counts(matrix: Any, where: str) -> None:
    """Raise on negative or non-finite values; warn on non-integer values (count likelihoods)."""
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if values.size == 0:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where} contains NaN or infinite values; count likelihoods need raw counts "
                         "(use the raw-count layer, e.g. layer='counts')")
    if values.min() < 0:
        raise ValueError(f"{where} contains negative values (min {values.min()}); count likelihoods need raw "
                         "counts (use the raw-count layer, e.g. layer='counts')")
    if not np.all(values == np.round(values)):
        warnings.warn(f"{where} is not integer-valued; count likelihoods expect raw counts "
                      "(use the raw-count layer, e.g. layer='counts')", stacklevel=3)


def check_var_names(expected: list[str], adata: Any, what: str) -> None:
    """Raise unless ``adata.var_names`` equal ``expected`` (same order)."""
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


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Write a directory under a temporary name and rename it to ``target`` on success.

    Built on :func:`geovae.runinfo.atomic_outputs` (the package's one atomic writer): an exception
    or a killed process leaves ``target`` untouched; an existing ``target`` is replaced only when
    ``overwrite`` is True.

    Parameters
    ----------
    target
        The directory to write.
    overwrite
        Replace an existing ``target``; otherwise raise :class:`FileExistsError`.

    Yields
    ------
    pathlib.Path
        The temporary directory to fill.
    """
    from geovae.runinfo import atomic_outputs

    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    with atomic_outputs([target]) as out:
        tmp = Path(out[0])
        tmp.mkdir(parents=True)
        yield tmp


def read_saved_meta(dir_path: str | os.PathLike) -> dict[str, Any]:
    """The ``params.json`` record of a model directory written by :meth:`BaseModel.save`."""
    path = Path(dir_path) / FILES["params"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {dir_path} a saved geovae model?")
    return json.loads(path.read_text())


def _like(default: Any, value: Any, name: str) -> Any:
    """``value`` cast to the type of ``default`` (bool, int, float); other values unchanged."""
    if value is None or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        if float(value) != int(float(value)):
            raise ValueError(f"parameter {name} must be an integer, got {value!r}")
        return int(float(value))
    if isinstance(default, float):
        return float(value)
    return value


# ------------------------------------------------------------------------- base model
class BaseModel:
    """Interface shared by every model of the zoo (see the module docstring).

    Subclasses set :attr:`model_name`, implement :meth:`_fit`, :meth:`_latent`,
    :meth:`_save_state` and :meth:`_load_state`, and may override :meth:`train`.
    """

    #: Registry name (``models: [...]`` in the config).
    model_name: ClassVar[str] = "base"
    #: Parameters fixed by a preset subclass (a clash with a user value is an error).
    _fixed: ClassVar[dict[str, Any]] = {}
    #: Whether the model conditions on ``setup_anndata(batch_key=...)``; one that cannot refuses it.
    supports_batch: ClassVar[bool] = False

    def __init__(self, adata: Any, **params: Any) -> None:
        if SETUP_KEY not in adata.uns:
            raise ValueError(f"adata is not registered: call {type(self).__name__}.setup_anndata(adata, layer=...) "
                             f"first (adata.uns[{SETUP_KEY!r}] is missing)")
        registry = dict(adata.uns[SETUP_KEY])
        if int(registry.get("n_vars", adata.n_vars)) != adata.n_vars:
            raise ValueError(f"adata changed shape since setup_anndata; call {type(self).__name__}.setup_anndata "
                             "again")
        clash = {k: v for k, v in params.items() if k in self._fixed and v != self._fixed[k]}
        if clash:
            raise ValueError(f"model {self.model_name!r} fixes {self._fixed}; got {clash}")
        params = self.validate_params({**params, **self._fixed})
        self._init(adata, params, registry, input_transform_from_adata(adata), [str(v) for v in adata.var_names])

    # -- parameters
    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """Parameter names and defaults accepted by this model."""
        return {}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in and values cast to the type of their default (``8.0`` -> ``8`` for an
        integer, ``1`` -> ``1.0`` for a float); unknown names raise :class:`TypeError` naming the
        nearest accepted one."""
        from geovae.options import nearest

        defaults = cls.default_params()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"model {cls.model_name!r} got unknown parameter(s) {unknown}"
                            f"{nearest(unknown[0], defaults)}; accepted: {sorted(defaults)}")
        return {**defaults, **{k: _like(defaults[k], v, k) for k, v in params.items()}}

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

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}(n_vars={len(self.var_names)}, {shown}, trained={self.is_trained})"

    # -- setup
    @classmethod
    def setup_anndata(cls, adata: Any, layer: str | None = "counts", batch_key: str | None = None) -> None:
        """Register where the raw counts (and optional batch labels) live.

        Writes ``adata.uns["geovae_setup"]`` (h5ad-safe: ``layer`` is ``""`` for ``adata.X``,
        ``batch_key`` is ``""`` when unset).

        Parameters
        ----------
        adata
            AnnData object.
        layer
            Layer with raw, non-negative counts; None uses ``adata.X``.
        batch_key
            Optional ``adata.obs`` column with batch labels. Models with :attr:`supports_batch`
            (LiVAE, its ablations, the beta-VAE family, dp-VAE, scvi-tools) condition encoder and
            decoder on it; the others refuse it.

        Raises
        ------
        KeyError
            If the layer or batch column is missing.
        ValueError
            If the counts contain negative or non-finite values, or the model cannot use a batch key.
        """
        if batch_key and not cls.supports_batch:
            raise ValueError(f"{cls.__name__} cannot condition on batches (batch_key={batch_key!r}): pass "
                             "batch_key=None, or use a model that does (geovae models: livae, vae, the beta-VAE "
                             "family, dpvae, scvi); batch mixing is still measured by the iLISI metric")
        where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
        counts = counts_matrix(adata, layer)
        if counts.shape != adata.shape:
            raise ValueError(f"{where} has shape {counts.shape}, adata has {adata.shape}")
        check_counts(counts, where)
        if batch_key is not None and batch_key not in adata.obs.columns:
            raise KeyError(f"batch_key {batch_key!r} not found in adata.obs columns")
        adata.uns[SETUP_KEY] = {
            "model": cls.model_name,
            "layer": layer if layer is not None else "",
            "batch_key": batch_key if batch_key is not None else "",
            "n_vars": int(adata.n_vars),
            "n_batches": int(adata.obs[batch_key].nunique()) if batch_key is not None else 1,
            "batch_categories": sorted(map(str, adata.obs[batch_key].astype(str).unique())) if batch_key else [],
        }

    def _counts(self, adata: Any) -> Any:
        return counts_matrix(adata, self.registry.get("layer", "counts") or None)

    # -- API implemented by subclasses
    def train(self, **kwargs: Any) -> None:  # pragma: no cover - abstract
        """Fit the model; sets :attr:`history`, :attr:`metadata` and :attr:`is_trained`."""
        raise NotImplementedError

    def get_latent_representation(self, adata: Any | None = None, give_mean: bool = True,
                                  batch_size: int = 1024) -> np.ndarray:  # pragma: no cover - abstract
        """Latent codes ``(n_obs, n_latent)`` of ``adata`` (default: the training data)."""
        raise NotImplementedError

    @property
    def has_bottleneck(self) -> bool:
        """Whether :meth:`get_bottleneck_representation` is available."""
        return False

    def get_loadings(self) -> pd.DataFrame | None:
        """Feature loadings ``(n_vars, n_latent)`` when the model defines them (siVAE, linear models)."""
        return None

    def _state_files(self, directory: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restore_state(self, directory: Path, device: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    # -- persistence
    def save(self, dir_path: str | os.PathLike, overwrite: bool = False, save_anndata: bool = False) -> Path:
        """Save the model (parameters, var_names, input statistics, history, state) to a directory.

        Written to a temporary sibling directory renamed into place, so an interrupted save
        never leaves a half-written model at ``dir_path``.

        Parameters
        ----------
        dir_path
            Target directory.
        overwrite
            Replace an existing directory; otherwise raise :class:`FileExistsError`.
        save_anndata
            Also write the model's AnnData (``adata.h5ad``, with its ``setup_anndata`` registration),
            so :meth:`load` needs no ``adata`` (as in scvi-tools).

        Returns
        -------
        pathlib.Path
            The target directory.
        """
        with atomic_directory(dir_path, overwrite) as tmp:
            self._state_files(tmp)
            meta = {"format_version": FORMAT_VERSION, "model": self.model_name, "params": self.params,
                    "registry": self.registry, "input": self.input_transform.to_dict(),
                    "is_trained": self.is_trained, "metadata": self.metadata,
                    "saved_with_geovae": geovae_version(), **self._extra_meta()}
            (tmp / FILES["params"]).write_text(json.dumps(meta, indent=2, default=str))
            (tmp / FILES["var_names"]).write_text(json.dumps(self.var_names))
            stats = {}
            if self.input_transform.mean is not None:
                stats = {"mean": self.input_transform.mean, "std": self.input_transform.std}
            np.savez(tmp / FILES["stats"], **stats)
            self.history.to_csv(tmp / FILES["history"], index=False)
            if save_anndata:
                self.adata.write_h5ad(tmp / FILES["adata"])
        return Path(dir_path)

    @classmethod
    def load(cls, dir_path: str | os.PathLike, adata: Any = None, device: str = "auto") -> "BaseModel":
        """Load a model written by :meth:`save` and attach it to ``adata``.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            AnnData with exactly the saved ``var_names`` (same order). ``None``: the AnnData saved
            with the model (``save(..., save_anndata=True)``), its registered fields included.
        device
            Where to put torch weights (``"auto"``, ``"cpu"``, ``"cuda"``); ignored by non-neural models.

        Raises
        ------
        FileNotFoundError
            If a model file is missing.
        ValueError
            If the directory holds another model or ``adata.var_names`` differ from the saved ones.
        """
        src = Path(dir_path)
        meta = read_saved_meta(src)
        if adata is None:
            if not (src / FILES["adata"]).is_file():
                raise ValueError(f"{cls.__name__}.load({str(src)!r}): no adata given and none saved with the model "
                                 "(save it with save(..., save_anndata=True), or pass adata=)")
            adata = anndata.read_h5ad(src / FILES["adata"])
        if meta.get("model") != cls.model_name:
            raise ValueError(f"{src / FILES['params']} holds model {meta.get('model')!r}, not {cls.model_name!r}")
        if not (src / FILES["var_names"]).is_file():
            raise FileNotFoundError(f"{src / FILES['var_names']} not found; is {src} a saved geovae model?")
        var_names = json.loads((src / FILES["var_names"]).read_text())
        check_var_names(var_names, adata, f"{cls.__name__}.load({str(src)!r})")
        mean = std = None
        if (src / FILES["stats"]).is_file():
            with np.load(src / FILES["stats"]) as npz:
                if "mean" in npz:
                    mean, std = npz["mean"], npz["std"]
        inp = meta.get("input", {})
        transform = InputTransform(mean=mean, std=std, center_scale=bool(inp.get("center_scale", False)),
                                   clip=inp.get("clip"))
        model = cls.__new__(cls)
        model._init(adata, dict(meta["params"]), dict(meta.get("registry", {})), transform, var_names)
        model._restore_state(src, device)
        model.is_trained = bool(meta.get("is_trained", False))
        model.metadata = dict(meta.get("metadata", {}))
        history = src / FILES["history"]
        if history.is_file() and history.stat().st_size > 1:
            model.history = pd.read_csv(history)
        if SETUP_KEY not in adata.uns and model.registry:
            adata.uns[SETUP_KEY] = dict(model.registry)
        return model


# ----------------------------------------------------------------------- neural model
class NeuralModel(BaseModel):
    """A :class:`BaseModel` around a torch module trained by :func:`geovae.training.train_module`.

    The module class must take ``n_input`` first, then keyword parameters (whose defaults are
    the model's defaults), and provide ``loss(batch) -> dict`` (key ``"total"``),
    ``encode(x) -> (mu, logvar)`` and ``sample(mu, logvar)``. A module may also define
    ``on_epoch_start(epoch, max_epochs)`` (annealing schedules) and ``set_dataset_size(n)``.
    """

    module_class: ClassVar[type[nn.Module]]
    #: Modules built on :class:`~geovae.modules.livae.LiVAEModule` condition on batches.
    supports_batch: ClassVar[bool] = True

    def __init__(self, adata: Any, **params: Any) -> None:
        super().__init__(adata, **params)
        self.module = self._build_module(seed=0)

    @property
    def batch_categories(self) -> list[str]:
        """Batches the model is conditioned on (``setup_anndata(batch_key=...)``; empty when none)."""
        categories = list(self.registry.get("batch_categories", []) or [])
        return [str(c) for c in categories] if self.registry.get("batch_key") and len(categories) >= 2 else []

    def _condition_on_batches(self, module: nn.Module) -> nn.Module:
        """Widen the module's encoder and decoder inputs by the one-hot batch code (when conditioned)."""
        if self.batch_categories:
            module.add_batch_conditioning(len(self.batch_categories))
        return module

    def _batch_codes(self, adata: Any) -> dict[str, np.ndarray]:
        """``{"batch": one-hot (n_obs x n_batch)}`` of ``adata``'s cells, or ``{}`` without conditioning."""
        categories = self.batch_categories
        if not categories:
            return {}
        key = self.registry["batch_key"]
        if key not in adata.obs:
            raise KeyError(f"{type(self).__name__} is conditioned on batches of obs[{key!r}], which this adata lacks")
        labels = adata.obs[key].astype(str).to_numpy()
        index = pd.Index(categories).get_indexer(labels)
        if (index < 0).any():
            unknown = sorted(set(labels[index < 0]))[:5]
            raise ValueError(f"{type(self).__name__}: obs[{key!r}] has batches the model was not trained on: "
                             f"{unknown}; known: {categories}")
        return {"batch": np.eye(len(categories), dtype=np.float32)[index]}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The module's parameters and defaults: the keyword parameters of its ``__init__`` and of the
        base modules it passes ``**vae`` on to (:class:`~geovae.modules.vae.VAEModule`), each declared
        once; a preset's fixed values on top."""
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.module_class.__mro__):
            if "__init__" not in vars(klass) or klass in (nn.Module, object):
                continue
            for name, p in inspect.signature(klass.__init__).parameters.items():
                if name not in ("self", "n_input") and p.default is not inspect.Parameter.empty \
                        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    defaults[name] = p.default
        return {**defaults, **cls._fixed}

    def _build_module(self, seed: int) -> nn.Module:
        # seeded initialisation without disturbing the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._condition_on_batches(self.module_class(n_input=len(self.var_names), **self.params))

    def _batches(self, adata: Any, with_counts: bool) -> AnnDataBatches:
        """Minibatch source of ``adata`` (override to add per-cell arrays, e.g. spatial coordinates)."""
        return AnnDataBatches(adata.X, self._counts(adata) if with_counts else None, self.input_transform,
                              obs_arrays=self._batch_codes(adata))

    # -- training
    def train(self, **options: Any) -> None:
        """Train with Adam and early stopping (the shared loop, :func:`geovae.training.train_module`).

        For a model that has not been trained yet, ``seed`` also determines the weight
        initialisation, so ``(data, params, seed)`` fully determines the result on CPU.
        Calling ``train`` again continues from the current weights and appends to
        :attr:`history`. Sets :attr:`history` and :attr:`metadata`.

        Parameters
        ----------
        **options
            Any field of :class:`geovae.options.TrainingConfig`, the one declaration of the
            training options and their defaults: ``max_epochs`` (300), ``batch_size`` (128,
            LiVAE paper section 2.7), ``lr`` (1e-3), ``device`` (``"auto"``: CUDA when available),
            ``early_stopping``, ``validation_fraction`` (0.1), ``patience`` (20), ``min_delta``,
            ``seed`` (weights of a first training, validation split, minibatch order),
            ``progress_bar``, ``grad_clip`` (1.0), ``use_amp``, ``cpu_amp``, ``weight_decay``,
            ``checkpoint_dir`` / ``checkpoint_every`` (resumable checkpoints; the model's name and
            parameters are hashed into them) and ``divergence_restarts``. ``docs/options.md``
            lists them all. An unknown option raises :class:`TypeError` naming it.
        """
        config = training_config({**options, "checkpoint_key": json.dumps(
            {"model": self.model_name, "params": self.params, "batches": self.batch_categories},
            sort_keys=True, default=str)},
            owner=f"{type(self).__name__}.train")
        seed = config.seed
        if not self.is_trained:
            self.module = self._build_module(seed)
        data = self._batches(self.adata, with_counts=True)
        if hasattr(self.module, "set_dataset_size"):
            self.module.set_dataset_size(data.n_obs)
        result = train_module(self.module, data, config)
        self._record_training(result.history, result.metadata)

    def _record_training(self, history: pd.DataFrame, metadata: dict[str, Any]) -> None:
        if self.is_trained and len(self.history):
            history = history.assign(epoch=history["epoch"] + int(self.history["epoch"].max()))
            history = pd.concat([self.history, history], ignore_index=True)
        self.history = history
        self.metadata = {"model": self.model_name, **metadata, "params": dict(self.params)}
        self.is_trained = True

    # -- inference
    @property
    def device(self) -> torch.device:
        """Device holding the module's weights."""
        return next(self.module.parameters()).device

    @torch.no_grad()
    def _encode_all(self, adata: Any | None, batch_size: int, transform: Any, width: int, what: str) -> np.ndarray:
        """Apply ``transform(module, x) -> Tensor`` to all cells of ``adata`` in chunks."""
        adata = self.adata if adata is None else adata
        check_var_names(self.var_names, adata, what)
        data = self._batches(adata, with_counts=False)
        self.module.eval()
        device = self.device
        chunks = []
        for start in range(0, data.n_obs, batch_size):
            idx = np.arange(start, min(start + batch_size, data.n_obs))
            part = data.get(idx, with_counts=False)
            x = torch.from_numpy(part["x"]).to(device)
            code = torch.from_numpy(part["batch"]).to(device) if "batch" in part else None
            conditioned = getattr(self.module, "conditioned_on", None)
            with conditioned(code) if conditioned is not None else contextlib.nullcontext():
                chunks.append(transform(self.module, x).float().cpu().numpy())
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, width), dtype=np.float32)

    def get_latent_representation(self, adata: Any | None = None, give_mean: bool = True,
                                  batch_size: int = 1024) -> np.ndarray:
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
        def latent(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            mu, logvar = module.encode(x)
            return mu if give_mean else module.sample(mu, logvar)

        return self._encode_all(adata, batch_size, latent, int(self.params.get("latent_dim", 0)),
                                "get_latent_representation")

    # -- persistence
    def _state_files(self, directory: Path) -> None:
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        torch.save(state, directory / FILES["weights"])

    def _restore_state(self, directory: Path, device: str) -> None:
        weights = directory / FILES["weights"]
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found; is {directory} a saved {self.model_name} model?")
        self.module = self._build_module(seed=0)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.module.load_state_dict(state)
        self.module.to(resolve_device(device)).eval()
