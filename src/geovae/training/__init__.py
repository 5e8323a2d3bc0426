"""geovae.training: shared minibatch training loop and AnnData minibatch sources."""

from .data import AnnDataBatches, InputTransform, input_transform_from_adata
from .trainer import (
    TrainingConfig,
    TrainingResult,
    device_info,
    resolve_device,
    seed_everything,
    split_indices,
    train_module,
)

__all__ = [
    "AnnDataBatches",
    "InputTransform",
    "input_transform_from_adata",
    "TrainingConfig",
    "TrainingResult",
    "device_info",
    "resolve_device",
    "seed_everything",
    "split_indices",
    "train_module",
]
