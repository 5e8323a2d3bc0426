"""Reading and writing the per-run tables exchanged between pipeline stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_latent_table(path: str | Path, obs_names: pd.Index, latent: np.ndarray,
                       bottleneck: np.ndarray | None = None) -> None:
    """Write latent means (columns ``Z1..Zd``) and optional bottleneck (``BN1..BNk``) as a TSV.

    Parameters
    ----------
    path
        Output file (``.tsv`` or ``.tsv.gz``).
    obs_names
        Cell identifiers, written as the index column ``cell``.
    latent
        ``n x d`` latent means.
    bottleneck
        ``n x k`` bottleneck representation, when the model has one.
    """
    table = pd.DataFrame(latent, index=pd.Index(obs_names, name="cell"),
                         columns=[f"Z{i + 1}" for i in range(latent.shape[1])])
    if bottleneck is not None:
        for i in range(bottleneck.shape[1]):
            table[f"BN{i + 1}"] = bottleneck[:, i]
    table.to_csv(path, sep="\t", float_format="%.7g")


def read_latent_table(path: str | Path) -> tuple[pd.Index, np.ndarray, np.ndarray | None]:
    """Read a table written by :func:`write_latent_table`.

    Returns
    -------
    obs_names, latent, bottleneck (``None`` when the table has no ``BN`` columns).
    """
    table = pd.read_csv(path, sep="\t", index_col="cell")
    z_cols = [c for c in table.columns if c.startswith("Z")]
    bn_cols = [c for c in table.columns if c.startswith("BN")]
    if not z_cols:
        raise ValueError(f"latent table '{path}' has no Z1..Zd columns")
    latent = table[z_cols].to_numpy(np.float32)
    bottleneck = table[bn_cols].to_numpy(np.float32) if bn_cols else None
    return table.index.astype(str), latent, bottleneck
