"""Reading any local count file: the adapter registry, format detection, archives, ``read_local``.

Adapters are functions ``fn(path, **options) -> AnnData`` of cells x features raw counts: the basic
readers of :mod:`geovae.data.readers` and the format adapters of :mod:`geovae.data.adapters` are
registered here, and :func:`register_adapter` adds more. This module imports both and neither imports
it back, so the package's import graph has no cycle.
"""

from __future__ import annotations

import gzip
import inspect
import logging
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from anndata import AnnData

from geovae.data import adapters
from geovae.data.adapters import annotate_peaks, find_peak_triplets, use_gene_symbols
from geovae.data.readers import (_HDF5_MAGIC, _TAR_SUFFIXES, _TEXT_SUFFIXES, Orientation, _finalize, _hdf5_kind,
                                 _open_maybe_gz, _strip_gz, _unique, _unique_barcodes, find_10x_triplets,
                                 read_10x_h5, read_10x_mtx, read_dense, read_h5ad_counts)
from geovae.data.validate import check_counts

__all__ = ["ADAPTERS", "CorruptFileError", "detect_adapter", "read_local", "read_tar", "register_adapter"]

log = logging.getLogger(__name__)


def _pick_in_tree(root: Path) -> Path:
    """Choose the readable input inside an extracted archive."""
    files = [p for p in root.rglob("*") if p.is_file()]
    by_dir: dict[Path, list[str]] = {}
    for p in files:
        by_dir.setdefault(p.parent, []).append(p.name)
    candidates: list[tuple[int, str, Path]] = []
    for d, names in by_dir.items():
        for trip in find_10x_triplets(names):
            rank = 0 if "filtered" in (str(d) + trip["prefix"]).lower() else 1
            candidates.append((rank, str(d / trip["matrix"]), d / trip["matrix"]))
        for trip in find_peak_triplets(names):
            candidates.append((1, str(d / trip["matrix"]), d / trip["matrix"]))
    if not candidates:
        for p in files:
            low = _strip_gz(p.name.lower())
            if low.endswith(".loom"):
                candidates.append((2, str(p), p))
            elif low.endswith((".h5ad", ".h5mu")):
                candidates.append((2, str(p), p))
            elif low.endswith(".h5"):
                candidates.append((0 if "filtered" in low else 3, str(p), p))
            elif low.endswith(_TEXT_SUFFIXES):
                candidates.append((4, str(p), p))
    if not candidates:
        raise ValueError(f"no readable count file in archive; files: {[str(p.relative_to(root)) for p in files]}")
    return sorted(candidates)[0][2]


def read_tar(
    path: str | Path, orientation: Orientation = "auto", modality: str | None = None
) -> AnnData:
    """Read counts from a ``.tar``/``.tar.gz`` archive (e.g. a zipped Cell Ranger folder).

    The archive is extracted (safely, with the tarfile ``data`` filter) into a
    temporary directory; a 10x triplet is preferred (``filtered`` first), then
    ``.h5``, ``.h5ad`` and dense text files.

    Parameters
    ----------
    path
        The archive.
    orientation
        Passed to :func:`read_dense` if a dense table is read.
    modality
        Passed to the inner adapter (feature-type selection).

    Returns
    -------
    AnnData
        Cells x features counts.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="geovae_tar_") as tmp:
        with tarfile.open(path) as tf:
            tf.extractall(tmp, filter="data")
        inner = _pick_in_tree(Path(tmp))
        log.info("%s: reading %s", path, inner.relative_to(tmp))
        return read_local(inner, orientation=orientation, modality=modality, validate=False)


ADAPTERS: dict[str, Callable[..., AnnData]] = {
    "h5ad": read_h5ad_counts,
    "10x_mtx": read_10x_mtx,
    "10x_h5": read_10x_h5,
    "dense": read_dense,
    "tar": read_tar,
}
# (name, predicate) pairs tried by detect_adapter before the built-in rules
_DETECTORS: list[tuple[str, Callable[[Path], bool]]] = []
# options read_local may pass to an adapter whose signature names them
_ADAPTER_OPTIONS = ("orientation", "modality", "min_fragments")


def register_adapter(
    name: str, reader: Callable[..., AnnData], detect: Callable[[Path], bool] | None = None
) -> None:
    """Add (or replace) an adapter usable by :func:`read_local` and the GEO acquisition.

    Parameters
    ----------
    name
        Adapter name (the dataset sheet's ``adapter`` column uses it).
    reader
        ``reader(path, **options) -> AnnData`` of cells x features raw counts;
        options (``orientation``, ``modality``, ``min_fragments``) are passed only
        when its signature names them.
    detect
        Optional predicate on a path; when it returns True, :func:`detect_adapter`
        chooses this adapter (checked before the built-in rules, in registration order).
    """
    ADAPTERS[name] = reader
    _DETECTORS[:] = [(n, d) for n, d in _DETECTORS if n != name]
    if detect is not None:
        _DETECTORS.append((name, detect))


def detect_adapter(path: str | Path) -> str:
    """Name of the adapter (key of :data:`ADAPTERS`) able to read ``path``.

    Registered detectors (loom, scATAC peak triplets, fragment files) are tried
    first; then directories are 10x triplets and files are recognised by
    extension (``.gz`` ignored), then by content (HDF5, MatrixMarket or tar
    magic, otherwise text).

    Parameters
    ----------
    path
        File or directory.

    Returns
    -------
    str
        e.g. ``"h5ad"``, ``"10x_mtx"``, ``"10x_h5"``, ``"dense"``, ``"tar"``, ``"loom"``,
        ``"atac_mtx"``, ``"fragments"``, ``"h5mu"``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    for name, detect in _DETECTORS:
        if detect(path):
            return name
    if path.is_dir():
        return "10x_mtx"
    low = path.name.lower()
    if low.endswith(_TAR_SUFFIXES):
        return "tar"
    base = _strip_gz(low)
    if base.endswith(".h5ad"):
        return "h5ad"
    if base.endswith(".mtx"):
        return "10x_mtx"
    if base.endswith((".h5", ".hdf5")):
        return _hdf5_kind(path)
    if base.endswith(_TEXT_SUFFIXES):
        return "dense"
    with _open_maybe_gz(path) as fh:
        head = fh.read(16)
    if head.startswith(_HDF5_MAGIC):
        return _hdf5_kind(path)
    if head.startswith(b"%%MatrixMarket"):
        return "10x_mtx"
    if tarfile.is_tarfile(path):
        return "tar"
    if b"\x00" in head:
        raise ValueError(f"{path}: unrecognised binary file; supported adapters: {sorted(ADAPTERS)}")
    return "dense"


class CorruptFileError(ValueError):
    """A count file that cannot be decoded: truncated or damaged gzip, tar or HDF5 data."""


#: Low-level errors of damaged files (gzip/zlib, tar, HDF5 via h5py's OSError, MatrixMarket parsing).
_CORRUPT_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, tarfile.TarError, UnicodeDecodeError)


