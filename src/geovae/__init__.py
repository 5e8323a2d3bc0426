"""geovae: interpretable single-cell embeddings (LiVAE and friends) from GEO data.

Scanpy-style namespaces are loaded lazily so ``import geovae`` stays fast:

- ``geovae.pp``: preprocessing verbs (QC, HVG, TF-IDF, HVP)
- ``geovae.tl``: tools (train a model and embed, UMAP / t-SNE, component annotation)
- ``geovae.pl``: figures drawn by the pipeline
- ``geovae.metrics``: embedding metrics (``geovae.metrics.evaluate``)
- ``geovae.models``: the model zoo (``geovae.models.LiVAE``)
- ``geovae.data``: acquisition (built-in, local files, GEO)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"pp", "tl", "pl", "metrics", "models", "data", "training", "interpretation", "plotting", "preprocessing", "runinfo"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"geovae.{name}")
    raise AttributeError(f"module 'geovae' has no attribute {name!r}")


__all__ = sorted(_SUBMODULES) + ["__version__"]
