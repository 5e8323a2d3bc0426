"""Preprocessing verbs with scanpy's calling convention (see :mod:`geovae.preprocessing`).

As in scanpy, a verb changes ``adata`` in place and returns ``None``; with ``copy=True`` it leaves
``adata`` untouched and returns the result. :func:`qc_metrics` follows
``sc.pp.calculate_qc_metrics``: it returns the per-cell table, or writes it into ``obs`` with
``inplace=True``. The functions of :mod:`geovae.preprocessing` (used by the pipeline) always return
a new object and never change their input, except those documented as in place.

    geovae.pp.preprocess_rna(adata)                  # adata is now QC-filtered, HVG-selected, normalised
    pre = geovae.pp.preprocess_rna(raw, copy=True)   # raw unchanged
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import pandas as pd
from anndata import AnnData

from geovae import preprocessing as _pre

__all__ = ["qc_rna", "qc_metrics", "hvg", "qc_atac", "tfidf", "hvp", "preprocess_rna", "preprocess_atac",
           "preprocess"]

#: Functions of geovae.preprocessing that change their input (the others return a new object).
_IN_PLACE = {"hvg", "hvp", "tfidf"}


def _replace_contents(target: AnnData, source: AnnData) -> None:
    """Make ``target`` hold what ``source`` holds (cells and features may differ), as scanpy's
    in-place filters do."""
    if target.is_view:
        raise ValueError("cannot preprocess a view in place; pass copy=True or use adata.copy()")
    target._init_as_actual(X=source.X, obs=source.obs, var=source.var, uns=dict(source.uns),
                           obsm=dict(source.obsm), varm=dict(source.varm), obsp=dict(source.obsp),
                           varp=dict(source.varp), layers=dict(source.layers), raw=source.raw)


def _verb(func: Callable[..., Any]) -> Callable[..., AnnData | None]:
    """scanpy-style verb around a geovae.preprocessing function."""
    name = func.__name__

    @functools.wraps(func)
    def verb(adata: AnnData, *args: Any, copy: bool = False, **kwargs: Any) -> AnnData | None:
        work = adata.copy() if copy and name in _IN_PLACE else adata
        result = func(work, *args, **kwargs)
        if copy:
            return result if result is not None else work
        if result is not None and result is not adata:
            _replace_contents(adata, result)
        return None

    verb.__doc__ = _verb_doc(func)
    return verb


def _verb_doc(func: Callable[..., Any]) -> str:
    """The wrapped function's docstring, with the scanpy-style calling convention and ``copy``."""
    doc = inspect.cleandoc(func.__doc__ or "")
    copy_entry = ("copy\n    ``False`` (default): change ``adata`` in place and return ``None``; ``True``: "
                  "return the result and leave ``adata`` unchanged.\n")
    marker = "\nReturns\n-------"
    doc = doc.replace(marker, "\n" + copy_entry + marker, 1) if marker in doc else doc + "\n" + copy_entry
    return (f":func:`geovae.preprocessing.{func.__name__}` with scanpy's calling convention.\n\n" + doc)


qc_rna = _verb(_pre.qc_rna)
hvg = _verb(_pre.hvg)
qc_atac = _verb(_pre.qc_atac)
tfidf = _verb(_pre.tfidf)
hvp = _verb(_pre.hvp)
preprocess_rna = _verb(_pre.preprocess_rna)
preprocess_atac = _verb(_pre.preprocess_atac)
preprocess = _verb(_pre.preprocess)


def qc_metrics(adata: AnnData, modality: str = "rna", inplace: bool = False, **settings: Any) -> pd.DataFrame | None:
    """Per-cell QC metrics under scanpy's names, as ``sc.pp.calculate_qc_metrics``.

    Parameters
    ----------
    adata
        Raw counts.
    modality
        ``"rna"`` (``n_genes_by_counts``, ``total_counts``, ``pct_counts_mt``) or ``"atac"``.
    inplace
        Write the columns into ``adata.obs`` and return ``None``; otherwise return them.
    **settings
        Passed to :func:`geovae.preprocessing.qc_metrics` (e.g. ``mito_prefix``).
    """
    table = _pre.qc_metrics(adata, modality, **settings)
    if not inplace:
        return table
    for column in table.columns:
        adata.obs[column] = table[column].to_numpy()
    return None
