"""Basic readers of local count files into an AnnData of raw counts (cells x features), and the
helpers the format adapters share.

The choice among readers and adapters (:func:`geovae.data.local.read_local`, ``detect_adapter``,
``register_adapter``, archives) lives in :mod:`geovae.data.local`, which imports this module and
:mod:`geovae.data.adapters`; neither imports it back. Readers defined here:

========== ==========================================================================
adapter    input
========== ==========================================================================
h5ad       AnnData ``.h5ad`` (counts taken from ``.X``, else ``layers["counts"]``, else ``.raw``)
10x_mtx    10x Market Exchange directory: ``matrix.mtx[.gz]`` + ``barcodes.tsv[.gz]`` +
           ``features.tsv[.gz]`` (v3) or ``genes.tsv[.gz]`` (v2); prefixed names such as
           ``GSM123_matrix.mtx.gz`` are accepted; the path may be the directory or the
           ``matrix.mtx`` file itself
10x_h5     Cell Ranger ``.h5`` (v2 legacy or v3), read with :func:`scanpy.read_10x_h5`
dense      delimited text ``.csv``/``.tsv``/``.txt``/``.tab`` (optionally ``.gz``), genes x
           cells or cells x genes (see :func:`detect_orientation`)
========== ==========================================================================

``tar`` archives and the other adapters (loom, scATAC peak matrices and fragment files, 10x
Multiome, MuData ``.h5mu``, Visium; :mod:`geovae.data.adapters`) are dispatched by
:mod:`geovae.data.local`.

Every adapter returns ``.X`` as CSR float32 with integer values, unique
``var_names`` (gene symbols where known, made unique) and ``var["gene_ids"]``
where the input carries gene ids.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

from geovae.data.validate import as_counts_csr

__all__ = [
    "detect_orientation",
    "find_10x_triplets",
    "read_10x_h5",
    "read_10x_mtx",
    "read_dense",
    "read_h5ad_counts",
]

log = logging.getLogger(__name__)

Orientation = Literal["auto", "cells_x_genes", "genes_x_cells"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")

# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def _open_maybe_gz(path: Path, mode: str = "rb") -> IO:
    """Open ``path``, transparently decompressing gzip (detected by magic bytes)."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    if gz:
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def _is_integer_valued(x: object, max_values: int = 2_000_000) -> bool:
    """True when the (first ``max_values``) stored values are non-negative integers."""
    vals = np.asarray(x.data if sp.issparse(x) else x).ravel()[:max_values]  # type: ignore[union-attr]
    if vals.size == 0:
        return True
    if not np.issubdtype(vals.dtype, np.number):
        return False
    return bool(np.all(np.isfinite(vals)) and vals.min() >= 0 and np.all(vals == np.round(vals)))


def _finalize(adata: AnnData) -> AnnData:
    """Common post-processing: CSR float32, string indices, unique names."""
    as_counts_csr(adata)
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    adata.var_names_make_unique()
    adata.obs_names_make_unique()
    return adata


def _unique(index: pd.Index, source: object = None) -> pd.Index:
    """String index with duplicates suffixed ``-1``, ``-2`` ... (as ``var_names_make_unique``).

    With ``source`` (the file read), duplicated names are logged as a warning naming it.
    """
    from anndata.utils import make_index_unique

    index = pd.Index(index).astype(str)
    if source is not None and not index.is_unique:
        log.warning("%s: %d duplicated feature names made unique with suffixes -1, -2 ..., e.g. %s", source,
                    int(index.duplicated().sum()), [str(v) for v in index[index.duplicated()].unique()[:5]])
    return make_index_unique(index)


def _unique_barcodes(index: pd.Index, source: object) -> pd.Index:
    """Cell barcodes as strings; duplicated barcodes raise ``ValueError`` naming ``source``."""
    index = pd.Index(index).astype(str)
    if not index.is_unique:
        dup = [str(v) for v in index[index.duplicated()].unique()[:5]]
        raise ValueError(f"{source}: {int(index.duplicated().sum())} duplicated cell barcodes (obs names), "
                         f"e.g. {dup}; every cell needs a unique barcode (prefix the barcodes of merged samples)")
    return index


