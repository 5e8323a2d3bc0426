"""Loom and Visium adapters, and gene-symbol selection for Ensembl-indexed matrices."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from geovae.data.readers import _ENSEMBL_RE, _is_integer_valued, _open_maybe_gz, _unique, read_10x_h5

log = logging.getLogger(__name__)

_CELL_ATTRS = ("CellID", "obs_names", "cell_names", "CellId", "cell_id", "barcode", "Barcode", "index")
_GENE_ATTRS = ("Gene", "var_names", "gene_names", "gene_name", "GeneName", "Accession", "gene_ids")
_SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "symbol", "symbols", "gene_name", "gene_names",
                   "Gene", "GeneName", "name", "feature_name", "gene")


def use_gene_symbols(adata: AnnData) -> bool:
    """Index genes by symbol when ``var_names`` are Ensembl ids and a symbol column exists.

    The ids move to ``var["gene_ids"]``; symbols are made unique (``-1``, ``-2`` ...).

    Parameters
    ----------
    adata
        Modified in place.

    Returns
    -------
    bool
        Whether the index was replaced.
    """
    names = pd.Series(np.asarray(adata.var_names, dtype=str))
    if adata.n_vars == 0 or names.map(lambda s: bool(_ENSEMBL_RE.match(s))).mean() < 0.5:
        return False
    for col in _SYMBOL_COLUMNS:
        if col not in adata.var:
            continue
        sym = adata.var[col].astype(str)
        looks_id = sym.map(lambda s: bool(_ENSEMBL_RE.match(s))).mean()
        if looks_id < 0.5 and sym.replace({"": np.nan, "nan": np.nan}).notna().mean() >= 0.9:
            ids = names.to_numpy()
            sym = sym.where(~sym.isin(["", "nan"]), pd.Series(ids, index=sym.index))
            adata.var_names = _unique(pd.Index(sym.to_numpy()))
            adata.var["gene_ids"] = ids
            log.info("gene symbols taken from var[%r] (Ensembl ids kept in var['gene_ids'])", col)
            return True
    return False


def read_loom(path: str | Path) -> AnnData:
    """Read a ``.loom`` file (loompy layout: genes x cells) as cells x genes counts.

    The main matrix is used when integer-valued, else the first integer layer
    among ``counts``, ``spliced`` (velocyto looms: ``spliced`` + ``unspliced`` +
    ``ambiguous`` are summed when all are present). Cell and gene names come from
    the first present of ``CellID``/``obs_names``/... and ``Gene``/``var_names``/...

    Parameters
    ----------
    path
        The ``.loom`` file.

    Returns
    -------
    AnnData
        Cells x genes with the loom's row/column attributes as ``var``/``obs``.
    """
    import h5py

    try:
        from anndata.io import read_loom as _ad_read_loom
    except ImportError:  # anndata < 0.11
        from anndata import read_loom as _ad_read_loom

    path = Path(path)
    with h5py.File(path, "r") as f:
        cols = set(f["col_attrs"].keys()) if "col_attrs" in f else set()
        rows = set(f["row_attrs"].keys()) if "row_attrs" in f else set()
    obs_key = next((k for k in _CELL_ATTRS if k in cols), "CellID")
    var_key = next((k for k in _GENE_ATTRS if k in rows), "Gene")
    src = _ad_read_loom(path, sparse=True, X_name="", obs_names=obs_key, var_names=var_key)
    x = src.X
    if not _is_integer_valued(x):
        velo = ("spliced", "unspliced", "ambiguous")
        if all(k in src.layers for k in velo):
            x = sum(src.layers[k] for k in velo)
            log.info("%s: main matrix not integer; using spliced + unspliced + ambiguous", path)
        else:
            for key in ("counts", "spliced"):
                if key in src.layers and _is_integer_valued(src.layers[key]):
                    x = src.layers[key]
                    log.info("%s: main matrix not integer; using layer %r", path, key)
                    break
    adata = AnnData(x, obs=src.obs.copy(), var=src.var.copy())
    use_gene_symbols(adata)
    return adata


def _find_one(directory: Path, pattern: str, what: str) -> Path | None:
    hits = sorted(
        p for p in directory.rglob("*")
        if p.is_file() and re.search(pattern, p.name, re.I)
        and not p.name.endswith((".meta.json", ".part"))  # download sidecars of geovae.data.geo
    )
    if len(hits) > 1:
        log.warning("%s: several %s files %s; using %s", directory, what, [h.name for h in hits], hits[0].name)
    return hits[0] if hits else None


def read_visium(path: str | Path) -> AnnData:
    """Read a Space Ranger Visium sample into counts with ``obsm["spatial"]``.

    Parameters
    ----------
    path
        ``*filtered_feature_bc_matrix.h5`` or a directory holding it; the
        ``*tissue_positions*.csv[.gz]`` (Space Ranger 1.x without header or 2.x with
        header) and, optionally, ``*scalefactors_json.json[.gz]`` are searched in
        the same directory tree.

    Returns
    -------
    AnnData
        Spots x genes counts; ``obsm["spatial"]`` = full-resolution pixel
        coordinates (x = column, y = row, the scanpy/squidpy convention);
        ``obs["array_row"]``, ``obs["array_col"]``, ``obs["in_tissue"]``;
        ``uns["spatial"][library_id]["scalefactors"]``.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    h5 = path if path.is_file() else _find_one(directory, r"filtered_feature_bc_matrix\.h5$", "matrix")
    if h5 is None:
        raise ValueError(f"{path}: no *filtered_feature_bc_matrix.h5 for the Visium adapter")
    pos_path = _find_one(directory, r"tissue_positions.*\.csv(\.gz)?$", "tissue_positions")
    if pos_path is None:
        raise ValueError(f"{directory}: Visium sample without a tissue_positions*.csv next to {h5.name}")
    adata = read_10x_h5(h5)
    with _open_maybe_gz(pos_path, "rt") as fh:
        first = fh.readline()
    header = 0 if first.lower().startswith("barcode") else None
    pos = pd.read_csv(pos_path, header=header, compression="infer")
    pos.columns = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres",
                   "pxl_col_in_fullres"][: pos.shape[1]]
    pos = pos.set_index(pos["barcode"].astype(str))
    missing = adata.obs_names.difference(pos.index)
    if len(missing):
        raise ValueError(f"{pos_path}: {len(missing)} barcodes of {h5.name} have no position, "
                         f"e.g. {list(missing[:3])}")
    pos = pos.loc[adata.obs_names]
    for col in ("in_tissue", "array_row", "array_col"):
        adata.obs[col] = pos[col].to_numpy(np.int64)
    adata.obsm["spatial"] = pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    library = re.sub(r"_?filtered_feature_bc_matrix\.h5$", "", h5.name) or "visium"
    entry: dict = {}
    sf_path = _find_one(directory, r"scalefactors.*\.json(\.gz)?$", "scalefactors")
    if sf_path is not None:
        with _open_maybe_gz(sf_path, "rt") as fh:
            entry["scalefactors"] = {k: float(v) for k, v in json.load(fh).items()}
    adata.uns["spatial"] = {library: entry}
    return adata
