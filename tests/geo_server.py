"""Test helpers: a loopback HTTP server with Range support and a GEO-shaped file tree.

* :class:`GeoServer` / :func:`serve_directory`: ``ThreadingHTTPServer`` on
  127.0.0.1, port 0, serving a directory; supports ``Range: bytes=`` requests
  (206/416), logs every request, and can send a truncated body once for chosen
  paths (to exercise resumable downloads) or fail once with an HTTP error status.
* :func:`pbmc_counts`: real integer UMI counts recovered from scanpy's bundled
  ``pbmc68k_reduced`` (``round(expm1(raw.X) * n_counts / 1e4)``).
* :func:`write_10x_mtx`, :func:`write_10x_h5`: Cell Ranger style payloads.
* :func:`build_geo_tree`: ``series/GSEnnn/GSE/soft/GSE_family.soft.gz`` plus
  series/sample ``suppl/`` folders, laid out as on ftp.ncbi.nlm.nih.gov/geo.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

GEO_FTP = "ftp://ftp.ncbi.nlm.nih.gov/geo"

# ---------------------------------------------------------------------------
# HTTP server
# ---------------------------------------------------------------------------


class _RangeHandler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
        pass

    def _target(self) -> Path | None:
        rel = unquote(urlparse(self.path).path).lstrip("/")
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents and path != self.server.root:
            return None
        return path if path.is_file() else None

    def _send_head(self, status: int, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _handle(self, body: bool) -> None:
        path = self._target()
        rng = self.headers.get("Range")
        entry = {"path": urlparse(self.path).path, "range": rng, "status": None}
        self.server.log.append(entry)
        fail = self.server.fail.pop(entry["path"], None) if body else None
        if fail is not None:
            entry["status"] = fail
            msg = b"temporarily unavailable\n"
            self._send_head(fail, len(msg), {"Content-Type": "text/plain"})
            self.wfile.write(msg)
            return
        if path is None:
            entry["status"] = 404
            msg = b"not found\n"
            self._send_head(404, len(msg), {"Content-Type": "text/plain"})
            if body:
                self.wfile.write(msg)
            return
        size = path.stat().st_size
        start, end, status, extra = 0, size - 1, 200, {}
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m is None or (not m[1] and not m[2]):
                start = None  # malformed: ignore the header, send the whole file
            elif m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            else:  # suffix range: last N bytes
                start, end = max(size - int(m[2]), 0), size - 1
            if start is None:
                start, end = 0, size - 1
            elif start >= size or start > end:
                entry["status"] = 416
                self._send_head(416, 0, {"Content-Range": f"bytes */{size}"})
                return
            else:
                status = 206
                extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1
        entry["status"] = status
        cut = self.server.truncate.pop(entry["path"], None) if body else None
        self._send_head(status, length, extra)
        if not body:
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        if cut is not None:
            # promise `length` bytes, send fewer, then drop the connection
            entry["truncated_to"] = cut
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._handle(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(body=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    log: list[dict]
    truncate: dict[str, int]
    fail: dict[str, int]


@dataclass
class GeoServer:
    """Running loopback server; ``url`` is its base, ``log`` the requests seen."""

    root: Path
    url: str
    log: list[dict] = field(default_factory=list)
    truncate: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)

    def fail_once(self, url_path: str, status: int = 503) -> None:
        """Answer the next GET of ``url_path`` with HTTP ``status``."""
        self.fail[url_path] = status

    def requests_for(self, url_path: str) -> list[dict]:
        """Logged requests for ``url_path``."""
        return [e for e in self.log if e["path"] == url_path]

    def truncate_once(self, url_path: str, n_bytes: int) -> None:
        """Send only ``n_bytes`` of the next GET body of ``url_path`` (e.g. ``/series/...``)."""
        self.truncate[url_path] = n_bytes


@contextmanager
def serve_directory(root: Path) -> Iterator[GeoServer]:
    """Serve ``root`` over HTTP on 127.0.0.1 (random port) for the duration of the block."""
    httpd = _Server(("127.0.0.1", 0), _RangeHandler)
    httpd.root = Path(root).resolve()
    state = GeoServer(root=httpd.root, url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.log = state.log
    httpd.truncate = state.truncate
    httpd.fail = state.fail
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------
# real 10x-like payloads
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _pbmc_counts_cached() -> AnnData:
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    logx = src.raw.X.toarray() if sp.issparse(src.raw.X) else np.asarray(src.raw.X)
    counts = np.rint(np.expm1(logx) * src.obs["n_counts"].to_numpy()[:, None] / 1e4)
    obs = pd.DataFrame({"bulk_labels": src.obs["bulk_labels"].astype(str).to_numpy()},
                       index=src.obs_names.astype(str))
    var = pd.DataFrame(index=src.raw.var_names.astype(str))
    # pbmc68k_reduced ships no gene ids; these placeholders only test that ids travel to var
    var["gene_ids"] = [f"SYNTHID{i:05d}" for i in range(var.shape[0])]
    return AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)


def pbmc_counts(n_cells: int | None = None, start: int = 0) -> AnnData:
    """Real PBMC UMI counts (700 cells x 765 genes at most), rows ``start:start+n_cells``."""
    full = _pbmc_counts_cached()
    stop = full.n_obs if n_cells is None else start + n_cells
    return full[start:stop].copy()


def write_10x_mtx(
    adata: AnnData, directory: Path, prefix: str = "", version: str = "v3", gz: bool = True,
    feature_names: list[str] | None = None,
) -> list[Path]:
    """Write a Cell Ranger triplet (features x cells MatrixMarket + tsv files)."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    names = list(adata.var_names) if feature_names is None else feature_names
    ids = list(adata.var["gene_ids"]) if "gene_ids" in adata.var else names

    def opener(path: Path):  # noqa: ANN202
        return gzip.open(path, "wb") if gz else open(path, "wb")

    mtx = directory / f"{prefix}matrix.mtx{ext}"
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sp.coo_matrix(adata.X.T.astype(np.int64)), field="integer")
    with opener(mtx) as fh:
        fh.write(buf.getvalue())
    bc = directory / f"{prefix}barcodes.tsv{ext}"
    with opener(bc) as fh:
        fh.write("".join(f"{b}\n" for b in adata.obs_names).encode())
    feat = directory / (f"{prefix}features.tsv{ext}" if version == "v3" else f"{prefix}genes.tsv{ext}")
    with opener(feat) as fh:
        if version == "v3":
            lines = [f"{i}\t{n}\tGene Expression\n" for i, n in zip(ids, names)]
        else:
            lines = [f"{i}\t{n}\n" for i, n in zip(ids, names)]
        fh.write("".join(lines).encode())
    return [mtx, bc, feat]


