"""User-facing siVAE model: interpretable VAE with gene loadings (Choi et al., Genome Biology 2023).

Example
-------
>>> SiVAE.setup_anndata(adata, layer="counts")                  # doctest: +SKIP
>>> model = SiVAE(adata, latent_dim=10, gamma=0.05)             # doctest: +SKIP
>>> model.train(max_epochs=200)                                 # doctest: +SKIP
>>> z = model.get_latent_representation()                       # cells x K scores
>>> loadings = model.get_loadings()                             # genes x K loadings  # doctest: +SKIP
>>> hubs = model.get_degree_centrality().nlargest(20)           # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from .base import NeuralModel, check_var_names, read_saved_meta
from ..modules.sivae import PHASES, SiVAEModule
from ..training.data import AnnDataBatches
from ..training.trainer import TrainingConfig, train_module, training_config

__all__ = ["SiVAE", "FEATURE_INPUTS", "LOADINGS_FILE", "CENTRALITY_FILE", "feature_input_cells",
           "read_loadings", "loading_columns"]

#: How the feature-encoder input ``X_{:,f}`` is reduced to ``feature_cells`` values (Methods).
FEATURE_INPUTS = ("subsample", "pca")
#: Files written into a saved model directory next to the weights (read by the interpret stage).
LOADINGS_FILE = "loadings.tsv.gz"
CENTRALITY_FILE = "degree_centrality.tsv.gz"
#: Cells used to compute the PCA of ``X^T`` at most (a seeded, stratified subsample beyond it).
PCA_MAX_CELLS = 50_000

#: Model-level parameters (everything else is a :class:`SiVAEModule` argument).
_MODEL_DEFAULTS: dict[str, Any] = {"feature_input": "subsample", "feature_cells": 2000, "stratify_key": None}


def loading_columns(n: int) -> list[str]:
    """Column names ``Z1..Zn`` of a loadings table (same labels as the latent components)."""
    return [f"Z{k + 1}" for k in range(n)]


def feature_input_cells(n_obs: int, n_cells: int, labels: Any | None = None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n_cells, n_obs)`` cells, keeping the label proportions.

    siVAE Methods, "Reducing dimensionality of the input data for the feature-wise
    encoder-decoder": cells are sampled at random "while maintaining the ratio between the
    cell types". Each label gets ``n_cells * share`` cells (largest remainders round up).

    Parameters
    ----------
    n_obs
        Number of cells.
    n_cells
        Cells to keep (all when ``n_cells >= n_obs``).
    labels
        Per-cell labels to stratify by; None samples uniformly.
    seed
        Seed of the sampling.
    """
    if n_cells < 1:
        raise ValueError(f"feature_cells must be >= 1, got {n_cells}")
    if n_cells >= n_obs:
        return np.arange(n_obs)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n_obs, size=n_cells, replace=False))
    codes, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(codes))
    quota = counts * n_cells / n_obs
    take = np.floor(quota).astype(int)
    extra = n_cells - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=int(t), replace=False) for k, t in enumerate(take) if t]
    return np.sort(np.concatenate(chosen))


