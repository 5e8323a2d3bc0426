"""geovae.models: the model zoo behind one interface (:class:`~geovae.models.base.BaseModel`).

Models are registered by the name used in the config (``models: [livae, betavae, pca]``);
:func:`get_model` imports a model's module on first use, so optional dependencies
(scvi-tools) are only needed by the models that use them.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .base import BaseModel, NeuralModel, read_saved_meta
from .livae import LiVAE
from .livae_module import LiVAEModule
from .presets import IVAE, VAE

#: Registry: config name -> ``"module:Class"`` inside :mod:`geovae.models`.
REGISTRY: dict[str, str] = {
    # LiVAE and its ablations (LiVAE paper sections 2-3)
    "livae": "livae:LiVAE",
    "vae": "presets:VAE",
    "ivae": "presets:IVAE",
    # beta-VAE family (Higgins et al. 2017; Burgess et al. 2018; Chen et al. 2018; Kumar et al. 2018;
    # Zhao et al. 2019)
    "betavae": "betavae:BetaVAE",
    "betavae_c": "betavae:BetaVAECapacity",
    "betatcvae": "betavae:BetaTCVAE",
    "dipvae1": "betavae:DIPVAE1",
    "dipvae2": "betavae:DIPVAE2",
    "infovae": "betavae:InfoVAE",
    # seed models
    "sivae": "sivae:SiVAE",
    "dpvae": "dpvae:DPVAE",
    # classical baselines (scikit-learn) and LSI for scATAC
    "pca": "classical:PCA",
    "kpca": "classical:KernelPCA",
    "ica": "classical:ICA",
    "fa": "classical:FactorAnalysis",
    "nmf": "classical:NMF",
    "tsvd": "classical:TruncatedSVD",
    "dicl": "classical:DictionaryLearning",
    "lsi": "classical:LSI",
    # scvi-tools models (optional extra, envs/scvi.yaml)
    "scvi": "scvi_models:SCVI",
    "peakvi": "scvi_models:PeakVI",
    "poissonvi": "scvi_models:PoissonVI",
}

#: Families of the registry, for documentation and reports.
FAMILIES: dict[str, str] = {
    "livae": "LiVAE", "vae": "LiVAE ablation", "ivae": "LiVAE ablation",
    **{name: "beta-VAE family" for name in ("betavae", "betavae_c", "betatcvae", "dipvae1", "dipvae2", "infovae")},
    "sivae": "siVAE", "dpvae": "dp-VAE",
    **{name: "classical" for name in ("pca", "kpca", "ica", "fa", "nmf", "tsvd", "dicl", "lsi")},
    **{name: "scvi-tools" for name in ("scvi", "peakvi", "poissonvi")},
}


def register(name: str, target: str, family: str = "other") -> None:
    """Add a model to :data:`REGISTRY` (``target`` is ``"module:Class"`` relative to geovae.models).

    Parameters
    ----------
    name
        Config name (lower case, letters, digits and ``_``).
    target
        ``"module:Class"`` inside :mod:`geovae.models`, or an absolute ``"package.module:Class"``.
    family
        Family shown in reports.
    """
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


def load_model(dir_path: str | os.PathLike, adata: Any, device: str = "auto") -> BaseModel:
    """Load any saved model (the class is read from the directory's ``params.json``).

    Parameters
    ----------
    dir_path
        Directory written by ``model.save``.
    adata
        AnnData with the model's ``var_names``.
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


__all__ = ["BaseModel", "NeuralModel", "LiVAE", "LiVAEModule", "VAE", "IVAE", "REGISTRY", "FAMILIES", "MODELS",
           "register", "available_models", "get_model", "load_model"]
