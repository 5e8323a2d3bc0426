"""Minibatches from (sparse) AnnData matrices, densified one minibatch at a time.

Two sources share one batch layout (``x``, ``counts``, ``library``, the non-zero counts as
``counts_nz_index``/``counts_nz_value`` and any per-cell ``obs_arrays``):

* :class:`AnnDataBatches` (numpy, any row order; used for inference and as the reference);
* :class:`DeviceBatches` (torch, built once per training run by :meth:`AnnDataBatches.on_device`):
  the CSR arrays live on the training device and a minibatch is gathered and densified there
  from a permutation tensor, so nothing per step depends on host work proportional to the
  data and nothing waits on the device. Model input that fits ``dense_budget_bytes`` is
  transformed once and kept dense; otherwise it is densified and transformed per minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["InputTransform", "AnnDataBatches", "DeviceBatches", "LazyBatch", "input_transform_from_adata",
           "NZ_INDEX", "NZ_VALUE", "NZ_FEATURE", "NZ_INTEGER", "DEFAULT_DENSE_BUDGET_BYTES"]

#: Batch keys of the non-zero counts: flat row-major positions in the ``(n, n_vars)`` batch
#: (int64) and their values (float32); see
#: :func:`geovae.distributions.likelihoods.sparse_log_likelihood_sum`.
NZ_INDEX = "counts_nz_index"
NZ_VALUE = "counts_nz_value"
#: Feature (column) of each non-zero count (int64): ``NZ_INDEX % n_vars``, taken from the CSR
#: column indices so the likelihood need not recompute it.
NZ_FEATURE = "counts_nz_feature"
#: One-element bool tensor on the CPU: True when every non-zero count of the dataset is a positive
#: integer (checked once per dataset), so the likelihood can skip checking each minibatch.
NZ_INTEGER = "counts_nz_integer"


def _positive_integers(values: np.ndarray, chunk: int = 1 << 22) -> bool:
    """Whether every entry of ``values`` is an integer >= 1 (the non-zeros of integer counts).

    Checked in chunks, so the temporaries stay small for atlas-sized data.
    """
    values = np.asarray(values).reshape(-1)
    for start in range(0, values.size, chunk):
        part = values[start:start + chunk]
        if not (np.all(part >= 1) and np.all(part == np.round(part))):
            return False
    return True


#: Model input up to this size (bytes, float32 cells x features) is transformed once and kept
#: dense on the CPU (e.g. 32,000 cells x 2,000 genes); larger data is densified and z-scored per
#: minibatch. A fixed cap, so training memory stays bounded as the data grows. Measured on
#: 20,000 x 2,000 simulated counts (1 thread): building a minibatch 1.5 ms from CSR, 0.8 ms
#: from the dense copy, of a ~14 ms LiVAE step.
DEFAULT_DENSE_BUDGET_BYTES = 256 * 2**20


class LazyBatch(dict):
    """A minibatch dict whose entries in ``lazy`` are built on first access.

    Behaves as a dict holding every key: ``batch[key]``, ``key in batch`` and ``get`` see the
    lazy entries (building them on access), iteration and ``len`` build them all. Lets a loss
    that never reads an entry (e.g. the dense ``counts`` when the likelihood works from the
    non-zeros) skip building it.
    """

    def __init__(self, values: Mapping[str, torch.Tensor], lazy: Mapping[str, Callable[[], torch.Tensor]]) -> None:
        super().__init__(values)
        self._lazy = dict(lazy)

    def __missing__(self, key: str) -> torch.Tensor:
        if key not in self._lazy:
            raise KeyError(key)
        value = self[key] = self._lazy.pop(key)()
        return value

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._lazy

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self else default

    def _build_all(self) -> None:
        for key in list(self._lazy):
            self[key]  # noqa: B018 - builds and stores the entry

    def __iter__(self) -> Iterator[str]:
        self._build_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._lazy)

    def keys(self):  # type: ignore[override]
        self._build_all()
        return dict.keys(self)

    def items(self):  # type: ignore[override]
        self._build_all()
        return dict.items(self)

    def values(self):  # type: ignore[override]
        self._build_all()
        return dict.values(self)


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

    def apply_torch(self, dense: torch.Tensor) -> torch.Tensor:
        """The same transform on a dense float32 tensor (in place when possible), on its device.

        Gives the same numbers as :meth:`__call__`: ``(x - mean) / std`` in float32, then clipping.
        """
        if self.center_scale:
            mean = torch.as_tensor(self.mean, device=dense.device)
            std = torch.as_tensor(self.std, device=dense.device)
            dense = dense.sub_(mean).div_(std)
        if self.clip is not None:
            dense = dense.clamp_(-self.clip, self.clip)
        return dense

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
        """Arrays for rows ``idx`` (in that order).

        Returns dense float32 ``x``; with ``with_counts`` also ``counts``, ``library``, the
        non-zero counts (:data:`NZ_INDEX`, :data:`NZ_VALUE`, :data:`NZ_FEATURE`) and
        :data:`NZ_INTEGER`; plus the ``obs_arrays``.
        """
        out = {"x": self.transform(self.X[idx])}
        if with_counts:
            if self.counts is None:
                raise RuntimeError("this AnnDataBatches has no counts matrix")
            rows = self.counts[idx]
            out[NZ_INTEGER] = np.array([self._counts_positive_integers()])
            if sp.issparse(rows):
                rows = rows.tocsr()
                rows.sum_duplicates()
                out["counts"] = rows.toarray().astype(np.float32, copy=False)
                row_of = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
                keep = rows.data != 0
                out[NZ_INDEX] = (row_of * rows.shape[1] + rows.indices)[keep].astype(np.int64)
                out[NZ_VALUE] = rows.data[keep].astype(np.float32)
                out[NZ_FEATURE] = rows.indices[keep].astype(np.int64)
            else:
                out["counts"] = np.asarray(rows, dtype=np.float32)
                flat = out["counts"].reshape(-1)
                out[NZ_INDEX] = np.flatnonzero(flat).astype(np.int64)
                out[NZ_VALUE] = flat[out[NZ_INDEX]]
                out[NZ_FEATURE] = out[NZ_INDEX] % rows.shape[1]
            out["library"] = self.library[idx]
        for key, value in self.obs_arrays.items():
            out[key] = value[idx]
        return out

    def _counts_positive_integers(self) -> bool:
        """:func:`_positive_integers` of the counts' non-zeros, computed once."""
        if "_integer_counts" not in self.__dict__:
            if sp.issparse(self.counts):
                data = self.counts.data
                data = data[data != 0] if (data == 0).any() else data
            else:
                data = self.counts[self.counts != 0]
            self._integer_counts = _positive_integers(data)
        return self._integer_counts

    def on_device(self, device: torch.device | str,
                  dense_budget_bytes: int | None = None) -> "DeviceBatches":
        """A :class:`DeviceBatches` over the same data on ``device`` (built once, then cached).

        Parameters
        ----------
        device
            Training device.
        dense_budget_bytes
            Keep the transformed model input dense on the device when it needs at most
            this many bytes. Default: :data:`DEFAULT_DENSE_BUDGET_BYTES` (256 MiB) on CPU, a quarter
            of the free GPU memory on CUDA.
        """
        device = torch.device(device)
        key = (str(device), dense_budget_bytes)
        cache = self.__dict__.setdefault("_device_cache", {})
        if key not in cache:
            cache.clear()  # one device copy at a time
            cache[key] = DeviceBatches(self, device, dense_budget_bytes)
        return cache[key]


