"""geovae.models: LiVAE (module, likelihoods, Lorentz geometry) and the model registry."""

from __future__ import annotations

from .livae import LiVAE
from .livae_module import LiVAEModule
from .presets import IVAE, VAE

#: Model classes by the names used in the config (``models: [livae]``).
MODELS: dict[str, type] = {"livae": LiVAE, "vae": VAE, "ivae": IVAE}


def get_model(name: str) -> type:
    """Model class registered under ``name``.

    Parameters
    ----------
    name
        Key of :data:`MODELS` (case-insensitive).

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    """
    key = str(name).lower()
    if key not in MODELS:
        raise KeyError(f"unknown model {name!r}; available models: {sorted(MODELS)}")
    return MODELS[key]


__all__ = ["LiVAE", "LiVAEModule", "VAE", "IVAE", "MODELS", "get_model"]