def write_10x_h5(adata: AnnData, path: Path, extra_features: int = 0) -> Path:
    """Write a Cell Ranger v3 ``filtered_feature_bc_matrix.h5``-style file.

    ``extra_features`` appends that many all-zero "Antibody Capture" features.
    """
    import h5py

    x = sp.csc_matrix(adata.X.T.astype(np.int32))  # features x cells, CSC = per-cell columns
    n_feat = adata.n_vars + extra_features
    if extra_features:
        x = sp.csc_matrix(sp.vstack([x, sp.csr_matrix((extra_features, adata.n_obs), dtype=np.int32)]))
    names = list(adata.var_names) + [f"ADT{i}" for i in range(extra_features)]
    ids = list(adata.var["gene_ids"]) + [f"ADTID{i}" for i in range(extra_features)]
    types = ["Gene Expression"] * adata.n_vars + ["Antibody Capture"] * extra_features
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(adata.obs_names, dtype="S")
        g["data"] = x.data
        g["indices"] = x.indices.astype(np.int64)
        g["indptr"] = x.indptr.astype(np.int64)
        g["shape"] = np.array([n_feat, adata.n_obs], dtype=np.int32)
        feats = g.create_group("features")
        feats["id"] = np.array(ids, dtype="S")
        feats["name"] = np.array(names, dtype="S")
        feats["feature_type"] = np.array(types, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * n_feat, dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])
    return path


