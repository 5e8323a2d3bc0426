"""scvi-tools baselines (scVI, PeakVI, PoissonVI) as thin :class:`BaseModel` wrappers.

scvi-tools is an optional dependency (``pip install 'geovae[scvi]'`` or the ``envs/scvi.yaml``
conda environment); it is imported when a wrapper is constructed, and constructing one without
it raises :class:`ImportError` saying how to install it.

- ``scvi``: scVI (Lopez et al. 2018, Nat. Methods 15:1053), ``scvi.model.SCVI``, RNA counts.
- ``peakvi``: PeakVI (Ashuach et al. 2022, Cell Rep. Methods 2:100182), ``scvi.model.PEAKVI``,
  ATAC (Bernoulli on accessibility, binarised internally by scvi-tools).
- ``poissonvi``: PoissonVI (Martens et al. 2024, Nat. Methods 21:1252),
  ``scvi.external.POISSONVI``, ATAC fragment counts.

Defaults are set for a fair comparison with LiVAE (paper section 2.7): ``n_latent=10`` and
``n_hidden=128``; everything else is the scvi-tools default. The wrapper hands scvi-tools a
minimal AnnData (the registered counts as ``X``, the batch column if any) that shares the
count matrix, so scvi-tools writes nothing into the user's AnnData.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..options import training_config
from .base import BaseModel, check_var_names, counts_matrix

#: geovae training options mapped onto scvi-tools' ``train`` (the others are recorded as ignored).
_SCVI_MAPPED = frozenset({"max_epochs", "batch_size", "lr", "device", "early_stopping", "validation_fraction",
                          "patience", "seed", "progress_bar"})

__all__ = ["ScviToolsModel", "SCVI", "PeakVI", "PoissonVI", "import_scvi", "INSTALL_HINT", "scvi_history"]

#: How to get scvi-tools (in every ImportError of this module).
INSTALL_HINT = ("install it with `pip install 'geovae[scvi]'` or use the conda environment envs/scvi.yaml "
                "(`conda env create -f envs/scvi.yaml`)")
#: Sub-directory of a saved model that holds scvi-tools' own ``save`` output.
SCVI_DIR = "scvi"


def import_scvi(model_name: str = "scvi") -> ModuleType:
    """Import scvi-tools, or raise :class:`ImportError` naming the model and how to install it.

    Parameters
    ----------
    model_name
        Registry name of the model that needs it (for the message).
    """
    try:
        return importlib.import_module("scvi")
    except ImportError as err:
        raise ImportError(f"model {model_name!r} needs scvi-tools, which is not installed: {INSTALL_HINT}",
                          name="scvi") from err


def scvi_history(history: dict[str, pd.DataFrame], epoch_seconds: list[float] | None = None) -> pd.DataFrame:
    """scvi-tools' ``model.history_`` as a geovae history (one row per epoch).

    Epoch-level terms ending in ``_train`` / ``_validation`` become ``train_<term>`` /
    ``val_<term>``; ``train_loss_epoch`` and ``validation_loss`` become ``train_loss`` and
    ``val_loss``; step-level series are dropped.

    Parameters
    ----------
    history
        ``{metric: DataFrame indexed by epoch}`` (scvi-tools ``history_``).
    epoch_seconds
        Wall time of each epoch, written as ``seconds`` when its length matches.

    Returns
    -------
    pandas.DataFrame
        Columns ``epoch`` (from 1), the loss terms and, when known, ``seconds``.
    """
    columns: dict[str, pd.Series] = {}
    for key, frame in (history or {}).items():
        if key.endswith("_step") or frame is None or len(frame) == 0:
            continue
        if key == "train_loss_epoch":
            name = "train_loss"
        elif key == "validation_loss":
            name = "val_loss"
        elif key.endswith("_train"):
            name = "train_" + key[: -len("_train")]
        elif key.endswith("_validation"):
            name = "val_" + key[: -len("_validation")]
        else:
            continue
        series = pd.Series(np.asarray(frame.iloc[:, 0], dtype=np.float64), index=np.asarray(frame.index, dtype=int))
        columns[name] = series
    out = pd.DataFrame(columns).sort_index()
    out.insert(0, "epoch", np.asarray(out.index, dtype=int) + 1)
    out = out.reset_index(drop=True)
    if epoch_seconds is not None and len(epoch_seconds) == len(out):
        out["seconds"] = epoch_seconds
    return out


def _accelerator(device: str) -> tuple[str, Any]:
    """geovae device string -> scvi-tools ``(accelerator, devices)``."""
    device = str(device)
    if device == "auto":
        return "auto", "auto"
    if device == "cpu":
        return "cpu", "auto"
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        return "gpu", [int(index)] if index else "auto"
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


class ScviToolsModel(BaseModel):
    """A :class:`BaseModel` around one scvi-tools model class.

    Subclasses set :attr:`scvi_target` (``"module:Class"``) and :attr:`defaults` (the
    scvi-tools ``__init__`` arguments the wrapper exposes). The scvi-tools model is built
    at the first :meth:`train`, after seeding, so ``(data, params, seed)`` determine the
    weights. ``batch_key`` given to :meth:`setup_anndata` is passed on to scvi-tools.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts in the registered layer).
    **params
        The subclass's parameters (see :meth:`default_params`).

    Raises
    ------
    ImportError
        When scvi-tools is not installed (the message says how to install it).
    """

    #: scvi-tools conditions on the batch itself (``setup_anndata(batch_key=...)``).
    supports_batch: ClassVar[bool] = True

    model_name: ClassVar[str] = "scvi-tools"
    #: ``"module:Class"`` of the scvi-tools model.
    scvi_target: ClassVar[str] = ""
    #: Exposed ``__init__`` arguments of the scvi-tools model and their defaults.
    defaults: ClassVar[dict[str, Any]] = {}
    #: The scvi-tools ``train`` takes ``lr`` itself (PeakVI) rather than in ``plan_kwargs``.
    lr_argument: ClassVar[bool] = False

    def __init__(self, adata: Any, **params: Any) -> None:
        import_scvi(self.model_name)
        super().__init__(adata, **params)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """``n_latent`` 10 and ``n_hidden`` 128 (as LiVAE) plus the class's scvi-tools settings.

        Raises :class:`ImportError` without scvi-tools, so ``geovae models`` lists the model as
        not installed (the defaults are in :attr:`defaults`).
        """
        import_scvi(cls.model_name)
        return dict(cls.defaults)

    def _init(self, adata: Any, params: dict[str, Any], registry: dict[str, Any], transform: Any,
              var_names: list[str]) -> None:
        super()._init(adata, params, registry, transform, var_names)
        self.scvi_model: Any = None

    # ------------------------------------------------------------------ helpers
    @classmethod
    def scvi_class(cls) -> type:
        """The scvi-tools model class (imports scvi-tools)."""
        module_name, class_name = cls.scvi_target.split(":")
        import_scvi(cls.model_name)
        return getattr(importlib.import_module(module_name), class_name)

    def _scvi_adata(self, adata: Any) -> Any:
        """Minimal AnnData for scvi-tools: the registered counts as ``X`` (shared), the batch column."""
        import anndata

        counts = counts_matrix(adata, self.registry.get("layer", "counts") or None)
        batch_key = self.registry.get("batch_key") or None
        obs = pd.DataFrame(index=pd.Index(adata.obs_names))
        if batch_key is not None:
            if batch_key not in adata.obs.columns:
                raise KeyError(f"batch_key {batch_key!r} (from setup_anndata) not found in adata.obs")
            obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
        return anndata.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=pd.Index(adata.var_names)))

    def _build(self, seed: int) -> None:
        scvi = import_scvi(self.model_name)
        scvi.settings.seed = int(seed)
        cls = self.scvi_class()
        mini = self._scvi_adata(self.adata)
        cls.setup_anndata(mini, batch_key=self.registry.get("batch_key") or None)
        self.scvi_model = cls(mini, **self.params)

    # ----------------------------------------------------------------- training
    def train(self, **options: Any) -> None:
        """Train with scvi-tools' own loop (the geovae options mapped onto it).

        Parameters
        ----------
        **options
            Training options of :class:`geovae.options.TrainingConfig` (an unknown one raises
            :class:`TypeError`). Mapped: ``max_epochs`` (lowered by ``epoch_budget`` as in geovae's
            own loop), ``batch_size``, ``lr`` (when given; absent
            keeps the scvi-tools default of the model: 1e-3 scVI and PoissonVI, 1e-4 PeakVI),
            ``device`` (accelerator and devices), ``early_stopping`` and ``patience`` (scvi-tools
            early stopping on the validation ELBO), ``validation_fraction`` (``train_size = 1 -
            validation_fraction``), ``seed`` (``scvi.settings.seed`` before the weights are built) and
            ``progress_bar``. The others (``min_delta``, ``grad_clip``, ``use_amp``, checkpoints, ...)
            belong to geovae's own loop and are ignored.
        """
        cfg = training_config(options, owner=f"{type(self).__name__}.train")
        lr = options.get("lr")
        max_epochs, batch_size, device, seed = cfg.epochs_for(self.adata.n_obs), cfg.batch_size, cfg.device, cfg.seed
        early_stopping, validation_fraction, patience = cfg.early_stopping, cfg.validation_fraction, cfg.patience
        progress_bar = cfg.progress_bar
        if early_stopping and float(validation_fraction) == 0.0:
            raise ValueError("early_stopping needs validation_fraction > 0")
        scvi = import_scvi(self.model_name)
        if self.scvi_model is None:
            self._build(seed)
        else:
            scvi.settings.seed = int(seed)
        accelerator, devices = _accelerator(device)
        timer = _epoch_timer()
        kwargs: dict[str, Any] = {
            "max_epochs": int(max_epochs), "batch_size": int(batch_size), "accelerator": accelerator,
            "devices": devices, "train_size": 1.0 - float(validation_fraction),
            "early_stopping": bool(early_stopping), "early_stopping_patience": int(patience),
            "check_val_every_n_epoch": 1 if validation_fraction > 0 else None,
            "enable_progress_bar": bool(progress_bar), "callbacks": [timer]}
        if validation_fraction == 0:
            kwargs["train_size"] = 1.0
        if lr is not None:
            if self.lr_argument:
                kwargs["lr"] = float(lr)
            else:
                kwargs["plan_kwargs"] = {"lr": float(lr)}
        start = time.perf_counter()
        self.scvi_model.train(**kwargs)
        seconds = time.perf_counter() - start
        self.history = scvi_history(self.scvi_model.history_, timer.seconds)
        import torch

        self.metadata = {"model": self.model_name, "device": str(self.scvi_model.device),
                         "seed": int(seed), "scvi_tools_version": _version("scvi-tools"),
                         "torch_version": torch.__version__, "train_seconds": round(seconds, 3),
                         "n_epochs": int(len(self.history)), "max_epochs": int(max_epochs),
                         "stopped_early": bool(len(self.history) < int(max_epochs)),
                         "params": dict(self.params), "ignored_options": sorted(set(options) - _SCVI_MAPPED)}
        self.is_trained = True

    # ---------------------------------------------------------------- inference
    def get_latent_representation(self, adata: Any | None = None, give_mean: bool = True,
                                  batch_size: int = 1024) -> np.ndarray:
        """Posterior means (or one sample) of the latent, ``(n_obs, n_latent)`` float32.

        Parameters
        ----------
        adata
            AnnData with the model's ``var_names`` and counts layer (default: the training data).
        give_mean
            Posterior mean instead of a sample.
        batch_size
            Cells encoded at once.
        """
        if self.scvi_model is None:
            raise RuntimeError(f"{type(self).__name__} is not trained; call train() first")
        if adata is None:
            mini = self.scvi_model.adata
        else:
            check_var_names(self.var_names, adata, f"{type(self).__name__}.get_latent_representation")
            mini = self._scvi_adata(adata)
        z = self.scvi_model.get_latent_representation(adata=mini, give_mean=give_mean, batch_size=batch_size)
        return np.asarray(z, dtype=np.float32)

    # -------------------------------------------------------------- persistence
    def _state_files(self, directory: Path) -> None:
        if self.scvi_model is None:
            raise RuntimeError(f"{type(self).__name__} is not trained; nothing to save")
        self.scvi_model.save(str(directory / SCVI_DIR), overwrite=True, save_anndata=False)

    def _restore_state(self, directory: Path, device: str) -> None:
        path = directory / SCVI_DIR
        if not path.is_dir():
            raise FileNotFoundError(f"{path} not found; is {directory} a saved {self.model_name} model?")
        accelerator, devices = _accelerator(device)
        self.scvi_model = self.scvi_class().load(str(path), adata=self._scvi_adata(self.adata),
                                                 accelerator=accelerator, device=devices)


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _epoch_timer() -> Any:
    """A Lightning callback recording the wall time of every training epoch in ``.seconds``."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