def _keep_feature_type(adata: AnnData, feature_type: str | None, source: str) -> AnnData:
    """Keep only ``feature_type`` features when that type is present next to others."""
    if feature_type is None or "feature_types" not in adata.var:
        return adata
    types = adata.var["feature_types"].astype(str)
    if (types == feature_type).any() and not (types == feature_type).all():
        dropped = sorted(set(types) - {feature_type})
        log.info("%s: keeping %r features, dropping %s", source, feature_type, dropped)
        adata = adata[:, (types == feature_type).to_numpy()].copy()
    return adata


# ---------------------------------------------------------------------------
# 10x Market Exchange triplets
# ---------------------------------------------------------------------------

_TENX_RE = re.compile(
    r"^(?P<prefix>.*?)(?P<kind>matrix\.mtx|barcodes\.tsv|features\.tsv|genes\.tsv)(?:\.gz)?$",
    re.IGNORECASE,
)


def find_10x_triplets(names: Iterable[str]) -> list[dict[str, str]]:
    """Group file names into complete 10x mtx triplets.

    Files are grouped by the prefix before ``matrix.mtx``, ``barcodes.tsv``,
    ``features.tsv``/``genes.tsv`` (``.gz`` optional), e.g.
    ``GSM123_matrix.mtx.gz``. If no prefix group is complete but exactly one
    file of each kind exists, those three form the triplet.

    Parameters
    ----------
    names
        File names (base names; directories are ignored by the caller).

    Returns
    -------
    list of dict
        One dict per complete triplet with keys ``prefix``, ``matrix``,
        ``barcodes``, ``features`` and ``version`` ("v3" for features.tsv,
        "v2" for genes.tsv); ``filtered`` triplets are listed before ``raw`` ones.
    """
    groups: dict[str, dict[str, str]] = {}
    by_kind: dict[str, list[str]] = {"matrix": [], "barcodes": [], "features": []}
    for name in names:
        m = _TENX_RE.match(name)
        if not m:
            continue
        kind = m["kind"].lower().split(".")[0]
        version = {"genes": "v2", "features": "v3"}.get(kind)
        kind = "features" if version else kind
        group = groups.setdefault(m["prefix"], {"prefix": m["prefix"]})
        if kind == "features" and "features" in group and group.get("version") == "v3":
            continue  # features.tsv wins over genes.tsv
        group[kind] = name
        if version:
            group["version"] = version
        by_kind[kind].append(name)
    complete = [g for g in groups.values() if {"matrix", "barcodes", "features"} <= g.keys()]
    if not complete and all(len(v) == 1 for v in by_kind.values()):
        feat = by_kind["features"][0]
        complete = [
            {
                "prefix": "",
                "matrix": by_kind["matrix"][0],
                "barcodes": by_kind["barcodes"][0],
                "features": feat,
                "version": "v2" if "genes" in feat.lower() else "v3",
            }
        ]

    def rank(g: dict[str, str]) -> tuple[int, str]:
        p = g["prefix"].lower()
        return (0 if "filtered" in p else 2 if "raw" in p else 1, g["prefix"])

    return sorted(complete, key=rank)


def _read_tsv_column_table(path: Path) -> pd.DataFrame:
    with _open_maybe_gz(path) as fh:
        return pd.read_csv(fh, sep="\t", header=None, dtype=str, comment=None)