def write_multiome_h5(rna: AnnData, atac: AnnData, path: Path) -> Path:
    """Cell Ranger ARC style ``.h5``: "Gene Expression" then "Peaks" features of the same cells."""
    import h5py

    assert list(rna.obs_names) == list(atac.obs_names)
    x = sp.csc_matrix(sp.hstack([rna.X, atac.X]).T.astype(np.int32))
    names = list(rna.var_names) + list(atac.var_names)
    ids = list(rna.var["gene_ids"]) + list(atac.var_names)
    types = ["Gene Expression"] * rna.n_vars + ["Peaks"] * atac.n_vars
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(rna.obs_names, dtype="S")
        g["data"], g["indices"], g["indptr"] = x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)
        g["shape"] = np.array([len(names), rna.n_obs], dtype=np.int32)
        feats = g.create_group("features")
        feats["id"] = np.array(ids, dtype="S")
        feats["name"] = np.array(names, dtype="S")
        feats["feature_type"] = np.array(types, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(names), dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])
    return path


@lru_cache(maxsize=1)
def _atac_cached(path: str) -> AnnData:
    import anndata as ad

    return ad.read_h5ad(path)


def atac_counts(n_cells: int = 120, n_peaks: int = 400) -> AnnData:
    """Real scATAC peak counts (Granja 2019 hematopoiesis, 600 x 5000 fixture in ../shared).

    Skips the calling test when ``../shared`` is missing. Peaks with no count in
    the chosen cells are dropped, so every returned peak is non-empty.
    """
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "granja2019_hemato_atac_600.h5ad"
    if not path.exists():
        pytest.skip(f"{path.name} not found because ../shared is missing")
    full = _atac_cached(str(path))
    sub = full[:n_cells, :n_peaks].copy()
    sub = sub[:, np.asarray(sub.X.sum(axis=0)).ravel() > 0].copy()
    sub.X = sp.csr_matrix(sub.X, dtype=np.float32)
    return AnnData(sub.X, obs=pd.DataFrame(index=sub.obs_names.astype(str)),
                   var=sub.var[["chr", "start", "end"]].copy())


def write_peak_triplet(adata: AnnData, directory: Path, prefix: str = "") -> list[Path]:
    """cellranger-atac style ``matrix.mtx.gz`` (peaks x cells) + ``barcodes.tsv.gz`` + ``peaks.bed.gz``."""
    directory.mkdir(parents=True, exist_ok=True)
    mtx = directory / f"{prefix}matrix.mtx.gz"
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sp.coo_matrix(adata.X.T.astype(np.int64)), field="integer")
    with gzip.open(mtx, "wb") as fh:
        fh.write(buf.getvalue())
    bc = directory / f"{prefix}barcodes.tsv.gz"
    with gzip.open(bc, "wt") as fh:
        fh.write("".join(f"{b}\n" for b in adata.obs_names))
    peaks = directory / f"{prefix}peaks.bed.gz"
    with gzip.open(peaks, "wt") as fh:
        for c, s0, e in zip(adata.var["chr"], adata.var["start"], adata.var["end"]):
            fh.write(f"{c}\t{s0}\t{e}\n")
    return [mtx, bc, peaks]


def write_fragments(path: Path, fragments: list[tuple[str, int, int, str]]) -> Path:
    """10x ``fragments.tsv.gz`` (chr, start, end, barcode, read count 1) with a header comment."""
    with gzip.open(path, "wt") as fh:
        fh.write("# id=test\n# reference_path=/refdata-cellranger-arc-GRCh38\n")
        for c, s0, e, b in fragments:
            fh.write(f"{c}\t{s0}\t{e}\t{b}\t1\n")
    return path


