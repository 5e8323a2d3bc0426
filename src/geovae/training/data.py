"""Minibatches from (sparse) AnnData matrices, densified one minibatch at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

__all__ = ["InputTransform", "AnnDataBatches", "input_transform_from_adata"]


def _to_dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _as_row_indexable(M: Any) -> Any:
    """CSR for sparse input (cheap row slicing); dense arrays unchanged."""
    if sp.issparse(M):
        return M if M.format == "csr" else M.tocsr()
    return np.asarray(M)


def _local_model_input(
    X_batch: Any, mean: np.ndarray | None, std: np.ndarray | None, clip: float | None
) -> np.ndarray:
    """Densify, optionally z-score (std 0 -> 1) and clip to +-clip, as float32."""
    dense = _to_dense(X_batch).astype(np.float32, copy=True)
    if mean is not None and std is not None:
        safe_std = np.where(np.asarray(std) > 0, std, 1.0).astype(np.float32)
        dense = (dense - np.asarray(mean, dtype=np.float32)) / safe_std
    if clip is not None:
        np.clip(dense, -clip, clip, out=dense)
    return dense


@dataclass
class InputTransform:
    """How a minibatch of ``adata.X`` becomes model input (see the pipeline conventions).

    Attributes
    ----------
    mean, std
        Per-feature statistics (``var["input_mean"]``, ``var["input_std"]``); used only
        when ``center_scale`` is True. A zero or non-finite std is replaced by 1.
    center_scale
        Z-score the minibatch.
    clip
        Clip to ``[-clip, clip]`` after scaling (None: no clipping).
    """

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    center_scale: bool = False
    clip: float | None = None

    def __post_init__(self) -> None:
        if self.center_scale and (self.mean is None or self.std is None):
            raise ValueError("InputTransform(center_scale=True) needs both mean and std")
        if self.mean is not None:
            self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        if self.std is not None:
            std = np.asarray(self.std, dtype=np.float32).reshape(-1)
            self.std = np.where(np.isfinite(std) & (std > 0), std, np.float32(1.0)).astype(np.float32)

    def __call__(self, X_batch: Any) -> np.ndarray:
        """Dense float32 model input for the rows ``X_batch`` (sparse or dense)."""
        mean, std = (self.mean, self.std) if self.center_scale else (None, None)
        try:  # the preprocessing helper, when present, is the single source of truth
            from geovae.preprocessing.input import model_input
        except ImportError:
            return _local_model_input(X_batch, mean, std, self.clip)
        return np.asarray(model_input(X_batch, mean, std, self.clip), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly settings (statistics excluded)."""
        return {"center_scale": bool(self.center_scale), "clip": None if self.clip is None else float(self.clip)}


def input_transform_from_adata(adata: Any) -> InputTransform:
    """Build the :class:`InputTransform` recorded by preprocessing in ``adata``.

    Uses ``adata.uns["geovae_input"]`` (``center_scale``, ``clip``) and
    ``adata.var["input_mean"]``/``["input_std"]``. Without ``uns["geovae_input"]`` the
    input is ``adata.X`` as-is (identity transform).

    Parameters
    ----------
    adata
        An AnnData object.

    Returns
    -------
    InputTransform
    """
    spec: Mapping[str, Any] | None = adata.uns.get("geovae_input")
    if spec is None:
        return InputTransform()
    center_scale = bool(spec.get("center_scale", False))
    clip = spec.get("clip")
    clip = None if clip is None or (isinstance(clip, float) and np.isnan(clip)) else float(clip)
    mean = std = None
    if center_scale:
        missing = [c for c in ("input_mean", "input_std") if c not in adata.var.columns]
        if missing:
            raise KeyError(
                f"adata.uns['geovae_input'] asks for center_scale but adata.var lacks {missing}; "
                "re-run preprocessing or drop uns['geovae_input'] to use X as-is"
            )
        mean = adata.var["input_mean"].to_numpy(dtype=np.float32)
        std = adata.var["input_std"].to_numpy(dtype=np.float32)
    return InputTransform(mean=mean, std=std, center_scale=center_scale, clip=clip)


class AnnDataBatches:
    """Row-indexed minibatch source over a model-input matrix and a counts matrix.

    Both matrices stay as given (CSR recommended); only the requested rows are densified.

    Parameters
    ----------
    X
        Model-input matrix ``(n_obs, n_vars)`` (e.g. ``adata.X``).
    counts
        Raw counts ``(n_obs, n_vars)`` (e.g. ``adata.layers["counts"]``); None for
        inference-only use.
    transform
        Turns rows of ``X`` into model input.
    obs_arrays
        Extra per-cell arrays ``(n_obs, ...)`` returned under their key with every batch
        (e.g. ``{"spatial": adata.obsm["spatial"]}``), as float32.
    """

    def __init__(self, X: Any, counts: Any | None, transform: InputTransform,
                 obs_arrays: Mapping[str, np.ndarray] | None = None) -> None:
        self.X = _as_row_indexable(X)
        self.counts = None if counts is None else _as_row_indexable(counts)
        self.transform = transform
        self.library: np.ndarray | None = None
        if counts is not None:
            if counts.shape != X.shape:
                raise ValueError(f"counts shape {counts.shape} differs from X shape {X.shape}")
            self.library = np.asarray(self.counts.sum(axis=1), dtype=np.float32).reshape(-1, 1)
        self.obs_arrays = {k: np.asarray(v, dtype=np.float32) for k, v in (obs_arrays or {}).items()}
        for key, value in self.obs_arrays.items():
            if value.shape[0] != X.shape[0]:
                raise ValueError(f"obs array {key!r} has {value.shape[0]} rows, X has {X.shape[0]}")

    @property
    def n_obs(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    def get(self, idx: np.ndarray, with_counts: bool = True) -> dict[str, np.ndarray]:
        """Dense float32 arrays ``x`` and (if ``with_counts``) ``counts`` and ``library`` for rows ``idx``."""
        out = {"x": self.transform(self.X[idx])}
        if with_counts:
            if self.counts is None:
                raise RuntimeError("this AnnDataBatches has no counts matrix")
            out["counts"] = _to_dense(self.counts[idx]).astype(np.float32, copy=False)
            out["library"] = self.library[idx]
        for key, value in self.obs_arrays.items():
            out[key] = value[idx]
        return out
