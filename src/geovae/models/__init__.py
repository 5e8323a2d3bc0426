"""geovae.models: the model zoo behind one interface (:class:`~geovae.models.base.BaseModel`).

Models are registered by the name used in the config (``models: [livae, betavae, pca]``);
:func:`get_model` imports a model's module on first use, so optional dependencies
(scvi-tools) are only needed by the models that use them.
"""

from __future__ import annotations

import importlib
import os
from typing import Any


from ..schemas import REGISTRY_FILE, registry_specs  # noqa: F401 (REGISTRY_FILE re-exported)
from .base import BaseModel, NeuralModel, read_saved_meta
from .livae import LiVAE
from ..modules.livae import LiVAEModule
from .presets import IVAE, VAE, LiVAECellTypes

#: Full registry records: name -> {target, family, modalities, requires, extra} (``geovae/schemas/registry.yaml``).
SPECS: dict[str, dict[str, Any]] = registry_specs()
#: Registry: config name -> ``"module:Class"`` inside :mod:`geovae.models`.
REGISTRY: dict[str, str] = {name: spec["target"] for name, spec in SPECS.items()}
#: Families of the registry, for documentation and reports.
FAMILIES: dict[str, str] = {name: spec["family"] for name, spec in SPECS.items()}


def register(name: str, target: str, family: str = "other", modalities: tuple[str, ...] = ("rna", "atac"),
             requires: tuple[str, ...] = ()) -> None:
    """Add a model to :data:`REGISTRY` (``target`` is ``"module:Class"`` relative to geovae.models).

    Parameters
    ----------
    name
        Config name (lower case, letters, digits and ``_``).
    target
        ``"module:Class"`` inside :mod:`geovae.models`, or an absolute ``"package.module:Class"``.
    family
        Family shown in reports.
    modalities, requires
        Data types the model applies to and per-dataset requirements (``"spatial"``).
    """
    SPECS[name] = {"target": target, "family": family, "modalities": list(modalities),
                   "requires": list(requires), "extra": None}
    REGISTRY[name] = target
    FAMILIES[name] = family


def available_models() -> list[str]:
    """Sorted registry names."""
    return sorted(REGISTRY)


def get_model(name: str) -> type:
    """Model class registered under ``name``.

    Parameters
    ----------
    name
        Key of :data:`REGISTRY` (case-insensitive).

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    ImportError
        When the model needs an optional dependency that is not installed (the message says which).
    """
    key = str(name).lower()
    if key not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; available models: {available_models()}")
    module_name, class_name = REGISTRY[key].split(":")
    if "." not in module_name:
        module_name = f"{__name__}.{module_name}"
    return getattr(importlib.import_module(module_name), class_name)


def load_model(dir_path: str | os.PathLike, adata: Any = None, device: str = "auto") -> BaseModel:
    """Load any saved model (the class is read from the directory's ``params.json``).

    Parameters
    ----------
    dir_path
        Directory written by ``model.save``.
    adata
        AnnData with the model's ``var_names``; ``None``: the one saved with the model
        (``save(..., save_anndata=True)``).
    device
        Torch device for neural models.
    """
    return get_model(read_saved_meta(dir_path)["model"]).load(dir_path, adata, device=device)


class _ModelsView(dict):
    """``MODELS[name]`` -> class, importing lazily (kept for backwards compatibility)."""

    def __missing__(self, key: str) -> type:
        return get_model(key)

    def __contains__(self, key: object) -> bool:
        return key in REGISTRY

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def keys(self):  # type: ignore[override]
        return REGISTRY.keys()


#: Mapping view of the registry: ``MODELS["livae"]`` is the class.
MODELS: dict[str, type] = _ModelsView()


__all__ = ["BaseModel", "NeuralModel", "LiVAE", "LiVAEModule", "VAE", "IVAE", "LiVAECellTypes", "REGISTRY", "SPECS",
           "FAMILIES", "MODELS", "register", "available_models", "get_model", "load_model"]