# ---------------------------------------------------------------------------
# GEO tree
# ---------------------------------------------------------------------------


def stem(accession: str) -> str:
    """``GSE123456`` -> ``GSE123nnn`` (independent re-implementation for the tests)."""
    prefix, digits = accession[:3], accession[3:]
    return prefix + (digits[:-3] if len(digits) > 3 else "") + "nnn"


@dataclass
class SampleSpec:
    """One GEO sample: accession, title, characteristics and supplementary payload files."""

    gsm: str
    title: str
    characteristics: list[str]
    files: list[Path]
    source_name: str = "PBMC"


def family_soft(accession: str, samples: list[SampleSpec], series_files: list[str]) -> str:
    """A family SOFT text in GEO's layout (modelled on real GSE105845_family.soft)."""
    lines = [
        "^DATABASE = GeoMiame",
        "!Database_name = Gene Expression Omnibus (GEO)",
        "!Database_institute = NCBI NLM NIH",
        "!Database_web_link = http://www.ncbi.nlm.nih.gov/geo",
        "!Database_email = geo@ncbi.nlm.nih.gov",
        f"^SERIES = {accession}",
        "!Series_title = Single-cell RNA-seq of peripheral blood mononuclear cells (test fixture)",
        f"!Series_geo_accession = {accession}",
        "!Series_status = Public on Jan 10 2024",
        "!Series_submission_date = Dec 01 2023",
        "!Series_last_update_date = Jan 12 2024",
        "!Series_summary = 10x Genomics 3' scRNA-seq of PBMCs from two donors.",
        "!Series_overall_design = Two donors, one library each.",
        "!Series_type = Expression profiling by high throughput sequencing",
    ]
    lines += [f"!Series_sample_id = {s.gsm}" for s in samples]
    lines += [
        "!Series_contact_name = Jane,,Doe",
        "!Series_contact_country = USA",
    ]
    acc_dir = f"{GEO_FTP}/series/{stem(accession)}/{accession}/suppl"
    lines += [f"!Series_supplementary_file = {acc_dir}/{name}" for name in series_files]
    lines += [
        "!Series_platform_id = GPL24676",
        "!Series_platform_taxid = 9606",
        "!Series_sample_taxid = 9606",
        "^PLATFORM = GPL24676",
        "!Platform_title = Illumina NovaSeq 6000 (Homo sapiens)",
        "!Platform_geo_accession = GPL24676",
        "!Platform_status = Public on Feb 22 2018",
        "!Platform_technology = high-throughput sequencing",
        "!Platform_distribution = virtual",
        "!Platform_organism = Homo sapiens",
        "!Platform_taxid = 9606",
        "!Platform_data_row_count = 0",
    ]
    for s in samples:
        suppl = f"{GEO_FTP}/samples/{stem(s.gsm)}/{s.gsm}/suppl"
        lines += [
            f"^SAMPLE = {s.gsm}",
            f"!Sample_title = {s.title}",
            f"!Sample_geo_accession = {s.gsm}",
            "!Sample_status = Public on Jan 10 2024",
            "!Sample_type = SRA",
            "!Sample_channel_count = 1",
            f"!Sample_source_name_ch1 = {s.source_name}",
            "!Sample_organism_ch1 = Homo sapiens",
        ]
        lines += [f"!Sample_characteristics_ch1 = {c}" for c in s.characteristics]
        lines += [
            "!Sample_molecule_ch1 = polyA RNA",
            "!Sample_extract_protocol_ch1 = Chromium Single Cell 3' v3",
            "!Sample_taxid_ch1 = 9606",
            "!Sample_description = Cell Ranger 7.1 filtered matrix",
            "!Sample_data_processing = Reads aligned to GRCh38 with Cell Ranger",
            "!Sample_platform_id = GPL24676",
            "!Sample_instrument_model = Illumina NovaSeq 6000",
            "!Sample_library_selection = cDNA",
            "!Sample_library_source = transcriptomic single cell",
            "!Sample_library_strategy = RNA-Seq",
        ]
        lines += [
            f"!Sample_supplementary_file_{i} = {suppl}/{p.name}" for i, p in enumerate(s.files, 1)
        ]
        if not s.files:
            lines.append("!Sample_supplementary_file_1 = NONE")
        lines += [
            f"!Sample_series_id = {accession}",
            "!Sample_data_row_count = 0",
        ]
    return "\n".join(lines) + "\n"


