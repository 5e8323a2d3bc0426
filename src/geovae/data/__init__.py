"""geovae.data: datasets in, raw-count AnnData out.

Submodules load on first use (``geovae.data.builtin.load_builtin("pbmc68k")`` works after
``import geovae``): ``builtin`` (datasets shipped with the project or its dependencies), ``readers``
and ``adapters`` (local files), ``geo`` (GEO series), ``acquire`` (one sheet row -> AnnData),
``sheet`` (the dataset sheet), ``simulate`` (simulated data), ``validate`` (count checks).
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = {"acquire", "adapters", "builtin", "cell_metadata", "gene_ids", "geo", "inspect", "readers", "sheet",
               "simulate", "validate"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"geovae.data.{name}")
    raise AttributeError(f"module 'geovae.data' has no attribute {name!r}")


def load_builtin(name: str) -> Any:
    """A built-in dataset by name (see :func:`geovae.data.builtin.load_builtin`).

    Parameters
    ----------
    name
        ``pbmc68k``, ``sim_programs``, ``sim_atac`` or ``sim_spatial``.

    Returns
    -------
    anndata.AnnData
        Raw counts with the dataset's annotations.
    """
    return importlib.import_module("geovae.data.builtin").load_builtin(name)


__all__ = sorted(_SUBMODULES) + ["load_builtin"]