def _resolve_10x_dir(path: Path, prefix: str | None) -> tuple[Path, dict[str, str]]:
    """Return the directory and triplet for a 10x directory or matrix file."""
    if path.is_file():
        directory = path.parent
        m = _TENX_RE.match(path.name)
        if m is None:
            raise ValueError(f"{path}: not a 10x matrix.mtx file name")
    else:
        directory = path
    names = [p.name for p in directory.iterdir() if p.is_file()]
    triplets = find_10x_triplets(names)
    if path.is_file():
        triplets = [t for t in triplets if t["matrix"] == path.name]
    if prefix is not None:
        triplets = [t for t in triplets if t["prefix"] == prefix]
    if not triplets and path.is_dir():
        # Cell Ranger layout: <dir>/filtered_feature_bc_matrix/{matrix.mtx.gz,...}
        subdirs = sorted({p.parent for p in directory.rglob("*") if _TENX_RE.match(p.name)})
        for sub in sorted(subdirs, key=lambda d: (0 if "filtered" in str(d) else 1, str(d))):
            found = find_10x_triplets(p.name for p in sub.iterdir() if p.is_file())
            if found:
                return sub, found[0]
    if not triplets:
        raise ValueError(
            f"{path}: no complete 10x triplet (matrix.mtx + barcodes.tsv + features.tsv/genes.tsv)"
            f"{'' if prefix is None else f' with prefix {prefix!r}'}; files: {sorted(names)}"
        )
    prefixes = {t["prefix"] for t in triplets}
    if len(prefixes) > 1 and not any("filtered" in p.lower() for p in prefixes):
        raise ValueError(
            f"{path}: several 10x triplets found (prefixes {sorted(prefixes)}); pass the "
            "matrix.mtx file itself or `prefix=` to choose one"
        )
    return directory, triplets[0]


def read_10x_mtx(
    path: str | Path,
    prefix: str | None = None,
    feature_type: str | None = "Gene Expression",
    modality: str | None = None,
) -> AnnData:
    """Read a 10x Market Exchange triplet (v2 ``genes.tsv`` or v3 ``features.tsv``).

    Parameters
    ----------
    path
        Directory holding the triplet, or the ``*matrix.mtx[.gz]`` file itself.
    prefix
        File-name prefix selecting one triplet when a directory holds several
        (e.g. ``"GSM123_"``).
    feature_type
        When the features file has a type column with several types, keep only
        this one (default ``"Gene Expression"``); ``None`` keeps all.
    modality
        ``"atac"`` keeps ``"Peaks"`` features instead (10x Multiome triplets).

    Returns
    -------
    AnnData
        Cells x features counts; ``var_names`` = gene symbols (made unique),
        ``var["gene_ids"]`` and, for v3, ``var["feature_types"]``.
    """
    path = Path(path)
    if modality == "atac":
        feature_type = "Peaks"
    directory, trip = _resolve_10x_dir(path, prefix)
    mtx_path = directory / trip["matrix"]
    with _open_maybe_gz(mtx_path) as fh:
        mat = scipy.io.mmread(fh)
    x = sp.csr_matrix(sp.coo_matrix(mat).T, dtype=np.float32)  # file is features x cells
    barcodes = _read_tsv_column_table(directory / trip["barcodes"])[0].astype(str).to_numpy()
    feats = _read_tsv_column_table(directory / trip["features"])
    if x.shape != (len(barcodes), len(feats)):
        raise ValueError(
            f"{mtx_path}: matrix is {x.shape[1]} features x {x.shape[0]} cells but "
            f"{trip['barcodes']} has {len(barcodes)} and {trip['features']} has {len(feats)} rows"
        )
    symbols = feats[feats.columns[min(1, feats.shape[1] - 1)]].to_numpy()
    var = pd.DataFrame(index=_unique(pd.Index(symbols), directory / trip["features"]))
    var["gene_ids"] = feats[0].to_numpy()
    if feats.shape[1] >= 3:
        var["feature_types"] = feats[2].to_numpy()
    adata = AnnData(x, obs=pd.DataFrame(index=_unique_barcodes(pd.Index(barcodes), directory / trip["barcodes"])),
                    var=var)
    adata = _keep_feature_type(adata, feature_type, str(mtx_path))
    return _finalize(adata)


# ---------------------------------------------------------------------------
# HDF5 inputs
# ---------------------------------------------------------------------------