def build_geo_tree(
    root: Path, accession: str, samples: list[SampleSpec], series_files: list[Path] | None = None
) -> Path:
    """Lay out a GEO mirror under ``root`` and return the SOFT path.

    Sample and series payload files are copied into the ``suppl`` folders; the
    family SOFT lists them with GEO's ``ftp://ftp.ncbi.nlm.nih.gov/geo`` URLs.
    """
    series_files = series_files or []
    series_dir = root / "series" / stem(accession) / accession
    (series_dir / "soft").mkdir(parents=True, exist_ok=True)
    for p in series_files:
        (series_dir / "suppl").mkdir(exist_ok=True)
        shutil.copyfile(p, series_dir / "suppl" / p.name)
    for s in samples:
        d = root / "samples" / stem(s.gsm) / s.gsm / "suppl"
        d.mkdir(parents=True, exist_ok=True)
        for p in s.files:
            shutil.copyfile(p, d / p.name)
    soft = series_dir / "soft" / f"{accession}_family.soft.gz"
    with gzip.open(soft, "wt") as fh:
        fh.write(family_soft(accession, samples, [p.name for p in series_files]))
    return soft


_TREE_CACHE: dict[str, Path] = {}


def _build_two_sample_series(tmp: Path, accession: str) -> Path:
    payload = tmp / "payload"
    specs = []
    for k, (gsm, start, n, donor) in enumerate(
        [("GSM8000001", 0, 300, "D1"), ("GSM8000002", 300, 250, "D2")]
    ):
        files = write_10x_mtx(pbmc_counts(n, start), payload / gsm, prefix=f"{gsm}_")
        specs.append(
            SampleSpec(
                gsm=gsm,
                title=f"PBMC donor {donor}",
                characteristics=["tissue: peripheral blood", f"donor: {donor}",
                                 f"age: {30 + 10 * k}", "healthy control"],
                files=files,
            )
        )
    root = tmp / "geo"
    build_geo_tree(root, accession, specs)
    return root


def two_sample_series(tmp: Path, accession: str = "GSE999001") -> tuple[Path, list[str]]:
    """GEO tree with two 10x samples (PBMC cells 0-299 and 300-549) at ``tmp/geo``.

    Sample GSM8000001 (donor D1, age 30) and GSM8000002 (donor D2, age 40); the
    tree is built once per process and copied, to keep tests fast.
    """
    if accession not in _TREE_CACHE:
        import atexit
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="geovae_geo_tree_"))
        atexit.register(shutil.rmtree, base, True)
        _TREE_CACHE[accession] = _build_two_sample_series(base, accession)
    root = tmp / "geo"
    shutil.copytree(_TREE_CACHE[accession], root)
    return root, ["GSM8000001", "GSM8000002"]


__all__ = [
    "GeoServer",
    "geo_mirror",
    "SampleSpec",
    "build_geo_tree",
    "family_soft",
    "pbmc_counts",
    "serve_directory",
    "stem",
    "two_sample_series",
    "write_10x_h5",
    "write_10x_mtx",
    "atac_counts",
    "write_fragments",
    "write_multiome_h5",
    "write_peak_triplet",
]



@pytest.fixture
def geo_mirror(tmp_path: Path) -> Iterator[GeoServer]:
    """pytest fixture: the two-sample 10x series of :func:`two_sample_series`, served over HTTP."""
    root, _ = two_sample_series(tmp_path)
    with serve_directory(root) as server:
        yield server
