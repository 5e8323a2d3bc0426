"""Shared minibatch training loop for geovae models.

A trainable module only needs ``module.loss(batch) -> dict[str, Tensor]`` with a
``"total"`` key (every entry is logged per epoch) and may define
``on_epoch_start(epoch, max_epochs)`` (called before each epoch, 1-based); batches come from any object with
``n_obs`` and ``get(indices) -> dict[str, np.ndarray]`` (e.g.
:class:`geovae.training.data.AnnDataBatches`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "BatchSource",
    "resolve_device",
    "device_info",
    "seed_everything",
    "split_indices",
    "train_module",
    "geovae_version",
]

log = logging.getLogger("geovae.training")


class BatchSource(Protocol):
    """Anything that yields dense numpy minibatches by row index."""

    @property
    def n_obs(self) -> int: ...

    def get(self, idx: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class TrainingConfig:
    """Settings of :func:`train_module` (defaults: LiVAE paper section 2.7 where stated).

    Attributes
    ----------
    max_epochs, batch_size, lr
        Epoch cap, minibatch size (paper: 128) and Adam learning rate.
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    early_stopping, validation_fraction, patience, min_delta
        Stop when the monitored loss (validation ``total``; training ``total`` if the
        validation set is empty) has not improved by more than ``min_delta`` for
        ``patience`` epochs, then restore the best weights.
    seed
        Seeds python, numpy and torch; also the validation split and shuffling.
    progress_bar
        Show a tqdm bar over epochs.
    grad_clip
        Max global gradient norm (paper: 1.0); None disables clipping.
    use_amp
        Mixed precision on CUDA (bfloat16 when supported, else float16 with a grad
        scaler). Ignored on CPU.
    weight_decay
        Adam weight decay.
    """

    max_epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    device: str = "auto"
    early_stopping: bool = True
    validation_fraction: float = 0.1
    patience: int = 20
    min_delta: float = 0.0
    seed: int = 0
    progress_bar: bool = True
    grad_clip: float | None = 1.0
    use_amp: bool = True
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")


@dataclass
class TrainingResult:
    """Output of :func:`train_module`: per-epoch ``history`` and run ``metadata``."""

    history: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)


def geovae_version() -> str:
    """Installed geovae version (``"unknown"`` when run from a source tree without metadata)."""
    try:
        from importlib.metadata import version

        return version("geovae")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        import geovae

        return str(getattr(geovae, "__version__", "unknown"))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda[:N]"`` into a :class:`torch.device`.

    Raises
    ------
    RuntimeError
        If CUDA is requested but not available.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but torch.cuda.is_available() is False")
    return dev


def device_info(device: torch.device) -> dict[str, Any]:
    """Name of the device and, on CUDA, its total memory in GiB."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return {"device": str(device), "device_name": props.name,
                "gpu_memory_gb": round(props.total_memory / 2**30, 2)}
    import platform

    return {"device": "cpu", "device_name": platform.processor() or platform.machine() or "cpu",
            "gpu_memory_gb": None}


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def split_indices(n_obs: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of ``range(n_obs)``.

    The validation set has ``round(validation_fraction * n_obs)`` cells (at least one
    when the fraction is positive and ``n_obs >= 2``). Both index arrays are sorted.
    """
    if n_obs < 1:
        raise ValueError("cannot train on 0 cells")
    n_val = int(round(validation_fraction * n_obs))
    if validation_fraction > 0 and n_obs >= 2:
        n_val = min(max(n_val, 1), n_obs - 1)
    else:
        n_val = 0
    perm = np.random.default_rng(seed).permutation(n_obs)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _to_device(arrays: dict[str, np.ndarray], device: torch.device, pin: bool) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        if pin:
            t = t.pin_memory()
        out[key] = t.to(device, non_blocking=pin)
    return out


def _run_epoch(
    module: nn.Module,
    data: BatchSource,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    grad_clip: float | None = None,
) -> dict[str, float]:
    """One pass over ``indices``; trains when ``optimizer`` is given. Returns cell-weighted mean terms."""
    training = optimizer is not None
    module.train(training)
    pin = device.type == "cuda"
    sums: dict[str, torch.Tensor] = {}
    n_seen = 0
    grad_ctx = contextlib.nullcontext() if training else torch.no_grad()
    with grad_ctx:
        for start in range(0, len(indices), batch_size):
            idx = np.sort(indices[start:start + batch_size])  # sorted rows: faster CSR slicing
            batch = _to_device(data.get(idx), device, pin)
            amp_ctx = (torch.autocast(device_type="cuda", dtype=amp_dtype)
                       if amp_dtype is not None else contextlib.nullcontext())
            with amp_ctx:
                terms = module.loss(batch)
            total = terms["total"]
            if not torch.isfinite(total):
                detail = {k: float(v.detach()) for k, v in terms.items()}
                raise FloatingPointError(f"non-finite loss {detail}; try a lower learning rate")
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.unscale_(optimizer)
                else:
                    total.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            n = len(idx)
            for key, value in terms.items():
                contrib = value.detach().float() * n
                sums[key] = sums[key] + contrib if key in sums else contrib
            n_seen += n
    return {key: float(value) / n_seen for key, value in sums.items()}


def train_module(module: nn.Module, data: BatchSource, config: TrainingConfig | None = None) -> TrainingResult:
    """Train ``module`` with Adam on minibatches of ``data``.

    Seeds everything from ``config.seed`` (on CPU also enables torch's deterministic
    algorithms for the duration), splits off a seeded validation set, clips gradients,
    early-stops on the monitored loss and restores the best weights. The module is left
    on the training device, in eval mode.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` with ``loss(batch) -> dict[str, Tensor]`` (key ``"total"``).
    data
        Minibatch source (see :class:`BatchSource`).
    config
        Training settings; defaults to ``TrainingConfig()``.

    Returns
    -------
    TrainingResult
        ``history``: one row per epoch with ``epoch``, ``train_<term>``, ``val_<term>``
        (when there is a validation set) and ``seconds``; ``metadata``: device,
        device_name, gpu_memory_gb, torch/geovae versions, seed, n_epochs, best_epoch,
        stopped_early, train_seconds, n_train, n_val, amp and the config.
    """
    cfg = config or TrainingConfig()
    device = resolve_device(cfg.device)
    info = device_info(device)
    log.info("training on %s (%s)%s", info["device"], info["device_name"],
             f", {info['gpu_memory_gb']} GiB" if info["gpu_memory_gb"] else "")

    amp_dtype: torch.dtype | None = None
    scaler = None
    if device.type == "cuda" and cfg.use_amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if amp_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")

    seed_everything(cfg.seed)
    train_idx, val_idx = split_indices(data.n_obs, cfg.validation_fraction, cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    module.to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    rows: list[dict[str, float]] = []
    best_loss, best_epoch, best_state, bad_epochs = np.inf, 0, None, 0
    stopped_early = False
    t_start = time.perf_counter()
    with _deterministic(device.type == "cpu"):
        bar = tqdm(range(1, cfg.max_epochs + 1), desc="training", disable=not cfg.progress_bar, leave=False)
        for epoch in bar:
            t_epoch = time.perf_counter()
            if hasattr(module, "on_epoch_start"):  # annealing schedules (capacity, warm-up)
                module.on_epoch_start(epoch, cfg.max_epochs)
            train_terms = _run_epoch(module, data, rng.permutation(train_idx), cfg.batch_size, device,
                                     amp_dtype, optimizer, scaler, cfg.grad_clip)
            row: dict[str, float] = {"epoch": epoch}
            row.update({f"train_{k}": v for k, v in train_terms.items()})
            monitored = train_terms["total"]
            if len(val_idx):
                val_terms = _run_epoch(module, data, val_idx, max(cfg.batch_size, 1024), device, amp_dtype)
                row.update({f"val_{k}": v for k, v in val_terms.items()})
                monitored = val_terms["total"]
            row["seconds"] = time.perf_counter() - t_epoch
            rows.append(row)
            bar.set_postfix(loss=f"{monitored:.2f}")

            if monitored < best_loss - cfg.min_delta:
                best_loss, best_epoch, bad_epochs = monitored, epoch, 0
                if cfg.early_stopping:
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                bad_epochs += 1
                if cfg.early_stopping and bad_epochs >= cfg.patience:
                    stopped_early = True
                    break
        bar.close()
    if cfg.early_stopping and best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    train_seconds = time.perf_counter() - t_start

    history = pd.DataFrame(rows)
    metadata: dict[str, Any] = {
        **info,
        "torch_version": torch.__version__,
        "geovae_version": geovae_version(),
        "seed": int(cfg.seed),
        "n_epochs": len(rows),
        "best_epoch": int(best_epoch),
        "best_loss": float(best_loss),
        "stopped_early": stopped_early,
        "train_seconds": round(train_seconds, 3),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
        "config": asdict(cfg),
    }
    log.info("trained %d epochs in %.1f s (best epoch %d, stopped early: %s)",
             len(rows), train_seconds, best_epoch, stopped_early)
    return TrainingResult(history=history, metadata=metadata)
