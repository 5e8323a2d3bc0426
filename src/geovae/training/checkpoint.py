"""Training checkpoints: everything needed to resume a run bit for bit, keyed by a parameter hash.

A checkpoint holds the module and optimizer state, the early-stopping bookkeeping, the history
rows so far and every random-number-generator state the loop uses (python, numpy global, the
shuffling generator, torch CPU and CUDA). Resuming from it continues the exact sequence of an
uninterrupted run, so the final weights are identical on CPU.

Each checkpoint carries :func:`fingerprint` of the run's parameters; one written under other
parameters (another learning rate, model setting, dataset size, initial weights) is ignored.
Files are written to a temporary name and renamed, so a killed process never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CHECKPOINT_FILE", "fingerprint", "capture_rng", "restore_rng", "save_checkpoint",
           "load_checkpoint", "clone_state"]

log = logging.getLogger("geovae.training")

#: File name of the checkpoint inside ``TrainingConfig.checkpoint_dir``.
CHECKPOINT_FILE = "checkpoint.pt"
_FORMAT = 1


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().cpu().contiguous()
        flat = value.reshape(-1)  # 0-d parameters (a learned scalar) cannot be viewed as bytes directly
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def fingerprint(module: nn.Module, settings: dict[str, Any], n_obs: int, key: str = "") -> str:
    """SHA-256 of what determines a training run: module class and initial weights, settings, data size.

    Parameters
    ----------
    module
        The module *before* training (its initial weights encode architecture and init seed).
    settings
        Training settings that change the result (learning rate, batch size, seed, ...).
    n_obs
        Number of cells of the data.
    key
        Extra identity supplied by the caller, e.g. the model's hyperparameters as JSON (some
        hyperparameters, such as loss weights, change no weight shape).

    Returns
    -------
    str
        Hex digest.
    """
    record = {"module": f"{type(module).__module__}.{type(module).__qualname__}", "settings": settings,
              "n_obs": int(n_obs), "key": key, "weights": _state_digest(module.state_dict())}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def capture_rng(shuffle_rng: np.random.Generator) -> dict[str, Any]:
    """States of every RNG the training loop draws from."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(),
                             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
                             "shuffle": copy.deepcopy(shuffle_rng.bit_generator.state),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], shuffle_rng: np.random.Generator) -> None:
    """Inverse of :func:`capture_rng` (``shuffle_rng`` is updated in place)."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    shuffle_rng.bit_generator.state = state["shuffle"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def clone_state(state: Any) -> Any:
    """Deep copy of a (nested) state dict with tensors detached and moved to CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: clone_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(clone_state(v) for v in state)
    return copy.deepcopy(state)


def save_checkpoint(directory: str | os.PathLike, snapshot: dict[str, Any]) -> Path:
    """Write ``snapshot`` to ``directory/checkpoint.pt`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    directory
        Checkpoint folder (created if needed).
    snapshot
        Training state; must hold ``"fingerprint"`` and ``"epoch"``.

    Returns
    -------
    pathlib.Path
        The checkpoint file.
    """
    from geovae.runinfo import atomic_outputs

    target = Path(directory) / CHECKPOINT_FILE
    with atomic_outputs([target]) as out:  # written under a temporary name, fsynced, renamed
        torch.save({"format": _FORMAT, **snapshot}, out[0])
    return target


def load_checkpoint(directory: str | os.PathLike, expected: str) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` if it exists, is readable and matches ``expected``.

    A missing file gives ``None``; an unreadable one or one written under other parameters
    (fingerprint differs) is logged and ignored (``None``), so the run starts afresh and
    overwrites it.
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint must not block a fresh start
        log.warning("checkpoint %s is unreadable (%s: %s); starting afresh", path, type(exc).__name__, exc)
        return None
    if not isinstance(snapshot, dict) or snapshot.get("format") != _FORMAT:
        log.warning("checkpoint %s has an unknown format; starting afresh", path)
        return None
    if snapshot.get("fingerprint") != expected:
        log.warning("checkpoint %s was written with other parameters (hash %.12s, now %.12s); starting afresh",
                    path, snapshot.get("fingerprint"), expected)
        return None
    return snapshot
