"""Model input: per-feature z-scoring and clipping applied one minibatch at a time.

The preprocessed AnnData keeps ``.X`` sparse (log1p-normalized RNA or TF-IDF
ATAC). The statistics needed to standardize it are stored in
``.var["input_mean"]`` / ``.var["input_std"]`` and the recipe in
``.uns["geovae_input"]``; the model's data loader densifies only the rows of a
minibatch with :func:`model_input` (LiVAE paper, section 2.6.2: log1p, then
z-score with outliers clipped at +-10 standard deviations).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from numpy.typing import ArrayLike

from ._sparse import as_csr, col_mean_var

#: Standard deviations below this are treated as 0 and replaced by 1 (constant feature).
STD_FLOOR = 1e-8


def feature_moments(X: ArrayLike | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and population standard deviation, computed sparsely.

    Parameters
    ----------
    X
        Cells x features matrix (sparse or dense).

    Returns
    -------
    mean, std
        float32 arrays. A constant feature (std < ``STD_FLOOR``) gets std 1 so
        that z-scoring maps it to 0 instead of dividing by zero.
    """
    mean, var = col_mean_var(as_csr(X))
    std = np.sqrt(var)
    std[std < STD_FLOOR] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def model_input(
    X_batch: ArrayLike | sp.spmatrix,
    mean: ArrayLike | None = None,
    std: ArrayLike | None = None,
    clip: float | None = None,
) -> np.ndarray:
    """Dense float32 model input for one minibatch: ``clip((x - mean) / std)``.

    Parameters
    ----------
    X_batch
        Rows of the normalized matrix (``adata.X[idx]``), sparse or dense.
    mean, std
        Per-feature statistics (``adata.var["input_mean"]``, ``adata.var["input_std"]``).
        Both ``None`` means no centering/scaling (``center_scale=False``).
    clip
        Symmetric bound: values are clipped to ``[-clip, clip]``; ``None`` disables clipping.

    Returns
    -------
    numpy.ndarray
        ``(n_batch, n_features)`` float32 array.
    """
    x = X_batch.toarray() if sp.issparse(X_batch) else np.array(X_batch, copy=True)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if (mean is None) != (std is None):
        raise ValueError("model_input: pass both mean and std, or neither")
    if mean is not None:
        m = np.asarray(mean, dtype=np.float32).reshape(-1)
        s = np.asarray(std, dtype=np.float32).reshape(-1)
        if m.shape[0] != x.shape[1] or s.shape[0] != x.shape[1]:
            raise ValueError(
                f"model_input: batch has {x.shape[1]} features but mean/std have "
                f"{m.shape[0]}/{s.shape[0]}"
            )
        if np.any(s <= 0):
            raise ValueError("model_input: std must be strictly positive")
        x -= m
        x /= s
    if clip is not None:
        if clip <= 0:
            raise ValueError(f"model_input: clip must be positive, got {clip}")
        np.clip(x, -clip, clip, out=x)
    return x


def set_model_input(
    adata: AnnData,
    modality: Literal["rna", "atac"],
    center_scale: bool = True,
    clip: float | None = 10.0,
) -> AnnData:
    """Record the model-input recipe on a preprocessed AnnData (in place).

    Writes ``var["input_mean"]``, ``var["input_std"]`` (float32, from the sparse
    ``adata.X``) and ``uns["geovae_input"] = {"modality", "center_scale", "clip"}``.

    Parameters
    ----------
    adata
        AnnData whose ``.X`` is the normalized (still sparse) input.
    modality
        ``"rna"`` or ``"atac"``.
    center_scale
        Whether the loader z-scores each feature.
    clip
        Symmetric clipping bound in standard deviations (``None``: no clipping).

    Returns
    -------
    AnnData
        The same object, for chaining.
    """
    if modality not in ("rna", "atac"):
        raise ValueError(f"modality must be 'rna' or 'atac', got {modality!r}")
    mean, std = feature_moments(adata.X)
    adata.var["input_mean"] = mean
    adata.var["input_std"] = std
    adata.uns["geovae_input"] = {
        "modality": modality,
        "center_scale": bool(center_scale),
        "clip": None if clip is None else float(clip),
    }
    return adata


def batch_input(adata: AnnData, index: ArrayLike | slice) -> np.ndarray:
    """Model input for the cells ``index`` of a preprocessed AnnData.

    Reads the recipe from ``adata.uns["geovae_input"]`` and the statistics from
    ``adata.var``; see :func:`model_input`.

    Parameters
    ----------
    adata
        Preprocessed AnnData (output of ``preprocess_rna``/``preprocess_atac``).
    index
        Integer positions, boolean mask or slice of the cells.

    Returns
    -------
    numpy.ndarray
        Dense float32 ``(n_batch, n_features)`` array.
    """
    if "geovae_input" not in adata.uns:
        raise KeyError(
            "adata.uns['geovae_input'] is missing: run preprocess_rna/preprocess_atac first"
        )
    spec = adata.uns["geovae_input"]
    clip = spec.get("clip")
    if bool(spec.get("center_scale", False)):
        for key in ("input_mean", "input_std"):
            if key not in adata.var:
                raise KeyError(f"adata.var['{key}'] is missing: run set_model_input first")
        mean, std = adata.var["input_mean"].to_numpy(), adata.var["input_std"].to_numpy()
    else:
        mean = std = None
    return model_input(adata.X[index], mean, std, None if clip is None else float(clip))
