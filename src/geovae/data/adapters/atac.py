"""scATAC adapters: peak matrices (mtx + peaks.bed + barcodes) and fragment files."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

from geovae.data.readers import _open_maybe_gz, _unique

log = logging.getLogger(__name__)

_PEAK_FILE_RE = re.compile(
    r"^(?P<prefix>.*?)(?P<kind>matrix\.mtx|barcodes\.tsv|peaks\.bed|peaks\.tsv|peaks\.txt)(?:\.gz)?$",
    re.IGNORECASE,
)
# chr1:100-200, chr1-100-200, chr1_100_200 (also without "chr")
_PEAK_NAME_RE = re.compile(r"^(?P<chr>[A-Za-z0-9_.]+?)[:_-](?P<start>\d+)[-_](?P<end>\d+)$")
DEFAULT_BIN_SIZE = 5000
DEFAULT_MIN_FRAGMENTS = 1000


def find_peak_triplets(names: Iterable[str]) -> list[dict[str, str]]:
    """Group file names into scATAC peak-matrix triplets (matrix.mtx + barcodes.tsv + peaks.bed).

    Parameters
    ----------
    names
        File base names; grouping is by the prefix before ``matrix.mtx``,
        ``barcodes.tsv`` and ``peaks.bed`` (``.gz`` optional; ``peaks.tsv``/``.txt``
        accepted), e.g. ``GSM1_peaks.bed.gz``.

    Returns
    -------
    list of dict
        ``prefix``, ``matrix``, ``barcodes``, ``peaks`` per complete group,
        ``filtered`` prefixes first.
    """
    groups: dict[str, dict[str, str]] = {}
    for name in names:
        m = _PEAK_FILE_RE.match(name)
        if m:
            kind = m["kind"].lower().split(".")[0]
            groups.setdefault(m["prefix"], {"prefix": m["prefix"]})[kind] = name
    done = [g for g in groups.values() if {"matrix", "barcodes", "peaks"} <= g.keys()]
    return sorted(done, key=lambda g: (0 if "filtered" in g["prefix"].lower() else 1, g["prefix"]))


def annotate_peaks(adata: AnnData, min_fraction: float = 0.9) -> bool:
    """Add ``var["chr"]``, ``var["start"]``, ``var["end"]`` parsed from peak names.

    Names such as ``chr1:100-600``, ``chr1-100-600`` or ``chr1_100_600`` are
    recognised in ``var_names`` (or ``var["gene_ids"]``). Existing columns are kept.

    Parameters
    ----------
    adata
        Object to annotate in place.
    min_fraction
        Minimum fraction of names that must parse.

    Returns
    -------
    bool
        Whether the coordinates are (now) present.
    """
    if {"chr", "start", "end"} <= set(adata.var.columns):
        return True
    for names in (adata.var_names, adata.var.get("gene_ids")):
        if names is None:
            continue
        parts = pd.Series(np.asarray(names, dtype=str)).str.extract(_PEAK_NAME_RE)
        ok = parts["chr"].notna()
        if len(ok) and ok.mean() >= min_fraction:
            adata.var["chr"] = parts["chr"].fillna("").to_numpy()
            adata.var["start"] = pd.to_numeric(parts["start"]).fillna(-1).astype(np.int64).to_numpy()
            adata.var["end"] = pd.to_numeric(parts["end"]).fillna(-1).astype(np.int64).to_numpy()
            return True
    return False


def read_atac_mtx(path: str | Path) -> AnnData:
    """Read a scATAC peak matrix: ``*matrix.mtx[.gz]`` + ``*barcodes.tsv`` + ``*peaks.bed``.

    Parameters
    ----------
    path
        The directory or its ``matrix.mtx`` file (the triplet with the same prefix is used).
        The MatrixMarket file is peaks x cells (cellranger-atac layout); a cells x
        peaks file is transposed when its shape says so.

    Returns
    -------
    AnnData
        Cells x peaks counts; ``var_names`` ``chr:start-end`` with ``var["chr"]``,
        ``var["start"]``, ``var["end"]``.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    trips = find_peak_triplets(p.name for p in directory.iterdir() if p.is_file())
    if path.is_file():
        trips = [t for t in trips if t["matrix"] == path.name]
    if not trips:
        raise ValueError(f"{path}: no complete peak triplet (matrix.mtx + barcodes.tsv + peaks.bed)")
    trip = trips[0]
    with _open_maybe_gz(directory / trip["matrix"]) as fh:
        mat = sp.coo_matrix(scipy.io.mmread(fh))
    with _open_maybe_gz(directory / trip["barcodes"]) as fh:
        barcodes = pd.read_csv(fh, sep="\t", header=None, dtype=str)[0].to_numpy()
    with _open_maybe_gz(directory / trip["peaks"]) as fh:
        peaks = pd.read_csv(fh, sep=r"[\t:,-]", engine="python", header=None, comment="#",
                            dtype=str)
    if peaks.shape[1] < 3:
        raise ValueError(f"{directory / trip['peaks']}: expected chr, start, end columns")
    n_peaks, n_cells = len(peaks), len(barcodes)
    if mat.shape == (n_peaks, n_cells):
        x = mat.T.tocsr()
    elif mat.shape == (n_cells, n_peaks):
        x = mat.tocsr()
    else:
        raise ValueError(
            f"{directory / trip['matrix']}: matrix is {mat.shape[0]} x {mat.shape[1]} but "
            f"{trip['peaks']} has {n_peaks} peaks and {trip['barcodes']} {n_cells} barcodes"
        )
    chrom = peaks[0].astype(str).to_numpy()
    start = peaks[1].astype(np.int64).to_numpy()
    end = peaks[2].astype(np.int64).to_numpy()
    names = [f"{c}:{s}-{e}" for c, s, e in zip(chrom, start, end)]
    var = pd.DataFrame({"chr": chrom, "start": start, "end": end}, index=_unique(pd.Index(names)))
    return AnnData(sp.csr_matrix(x, dtype=np.float32), obs=pd.DataFrame(index=_unique(pd.Index(barcodes))),
                   var=var)