def _hdf5_kind(path: Path) -> str:
    """Tell a Cell Ranger h5 from an AnnData h5ad by its top-level keys."""
    import h5py

    with h5py.File(path, "r") as f:
        keys = set(f.keys())
        if "X" in keys or "obs" in keys:
            return "h5ad"
        if "row_attrs" in keys and "col_attrs" in keys:
            return "loom"
        if "matrix" in keys or any(
            isinstance(f[k], h5py.Group) and "barcodes" in f[k] for k in keys
        ):
            return "10x_h5"
    raise ValueError(f"{path}: HDF5 file is neither an AnnData h5ad nor a 10x h5 (keys {sorted(keys)})")


def read_10x_h5(
    path: str | Path, feature_type: str | None = "Gene Expression", modality: str | None = None
) -> AnnData:
    """Read a Cell Ranger ``.h5`` matrix with :func:`scanpy.read_10x_h5`.

    Parameters
    ----------
    path
        The ``.h5`` file (v3 ``/matrix`` layout or v2 per-genome layout).
    feature_type
        Keep only this feature type when several are present (``None`` keeps all).
    modality
        ``"atac"`` keeps ``"Peaks"`` features instead (10x Multiome / ATAC h5).

    Returns
    -------
    AnnData
        Cells x features counts with ``var["gene_ids"]``.
    """
    import scanpy as sc

    path = Path(path)
    if modality == "atac":
        feature_type = "Peaks"
    adata = sc.read_10x_h5(path, gex_only=False)
    adata = _keep_feature_type(adata, feature_type, str(path))
    return _finalize(adata)


_COUNT_LAYERS = ("counts", "raw_counts", "count", "umi", "UMI", "spliced")


def read_h5ad_counts(path: str | Path) -> AnnData:
    """Read an ``.h5ad`` and return its raw-count matrix.

    The counts are taken from the first integer-valued source among ``.X``,
    ``layers["counts"]`` (or ``raw_counts``/``count``/``umi``/``UMI``/``spliced``)
    and ``.raw.X``. If none is integer-valued, ``.X`` is returned unchanged (the
    validator then refuses it as normalized). Only ``obs`` and ``var`` are kept.

    Parameters
    ----------
    path
        The ``.h5ad`` file.

    Returns
    -------
    AnnData
        Cells x features counts with the file's ``obs``/``var`` annotations.
    """
    path = Path(path)
    src = ad.read_h5ad(path)
    obs = src.obs.copy()
    if src.X is not None and _is_integer_valued(src.X):
        adata = AnnData(src.X, obs=obs, var=src.var.copy())
    else:
        adata = None
        for layer in _COUNT_LAYERS:
            if layer in src.layers and _is_integer_valued(src.layers[layer]):
                log.info("%s: .X is not integer, using layers[%r] as counts", path, layer)
                adata = AnnData(src.layers[layer], obs=obs, var=src.var.copy())
                break
        if adata is None and src.raw is not None and _is_integer_valued(src.raw.X):
            log.info("%s: .X is not integer, using .raw.X as counts", path)
            adata = AnnData(src.raw.X, obs=obs, var=src.raw.var.copy())
        if adata is None:
            adata = AnnData(src.X, obs=obs, var=src.var.copy())
    return _finalize(adata)


# ---------------------------------------------------------------------------
# dense delimited text
# ---------------------------------------------------------------------------

_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$", re.IGNORECASE)
# 10x (16 nt), Drop-seq (12 nt) or inDrops barcodes inside a cell name
_BARCODE_RE = re.compile(r"(?:^|[^ACGTN])[ACGTN]{12,}(?:[^ACGTN]|$)")
# Genes expressed in nearly every scRNA-seq data set (human/mouse, upper-cased)
_COMMON_GENES = frozenset(
    """ACTB GAPDH B2M MALAT1 TMSB4X TMSB10 FTL FTH1 EEF1A1 TPT1 UBB UBC MYL6 PTMA
    HSP90AB1 PPIA NEAT1 VIM CD74 HLA-A HLA-B HLA-C LYZ CST3 S100A4 S100A6 TUBA1B
    ACTG1 PFN1 CFL1 ARPC2 H3F3A H3F3B NPM1 HNRNPA1 EIF1 SERF2 COX4I1 ATP5F1E""".split()
)
_GENE_PREFIX_RE = re.compile(r"^(MT-|RPL\d|RPS\d|ENS)", re.IGNORECASE)


