"""Classical dimensionality reduction baselines (scikit-learn) behind the :class:`BaseModel` interface.

The LiVAE paper (section 2.8, "Baseline methods") compares against seven classical methods on
scRNA-seq (PCA, kernel PCA, factor analysis, NMF, ICA, truncated SVD, dictionary learning) and
against latent semantic indexing (LSI) on scATAC-seq. Each is a thin subclass of
:class:`SklearnModel`:

- ``pca``: :class:`PCA` (``sklearn.decomposition.PCA``, sparse input via ARPACK);
- ``kpca``: :class:`KernelPCA` (``sklearn.decomposition.KernelPCA``, RBF kernel, subsampled dense fit);
- ``ica``: :class:`ICA` (``sklearn.decomposition.FastICA``, subsampled fit);
- ``fa``: :class:`FactorAnalysis` (``sklearn.decomposition.FactorAnalysis``, subsampled fit);
- ``nmf``: :class:`NMF` (``sklearn.decomposition.NMF``, sparse input);
- ``tsvd``: :class:`TruncatedSVD` (``sklearn.decomposition.TruncatedSVD``, sparse input);
- ``dicl``: :class:`DictionaryLearning` (``sklearn.decomposition.MiniBatchDictionaryLearning``,
  subsampled fit);
- ``lsi``: :class:`LSI` (TF-IDF -> truncated SVD, first component dropped; scATAC-seq).

Input is the normalised ``adata.X`` written by preprocessing (log1p-normalised RNA, TF-IDF
ATAC), kept sparse wherever the estimator allows it. ``scale=True`` instead uses exactly the
neural models' input (per-feature z-score, clipped, as recorded in ``uns["geovae_input"]``),
densified one chunk of cells at a time. Estimators that are quadratic in the number of cells or
need a dense matrix (kernel PCA, FastICA, factor analysis, dictionary learning) are fitted on a
seeded subsample of at most ``n_fit`` cells and then transform every cell, chunk by chunk.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import sklearn
from sklearn import decomposition
from sklearn.exceptions import ConvergenceWarning

from ..options import TRAINING_OPTIONS, nearest
from .base import FILES, BaseModel, check_var_names, counts_matrix

__all__ = ["SklearnModel", "PCA", "KernelPCA", "ICA", "FactorAnalysis", "NMF", "TruncatedSVD",
           "DictionaryLearning", "LSI", "N_FIT", "NEURAL_TRAIN_OPTIONS"]

#: Default cap on the cells a subsampled estimator is fitted on. 5,000 cells keep the RBF kernel
#: matrix of kernel PCA at 5,000^2 x 8 B = 200 MB and the dense float64 fitting matrix of
#: FastICA/FA/dictionary learning at 5,000 x 5,000 genes x 8 B = 200 MB, while still sampling
#: every population above ~0.1% of the cells tens of times.
N_FIT = 5000

#: Options of :meth:`NeuralModel.train` that mean nothing for a closed-form/iterative estimator;
#: :meth:`SklearnModel.train` accepts and ignores them (derived, so it follows the neural API).
NEURAL_TRAIN_OPTIONS = frozenset(TRAINING_OPTIONS) - {"seed"}


class SklearnModel(BaseModel):
    """A :class:`BaseModel` around one scikit-learn decomposition estimator.

    Subclasses name the estimator in :meth:`_make_estimator`, list its key settings (and
    defaults) in :attr:`estimator_params`, and say whether it is fitted on a subsample
    (:attr:`subsampled`), needs dense input (:attr:`dense_only`) and defines linear loadings.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`; ``adata.X`` is the input.
    n_components
        Latent dimension (default 10, LiVAE's ``latent_dim``, paper section 2.7).
    scale
        Use the neural models' input (``uns["geovae_input"]`` z-score and clip) instead of
        ``adata.X`` as-is (default False). Not offered by NMF and LSI.
    n_fit
        Subsampled estimators only: most cells the estimator is fitted on (default
        :data:`N_FIT`); every cell is transformed.
    **estimator_params
        The subclass's estimator settings.
    """

    model_name: ClassVar[str] = "sklearn"
    #: Estimator settings accepted as model parameters, with their defaults.
    estimator_params: ClassVar[dict[str, Any]] = {}
    #: Fit on a seeded subsample of at most ``n_fit`` cells (quadratic or dense-only estimators).
    subsampled: ClassVar[bool] = False
    #: The estimator rejects sparse input (chunks are densified).
    dense_only: ClassVar[bool] = False
    #: Offer ``scale`` (z-scored input); False where the input must stay non-negative / TF-IDF.
    scalable: ClassVar[bool] = True
    #: Transform chunk by chunk (False where the result of a row depends on the whole chunk).
    chunked_transform: ClassVar[bool] = True
    #: Name of the latent columns in :meth:`get_loadings` (``<prefix>1``...).
    component_prefix: ClassVar[str] = "comp"

    # ------------------------------------------------------------------ parameters
    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """``n_components`` (10), ``scale``, ``n_fit`` where applicable, and the estimator settings."""
        params: dict[str, Any] = {"n_components": 10}
        if cls.scalable:
            params["scale"] = False
        if cls.subsampled:
            params["n_fit"] = N_FIT
        return {**params, **cls.estimator_params}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in; unknown names raise :class:`TypeError`, bad sizes :class:`ValueError`."""
        params = super().validate_params(params)
        k = params["n_components"]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"model {cls.model_name!r}: n_components must be a positive integer, got {k!r}")
        if cls.subsampled:
            n_fit = params["n_fit"]
            if isinstance(n_fit, bool) or not isinstance(n_fit, (int, np.integer)) or n_fit < k:
                raise ValueError(f"model {cls.model_name!r}: n_fit must be an integer >= n_components ({k}), "
                                 f"got {n_fit!r}")
        return params

    def _init(self, adata: Any, params: dict[str, Any], registry: dict[str, Any], transform: Any,
              var_names: list[str]) -> None:
        super()._init(adata, params, registry, transform, var_names)
        self.estimator: Any = None

    # ------------------------------------------------------------ subclass hooks
    def _make_estimator(self, seed: int) -> Any:  # pragma: no cover - abstract
        """The unfitted scikit-learn estimator for ``seed``."""
        raise NotImplementedError

    def _history_terms(self) -> dict[str, float]:
        """Per-fit diagnostics of the fitted estimator (history columns ``train_<term>``)."""
        return {}

    def _loading_matrix(self) -> np.ndarray | None:
        """Generative loadings ``(n_components, n_vars)``: how each component reconstructs the input."""
        return None

    def _transform(self, X: Any) -> np.ndarray:
        """Latent codes of the input rows ``X`` (after :meth:`_input`)."""
        return self.estimator.transform(X)

    # ------------------------------------------------------------------- input
    def _input(self, adata: Any, rows: np.ndarray | None = None) -> Any:
        """Model input of ``rows`` of ``adata`` (all rows when None): sparse when allowed, else dense float64."""
        X = adata.X
        if X is None:
            raise ValueError(f"{type(self).__name__}: adata.X is empty; it must hold the normalised data")
        if sp.issparse(X) and X.format != "csr":
            X = X.tocsr()
        if rows is not None:
            X = X[rows]
        if self.params.get("scale", False):
            if not self.input_transform.center_scale:
                raise ValueError(f"{type(self).__name__}(scale=True) needs adata.uns['geovae_input']"
                                 "['center_scale'] = True with var['input_mean'/'input_std'] (run "
                                 "geovae.pp.preprocess_rna/preprocess_atac)")
            return np.asarray(self.input_transform(X), dtype=np.float64)
        if sp.issparse(X) and not self.dense_only:
            return X.astype(np.float64)
        return X.toarray().astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)

    def _check_input(self, X: Any) -> None:
        values = X.data if sp.issparse(X) else X
        if values.size and not np.all(np.isfinite(values)):
            raise ValueError(f"{type(self).__name__}: adata.X contains NaN or infinite values")

    def _fit_rows(self, n_obs: int, seed: int) -> np.ndarray | None:
        """Cells the estimator is fitted on: a seeded sorted subsample, or None for all cells."""
        if not self.subsampled or n_obs <= int(self.params["n_fit"]):
            return None
        from ..metrics.fidelity import subsample_indices  # one convention for seeded subsamples

        return subsample_indices(n_obs, int(self.params["n_fit"]), seed)

    # ---------------------------------------------------------------- training
    def train(self, seed: int = 0, **ignored: Any) -> None:
        """Fit the estimator (``random_state=seed``); the neural-only options are accepted and ignored.

        Sets :attr:`history` (one row: ``epoch`` 1, the estimator's diagnostics as
        ``train_<term>``, ``seconds``) and :attr:`metadata` (``train_seconds``, ``seed``,
        ``sklearn_version``, ``device`` "cpu", ``n_fit``, ``converged``).

        Parameters
        ----------
        seed
            ``random_state`` of the estimator and seed of the fitting subsample.
        **ignored
            Options of :meth:`NeuralModel.train` (``max_epochs``, ``batch_size``, ``lr``,
            ``device``, ``early_stopping``, ...), ignored.

        Raises
        ------
        TypeError
            For an option that is neither a neural training option nor ``seed``.
        ValueError
            If ``n_components`` exceeds what the data allow, or the input is invalid.
        """
        unknown = sorted(set(ignored) - NEURAL_TRAIN_OPTIONS)
        if unknown:
            raise TypeError(f"{type(self).__name__}.train got unknown option(s) {unknown}"
                            f"{nearest(unknown[0], NEURAL_TRAIN_OPTIONS | {'seed'})}; accepted: seed and "
                            f"(ignored) {sorted(NEURAL_TRAIN_OPTIONS)}")
        seed = int(seed)
        rows = self._fit_rows(self.adata.n_obs, seed)
        n_fit = self.adata.n_obs if rows is None else len(rows)
        k = int(self.params["n_components"])
        if k > min(n_fit, self.adata.n_vars):
            raise ValueError(f"{type(self).__name__}: n_components={k} exceeds min(n_cells={n_fit}, "
                             f"n_features={self.adata.n_vars}) of the data it is fitted on")
        X = self._input(self.adata, rows)
        self._check_input(X)
        self.estimator = self._make_estimator(seed)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            self._fit(X)
        seconds = time.perf_counter() - start
        not_converged = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:  # hand every warning on to the caller
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.history = pd.DataFrame([{"epoch": 1, **{f"train_{k}": float(v) for k, v in
                                                     self._history_terms().items()}, "seconds": seconds}])
        self.metadata = {"model": self.model_name, "device": "cpu", "seed": seed,
                         "sklearn_version": sklearn.__version__, "estimator": type(self.estimator).__name__,
                         "train_seconds": round(seconds, 3), "n_fit": int(n_fit), "n_obs": int(self.adata.n_obs),
                         "converged": not not_converged, "params": dict(self.params), **self._fit_metadata()}
        self.is_trained = True

    def _fit(self, X: Any) -> None:
        self.estimator.fit(X)

    def _fit_metadata(self) -> dict[str, Any]:
        return {}

    # --------------------------------------------------------------- inference
    def _require_trained(self) -> None:
        if not self.is_trained or self.estimator is None:
            raise RuntimeError(f"{type(self).__name__} is not trained; call train() first")

    def get_latent_representation(self, adata: Any | None = None, give_mean: bool = True,
                                  batch_size: int = 1024) -> np.ndarray:
        """Latent codes ``(n_obs, n_components)`` as float32 (deterministic; ``give_mean`` is ignored).

        Parameters
        ----------
        adata
            AnnData with the model's ``var_names`` (default: the training data).
        give_mean
            Ignored (the codes are deterministic).
        batch_size
            Cells transformed at once (bounded memory for dense or kernel transforms).
        """
        self._require_trained()
        adata = self.adata if adata is None else adata
        check_var_names(self.var_names, adata, f"{type(self).__name__}.get_latent_representation")
        n = adata.n_obs
        if not self.chunked_transform:
            return np.asarray(self._transform(self._input(adata)), dtype=np.float32)
        step = max(int(batch_size), 1)
        chunks = [np.asarray(self._transform(self._input(adata, np.arange(s, min(s + step, n)))), dtype=np.float32)
                  for s in range(0, n, step)]
        return np.concatenate(chunks) if chunks else np.zeros((0, int(self.params["n_components"])), np.float32)

    def get_loadings(self) -> pd.DataFrame | None:
        """Feature loadings ``(n_vars, n_components)``, index ``var_names``; None for non-linear models.

        The loadings are the generative weights: column ``j`` is how component ``j`` enters the
        reconstruction of each feature (PCA/TSVD/LSI right singular vectors, FA loadings, NMF
        ``H``, ICA mixing matrix, dictionary atoms).
        """
        self._require_trained()
        matrix = self._loading_matrix()
        if matrix is None:
            return None
        columns = [f"{self.component_prefix}{i + 1}" for i in range(matrix.shape[0])]
        return pd.DataFrame(np.asarray(matrix, dtype=np.float64).T, index=pd.Index(self.var_names), columns=columns)

    # -------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {"estimator": self.estimator}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.estimator = state["estimator"]

    def _state_files(self, directory: Path) -> None:
        joblib.dump({"sklearn_version": sklearn.__version__, **self._state()}, directory / FILES["state"])

    def _restore_state(self, directory: Path, device: str) -> None:
        path = directory / FILES["state"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {directory} a saved {self.model_name} model?")
        state = joblib.load(path)
        saved = state.get("sklearn_version")
        if saved != sklearn.__version__:
            warnings.warn(f"{path} was written with scikit-learn {saved}, loading with {sklearn.__version__}",
                          stacklevel=3)
        self._set_state(state)


# ----------------------------------------------------------------------- linear, sparse
class PCA(SklearnModel):
    """Principal component analysis (``sklearn.decomposition.PCA``) of ``adata.X``.

    On sparse input scikit-learn centres implicitly and uses ARPACK (``svd_solver="auto"``),
    so the matrix is never densified. ``svd_solver`` is passed through.
    """

    model_name = "pca"
    component_prefix = "PC"
    estimator_params = {"svd_solver": "auto"}

    def _make_estimator(self, seed: int) -> Any:
        return decomposition.PCA(n_components=self.params["n_components"], svd_solver=self.params["svd_solver"],
                                 random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        return {"explained_variance_ratio": float(self.estimator.explained_variance_ratio_.sum())}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.components_


class TruncatedSVD(SklearnModel):
    """Truncated SVD (``sklearn.decomposition.TruncatedSVD``, no centring) of sparse ``adata.X``.

    ``algorithm`` (``"arpack"``, the default, or ``"randomized"``) and ``n_iter`` (randomized power
    iterations) are passed through. ARPACK is exact: on scATAC TF-IDF, whose singular values after
    the first few are nearly equal, 7 randomized power iterations do not separate the components
    (on the Granja fixture components 4-11 differed from the exact SVD that muon, Signac and ArchR
    compute; ``tests/test_equivalence.py``).
    """

    model_name = "tsvd"
    component_prefix = "SV"
    estimator_params = {"algorithm": "arpack", "n_iter": 7}

    def _make_estimator(self, seed: int) -> Any:
        return decomposition.TruncatedSVD(n_components=self.params["n_components"],
                                          algorithm=self.params["algorithm"], n_iter=self.params["n_iter"],
                                          random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        return {"explained_variance_ratio": float(self.estimator.explained_variance_ratio_.sum())}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.components_


class NMF(SklearnModel):
    """Non-negative matrix factorisation (``sklearn.decomposition.NMF``) of sparse ``adata.X``.

    ``adata.X`` must be non-negative (log-normalised RNA or TF-IDF ATAC; never z-scored, so
    there is no ``scale`` option). The latent of any cells is ``W`` solved with the learned
    ``H`` fixed (``transform``), over all cells at once (the coordinate-descent start depends
    on the whole matrix). Settings passed through: ``init`` (``"nndsvda"``, deterministic),
    ``solver``, ``beta_loss``, ``max_iter``, ``alpha_W``, ``l1_ratio``.
    """

    model_name = "nmf"
    component_prefix = "NMF"
    scalable = False
    chunked_transform = False
    estimator_params = {"init": "nndsvda", "solver": "cd", "beta_loss": "frobenius", "max_iter": 400,
                        "alpha_W": 0.0, "l1_ratio": 0.0}

    def _check_input(self, X: Any) -> None:
        super()._check_input(X)
        values = X.data if sp.issparse(X) else X
        if values.size and values.min() < 0:
            raise ValueError(f"NMF needs non-negative input but adata.X has minimum {values.min():.4g}; use the "
                             "log-normalised (not z-scored) matrix")

    def _transform(self, X: Any) -> np.ndarray:
        self._check_input(X)
        return self.estimator.transform(X)

    def _make_estimator(self, seed: int) -> Any:
        p = self.params
        return decomposition.NMF(n_components=p["n_components"], init=p["init"], solver=p["solver"],
                                 beta_loss=p["beta_loss"], max_iter=p["max_iter"], alpha_W=p["alpha_W"],
                                 l1_ratio=p["l1_ratio"], random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        return {"reconstruction_error": float(self.estimator.reconstruction_err_),
                "n_iter": float(self.estimator.n_iter_)}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.components_


# -------------------------------------------------------------- subsampled estimators
class KernelPCA(SklearnModel):
    """Kernel PCA (``sklearn.decomposition.KernelPCA``), fitted on at most ``n_fit`` cells.

    The kernel matrix is quadratic in the cells, hence the subsample; every cell is then
    projected through its kernel with the fitted cells (kept, densified, in the saved state). Defaults: RBF kernel with
    ``gamma=None`` (1 / n_features), randomized eigensolver. No loadings (non-linear).
    """

    model_name = "kpca"
    subsampled = True
    dense_only = True  # dense kernels are 3-5x faster than sparse ones at 40% density
    component_prefix = "KPC"
    estimator_params = {"kernel": "rbf", "gamma": None, "degree": 3, "eigen_solver": "randomized"}

    def _make_estimator(self, seed: int) -> Any:
        p = self.params
        return decomposition.KernelPCA(n_components=p["n_components"], kernel=p["kernel"], gamma=p["gamma"],
                                       degree=p["degree"], eigen_solver=p["eigen_solver"], random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        eig = self.estimator.eigenvalues_
        return {"eigenvalue_sum": float(eig.sum())}


class ICA(SklearnModel):
    """Independent component analysis (``sklearn.decomposition.FastICA``), fitted on at most ``n_fit`` cells.

    FastICA works on a dense matrix, hence the subsample. Settings: ``algorithm``
    (``"parallel"``), ``fun`` (``"logcosh"``), ``max_iter`` (400), ``tol``; whitening
    ``"unit-variance"``. Loadings are the mixing matrix.
    """

    model_name = "ica"
    subsampled = True
    dense_only = True
    component_prefix = "IC"
    estimator_params = {"algorithm": "parallel", "fun": "logcosh", "max_iter": 400, "tol": 1e-4}

    def _make_estimator(self, seed: int) -> Any:
        p = self.params
        return decomposition.FastICA(n_components=p["n_components"], algorithm=p["algorithm"], fun=p["fun"],
                                     max_iter=p["max_iter"], tol=p["tol"], whiten="unit-variance",
                                     random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        return {"n_iter": float(self.estimator.n_iter_)}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.mixing_.T


class FactorAnalysis(SklearnModel):
    """Factor analysis (``sklearn.decomposition.FactorAnalysis``), fitted on at most ``n_fit`` cells.

    Dense only, hence the subsample. Settings: ``rotation`` (None, ``"varimax"``,
    ``"quartimax"``), ``max_iter`` (1000), ``tol`` (0.01), randomized SVD. Latent: posterior
    mean of the factors; loadings: the factor loading matrix.
    """

    model_name = "fa"
    subsampled = True
    dense_only = True
    component_prefix = "F"
    estimator_params = {"rotation": None, "max_iter": 1000, "tol": 1e-2}

    def _make_estimator(self, seed: int) -> Any:
        p = self.params
        return decomposition.FactorAnalysis(n_components=p["n_components"], rotation=p["rotation"],
                                            max_iter=p["max_iter"], tol=p["tol"], svd_method="randomized",
                                            random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        return {"loglike": float(self.estimator.loglike_[-1]), "n_iter": float(self.estimator.n_iter_)}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.components_


class DictionaryLearning(SklearnModel):
    """Dictionary learning (``sklearn.decomposition.MiniBatchDictionaryLearning``), fitted on <= ``n_fit`` cells.

    The mini-batch variant (Mairal et al. 2009) is used for speed; its objective is that of
    ``sklearn.decomposition.DictionaryLearning`` (sparsity ``alpha`` 1.0). Coordinate descent
    (``fit_algorithm="cd"``) and 10 epochs are the defaults: on pbmc68k they give the same
    NMI/ARI as LARS with 50 epochs in about a twentieth of the time (docs/models/baselines.md). The
    latent is the code of each cell (``transform_algorithm``, default ``"omp"`` as in
    scikit-learn); loadings are the dictionary atoms. Settings: ``alpha``, ``fit_algorithm``,
    ``batch_size`` (256), ``max_iter`` (epochs), ``transform_algorithm``, ``transform_alpha``.
    """

    model_name = "dicl"
    subsampled = True
    dense_only = True
    component_prefix = "atom"
    estimator_params = {"alpha": 1.0, "fit_algorithm": "cd", "batch_size": 256, "max_iter": 10,
                        "transform_algorithm": "omp", "transform_alpha": None}

    def _make_estimator(self, seed: int) -> Any:
        p = self.params
        return decomposition.MiniBatchDictionaryLearning(
            n_components=p["n_components"], alpha=p["alpha"], fit_algorithm=p["fit_algorithm"],
            batch_size=p["batch_size"], max_iter=p["max_iter"],
            transform_algorithm=p["transform_algorithm"], transform_alpha=p["transform_alpha"],
            random_state=seed)

    def _history_terms(self) -> dict[str, float]:
        return {"n_iter": float(self.estimator.n_iter_), "n_steps": float(self.estimator.n_steps_)}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.components_


# --------------------------------------------------------------------------------- LSI
class LSI(SklearnModel):
    """Latent semantic indexing for scATAC-seq: TF-IDF -> truncated SVD, depth component dropped.

    The TF-IDF matrix is ``adata.X`` when preprocessing wrote one (``uns["tfidf"]``, see
    :func:`geovae.pp.preprocess_atac`), else it is computed from the registered counts layer
    with :func:`geovae.preprocessing.tfidf_matrix` (``tfidf="auto"``; force either with
    ``"X"`` or ``"counts"``). ``n_components + 1`` singular vectors are computed and the first
    is dropped (``drop_first=True``) because it tracks sequencing depth rather than biology:
    Signac's vignettes keep LSI dimensions 2:30 after checking ``DepthCor`` (Stuart et al. 2021,
    Nat. Methods 18:1333), and ArchR's iterative LSI discards components whose correlation with
    depth exceeds 0.75 (Granja et al. 2021, Nat. Genet. 53:403). The correlation of every
    computed component with log depth is recorded in ``metadata["depth_correlation"]``.
    With ``scale_embeddings=True`` (Signac ``RunSVD`` default) each kept component is centred
    and scaled to unit standard deviation over the training cells; otherwise the latent is the
    left singular vectors ``U``. Other cells are folded in with the same ``V``, ``S`` and scaling
    (their TF-IDF is that of their own AnnData: ``adata.X``, or computed from its counts).
    """

    model_name = "lsi"
    scalable = False
    component_prefix = "LSI"
    estimator_params = {"drop_first": True, "scale_embeddings": True, "tfidf": "auto",
                        "algorithm": "arpack", "n_iter": 7}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_params(params)
        if params["tfidf"] not in ("auto", "X", "counts"):
            raise ValueError(f"model 'lsi': tfidf must be 'auto', 'X' or 'counts', got {params['tfidf']!r}")
        return params

    def _init(self, adata: Any, params: dict[str, Any], registry: dict[str, Any], transform: Any,
              var_names: list[str]) -> None:
        super()._init(adata, params, registry, transform, var_names)
        self.center = self.scale = None

    @property
    def n_dropped(self) -> int:
        """Number of leading singular vectors left out of the latent (1 or 0)."""
        return int(bool(self.params["drop_first"]))

    def _input(self, adata: Any, rows: np.ndarray | None = None) -> Any:
        source = self.params["tfidf"]
        if source == "auto":
            source = "X" if "tfidf" in adata.uns else "counts"
        if source == "X":
            return super()._input(adata, rows)
        from ..preprocessing import tfidf_matrix

        layer = self.registry.get("layer", "counts") or None
        counts = counts_matrix(adata, layer)
        counts = counts.tocsr() if sp.issparse(counts) else counts
        X = tfidf_matrix(counts)  # IDF needs every cell, so rows are taken after the transform
        return (X if rows is None else X[rows]).astype(np.float64)

    def _make_estimator(self, seed: int) -> Any:
        return decomposition.TruncatedSVD(n_components=self.params["n_components"] + self.n_dropped,
                                          algorithm=self.params["algorithm"], n_iter=self.params["n_iter"],
                                          random_state=seed)

    def _fit(self, X: Any) -> None:
        k = self.params["n_components"] + self.n_dropped
        if k > min(X.shape) - (self.params["algorithm"] == "arpack"):
            raise ValueError(f"LSI: n_components + drop_first = {k} exceeds what a {X.shape} TF-IDF matrix allows")
        full = self.estimator.fit_transform(X) / self.estimator.singular_values_  # U
        depth = self._log_depth(self.adata)
        self.depth_correlation = [float(np.corrcoef(full[:, j], depth)[0, 1]) for j in range(full.shape[1])]
        kept = full[:, self.n_dropped:]
        if self.params["scale_embeddings"]:
            self.center, self.scale = kept.mean(axis=0), kept.std(axis=0, ddof=1)
        else:
            self.center, self.scale = np.zeros(kept.shape[1]), np.ones(kept.shape[1])

    def _log_depth(self, adata: Any) -> np.ndarray:
        counts = counts_matrix(adata, self.registry.get("layer", "counts") or None)
        return np.log1p(np.asarray(counts.sum(axis=1), dtype=np.float64).ravel())

    def _fit_metadata(self) -> dict[str, Any]:
        return {"depth_correlation": self.depth_correlation, "n_dropped": self.n_dropped}

    def _transform(self, X: Any) -> np.ndarray:
        u = self.estimator.transform(X) / self.estimator.singular_values_
        return (u[:, self.n_dropped:] - self.center) / self.scale

    def get_latent_representation(self, adata: Any | None = None, give_mean: bool = True,
                                  batch_size: int = 1024) -> np.ndarray:
        """Latent codes ``(n_obs, n_components)``: kept LSI components (see the class docstring).

        Parameters
        ----------
        adata
            AnnData with the model's ``var_names`` (default: the training data).
        give_mean, batch_size
            Ignored (one sparse product).
        """
        self._require_trained()
        adata = self.adata if adata is None else adata
        check_var_names(self.var_names, adata, "LSI.get_latent_representation")
        return np.asarray(self._transform(self._input(adata)), dtype=np.float32)

    def _history_terms(self) -> dict[str, float]:
        return {"explained_variance_ratio": float(self.estimator.explained_variance_ratio_[self.n_dropped:].sum())}

    def _loading_matrix(self) -> np.ndarray:
        return self.estimator.components_[self.n_dropped:]

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "center": self.center, "scale": self.scale}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.center, self.scale = state["center"], state["scale"]