class _RowBatches:
    """Minibatch source over in-memory arrays with the same number of rows (features in phase 2)."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self.arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}

    @property
    def n_obs(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def get(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in self.arrays.items()}


def read_loadings(dir_path: str | os.PathLike) -> tuple[pd.DataFrame | None, pd.Series | None]:
    """Loadings (``features x K``) and degree centrality saved in a model directory, if any.

    Parameters
    ----------
    dir_path
        A directory written by ``model.save``.

    Returns
    -------
    tuple
        ``(loadings, centrality)``; each None when its file (:data:`LOADINGS_FILE`,
        :data:`CENTRALITY_FILE`) is absent (models without loadings).
    """
    directory = Path(dir_path)
    loadings = centrality = None
    if (directory / LOADINGS_FILE).is_file():
        loadings = pd.read_csv(directory / LOADINGS_FILE, sep="\t", index_col=0)
        loadings.index = loadings.index.astype(str)
    if (directory / CENTRALITY_FILE).is_file():
        table = pd.read_csv(directory / CENTRALITY_FILE, sep="\t", index_col=0)
        if "degree_centrality" not in table.columns:
            raise ValueError(f"{directory / CENTRALITY_FILE} has no 'degree_centrality' column")
        centrality = table["degree_centrality"]
        centrality.index = centrality.index.astype(str)
    return loadings, centrality


class SiVAE(NeuralModel):
    """siVAE: a VAE with a feature-wise encoder-decoder whose embeddings are gene loadings.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`. ``adata.X`` (z-scored/clipped as
        preprocessing recorded) is the input of the cell-wise encoder, of the feature-wise
        encoder (transposed, reduced to ``feature_cells`` values) and the target of the Gaussian
        likelihood and of the interpretability term; the counts layer is the NB target.
    **params
        ``latent_dim`` (10), ``hidden_dims`` ((1024, 512, 128)), ``likelihood`` (``"gaussian"``
        or ``"nb"``), ``gamma`` (0.05), ``beta_kl`` (1.0): see
        :class:`~geovae.modules.sivae.SiVAEModule`. And:

        ``feature_input``
            ``"subsample"`` (default: a seeded, label-stratified subsample of cells) or ``"pca"``
            (the first ``feature_cells`` principal components of ``X^T``, no whitening, computed
            on at most :data:`PCA_MAX_CELLS` cells). siVAE Methods, "Reducing dimensionality".
        ``feature_cells``
            ``C_red``, the length of a feature's input vector (default 2000; all cells when fewer).
        ``stratify_key``
            ``adata.obs`` column whose proportions the subsample keeps (default None: uniform).

    Notes
    -----
    :meth:`train` runs the paper's three phases (cell-wise VAE, feature-wise VAE, joint);
    :attr:`history` has a ``phase`` column. Loadings are the posterior means of the feature
    embeddings ``v_{f,1}``; :meth:`save` also writes them (``loadings.tsv.gz``) and the per-gene
    degree centrality (``degree_centrality.tsv.gz``) into the model directory.
    """

    model_name = "sivae"
    #: the paper's default likelihood is Gaussian on the normalised input, whatever the modality
    likelihood_follows_modality = False
    module_class: ClassVar[type] = SiVAEModule
    #: siVAE's cell- and feature-wise networks take no batch code.
    supports_batch: ClassVar[bool] = False

    def __init__(self, adata: Any, **params: Any) -> None:
        super().__init__(adata, **params)
        p = self.params
        if p["feature_input"] not in FEATURE_INPUTS:
            raise ValueError(f"siVAE feature_input={p['feature_input']!r} is not one of {FEATURE_INPUTS}")
        if int(p["feature_cells"]) < 1:
            raise ValueError(f"siVAE feature_cells must be >= 1, got {p['feature_cells']!r}")
        if p["stratify_key"] is not None and p["stratify_key"] not in adata.obs.columns:
            raise KeyError(f"siVAE stratify_key {p['stratify_key']!r} not found in adata.obs columns "
                           f"({list(adata.obs.columns)})")

    # -- parameters
    @classmethod
    def default_params(cls) -> dict[str, Any]:
        defaults = {**super().default_params(), **_MODEL_DEFAULTS}
        defaults["hidden_dims"] = list(defaults["hidden_dims"])  # JSON/YAML friendly
        return defaults

    def _init(self, adata: Any, params: dict[str, Any], registry: dict[str, Any], transform: Any,
              var_names: list[str]) -> None:
        super()._init(adata, params, registry, transform, var_names)
        self._n_feature_input: int | None = None
        self._feature_info: dict[str, Any] = {}
        self._centrality: pd.Series | None = None

    def _module_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in _MODEL_DEFAULTS}

    def _feature_width(self) -> int:
        n_obs, n_vars = self.adata.n_obs, self.adata.n_vars
        c_red = min(int(self.params["feature_cells"]), n_obs)
        if self.params["feature_input"] == "pca":
            c_red = min(c_red, n_vars, min(n_obs, PCA_MAX_CELLS))
        return max(c_red, 1)

    def _build_module(self, seed: int) -> SiVAEModule:
        if self._n_feature_input is None:
            self._n_feature_input = self._feature_width()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SiVAEModule(n_input=len(self.var_names), n_feature_input=self._n_feature_input,
                               **self._module_params())

    # -- feature-encoder input
    def _model_input(self, rows: np.ndarray) -> np.ndarray:
        data = AnnDataBatches(self.adata.X, None, self.input_transform)
        return np.concatenate([data.get(rows[i:i + 4096], with_counts=False)["x"]
                               for i in range(0, len(rows), 4096)], axis=0)

    def _feature_matrix(self, seed: int) -> np.ndarray:
        """``F x C_red`` input of the feature-wise encoder for the training data."""
        key = self.params["stratify_key"]
        labels = None if key is None else self.adata.obs[key].to_numpy()
        width = self._n_feature_input or self._feature_width()
        if self.params["feature_input"] == "subsample":
            rows = feature_input_cells(self.adata.n_obs, width, labels, seed)
            self._feature_info = {"feature_input": "subsample", "n_cells": int(len(rows)),
                                  "stratify_key": key}
            return self._model_input(rows).T
        from sklearn.decomposition import PCA

        rows = feature_input_cells(self.adata.n_obs, PCA_MAX_CELLS, labels, seed)
        xt = self._model_input(rows).T.astype(np.float64)  # genes x cells
        pca = PCA(n_components=width, whiten=False, svd_solver="randomized" if width < min(xt.shape) else "full",
                  random_state=seed)
        scores = pca.fit_transform(xt)
        self._feature_info = {"feature_input": "pca", "n_cells": int(len(rows)), "n_components": int(width),
                              "explained_variance_ratio": float(pca.explained_variance_ratio_.sum()),
                              "stratify_key": key}
        return scores.astype(np.float32)

    # -- training
    def train(self, pretrain_epochs: int | None = None, **options: Any) -> None:
        """Train in the paper's three phases, each with :func:`geovae.training.train_module`.

        1. ``cell``: the cell-wise VAE with free output weights ``V~`` (eq. 12 without features);
        2. ``feature``: the feature-wise VAE reconstructing ``V~`` from the feature input;
        3. ``joint``: everything, full objective (eqs. 12-13).

        A model that is already trained continues with the joint phase only. Every phase uses
        the options below (its own Adam optimiser, early stopping on its own validation loss).

        Parameters
        ----------
        pretrain_epochs
            Epoch cap of each pre-training phase (default: ``max_epochs``).
        **options
            The training options of :meth:`geovae.models.base.NeuralModel.train`
            (:class:`geovae.options.TrainingConfig`); ``max_epochs`` caps the joint phase (and the
            pre-training phases unless ``pretrain_epochs``), ``seed`` also draws the cells of the
            feature input, phase 2 batches and splits features instead of cells, and
            ``checkpoint_dir`` holds one sub-folder per phase.
        """
        base = training_config(options, owner="SiVAE.train")

        def config(phase: str, epochs: int) -> TrainingConfig:
            folder = None if base.checkpoint_dir is None else str(Path(base.checkpoint_dir) / phase)
            return replace(base, max_epochs=epochs, checkpoint_dir=folder,
                           checkpoint_key=f"sivae:{phase}:{sorted(self.params.items())!r}")

        max_epochs, seed = base.max_epochs, base.seed
        pre = max_epochs if pretrain_epochs is None else int(pretrain_epochs)
        phases = list(PHASES) if not self.is_trained else ["joint"]
        if not self.is_trained:
            self.module = self._build_module(seed)
            self.module.set_feature_input(torch.from_numpy(self._feature_matrix(seed)))
        cells = self._batches(self.adata, with_counts=True)
        self.module.set_dataset_size(cells.n_obs)
        self._centrality = None

        histories, phase_meta = [], {}
        for phase in phases:
            self.module.set_phase(phase)
            if phase == "feature":
                data: Any = _RowBatches(feature_x=self.module.feature_input.detach().cpu().numpy(),
                                        target=self.module.free_weights.detach().cpu().numpy())
            else:
                data = cells
            result = train_module(self.module, data, config(phase, max_epochs if phase == "joint" else pre))
            histories.append(result.history.assign(phase=phase))
            phase_meta[phase] = result.metadata
        self.module.set_phase("joint")

        history = pd.concat(histories, ignore_index=True)
        history["epoch"] = np.arange(1, len(history) + 1)
        last = phase_meta[phases[-1]]
        summary = {name: {k: meta[k] for k in ("n_epochs", "best_epoch", "best_loss", "stopped_early",
                                                "train_seconds", "n_train", "n_val")}
                   for name, meta in phase_meta.items()}
        metadata = {**last, "n_epochs": int(len(history)),
                    "train_seconds": round(sum(m["train_seconds"] for m in phase_meta.values()), 3),
                    "stopped_early": bool(last["stopped_early"]), "phases": summary,
                    "feature_input": dict(self._feature_info)}
        self._record_training(history, metadata)

    # -- interpretation
    def _require_trained(self, what: str) -> None:
        if not self.is_trained:
            raise RuntimeError(f"SiVAE.{what}: train the model first (or load a trained one)")

    def get_loadings(self) -> pd.DataFrame:
        """siVAE loadings: posterior means of the feature embeddings ``v_{f,1}`` (eq. 10).

        Returns
        -------
        pandas.DataFrame
            ``n_vars x latent_dim``, index = var_names, columns ``Z1..ZK`` (the labels of the
            matching cell-embedding dimensions).
        """
        self._require_trained("get_loadings")
        self.module.eval()
        values = self.module.feature_means().float().cpu().numpy()
        return pd.DataFrame(values, index=pd.Index(self.var_names, name="gene"),
                            columns=loading_columns(values.shape[1]))

    def get_degree_centrality(self, adata: Any | None = None, batch_size: int = 1024) -> pd.Series:
        """Per-gene degree centrality: the negative reconstruction error of each gene.

        siVAE Methods, "Estimating degree centrality using siVAE": hub genes are best
        reconstructed, so centrality is the negative reconstruction error of siVAE on each gene.
        Here the error is relative, ``-sum_c (y_cf - yhat_cf)^2 / sum_c (y_cf - mean_c y_cf)^2``,
        with ``y`` the model input and ``yhat`` the Gaussian mean (``likelihood="gaussian"``; on
        z-scored input the denominator is ~ the number of cells, i.e. the paper's negative MSE),
        or ``y`` the counts divided by the library size and ``yhat`` the NB proportions ``rho``.
        Reconstructions use the posterior means of cells and features. Constant genes get NaN.

        Parameters
        ----------
        adata
            Cells to evaluate (default: the training data; after :meth:`load`, the value saved
            with the model).
        batch_size
            Cells reconstructed at once.

        Returns
        -------
        pandas.Series
            Indexed by var_names, named ``degree_centrality``; larger = more hub-like (max 0).
        """
        self._require_trained("get_degree_centrality")
        if adata is None and self._centrality is not None:
            return self._centrality.copy()
        result = self._compute_centrality(self.adata if adata is None else adata, batch_size)
        if adata is None:
            self._centrality = result
        return result.copy()

    @torch.no_grad()
    def _compute_centrality(self, adata: Any, batch_size: int) -> pd.Series:
        check_var_names(self.var_names, adata, "SiVAE.get_degree_centrality")
        gaussian = self.params["likelihood"] == "gaussian"
        data = self._batches(adata, with_counts=not gaussian)
        module, device = self.module.eval(), self.device
        weights = module.output_weights(module.feature_means())
        n_vars = len(self.var_names)
        sse, total, total_sq = (np.zeros(n_vars) for _ in range(3))
        for start in range(0, data.n_obs, batch_size):
            batch = data.get(np.arange(start, min(start + batch_size, data.n_obs)), with_counts=not gaussian)
            x = torch.from_numpy(batch["x"]).to(device)
            library = None if gaussian else torch.from_numpy(batch["library"]).to(device)
            yhat = module.reconstruct(x, library, weights).double().cpu().numpy()
            y = batch["x"] if gaussian else batch["counts"] / np.maximum(batch["library"], 1.0)
            y = y.astype(np.float64)
            sse += ((y - yhat) ** 2).sum(axis=0)
            total += y.sum(axis=0)
            total_sq += (y**2).sum(axis=0)
        sst = total_sq - total**2 / max(data.n_obs, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(sst > 1e-12 * np.maximum(total_sq, 1e-300), -sse / sst, np.nan)
        return pd.Series(value, index=pd.Index(self.var_names, name="gene"), name="degree_centrality")

    # -- persistence
    def _extra_meta(self) -> dict[str, Any]:
        return {"n_feature_input": self._n_feature_input, "feature_input_info": self._feature_info}

    def _state_files(self, directory: Path) -> None:
        super()._state_files(directory)
        if self.is_trained:
            self.get_loadings().to_csv(directory / LOADINGS_FILE, sep="\t")
            self.get_degree_centrality().to_frame().to_csv(directory / CENTRALITY_FILE, sep="\t")

    def _restore_state(self, directory: Path, device: str) -> None:
        meta = read_saved_meta(directory)
        if meta.get("n_feature_input") is None:
            raise ValueError(f"{directory}: params.json lacks 'n_feature_input'; not a saved siVAE model")
        self._n_feature_input = int(meta["n_feature_input"])
        self._feature_info = dict(meta.get("feature_input_info") or {})
        super()._restore_state(directory, device)
        _, self._centrality = read_loadings(directory)
