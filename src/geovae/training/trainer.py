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
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..nn.onednn_linear import matmul_backend
from ..options import TrainingConfig, training_config
from .checkpoint import capture_rng, clone_state, fingerprint, load_checkpoint, restore_rng, save_checkpoint
from .data import AnnDataBatches
from .fused_adam import FusedAdam, fused_kernel_takes

__all__ = [
    "TrainingConfig",
    "training_config",
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

#: What the loop steps: geovae's fused Adam, or torch's Adam where that one does not apply.
Optimizer = torch.optim.Optimizer | FusedAdam


class BatchSource(Protocol):
    """Anything that yields dense numpy minibatches by row index."""

    @property
    def n_obs(self) -> int: ...

    def get(self, idx: np.ndarray) -> dict[str, np.ndarray]: ...


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


def cpu_bf16_supported() -> bool:
    """Whether oneDNN runs bfloat16 matrix products natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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
    """torch's deterministic algorithms for the duration, without filling new tensors with NaN.

    ``use_deterministic_algorithms`` also turns on
    ``torch.utils.deterministic.fill_uninitialized_memory``, a debugging aid that writes every
    freshly allocated tensor once more (0.35 ms of a 12 ms LiVAE step on the CPU); it does not
    change the results of code that never reads uninitialised memory, so it stays off here.
    """
    import torch.utils.deterministic as det

    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_fill = det.fill_uninitialized_memory
    if enabled:
        _set_deterministic_algorithms(True, warn_only=True)
        det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        _set_deterministic_algorithms(previous, warn_only=previous_warn)
        det.fill_uninitialized_memory = previous_fill


def _set_deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """:func:`torch.use_deterministic_algorithms`, without loading ``torch._inductor`` for it.

    The public function also sets the compiler's ``deterministic`` option, and importing the
    compiler's configuration imports ``torch._dynamo`` (~1 s in every training process). The loop
    compiles nothing, so the kernels' flag is set alone unless the compiler is loaded already (then
    both are set, as torch does) or this torch lacks the setter.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


def _to_device(arrays: dict[str, np.ndarray], device: torch.device, pin: bool) -> dict[str, torch.Tensor]:
    """Move a numpy batch to ``device`` (through pinned memory, without waiting, when ``pin``)."""
    out = {}
    for key, value in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        if pin:
            t = t.pin_memory()
        out[key] = t.to(device, non_blocking=pin)
    return out


def _make_optimizer(module: nn.Module, cfg: TrainingConfig, scaler: Any) -> Optimizer:
    """Adam over ``module``'s parameters.

    :class:`~geovae.training.fused_adam.FusedAdam` where the fused kernel applies and no gradient
    scaler is used (the same updates as ``torch.optim.Adam(fused=True)``, without importing
    ``torch._dynamo`` in every training process); else ``torch.optim.Adam``, which
    :class:`torch.amp.GradScaler` drives.
    """
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "eps": cfg.adam_eps}
    fused = all(fused_kernel_takes(p) for p in module.parameters())  # ~3x faster step on the CPU
    if scaler is None and fused:
        return FusedAdam(module.parameters(), **kwargs)
    return torch.optim.Adam(module.parameters(), fused=fused, **kwargs)


def _clip_and_step(optimizer: Optimizer, grad_clip: float | None) -> None:
    """Clip the global gradient norm to ``grad_clip`` (None: no clipping) and take an optimizer step.

    With a fused optimizer the clipping factor is handed to the fused kernel as its
    ``grad_scale`` (the hook :class:`torch.amp.GradScaler` uses to unscale gradients), so the
    gradients are divided inside the update instead of in a separate pass over them: the
    same update as :func:`torch.nn.utils.clip_grad_norm_` followed by ``step()``, up to float
    rounding (gradients divided by ``(norm + 1e-6) / grad_clip`` instead of multiplied by its
    inverse). Other optimizers use :func:`~torch.nn.utils.clip_grad_norm_`.
    """
    if grad_clip is None:
        optimizer.step()
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not all(group.get("fused") for group in optimizer.param_groups):
        nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return
    norms = torch._foreach_norm([p.grad for p in params])
    total = torch.linalg.vector_norm(torch.stack(norms))
    optimizer.grad_scale = torch.clamp((total + 1e-6) / grad_clip, min=1.0)  # type: ignore[attr-defined]
    try:
        optimizer.step()
    finally:
        optimizer.grad_scale = None  # type: ignore[attr-defined]