def _default_dense_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 4)
    return DEFAULT_DENSE_BUDGET_BYTES


class _DeviceCSR:
    """A CSR matrix as torch tensors on a device, gathered by (device) row indices.

    The row lengths are also kept on the host, so the number of non-zeros of a minibatch
    is known without asking the device (no synchronisation).
    """

    def __init__(self, M: sp.csr_matrix, device: torch.device) -> None:
        if not M.has_canonical_format or (M.data == 0).any():
            M = M.copy()  # never modify the caller's matrix
            M.sum_duplicates()
            M.eliminate_zeros()
        self.shape = M.shape
        self.lengths_host = np.diff(M.indptr).astype(np.int64)
        pin = device.type == "cuda"

        def put(a: np.ndarray, dtype: np.dtype) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))  # shares memory on CPU
            return t.pin_memory().to(device, non_blocking=True) if pin else t.to(device)

        self.starts = put(M.indptr[:-1], np.int64)
        self.lengths = put(self.lengths_host, np.int64)
        self.indices = put(M.indices, np.int64 if M.nnz >= 2**31 else np.int32)
        self.data = put(M.data, np.float32)

    def gather(self, rows: torch.Tensor, nnz: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat positions (row-major in a ``(len(rows), n_cols)`` block), values and columns of ``rows``.

        ``nnz`` must be the total number of non-zeros of ``rows`` (from :attr:`lengths_host`).
        """
        lengths = self.lengths.index_select(0, rows)
        first = torch.cumsum(lengths, 0) - lengths  # position of each row's first entry in the output
        # output position p of row r reads the source entry starts[r] + (p - first[r])
        shift = torch.repeat_interleave(self.starts.index_select(0, rows) - first, lengths, output_size=nnz)
        src = torch.arange(nnz, device=rows.device).add_(shift)
        columns = self.indices.index_select(0, src).long()
        row_base = torch.arange(len(rows), device=rows.device) * self.shape[1]
        flat = torch.repeat_interleave(row_base, lengths, output_size=nnz).add_(columns)
        return flat, self.data.index_select(0, src), columns

    def dense(self, n_rows: int, flat: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Scatter ``values`` at the (unique) ``flat`` positions of a zero ``(n_rows, n_cols)`` tensor."""
        out = torch.zeros(n_rows * self.shape[1], dtype=torch.float32, device=values.device)
        return out.scatter_(0, flat, values).view(n_rows, self.shape[1])


class DeviceBatches:
    """Device-resident minibatches of an :class:`AnnDataBatches` (see the module docstring).

    A batch has the same keys and values as ``AnnDataBatches.get(idx)`` (as tensors).

    Parameters
    ----------
    source
        The data (needs its counts matrix).
    device
        Where the tensors live and batches are built.
    dense_budget_bytes
        See :meth:`AnnDataBatches.on_device`.
    """

    def __init__(self, source: AnnDataBatches, device: torch.device,
                 dense_budget_bytes: int | None = None) -> None:
        if source.counts is None:
            raise RuntimeError("DeviceBatches needs an AnnDataBatches with a counts matrix")
        self.device = torch.device(device)
        self.n_obs = source.n_obs
        self.n_vars = int(source.X.shape[1])
        self.transform = source.transform
        budget = _default_dense_budget(self.device) if dense_budget_bytes is None else dense_budget_bytes
        self.x_dense: torch.Tensor | None = None
        self.x_csr: _DeviceCSR | None = None
        X = sp.csr_matrix(source.X, dtype=np.float32)
        if 4 * self.n_obs * self.n_vars <= budget:  # transform once, keep dense on the device
            self.x_dense = torch.empty((self.n_obs, self.n_vars), dtype=torch.float32, device=self.device)
            for start in range(0, self.n_obs, 4096):  # densified by scipy, transformed by the same torch code
                rows = torch.from_numpy(X[start:start + 4096].toarray()).to(self.device)
                self.x_dense[start:start + len(rows)] = self.transform.apply_torch(rows)
        else:
            self.x_csr = _DeviceCSR(X, self.device)
        self.counts = _DeviceCSR(sp.csr_matrix(source.counts, dtype=np.float32), self.device)
        self.library = torch.from_numpy(source.library).to(self.device)
        self.integer_flag = torch.tensor([source._counts_positive_integers()])  # stays on the CPU
        self.obs_arrays = {k: torch.from_numpy(v).to(self.device) for k, v in source.obs_arrays.items()}

    def _x_from_csr(self, host_rows: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
        nnz = int(self.x_csr.lengths_host[host_rows].sum())
        flat, values, _ = self.x_csr.gather(rows, nnz)
        return self.transform.apply_torch(self.x_csr.dense(len(host_rows), flat, values))

    def permutation(self, order: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Host and device copies of a row order (one transfer per epoch)."""
        host = np.asarray(order, dtype=np.int64)
        t = torch.from_numpy(host)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        return host, t

    def batch(self, host_rows: np.ndarray, rows: torch.Tensor) -> LazyBatch:
        """The minibatch of ``rows`` (device tensor; ``host_rows`` is the same on the host).

        The dense ``counts`` are built only when read (:class:`LazyBatch`).
        """
        n = len(host_rows)
        x = self.x_dense.index_select(0, rows) if self.x_dense is not None else self._x_from_csr(host_rows, rows)
        nnz = int(self.counts.lengths_host[host_rows].sum())
        flat, values, columns = self.counts.gather(rows, nnz)
        out = {"x": x, "library": self.library.index_select(0, rows), NZ_INDEX: flat, NZ_VALUE: values,
               NZ_FEATURE: columns, NZ_INTEGER: self.integer_flag}
        for key, value in self.obs_arrays.items():
            out[key] = value.index_select(0, rows)
        return LazyBatch(out, {"counts": lambda: self.counts.dense(n, flat, values)})