def _gene_evidence(names: Sequence[str]) -> tuple[float, int]:
    """(fraction of Ensembl-like ids, number of well-known gene symbols) in ``names``."""
    upper = [str(n).upper() for n in names]
    ens = sum(bool(_ENSEMBL_RE.match(n)) for n in upper) / max(len(upper), 1)
    known = len({n for n in upper if n in _COMMON_GENES or _GENE_PREFIX_RE.match(n)})
    return ens, known


def _barcode_fraction(names: Sequence[str]) -> float:
    return sum(bool(_BARCODE_RE.search(str(n).upper())) for n in names) / max(len(names), 1)


def detect_orientation(
    row_names: Sequence[str], col_names: Sequence[str]
) -> tuple[Literal["cells_x_genes", "genes_x_cells"], str]:
    """Guess whether a dense table is genes x cells or cells x genes.

    Rules, applied in order (the first that decides wins):

    1. Ensembl ids: the axis where >= 50 % of names look like ``ENS*G...`` ids
       (and more than on the other axis) holds genes.
    2. Cell barcodes: the axis where >= 50 % of names contain a run of >= 12
       nucleotides (10x, Drop-seq barcodes) holds cells.
    3. Gene symbols: the axis with >= 2 distinct well-known genes (ACTB, GAPDH,
       B2M, MALAT1, MT-*, RPL*/RPS* ...) while the other axis has none holds genes.
    4. Shape: more rows than columns means genes x cells (the usual GEO layout for
       dense text tables, which are small plate-based data sets); more columns
       than rows means cells x genes; a square table is taken as genes x cells.

    Parameters
    ----------
    row_names, col_names
        Row and column labels of the table.

    Returns
    -------
    tuple
        The orientation and a short human-readable reason.
    """
    ens_r, known_r = _gene_evidence(row_names)
    ens_c, known_c = _gene_evidence(col_names)
    if max(ens_r, ens_c) >= 0.5 and ens_r != ens_c:
        return ("genes_x_cells", "rows are Ensembl ids") if ens_r > ens_c else (
            "cells_x_genes",
            "columns are Ensembl ids",
        )
    bc_r, bc_c = _barcode_fraction(row_names), _barcode_fraction(col_names)
    if max(bc_r, bc_c) >= 0.5 and bc_r != bc_c:
        return ("cells_x_genes", "rows are cell barcodes") if bc_r > bc_c else (
            "genes_x_cells",
            "columns are cell barcodes",
        )
    if known_r >= 2 and known_c == 0:
        return "genes_x_cells", f"rows contain {known_r} well-known gene symbols"
    if known_c >= 2 and known_r == 0:
        return "cells_x_genes", f"columns contain {known_c} well-known gene symbols"
    n_r, n_c = len(row_names), len(col_names)
    if n_c > n_r:
        return "cells_x_genes", f"fewer rows ({n_r}) than columns ({n_c})"
    return "genes_x_cells", f"at least as many rows ({n_r}) as columns ({n_c})"


