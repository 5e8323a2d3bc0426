"""10x Multiome: one Cell Ranger ARC ``.h5`` holding "Gene Expression" and "Peaks" features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from anndata import AnnData

from geovae.data.adapters.atac import annotate_peaks

FEATURE_TYPES = {"rna": "Gene Expression", "atac": "Peaks"}


def read_multiome(path: str | Path) -> dict[str, AnnData]:
    """Split a 10x Multiome ``.h5`` into an RNA and an ATAC AnnData of the same cells.

    Parameters
    ----------
    path
        Cell Ranger ARC ``filtered_feature_bc_matrix.h5``.

    Returns
    -------
    dict
        ``{"rna": cells x genes, "atac": cells x peaks}`` with identical ``obs_names``;
        the ATAC ``var`` has ``chr``/``start``/``end``.
    """
    import scanpy as sc

    path = Path(path)
    full = sc.read_10x_h5(path, gex_only=False)
    full.var_names_make_unique()
    types = full.var["feature_types"].astype(str).to_numpy()
    out: dict[str, AnnData] = {}
    for modality, ftype in FEATURE_TYPES.items():
        mask = types == ftype
        if not mask.any():
            raise ValueError(f"{path}: no {ftype!r} features (types present: {sorted(set(types))}); "
                             "not a 10x Multiome h5")
        out[modality] = AnnData(full.X[:, np.flatnonzero(mask)], obs=full.obs.copy(),
                                var=full.var.iloc[np.flatnonzero(mask)].copy())
    annotate_peaks(out["atac"])
    return out


def read_multiome_modality(path: str | Path, modality: str = "rna") -> AnnData:
    """One modality (``"rna"`` or ``"atac"``) of a 10x Multiome ``.h5`` (see :func:`read_multiome`).

    Parameters
    ----------
    path
        The ``.h5`` file.
    modality
        ``"rna"`` (Gene Expression) or ``"atac"`` (Peaks).

    Returns
    -------
    AnnData
        Cells x features of that modality.
    """
    if modality not in FEATURE_TYPES:
        raise ValueError(f"modality must be one of {sorted(FEATURE_TYPES)}, not {modality!r}")
    return read_multiome(path)[modality]