class _corrupt_file_errors:
    """Re-raise decoding errors of ``path`` as :class:`CorruptFileError` naming the file and adapter."""

    def __init__(self, path: Path, adapter: str) -> None:
        self.path, self.adapter = path, adapter

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            return False
        hdf5 = isinstance(exc, OSError) and any(
            word in str(exc) for word in ("file signature", "truncated", "Unable to open", "Unable to synchronously",
                                          "bad object header", "Can't decompress", "Unable to read"))
        if isinstance(exc, _CORRUPT_ERRORS) or hdf5:
            raise CorruptFileError(
                f"{self.path}: corrupt or truncated file (adapter {self.adapter}; {type(exc).__name__}: {exc}); "
                "delete it (for GEO data also its copy in the download cache) and download it again"
            ) from exc
        return False


def read_local(
    path: str | Path,
    adapter: str | None = None,
    *,
    orientation: Orientation = "auto",
    modality: str | None = None,
    min_fragments: int | None = None,
    validate: bool = True,
) -> AnnData:
    """Read a local count file or 10x directory into a cells x features AnnData.

    Parameters
    ----------
    path
        File (``.h5ad``, ``.h5``, ``.loom``, ``*matrix.mtx[.gz]``, ``.csv/.tsv/.txt[.gz]``,
        ``.tar[.gz]``, ``fragments.tsv.gz``, ``.h5mu``) or 10x mtx directory.
    adapter
        Force an adapter (a key of :data:`ADAPTERS`); ``None`` detects it with
        :func:`detect_adapter`.
    orientation
        For dense tables: ``"auto"``, ``"cells_x_genes"`` or ``"genes_x_cells"``.
    modality
        ``"rna"`` or ``"atac"``: selects the feature type of multi-modal files
        (10x Multiome: Gene Expression vs Peaks; ``.h5mu``: the rna or atac mod).
    min_fragments
        For fragment files: minimum fragments per kept cell (adapter default if ``None``).
    validate
        Run :func:`geovae.data.validate.check_counts` (raises ``ValueError``
        naming ``path`` on normalized, negative or empty matrices).

    Returns
    -------
    AnnData
        ``.X`` CSR float32 integer counts, unique ``obs_names``/``var_names``;
        gene symbols as ``var_names`` when the file has Ensembl ids plus symbols;
        ``var["chr"]``/``["start"]``/``["end"]`` when features are peaks.
    """
    path = Path(path)
    with _corrupt_file_errors(path, adapter or "detection"):
        name = adapter or detect_adapter(path)
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r} for {path}; choose one of {sorted(ADAPTERS)}")
    fn = ADAPTERS[name]
    given = {"orientation": orientation, "modality": modality, "min_fragments": min_fragments}
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in given.items() if k in params and v is not None}
    with _corrupt_file_errors(path, name):
        adata = fn(path, **kwargs)
    _unique_barcodes(adata.obs_names, path)  # h5ad, h5, loom ... readers keep the file's names
    adata.var_names = _unique(adata.var_names, path)
    if modality != "atac":
        use_gene_symbols(adata)
    if modality == "atac" or name in ("atac_mtx", "fragments"):
        annotate_peaks(adata)
    adata = _finalize(adata)
    adata.uns["geovae_adapter"] = name
    if validate:
        check_counts(adata, source=str(path))
    return adata


for _name, _reader, _detect in adapters.BUILTIN_ADAPTERS:
    register_adapter(_name, _reader, detect=_detect)