class SCVI(ScviToolsModel):
    """scVI (``scvi.model.SCVI``) on RNA counts.

    Parameters (scvi-tools defaults except ``n_latent``/``n_hidden``): ``n_latent`` 10,
    ``n_hidden`` 128, ``n_layers`` 1, ``dropout_rate`` 0.1, ``gene_likelihood`` ``"zinb"``,
    ``dispersion`` ``"gene"``.
    """

    model_name = "scvi"
    scvi_target = "scvi.model:SCVI"
    defaults = {"n_latent": 10, "n_hidden": 128, "n_layers": 1, "dropout_rate": 0.1, "gene_likelihood": "zinb",
                "dispersion": "gene"}


class PeakVI(ScviToolsModel):
    """PeakVI (``scvi.model.PEAKVI``) on ATAC counts (binarised by scvi-tools).

    Parameters: ``n_latent`` 10 and ``n_hidden`` 128 (scvi-tools would pick sqrt-of-regions
    sizes), ``n_layers_encoder``/``n_layers_decoder`` 2, ``dropout_rate`` 0.1,
    ``model_depth`` and ``region_factors`` True.
    """

    model_name = "peakvi"
    scvi_target = "scvi.model:PEAKVI"
    lr_argument = True
    defaults = {"n_latent": 10, "n_hidden": 128, "n_layers_encoder": 2, "n_layers_decoder": 2, "dropout_rate": 0.1,
                "model_depth": True, "region_factors": True}


class PoissonVI(ScviToolsModel):
    """PoissonVI (``scvi.external.POISSONVI``) on ATAC fragment counts.

    Parameters: ``n_latent`` 10, ``n_hidden`` 128, ``n_layers`` 2, ``dropout_rate`` 0.1.
    """

    model_name = "poissonvi"
    scvi_target = "scvi.external:POISSONVI"
    lr_argument = True
    defaults = {"n_latent": 10, "n_hidden": 128, "n_layers": 2, "dropout_rate": 0.1}