def _sniff_sep(path: Path) -> str:
    name = _strip_gz(path.name.lower())
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".tab")):
        return "\t"
    with _open_maybe_gz(path, "rt") as fh:
        line = fh.readline()
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return r"\s+"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_dense(
    path: str | Path,
    orientation: Orientation = "auto",
    sep: str | None = None,
    chunksize: int = 2000,
) -> AnnData:
    """Read a dense delimited count table into a sparse AnnData.

    The first column holds row labels, the first line column labels (a header
    one field shorter than the data rows, as written by R, is accepted).
    Further leading non-numeric columns (e.g. a gene symbol next to an Ensembl
    id) are kept as row annotations. The table is read in chunks and stored
    sparse.

    Parameters
    ----------
    path
        ``.csv``, ``.tsv``, ``.txt`` or ``.tab`` file, optionally gzipped.
    orientation
        ``"genes_x_cells"``, ``"cells_x_genes"`` or ``"auto"`` (see
        :func:`detect_orientation`).
    sep
        Field separator; guessed from the extension / first line if ``None``.
    chunksize
        Rows read per chunk.

    Returns
    -------
    AnnData
        Cells x genes counts. If gene rows have Ensembl ids plus a symbol
        column, ``var_names`` are the symbols and ``var["gene_ids"]`` the ids.
    """
    path = Path(path)
    if orientation not in ("auto", "cells_x_genes", "genes_x_cells"):
        raise ValueError(f"orientation must be auto, cells_x_genes or genes_x_cells, not {orientation!r}")
    sep = _sniff_sep(path) if sep is None else sep
    engine = "python" if len(sep) > 1 else "c"
    with _open_maybe_gz(path, "rt") as fh:
        header = fh.readline()
        first = fh.readline()
    if not first:
        raise ValueError(f"{path}: dense table has no data rows")
    split = re.split(sep, first.rstrip("\r\n")) if len(sep) > 1 else first.rstrip("\r\n").split(sep)
    n_annot = 0
    for field in split[1:]:
        if _is_number(field.strip().strip('"')):
            break
        n_annot += 1
    blocks: list[sp.csr_matrix] = []
    row_labels: list[pd.Index] = []
    annots: list[pd.DataFrame] = []
    columns: pd.Index | None = None
    reader = pd.read_csv(
        path, sep=sep, engine=engine, index_col=0, chunksize=chunksize, compression="infer"
    )
    for chunk in reader:
        ann = chunk.iloc[:, :n_annot].astype(str)
        num = chunk.iloc[:, n_annot:]
        bad = [c for c, dt in num.dtypes.items() if not pd.api.types.is_numeric_dtype(dt)]
        if bad:
            raise ValueError(f"{path}: non-numeric values in columns {[str(b) for b in bad[:5]]}")
        columns = num.columns if columns is None else columns
        blocks.append(sp.csr_matrix(num.to_numpy(dtype=np.float32)))
        row_labels.append(chunk.index.astype(str))
        annots.append(ann)
    assert columns is not None
    mat = sp.vstack(blocks, format="csr")
    rows = row_labels[0].append(row_labels[1:]) if len(row_labels) > 1 else row_labels[0]
    row_annot = pd.concat(annots) if n_annot else pd.DataFrame(index=rows)
    row_annot.index = rows
    cols = pd.Index(columns.astype(str))
    if orientation == "auto":
        orientation, reason = detect_orientation(list(rows), list(cols))
        log.info("%s: orientation %s (%s)", path, orientation, reason)
    if orientation == "genes_x_cells":
        var = row_annot
        obs = pd.DataFrame(index=cols)
        mat = mat.T.tocsr()
    else:
        obs = row_annot
        var = pd.DataFrame(index=cols)
    if n_annot and orientation == "genes_x_cells":
        ids = var.index.to_series()
        symbols = var.iloc[:, 0].astype(str)
        if ids.map(lambda s: bool(_ENSEMBL_RE.match(s))).mean() >= 0.5:
            var = var.iloc[:, 1:].copy()
            var.insert(0, "gene_ids", ids.to_numpy())
            var.index = pd.Index(symbols.to_numpy())
    elif var.index.to_series().map(lambda s: bool(_ENSEMBL_RE.match(str(s)))).mean() >= 0.5:
        var["gene_ids"] = var.index.to_numpy()
    obs.index, var.index = _unique_barcodes(obs.index, path), _unique(var.index, path)
    adata = AnnData(mat, obs=obs, var=var)
    return _finalize(adata)