def _iter_batches(
    data: BatchSource, indices: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Yield ``(n_cells, batch)`` for consecutive slices of ``indices`` (in their order).

    An :class:`~geovae.training.data.AnnDataBatches` (whose ``get`` is not overridden) is
    moved to the device once (:meth:`~geovae.training.data.AnnDataBatches.on_device`) and
    its batches are gathered there from one permutation
    tensor per epoch; any other :class:`BatchSource` goes through ``data.get`` and
    :func:`_to_device`. Both give the same batches.
    """
    if isinstance(data, AnnDataBatches) and type(data).get is AnnDataBatches.get:  # get not customised
        source = data.on_device(device)
        host, dev = source.permutation(indices)
        for start in range(0, len(host), batch_size):
            yield len(host[start:start + batch_size]), source.batch(host[start:start + batch_size],
                                                                    dev[start:start + batch_size])
        return
    pin = device.type == "cuda"
    for start in range(0, len(indices), batch_size):
        idx = np.asarray(indices[start:start + batch_size])
        yield len(idx), _to_device(data.get(idx), device, pin)


def _run_epoch(
    module: nn.Module,
    data: BatchSource,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    optimizer: Optimizer | None = None,
    scaler: Any = None,
    grad_clip: float | None = None,
) -> dict[str, float]:
    """One pass over ``indices`` in their order; trains when ``optimizer`` is given.

    Returns the cell-weighted mean of every loss term. The sums stay on the device and are
    read once at the end of the epoch, so there is no host synchronisation per step; a
    non-finite loss therefore shows up as a NaN/inf epoch mean (checked by the caller).
    """
    training = optimizer is not None
    module.train(training)
    sums: torch.Tensor | None = None  # running cell-weighted sums of the loss terms, on the device
    keys: tuple[str, ...] = ()
    n_seen = 0
    grad_ctx = contextlib.nullcontext() if training else torch.no_grad()
    with grad_ctx:
        for n, batch in _iter_batches(data, indices, batch_size, device):
            amp_ctx = (torch.autocast(device_type=device.type, dtype=amp_dtype)
                       if amp_dtype is not None else contextlib.nullcontext())
            with amp_ctx:
                terms = module.loss(batch)
            if training:
                optimizer.zero_grad(set_to_none=True)
                total = terms["total"]
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.unscale_(optimizer)
                else:
                    total.backward()
                if scaler is not None:
                    if grad_clip is not None:
                        nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    _clip_and_step(optimizer, grad_clip)
            step_terms = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
            if sums is None:
                keys, sums = tuple(terms), step_terms * n
            elif tuple(terms) != keys:
                raise RuntimeError(f"the loss terms changed within an epoch: {keys} -> {tuple(terms)}")
            else:
                sums.add_(step_terms, alpha=n)
            n_seen += n
    if sums is None:
        return {}
    values = sums.cpu().tolist()  # the epoch's one sync
    return {key: value / n_seen for key, value in zip(keys, values)}


def _hashed_settings(cfg: TrainingConfig, device: torch.device) -> dict[str, Any]:
    """The settings that change a training run's numbers (hashed into its checkpoint)."""
    ignored = {"progress_bar", "checkpoint_dir", "checkpoint_every", "checkpoint_key", "device"}
    return {**{k: v for k, v in asdict(cfg).items() if k not in ignored}, "device_type": device.type,
            "matmul_backend": matmul_backend(device)}


def _check_finite(terms: dict[str, float], phase: str) -> None:
    """Raise :class:`FloatingPointError` listing the loss terms when any epoch mean is NaN/inf."""
    if not all(np.isfinite(v) for v in terms.values()):
        raise FloatingPointError(f"non-finite {phase} loss {terms}")


def train_module(module: nn.Module, data: BatchSource, config: TrainingConfig | None = None) -> TrainingResult:
    """Train ``module`` with Adam on minibatches of ``data``.

    Seeds everything from ``config.seed`` (on CPU also enables torch's deterministic
    algorithms for the duration), splits off a seeded validation set, clips gradients,
    early-stops on the monitored loss and restores the best weights. The module is left
    on the training device, in eval mode. On large data the epoch cap is lowered to
    ``config.epochs_for(data.n_obs)`` (``epoch_budget`` cells x epochs).

    Every ``checkpoint_every`` epochs the whole loop state is snapshotted (weights, optimizer,
    RNGs, history; :mod:`geovae.training.checkpoint`) and, with ``checkpoint_dir``, written to
    disk; a rerun with the same parameters resumes from it and ends with the same weights as an
    uninterrupted run. A NaN/inf loss (checked every epoch) restarts the run from the last
    snapshot with the learning rate halved, at most ``divergence_restarts`` times; after that
    a :class:`FloatingPointError` names the epoch and the loss terms.

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
        stopped_early, train_seconds, n_train, n_val, amp, matmul_backend
        (:func:`geovae.nn.matmul_backend`), the config, checkpoint_hash,
        resumed_from_epoch (None for a fresh run), divergence_restarts and final_lr.
    """
    cfg = config or TrainingConfig()
    capped = cfg.epochs_for(data.n_obs)
    if capped < cfg.max_epochs:
        log.info("epoch cap %d (epoch_budget %d / %d cells; max_epochs %d; epoch_budget 0 lifts it)",
                 capped, cfg.epoch_budget, data.n_obs, cfg.max_epochs)
        cfg = replace(cfg, max_epochs=capped)
    device = resolve_device(cfg.device)
    info = device_info(device)
    log.info("training on %s (%s)%s", info["device"], info["device_name"],
             f", {info['gpu_memory_gb']} GiB" if info["gpu_memory_gb"] else "")
    amp_dtype, scaler = _mixed_precision(device, cfg)
    seed_everything(cfg.seed)
    train_idx, val_idx = split_indices(data.n_obs, cfg.validation_fraction, cfg.seed)
    if len(train_idx) < cfg.batch_size:
        log.warning("only %d training cells, fewer than batch_size=%d: every step uses all of them",
                    len(train_idx), cfg.batch_size)
    module.to(device)
    optimizer = _make_optimizer(module, cfg, scaler)  # after module.to(device): its parameters' devices
    loop = _LoopState(module, optimizer, scaler, np.random.default_rng(cfg.seed + 1), cfg.lr,
                      fingerprint(module, _hashed_settings(cfg, device), data.n_obs, cfg.checkpoint_key))
    st = loop.st
    resumed_from = None
    saved = load_checkpoint(cfg.checkpoint_dir, loop.run_hash) if cfg.checkpoint_dir else None
    if saved is not None:
        loop.restore(saved)
        resumed_from = int(st["epoch"])
        log.info("resuming from the checkpoint in %s at epoch %d", cfg.checkpoint_dir, resumed_from)
    last_good = saved if saved is not None else loop.snapshot()

    t_start = time.perf_counter() - st["train_seconds"]
    with _deterministic(device.type == "cpu"):
        bar = tqdm(total=cfg.max_epochs, initial=st["epoch"], desc="training", disable=not cfg.progress_bar,
                   leave=False)
        while not st["done"] and st["epoch"] < cfg.max_epochs:
            epoch = st["epoch"] + 1
            t_epoch = time.perf_counter()
            try:
                row, monitored = _epoch(module, data, loop.rng.permutation(train_idx), val_idx, epoch, cfg, device,
                                        amp_dtype, optimizer, scaler)
            except FloatingPointError as exc:
                _restart_after_divergence(loop, last_good, epoch, exc, cfg.divergence_restarts)
                bar.n = st["epoch"]
                continue
            row["seconds"] = time.perf_counter() - t_epoch
            st["rows"].append(row)
            st["epoch"] = epoch
            bar.update(1)
            bar.set_postfix(loss=f"{monitored:.2f}")
            _early_stopping(st, module, cfg, epoch, monitored)
            if st["done"] or epoch % cfg.checkpoint_every == 0:
                st["train_seconds"] = time.perf_counter() - t_start
                last_good = loop.snapshot()
                if cfg.checkpoint_dir:
                    save_checkpoint(cfg.checkpoint_dir, last_good)
        bar.close()
    if cfg.early_stopping and st["best_state"] is not None:
        module.load_state_dict(st["best_state"])
    module.eval()
    train_seconds = time.perf_counter() - t_start
    metadata = {**info, **_run_metadata(st, cfg, device, amp_dtype, train_seconds, len(train_idx), len(val_idx)),
                "checkpoint_hash": loop.run_hash, "resumed_from_epoch": resumed_from}
    log.info("trained %d epochs in %.1f s (best epoch %d, stopped early: %s)",
             len(st["rows"]), train_seconds, st["best_epoch"], st["stopped_early"])
    return TrainingResult(history=pd.DataFrame(st["rows"]), metadata=metadata)


def _mixed_precision(device: torch.device, cfg: TrainingConfig) -> tuple[torch.dtype | None, Any]:
    """The autocast dtype (None: float32) and, for float16 on CUDA, a gradient scaler."""
    if device.type == "cuda" and cfg.use_amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return dtype, torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if device.type == "cpu" and cfg.cpu_amp:
        if cpu_bf16_supported():
            return torch.bfloat16, None
        log.warning("cpu_amp: this CPU has no native bfloat16 matrix instructions; training in float32")
    return None, None


class _LoopState:
    """What a checkpoint holds besides the configuration: loop counters and history (``st``), weights,
    optimizer, gradient scaler and random generators."""

    def __init__(self, module: nn.Module, optimizer: Optimizer, scaler: Any, rng: np.random.Generator,
                 lr: float, run_hash: str) -> None:
        self.module, self.optimizer, self.scaler, self.rng, self.run_hash = module, optimizer, scaler, rng, run_hash
        self.st: dict[str, Any] = {"epoch": 0, "rows": [], "best_loss": np.inf, "best_epoch": 0, "best_state": None,
                                   "bad_epochs": 0, "stopped_early": False, "done": False, "lr": lr,
                                   "restarts": [], "train_seconds": 0.0}

    def snapshot(self) -> dict[str, Any]:
        return {"fingerprint": self.run_hash, **clone_state(self.st), "module": clone_state(self.module.state_dict()),
                "optimizer": clone_state(self.optimizer.state_dict()),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None, "rng": capture_rng(self.rng)}

    def restore(self, snap: dict[str, Any]) -> None:
        self.module.load_state_dict(snap["module"])
        # a copy: torch's load_state_dict keeps tensors that need no cast, and the steps that follow
        # would change the snapshot in place (a second restart from it would not start from it)
        self.optimizer.load_state_dict(clone_state(snap["optimizer"]))
        if self.scaler is not None and snap.get("scaler"):
            self.scaler.load_state_dict(snap["scaler"])
        restore_rng(snap["rng"], self.rng)
        self.st.update(clone_state({k: snap[k] for k in self.st}))
        self.set_lr(self.st["lr"])

    def set_lr(self, lr: float) -> None:
        self.st["lr"] = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def _epoch(module: nn.Module, data: BatchSource, order: np.ndarray, val_idx: np.ndarray, epoch: int,
           cfg: TrainingConfig, device: torch.device, amp_dtype: torch.dtype | None,
           optimizer: Optimizer, scaler: Any) -> tuple[dict[str, float], float]:
    """One training epoch over ``order`` and one validation pass: the history row and the monitored loss."""
    row: dict[str, float] = {"epoch": epoch}
    if hasattr(module, "on_epoch_start"):  # annealing schedules (capacity, warm-up)
        module.on_epoch_start(epoch, cfg.max_epochs)
    train_terms = _run_epoch(module, data, order, cfg.batch_size, device, amp_dtype, optimizer, scaler, cfg.grad_clip)
    _check_finite(train_terms, "training")
    row.update({f"train_{k}": v for k, v in train_terms.items()})
    monitored = train_terms["total"]
    if len(val_idx):
        # batches of 256: the decoder outputs stay in cache (1,024 was 1.8x slower per cell)
        val_terms = _run_epoch(module, data, val_idx, max(cfg.batch_size, 256), device, amp_dtype)
        _check_finite(val_terms, "validation")
        row.update({f"val_{k}": v for k, v in val_terms.items()})
        monitored = val_terms["total"]
    return row, monitored


def _restart_after_divergence(loop: _LoopState, last_good: dict[str, Any], epoch: int, exc: FloatingPointError,
                              max_restarts: int) -> None:
    """Go back to ``last_good`` with half the learning rate, or fail after ``max_restarts``."""
    st = loop.st
    if len(st["restarts"]) >= max_restarts:
        after = f" after {len(st['restarts'])} restart(s) with a halved learning rate" if st["restarts"] else ""
        raise FloatingPointError(f"training diverged at epoch {epoch} (lr {st['lr']:g}){after}: {exc}") from exc
    new_lr = st["lr"] / 2
    restarts = st["restarts"] + [{"epoch": epoch, "from_epoch": int(last_good["epoch"]), "lr": new_lr,
                                  "reason": str(exc)}]
    log.warning("non-finite loss at epoch %d (%s); restarting from epoch %d with lr %g",
                epoch, exc, last_good["epoch"], new_lr)
    loop.restore(last_good)
    st["restarts"] = restarts
    loop.set_lr(new_lr)


def _early_stopping(st: dict[str, Any], module: nn.Module, cfg: TrainingConfig, epoch: int, monitored: float) -> None:
    """Track the best monitored loss (and weights); mark the run done on patience or the epoch cap.

    A module whose objective still changes in early epochs (a KL warm-up) names the first epoch of
    its final objective in ``stable_from_epoch``; earlier epochs are neither best nor counted
    against ``patience``, so early stopping never returns weights from a different objective.
    """
    if epoch < int(getattr(module, "stable_from_epoch", 1)):
        st["done"] = epoch >= cfg.max_epochs
        return
    if monitored < st["best_loss"] - _improvement_threshold(st["best_loss"], cfg):
        st["best_loss"], st["best_epoch"], st["bad_epochs"] = monitored, epoch, 0
        if cfg.early_stopping:
            st["best_state"] = clone_state(module.state_dict())
    else:
        st["bad_epochs"] += 1
        if cfg.early_stopping and st["bad_epochs"] >= cfg.patience:
            st["stopped_early"] = st["done"] = True
    st["done"] = st["done"] or epoch >= cfg.max_epochs


def _improvement_threshold(best_loss: float, cfg: TrainingConfig) -> float:
    """How far below ``best_loss`` the monitored loss must fall to count as an improvement.

    Parameters
    ----------
    best_loss
        Best monitored loss so far (``inf`` before the first counted epoch: then any finite loss counts).
    cfg
        ``min_delta`` (absolute) and ``min_rel_delta`` (fraction of ``|best_loss|``); the larger applies.

    Returns
    -------
    float
        The threshold, >= 0.
    """
    relative = cfg.min_rel_delta * abs(best_loss) if np.isfinite(best_loss) else 0.0
    return max(cfg.min_delta, relative)


def _run_metadata(st: dict[str, Any], cfg: TrainingConfig, device: torch.device, amp_dtype: torch.dtype | None,
                  train_seconds: float, n_train: int, n_val: int) -> dict[str, Any]:
    return {
        "torch_version": torch.__version__,
        "geovae_version": geovae_version(),
        "seed": int(cfg.seed),
        "n_epochs": len(st["rows"]),
        "best_epoch": int(st["best_epoch"]),
        "best_loss": float(st["best_loss"]),
        "stopped_early": bool(st["stopped_early"]),
        "train_seconds": round(train_seconds, 3),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
        "matmul_backend": matmul_backend(device),
        "config": asdict(cfg),
        "divergence_restarts": [dict(r) for r in st["restarts"]],
        "final_lr": float(st["lr"]),
    }
