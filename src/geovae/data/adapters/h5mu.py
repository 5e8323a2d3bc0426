"""MuData ``.h5mu``: one modality (RNA or ATAC) of a multimodal file, as raw counts."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from anndata import AnnData

from geovae.data.adapters.atac import annotate_peaks
from geovae.data.readers import _is_integer_valued

log = logging.getLogger(__name__)

# mod names (lower-case) and 10x feature types that identify each modality
MOD_NAMES = {"rna": ("rna", "gex", "gene expression"), "atac": ("atac", "peaks", "chromatin")}
FEATURE_TYPES = {"rna": "Gene Expression", "atac": "Peaks"}
_COUNT_LAYERS = ("counts", "raw_counts")


def _feature_types(mod: AnnData) -> set[str]:
    if "feature_types" not in mod.var:
        return set()
    return set(mod.var["feature_types"].astype(str))


def _find_mod(mods: dict[str, AnnData], modality: str) -> str | None:
    """Name of the mod holding ``modality``: by mod name first, then by ``var["feature_types"]``."""
    for name in mods:
        if name.lower() in MOD_NAMES[modality]:
            return name
    typed = [name for name, mod in mods.items() if FEATURE_TYPES[modality] in _feature_types(mod)]
    if len(typed) > 1:
        log.warning("several mods hold %r features (%s); using %r", FEATURE_TYPES[modality], typed, typed[0])
    return typed[0] if typed else None


def _counts(mod: AnnData, path: Path, name: str) -> object:
    """Integer count matrix of ``mod``: ``.X`` or ``layers["counts"]`` (``raw_counts``)."""
    if mod.X is not None and _is_integer_valued(mod.X):
        return mod.X
    for layer in _COUNT_LAYERS:
        if layer in mod.layers and _is_integer_valued(mod.layers[layer]):
            log.info("%s: mod %r .X is not integer, using layers[%r] as counts", path, name, layer)
            return mod.layers[layer]
    raise ValueError(
        f"{path}: modality {name!r} holds no raw integer counts (.X is not integer-valued, looks "
        f"normalized, and there is no integer layers['counts']; layers: {sorted(mod.layers)}); "
        "geovae needs raw counts"
    )


def read_h5mu(path: str | Path, modality: str = "rna") -> AnnData:
    """Read one modality of a MuData ``.h5mu`` as a cells x features raw-count AnnData.

    The RNA modality is the mod named ``rna`` (or ``gex``), else the mod whose
    ``var["feature_types"]`` contains "Gene Expression" (other feature types in it
    are dropped); ATAC is ``atac``/``peaks``, else the mod with "Peaks" features.
    When the file holds both, only the cells present in both are kept, so the two
    modalities of one file have identical ``obs_names`` (the MuData's, in its order).

    Parameters
    ----------
    path
        The ``.h5mu`` file (read with :func:`mudata.read_h5mu`).
    modality
        ``"rna"`` or ``"atac"``.

    Returns
    -------
    AnnData
        Counts from the mod's ``.X`` or, when ``.X`` is normalized, ``layers["counts"]``;
        ``obs`` = the MuData's global columns plus the mod's own; for ATAC,
        ``var["chr"]``/``["start"]``/``["end"]`` parsed from the peak names when absent.

    Raises
    ------
    ValueError
        If the modality is missing or holds no integer counts (message names file and mod).
    """
    import mudata

    path = Path(path)
    if modality not in FEATURE_TYPES:
        raise ValueError(f"modality must be one of {sorted(FEATURE_TYPES)}, not {modality!r}")
    mdata = mudata.read_h5mu(path)
    mods = dict(mdata.mod)
    name = _find_mod(mods, modality)
    if name is None and len(mods) == 1 and modality == "rna":
        only = next(iter(mods))
        if _find_mod(mods, "atac") is None:
            name = only  # a single unnamed modality: assume expression
    if name is None:
        found = {n: sorted(_feature_types(m)) for n, m in mods.items()}
        raise ValueError(f"{path}: no {modality} modality (mods and their feature types: {found})")
    # cells shared by the RNA and ATAC mods present, in the MuData's obs order
    paired = {n for n in (_find_mod(mods, "rna"), _find_mod(mods, "atac")) if n is not None} | {name}
    cells = pd.Index(mdata.obs_names.astype(str))
    for n in sorted(paired):
        cells = cells[cells.isin(mods[n].obs_names.astype(str))]
    if len(cells) == 0:
        raise ValueError(f"{path}: mods {sorted(paired)} share no cell")
    mod = mods[name]
    mod.obs_names = mod.obs_names.astype(str)
    if len(cells) < mod.n_obs:
        log.info("%s: keeping %d of %d %r cells (those present in all of %s)",
                 path, len(cells), mod.n_obs, name, sorted(paired))
    mod = mod[cells].copy()
    x = _counts(mod, path, name)
    glob = mdata.obs.loc[cells, [c for c in mdata.obs.columns if ":" not in str(c)]]
    own = mod.obs[[c for c in mod.obs.columns if c not in glob.columns]]
    obs = pd.concat([glob, own], axis=1)
    obs.index = cells
    adata = AnnData(x, obs=obs, var=mod.var.copy())
    if modality == "rna" and "feature_types" in adata.var:
        types = adata.var["feature_types"].astype(str).to_numpy()
        if (types == FEATURE_TYPES["rna"]).any() and not (types == FEATURE_TYPES["rna"]).all():
            adata = adata[:, types == FEATURE_TYPES["rna"]].copy()
    if modality == "atac":
        annotate_peaks(adata)
    return adata