def read_fragments(
    path: str | Path,
    min_fragments: int = DEFAULT_MIN_FRAGMENTS,
    bin_size: int = DEFAULT_BIN_SIZE,
    chunksize: int = 2_000_000,
) -> AnnData:
    """Build a cells x genomic-bin matrix from a 10x ``fragments.tsv[.gz]`` file.

    Each fragment (``chr, start, end, barcode[, count]``; ``#`` comment lines
    skipped) contributes its two Tn5 insertion sites, ``start`` and ``end - 1``,
    to the ``bin_size`` tiles that contain them (the tile-matrix convention of
    ArchR/SnapATAC2). Cells with fewer than ``min_fragments`` fragments are
    dropped. Only bins seen in a kept cell become features.

    Parameters
    ----------
    path
        Fragment file.
    min_fragments
        Minimum number of fragment lines per barcode for a cell to be kept.
    bin_size
        Tile width in bp.
    chunksize
        Lines read per chunk.

    Returns
    -------
    AnnData
        Cells x bins insertion counts; ``var_names`` ``chr:start-end`` with
        ``var["chr"]``/``["start"]``/``["end"]``, ``obs["n_fragments"]``.
    """
    path = Path(path)
    parts: list[pd.DataFrame] = []
    n_frag: pd.Series | None = None
    reader = pd.read_csv(path, sep="\t", header=None, comment="#", usecols=[0, 1, 2, 3],
                         names=["chr", "start", "end", "barcode"],
                         dtype={"chr": "category", "start": np.int64, "end": np.int64, "barcode": str},
                         chunksize=chunksize, compression="infer")
    for chunk in reader:
        counts = chunk["barcode"].value_counts()
        n_frag = counts if n_frag is None else n_frag.add(counts, fill_value=0)
        ins = pd.DataFrame({
            "barcode": np.concatenate([chunk["barcode"].to_numpy()] * 2),
            "chr": np.concatenate([chunk["chr"].astype(str).to_numpy()] * 2),
            "bin": np.concatenate([chunk["start"].to_numpy(), chunk["end"].to_numpy() - 1]) // bin_size,
        })
        parts.append(ins.groupby(["barcode", "chr", "bin"], sort=False).size().rename("n").reset_index())
    if n_frag is None:
        raise ValueError(f"{path}: fragment file has no fragments")
    keep = n_frag[n_frag >= min_fragments].index
    if len(keep) == 0:
        raise ValueError(
            f"{path}: no cell has >= {min_fragments} fragments (max {int(n_frag.max())}); "
            "lower min_fragments or use a peak matrix"
        )
    table = pd.concat(parts, ignore_index=True)
    table = table[table["barcode"].isin(keep)]
    table = table.groupby(["barcode", "chr", "bin"], sort=False)["n"].sum().reset_index()
    cells = pd.Index(sorted(keep))
    feats = table[["chr", "bin"]].drop_duplicates().sort_values(["chr", "bin"]).reset_index(drop=True)
    feat_id = pd.Series(np.arange(len(feats)), index=pd.MultiIndex.from_frame(feats))
    rows = cells.get_indexer(table["barcode"])
    cols = feat_id.reindex(pd.MultiIndex.from_frame(table[["chr", "bin"]])).to_numpy()
    x = sp.csr_matrix((table["n"].to_numpy(np.float32), (rows, cols)), shape=(len(cells), len(feats)))
    start = feats["bin"].to_numpy(np.int64) * bin_size
    var = pd.DataFrame({"chr": feats["chr"].to_numpy(), "start": start, "end": start + bin_size})
    var.index = [f"{c}:{s}-{e}" for c, s, e in zip(var["chr"], var["start"], var["end"])]
    obs = pd.DataFrame({"n_fragments": n_frag.reindex(cells).to_numpy(np.int64)}, index=cells.astype(str))
    log.info("%s: %d cells with >= %d fragments (of %d barcodes), %d bins of %d bp",
             path, len(cells), min_fragments, len(n_frag), len(feats), bin_size)
    return AnnData(x, obs=obs, var=var)
