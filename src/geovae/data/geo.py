"""Acquire single-cell counts from a GEO series (GSE) through GEOparse.

Steps of :func:`acquire_geo`:

1. download ``{base_url}/series/GSE123nnn/GSE123456/soft/GSE123456_family.soft.gz``
   into the cache and parse it with :func:`GEOparse.get_GEO`;
2. collect the series and sample ``supplementary_file*`` entries and rewrite
   their ``ftp://ftp.ncbi.nlm.nih.gov/geo/...`` URLs onto ``base_url`` (an
   HTTP(S) mirror, a local directory or a ``file://`` URL);
3. choose the files to use (see :func:`plan_files`), download them (streaming,
   resumable ``.part`` files with HTTP Range, retries with exponential backoff,
   size check, sha256) and read them with :func:`geovae.data.local.read_local`;
4. concatenate samples with ``obs["sample"]`` (GSM id) plus the sample title
   and ``characteristics_ch1`` ``key: value`` pairs as obs columns.

When no sample has its own usable file and the series offers no merged matrix,
``GSE*_RAW.tar`` (GEO's bundle of every sample file) is downloaded, unpacked
into ``<cache>/<GSE>/RAW/<GSM>/`` by the ``GSM`` prefix of each member, and
every sample group is read as if its files had been listed separately.

Formats (adapters, see :mod:`geovae.data.readers` and :mod:`geovae.data.adapters`):
10x mtx triplets, 10x ``.h5`` (incl. Multiome: ``modality`` picks Gene
Expression or Peaks), MuData ``.h5mu`` (the ``modality`` mod), ``.h5ad``, ``.loom``, dense tables, ``.tar[.gz]`` archives,
scATAC peak triplets (mtx + barcodes + peaks.bed), fragment files (5 kb bins),
Visium (``filtered_feature_bc_matrix.h5`` + ``tissue_positions*.csv``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import fnmatch
import tarfile

import anndata as ad
import pandas as pd
from anndata import AnnData

from geovae.data.local import read_local
from geovae.data.readers import find_10x_triplets
from geovae.data.validate import as_counts_csr, check_counts
from geovae.options import GEO

__all__ = [
    "DEFAULT_GEO_BASE_URL",
    "GEODownloadError",
    "acquire_geo",
    "accession_stem",
    "download_file",
    "globs_to_regex",
    "group_by_sample",
    "parse_characteristics",
    "plan_files",
    "rewrite_url",
    "series_soft_url",
]

log = logging.getLogger(__name__)

DEFAULT_GEO_BASE_URL = GEO.base_url  # declared in geovae.options
# Prefixes under which GEO SOFT files list supplementary files.
_GEO_URL_PREFIXES = (
    "ftp://ftp.ncbi.nlm.nih.gov/geo",
    "https://ftp.ncbi.nlm.nih.gov/geo",
    "http://ftp.ncbi.nlm.nih.gov/geo",
)
_CHUNK = 1 << 20
_PROGRESS_MIN_BYTES = 100 << 20
_RESERVED_OBS = {"sample", "title", "source_name_ch1", "organism_ch1"}


class GEODownloadError(RuntimeError):
    """A GEO file could not be downloaded (HTTP error, missing file, size mismatch)."""


class _Retryable(Exception):
    """Transient download failure (truncated body, 5xx, connection reset)."""


# ---------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------


def accession_stem(accession: str) -> str:
    """GEO directory stem of an accession: the last three digits replaced by ``nnn``.

    Parameters
    ----------
    accession
        ``GSE``/``GSM``/``GPL``/``GDS`` accession, e.g. ``"GSE123456"``.

    Returns
    -------
    str
        e.g. ``"GSE123nnn"``; ``"GSEnnn"`` for ids with at most three digits.
    """
    m = re.fullmatch(r"(GSE|GSM|GPL|GDS)(\d+)", accession.strip().upper())
    if m is None:
        raise ValueError(f"not a GEO accession: {accession!r} (expected e.g. GSE123456)")
    digits = m[2]
    return f"{m[1]}{digits[:-3]}nnn"


def _normalize_base(base_url: str | Path) -> str:
    """Return ``base_url`` as a URL without trailing slash (local paths -> file://)."""
    text = str(base_url).rstrip("/")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return text
    return Path(text).expanduser().resolve().as_uri()


def series_soft_url(accession: str, base_url: str | Path = DEFAULT_GEO_BASE_URL) -> str:
    """URL of the family SOFT file of a series.

    Parameters
    ----------
    accession
        Series accession (``GSE...``).
    base_url
        GEO root (HTTP(S) URL, ``file://`` URL or local directory).

    Returns
    -------
    str
        ``{base_url}/series/{stem}/{acc}/soft/{acc}_family.soft.gz``.
    """
    acc = accession.strip().upper()
    if not acc.startswith("GSE"):
        raise ValueError(f"{accession!r}: acquire_geo needs a series accession (GSE...)")
    base = _normalize_base(base_url)
    return f"{base}/series/{accession_stem(acc)}/{acc}/soft/{acc}_family.soft.gz"


def rewrite_url(url: str, base_url: str | Path) -> str:
    """Move a GEO-listed URL (``ftp://ftp.ncbi.nlm.nih.gov/geo/...``) onto ``base_url``.

    Parameters
    ----------
    url
        URL as written in the SOFT file.
    base_url
        Replacement GEO root.

    Returns
    -------
    str
        The rewritten URL; URLs outside GEO are returned unchanged.
    """
    base = _normalize_base(base_url)
    for prefix in _GEO_URL_PREFIXES:
        if url.startswith(prefix + "/"):
            return base + url[len(prefix) :]
    return url


def _file_name(url: str) -> str:
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", ".."):
        raise ValueError(f"cannot derive a file name from URL {url!r}")
    return name


# ---------------------------------------------------------------------------
# downloading
# ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".meta.json")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range: bytes a-b/N`` (or ``*/N``)."""
    if not value:
        return None, None
    m = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value.strip())
    if m is None:
        return None, None
    start = int(m[1]) if m[1] is not None else None
    total = int(m[2]) if m[2] != "*" else None
    return start, total


def _progress_bar(total: int | None, initial: int, name: str, progress: bool | None) -> Any:
    show = progress if progress is not None else (total or 0) >= _PROGRESS_MIN_BYTES
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, leave=False)


def _http_attempt(
    session: Any, url: str, part: Path, timeout: float, progress: bool | None
) -> tuple[int, int]:
    """One HTTP GET into ``part`` (resuming it); returns (bytes resumed from, final size)."""
    import requests
    import urllib3

    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, stream=True, timeout=timeout, headers=headers) as resp:
            code = resp.status_code
            if code == 416 and offset:
                _, total = _parse_content_range(resp.headers.get("Content-Range"))
                if total == offset:
                    return offset, offset  # the .part file is already complete
                part.unlink()
                raise _Retryable(f"server refused range {offset}- (size {total}); restarting")
            if 400 <= code < 500 and code not in (408, 429):
                raise GEODownloadError(f"{url}: HTTP {code} {resp.reason}")
            if code >= 400:
                raise _Retryable(f"HTTP {code} {resp.reason}")
            if code == 206:
                start, total = _parse_content_range(resp.headers.get("Content-Range"))
                if start != offset:
                    part.unlink()
                    raise _Retryable(f"server sent range from {start}, asked {offset}; restarting")
                mode = "ab"
            else:  # 200: full body, the server ignored (or was not sent) a Range header
                offset, mode = 0, "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length is not None else None
            bar = _progress_bar(total, offset, part.name[: -len(".part")], progress)
            try:
                with open(part, mode) as fh:
                    for block in resp.raw.stream(_CHUNK, decode_content=False):
                        fh.write(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"incomplete body: {size} of {total} bytes")
    return offset, size


def download_file(
    url: str,
    dest: Path,
    *,
    timeout: float = 60,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool | None = None,
    session: Any = None,
) -> dict[str, Any]:
    """Download ``url`` to ``dest`` with caching, resume, retries and a sha256.

    The body is streamed into ``dest.part``; an existing ``.part`` is resumed
    with an HTTP ``Range`` request. The size is checked against
    ``Content-Length``/``Content-Range`` and the file renamed to ``dest`` only
    when complete, so an existing ``dest`` is reused without network access
    (its size and hash are kept in ``dest.meta.json``). Transient failures
    (connection errors, truncated bodies, 5xx, 408, 429) are retried up to
    ``retries`` times after ``backoff * 2**attempt`` seconds; other 4xx are not.
    ``file://`` URLs are copied.

    Parameters
    ----------
    url
        ``http(s)://`` or ``file://`` URL.
    dest
        Target path.
    timeout
        Connect/read timeout in seconds.
    retries
        Extra attempts after the first.
    backoff
        Base delay in seconds of the exponential backoff.
    progress
        Show a tqdm bar: ``True``/``False``, or ``None`` for files >= 100 MiB.
    session
        Optional ``requests.Session``.

    Returns
    -------
    dict
        ``url``, ``file``, ``path``, ``size``, ``sha256``, ``started`` (UTC ISO),
        ``seconds``, ``cached``, ``resumed_from`` (bytes) and ``attempts``.

    Raises
    ------
    GEODownloadError
        If the file is missing (HTTP 4xx, absent local file) or every attempt failed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    started, t0 = _now(), time.monotonic()
    record: dict[str, Any] = {"url": url, "file": dest.name, "path": str(dest), "started": started}
    if dest.exists():
        meta: dict[str, Any] = {}
        if _sidecar(dest).exists():
            try:
                meta = json.loads(_sidecar(dest).read_text())
            except ValueError:
                meta = {}
        size = dest.stat().st_size
        if meta.get("size") == size and meta.get("sha256"):
            digest = meta["sha256"]
        else:
            digest = _sha256(dest)
            _sidecar(dest).write_text(json.dumps({"url": url, "size": size, "sha256": digest}))
        record.update(size=size, sha256=digest, cached=True, resumed_from=0, attempts=0,
                      seconds=round(time.monotonic() - t0, 3))
        return record

    part = dest.with_name(dest.name + ".part")
    scheme = urlparse(url).scheme
    attempts, resumed_from = 0, 0
    if scheme == "file":
        src = Path(url2pathname(urlparse(url).path))
        if not src.is_file():
            raise GEODownloadError(f"{url}: file not found in local GEO mirror ({src})")
        shutil.copyfile(src, part)
        attempts = 1
    elif scheme in ("http", "https"):
        import requests

        own = session is None
        session = session or requests.Session()
        try:
            for attempt in range(retries + 1):
                attempts = attempt + 1
                try:
                    resumed_from, _ = _http_attempt(session, url, part, timeout, progress)
                    break
                except _Retryable as exc:
                    if attempt == retries:
                        raise GEODownloadError(
                            f"{url}: download failed after {attempts} attempts: {exc}"
                        ) from exc
                    delay = backoff * 2**attempt
                    log.warning("%s: %s; retry %d/%d in %.1f s", url, exc, attempt + 1, retries, delay)
                    time.sleep(delay)
        finally:
            if own:
                session.close()
    else:
        raise GEODownloadError(f"{url}: unsupported URL scheme {scheme!r} (use http(s):// or file://)")

    part.replace(dest)
    size = dest.stat().st_size
    digest = _sha256(dest)
    _sidecar(dest).write_text(json.dumps({"url": url, "size": size, "sha256": digest}))
    record.update(size=size, sha256=digest, cached=False, resumed_from=resumed_from,
                  attempts=attempts, seconds=round(time.monotonic() - t0, 3))
    return record


# ---------------------------------------------------------------------------
# choosing files
# ---------------------------------------------------------------------------

_TEXT_RE = re.compile(r"\.(csv|tsv|txt|tab)(\.gz)?$", re.IGNORECASE)
_TAR_RE = re.compile(r"\.(tar|tar\.gz|tgz)$", re.IGNORECASE)
# dense tables whose names say they are not raw counts (or not a matrix at all)
_NOT_COUNTS_RE = re.compile(
    r"barcode|feature|genes\.tsv|meta|annot|cluster|umap|tsne|readme|md5|"
    r"norm|tpm|fpkm|rpkm|cpm|scaled|log|peaks\.bed|fragments|tissue_positions|scalefactors|filelist",
    re.IGNORECASE,
)
_COUNTS_HINT_RE = re.compile(r"count|umi|raw|matrix|expr|dge", re.IGNORECASE)


_RAW_TAR_RE = re.compile(r"^GSE\d+_RAW\.tar$", re.IGNORECASE)
_FRAGMENTS_RE = re.compile(r"fragments\.tsv(\.gz)?$", re.IGNORECASE)
_POSITIONS_RE = re.compile(r"tissue_positions.*\.csv(\.gz)?$", re.IGNORECASE)
_SCALEF_RE = re.compile(r"scalefactors.*\.json(\.gz)?$", re.IGNORECASE)
_GSM_PREFIX_RE = re.compile(r"^(GSM\d+)(?=[_.\-]|$)", re.IGNORECASE)
_KINDS = ("visium", "10x_mtx", "atac_mtx", "10x_h5", "h5mu", "h5ad", "loom", "tar", "dense",
          "raw_tar", "fragments")
_ORDER = {
    ("sample", "rna"): ("visium", "10x_mtx", "10x_h5", "h5mu", "h5ad", "loom", "atac_mtx", "tar", "dense",
                        "fragments"),
    ("sample", "atac"): ("atac_mtx", "10x_h5", "h5mu", "10x_mtx", "h5ad", "loom", "tar", "dense",
                         "fragments", "visium"),
    ("series", "rna"): ("h5ad", "loom", "10x_h5", "h5mu", "10x_mtx", "visium", "atac_mtx", "tar",
                        "raw_tar", "dense", "fragments"),
    ("series", "atac"): ("h5ad", "loom", "atac_mtx", "10x_h5", "h5mu", "10x_mtx", "tar", "raw_tar",
                         "dense", "fragments", "visium"),
}


def _options(names: Sequence[str], level: str, modality: str = "rna") -> list[tuple[str, list[str]]]:
    """Usable (format, files) options among ``names``, best first."""
    from geovae.data.adapters import find_peak_triplets

    found: dict[str, list[tuple[str, list[str]]]] = {k: [] for k in _KINDS}
    for trip in find_10x_triplets(names):
        found["10x_mtx"].append(("10x_mtx", [trip["matrix"], trip["barcodes"], trip["features"]]))
    for trip in find_peak_triplets(names):
        found["atac_mtx"].append(("atac_mtx", [trip["matrix"], trip["barcodes"], trip["peaks"]]))
    in_triplets = {f for k in ("10x_mtx", "atac_mtx") for _, files in found[k] for f in files}
    positions = sorted(n for n in names if _POSITIONS_RE.search(n))
    scalef = sorted(n for n in names if _SCALEF_RE.search(n))
    for name in sorted(names, key=lambda n: (0 if "filtered" in n.lower() else 1, n)):
        low = name.lower()
        base = low[:-3] if low.endswith(".gz") else low
        if base.endswith(".h5ad"):
            found["h5ad"].append(("h5ad", [name]))
        elif base.endswith(".loom"):
            found["loom"].append(("loom", [name]))
        elif low.endswith(".h5mu"):  # MuData (e.g. Multiome): read as is, like a multiome .h5
            found["h5mu"].append(("h5mu", [name]))
        elif base.endswith(".h5") and "molecule_info" not in low:
            found["10x_h5"].append(("10x_h5", [name]))
            if positions and "filtered_feature_bc_matrix" in low:
                found["visium"].append(("visium", [name, positions[0], *scalef[:1]]))
        elif _RAW_TAR_RE.match(name):
            if level == "series":
                found["raw_tar"].append(("raw_tar", [name]))
        elif _TAR_RE.search(name):
            found["tar"].append(("tar", [name]))
        elif _FRAGMENTS_RE.search(name):
            found["fragments"].append(("fragments", [name]))
        elif _TEXT_RE.search(name) and name not in in_triplets and not _NOT_COUNTS_RE.search(name):
            found["dense"].append(("dense", [name]))
    found["dense"].sort(key=lambda o: (0 if _COUNTS_HINT_RE.search(o[1][0]) else 1, o[1][0]))
    order = _ORDER[("sample" if level == "sample" else "series", "atac" if modality == "atac" else "rna")]
    return [opt for kind in order for opt in found[kind]]


def globs_to_regex(globs: str | Sequence[str]) -> str:
    """Turn comma-separated shell globs (``"GSM1_*,*peaks.bed.gz"``) into one anchored regex.

    Parameters
    ----------
    globs
        A comma-separated string or a list of globs, matched against whole file names.

    Returns
    -------
    str
        Regular expression usable as ``file_pattern``.
    """
    items = [g.strip() for g in (globs.split(",") if isinstance(globs, str) else globs) if g.strip()]
    if not items:
        raise ValueError("empty file glob")
    return "^(?:" + "|".join(fnmatch.translate(g) for g in items) + ")"


def group_by_sample(names: Iterable[str]) -> dict[str, list[str]]:
    """Group file names by their leading GSM accession (``GSM123_x.mtx.gz`` -> ``GSM123``).

    Parameters
    ----------
    names
        File names (e.g. members of ``GSE*_RAW.tar``; directories in a member path are ignored).

    Returns
    -------
    dict
        ``GSM id -> file names`` (sorted); names without a GSM prefix go under ``""``.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        m = _GSM_PREFIX_RE.match(Path(name).name)
        groups.setdefault(m[1].upper() if m else "", []).append(name)
    return {k: sorted(v) for k, v in sorted(groups.items())}


def plan_files(
    series_files: Sequence[str],
    sample_files: dict[str, Sequence[str]],
    level: str = "auto",
    file_pattern: str | None = None,
    modality: str = "rna",
) -> dict[str, Any]:
    """Decide which supplementary files to download (pure function of file names).

    Sample level prefers a 10x mtx triplet, then a 10x ``.h5`` (or MuData ``.h5mu``), ``.h5ad``, a
    ``.tar[.gz]`` archive, then a dense counts table; series level prefers
    ``.h5ad``, then ``.h5``, a triplet, an archive (not ``GSE*_RAW.tar``, which
    bundles the sample files) and a dense table. Dense tables whose names
    suggest metadata or normalized values (``norm``, ``tpm``, ``log`` ...) are
    not candidates. ``level="auto"`` uses the samples when every sample has a
    usable file, else the series files, else the samples that have one.
    Visium samples (``filtered_feature_bc_matrix.h5`` + ``tissue_positions*.csv``)
    come first; for ``modality="atac"`` peak triplets (mtx + barcodes + peaks.bed)
    and ``.h5`` files come first and fragment files are the last resort.
    ``GSE*_RAW.tar`` is a series option (``format="raw_tar"``) after any merged
    matrix except dense tables.

    Parameters
    ----------
    series_files
        Series-level supplementary file names.
    sample_files
        GSM id -> that sample's supplementary file names.
    level
        ``"auto"``, ``"samples"`` or ``"series"``.
    file_pattern
        Optional regular expression; only file names matching it are considered.
    modality
        ``"rna"`` or ``"atac"``: the preference order (see above).

    Returns
    -------
    dict
        ``{"level": "samples", "samples": {gsm: {"format", "files"}}, "skipped": {gsm: reason}}``
        or ``{"level": "series", "series": {"format", "files"}, "alternatives": [...]}``.

    Raises
    ------
    ValueError
        If no usable file exists at the requested level; the message lists what was found.
    """
    if level not in ("auto", "samples", "series"):
        raise ValueError(f"level must be auto, samples or series, not {level!r}")
    pat = re.compile(file_pattern) if file_pattern else None

    def keep(names: Iterable[str]) -> list[str]:
        return [n for n in names if pat is None or pat.search(n)]

    per_sample = {gsm: _options(keep(files), "sample", modality) for gsm, files in sample_files.items()}
    usable = {gsm: opts[0] for gsm, opts in per_sample.items() if opts}
    series_opts = _options(keep(series_files), "series", modality)

    def samples_plan() -> dict[str, Any]:
        return {
            "level": "samples",
            "samples": {g: {"format": f, "files": files} for g, (f, files) in usable.items()},
            "skipped": {g: "no usable supplementary file" for g in sample_files if g not in usable},
        }

    def series_plan() -> dict[str, Any]:
        fmt, files = series_opts[0]
        return {
            "level": "series",
            "series": {"format": fmt, "files": files},
            "alternatives": [f for _, fs in series_opts[1:] for f in fs],
        }

    all_usable = bool(sample_files) and len(usable) == len(sample_files)
    if level == "samples" and usable:
        return samples_plan()
    if level == "series" and series_opts:
        return series_plan()
    if level == "auto":
        if all_usable:
            return samples_plan()
        if series_opts:
            return series_plan()
        if usable:
            return samples_plan()
    listing = "; ".join(
        [f"series: {list(series_files) or 'none'}"]
        + [f"{gsm}: {list(files) or 'none'}" for gsm, files in sample_files.items()]
    )
    raise ValueError(
        f"no usable supplementary file{'' if level == 'auto' else f' at {level} level'}"
        f"{'' if pat is None else f' matching {file_pattern!r}'} (supported: 10x "
        "matrix.mtx+barcodes.tsv+features/genes.tsv, 10x .h5, .h5ad, .h5mu, .loom, .tar[.gz] of those, "
        "GSE*_RAW.tar, scATAC matrix.mtx+barcodes.tsv+peaks.bed, fragments.tsv.gz, Visium "
        f".h5+tissue_positions.csv, dense counts .csv/.tsv/.txt[.gz]); found {listing}"
    )


# ---------------------------------------------------------------------------
# sample metadata
# ---------------------------------------------------------------------------


def parse_characteristics(values: Iterable[str]) -> dict[str, str]:
    """Parse GEO ``characteristics_ch1`` entries (``"key: value"``) into a dict.

    Parameters
    ----------
    values
        Entries as listed in the SOFT file.

    Returns
    -------
    dict
        ``key -> value`` (keys stripped; keys clashing with the fixed columns
        ``sample``/``title``/... get a ``characteristics_`` prefix). Entries
        without ``":"`` are joined with ``"; "`` under ``characteristics_ch1``.
    """
    out: dict[str, str] = {}
    loose: list[str] = []
    for raw in values:
        text = str(raw).strip()
        if ":" in text:
            key, value = (t.strip() for t in text.split(":", 1))
            if key:
                key = f"characteristics_{key}" if key in _RESERVED_OBS else key
                out[key] = f"{out[key]}; {value}" if key in out else value
                continue
        if text:
            loose.append(text)
    if loose:
        out["characteristics_ch1"] = "; ".join(loose)
    return out


def _sample_obs(gsm: str, meta: dict[str, list[str]]) -> dict[str, str]:
    info = {"sample": gsm, "title": "; ".join(meta.get("title", []))}
    for key in ("source_name_ch1", "organism_ch1"):
        if meta.get(key):
            info[key] = "; ".join(meta[key])
    info.update(parse_characteristics(meta.get("characteristics_ch1", [])))
    return info


def _supplementary(meta: dict[str, list[str]]) -> list[str]:
    urls = []
    for key in sorted(k for k in meta if k.lower().startswith("supplementary_file")):
        urls.extend(v.strip() for v in meta[key] if v.strip() and v.strip().upper() != "NONE")
    return urls


# ---------------------------------------------------------------------------
# main entry point
# ---------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


_FORMAT_ADAPTER = {"10x_mtx": "10x_mtx", "atac_mtx": "atac_mtx", "visium": "visium",
                   "fragments": "fragments", "loom": "loom", "h5mu": "h5mu"}


def _read_group(fmt: str, paths: list[Path], adapter: str | None, modality: str) -> AnnData:
    # a triplet is read through its matrix file so that the prefix selects it; companion
    # files (barcodes, peaks, positions) are found next to it in the sample's own folder
    # validated per file, so that a normalized matrix is reported with its own file name
    return read_local(paths[0], adapter=adapter or _FORMAT_ADAPTER.get(fmt), modality=modality)


def _unpack_raw_tar(tar_path: Path, dest: Path) -> dict[str, list[Path]]:
    """Extract ``GSE*_RAW.tar`` into ``dest/<GSM>/`` (once) and return GSM -> member paths."""
    done = dest / ".unpacked"
    if not done.exists() or done.read_text() != tar_path.name:
        if dest.exists():
            shutil.rmtree(dest)
        with tarfile.open(tar_path) as tf:
            members = [m for m in tf.getmembers() if m.isfile()]
            for gsm, names in group_by_sample(m.name for m in members).items():
                folder = dest / (gsm or "other")
                folder.mkdir(parents=True, exist_ok=True)
                for name in names:
                    src = tf.extractfile(name)
                    assert src is not None
                    with src, open(folder / Path(name).name, "wb") as out:
                        shutil.copyfileobj(src, out)
        done.write_text(tar_path.name)
    return {
        d.name: sorted(p for p in d.iterdir() if p.is_file())
        for d in sorted(dest.iterdir())
        if d.is_dir()
    }


def _tag_sample(part: AnnData, gsm: str, meta: dict[str, list[str]] | None) -> AnnData:
    # barcodes often repeat across samples: names made unique with the GSM, the file's barcode kept
    part.obs["barcode"] = part.obs_names.astype(str)
    part.obs_names = [f"{gsm}_{b}" for b in part.obs_names]
    info = _sample_obs(gsm, meta) if meta is not None else {"sample": gsm}
    for key, value in info.items():
        part.obs[key] = value
    return part


def _merge(parts: list[AnnData]) -> AnnData:
    if len(parts) == 1:
        return parts[0]
    spatial = {k: v for p in parts for k, v in p.uns.get("spatial", {}).items()}
    adata = ad.concat(parts, join="outer", merge="same", fill_value=0)
    if spatial:
        adata.uns["spatial"] = spatial
    for col in adata.obs.columns:
        if adata.obs[col].dtype == object:  # sample metadata; missing stays NaN
            adata.obs[col] = adata.obs[col].astype("category")
    return adata


def acquire_geo(
    accession: str,
    cache_dir: Path,
    base_url: str = DEFAULT_GEO_BASE_URL,
    samples: list[str] | None = None,
    timeout: float = 60,
    retries: int = 3,
    *,
    level: str = "auto",
    file_pattern: str | None = None,
    backoff: float = 1.0,
    progress: bool | None = None,
    files: str | Sequence[str] | None = None,
    adapter: str | None = None,
    modality: str = "rna",
    obs_files: str | Sequence[str] | None = None,
) -> tuple[AnnData, dict[str, Any]]:
    """Download a GEO series' supplementary counts and return them as one AnnData.

    Parameters
    ----------
    accession
        Series accession, e.g. ``"GSE123456"``.
    cache_dir
        Download cache; files go to ``cache_dir/<GSE>/`` (samples in ``<GSM>/``
        subfolders, series files in ``suppl/``) and are reused when complete.
    base_url
        GEO root: :data:`DEFAULT_GEO_BASE_URL`, a mirror URL, a ``file://`` URL
        or a local directory with the same layout.
    samples
        GSM ids to keep (default: every sample with a usable file).
    timeout
        HTTP timeout in seconds.
    retries
        Extra download attempts on transient failures.
    level
        ``"auto"``, ``"samples"`` or ``"series"`` (see :func:`plan_files`).
    file_pattern
        Regular expression restricting the supplementary file names considered.
    backoff
        Base delay (s) of the exponential retry backoff.
    progress
        tqdm progress bars (``None``: only for files >= 100 MiB).
    files
        Shell glob(s) (comma-separated) on file names restricting the files
        considered (combined with ``file_pattern``); inside ``GSE*_RAW.tar`` they
        filter the members too unless they match none of them.
    adapter
        Force the adapter used for every chosen file (a key of
        :data:`geovae.data.local.ADAPTERS`) instead of the automatic choice.
    modality
        ``"rna"`` or ``"atac"``: file preference and the feature type read from
        multi-modal files (10x Multiome h5: Gene Expression or Peaks).
    obs_files
        Shell glob(s) naming the per-cell annotation tables to join (see
        :mod:`geovae.data.cell_metadata`); by default the series' and the read samples'
        supplementary files that look like such tables are found and joined.

    Returns
    -------
    tuple
        ``(adata, manifest)``: cells x genes integer counts (CSR float32) with
        ``obs["sample"]`` and per-sample metadata columns when read per sample,
        and a JSON-serialisable manifest (URLs, sizes, sha256, times, plan,
        versions).

    Raises
    ------
    GEODownloadError
        If the SOFT file or a selected supplementary file cannot be downloaded.
    ValueError
        If there is no usable supplementary file, unknown GSM ids are requested,
        or a matrix is not raw counts.
    """
    import GEOparse

    acc = accession.strip().upper()
    base = _normalize_base(base_url)
    if files:
        glob_re = globs_to_regex(files)
        file_pattern = glob_re if not file_pattern else f"(?={glob_re})(?:{file_pattern})"
    root = Path(cache_dir) / acc
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    dl = {"timeout": timeout, "retries": retries, "backoff": backoff, "progress": progress}

    soft_url = series_soft_url(acc, base)
    soft_path = root / f"{acc}_family.soft.gz"
    try:
        soft_rec = download_file(soft_url, soft_path, **dl)
    except GEODownloadError as exc:
        raise GEODownloadError(f"{acc}: cannot get the family SOFT file: {exc}") from exc
    gse = GEOparse.get_GEO(filepath=str(soft_path), geotype="GSE", silent=True)

    series_urls = _supplementary(gse.metadata)
    sample_urls = {gsm: _supplementary(obj.metadata) for gsm, obj in gse.gsms.items()}
    if samples is not None:
        unknown = [s for s in samples if s not in sample_urls]
        if unknown:
            raise ValueError(f"{acc}: samples {unknown} not in the series (has {sorted(sample_urls)})")
        sample_urls = {gsm: sample_urls[gsm] for gsm in samples}

    by_name: dict[tuple[str, str], str] = {("series", _file_name(u)): u for u in series_urls}
    for gsm, urls in sample_urls.items():
        by_name.update({(gsm, _file_name(u)): u for u in urls})
    plan = plan_files(
        [_file_name(u) for u in series_urls],
        {gsm: [_file_name(u) for u in urls] for gsm, urls in sample_urls.items()},
        level=level,
        file_pattern=file_pattern,
        modality=modality,
    )
    is_raw_tar = plan["level"] == "series" and plan["series"]["format"] == "raw_tar"
    if samples is not None and plan["level"] == "samples" and plan["skipped"]:
        raise ValueError(
            f"{acc}: requested samples without a usable supplementary file: "
            + "; ".join(f"{g}: {sample_urls[g]}" for g in plan["skipped"])
        )
    if samples is not None and plan["level"] == "series" and level != "series" and not is_raw_tar:
        # a series-level file holds every sample: do not silently ignore `samples`
        raise ValueError(
            f"{acc}: requested samples {samples} have no usable per-sample file; only the "
            f"series file(s) {plan['series']['files']} are usable (call with samples=None "
            "or level='series' to read them)"
        )

    records: list[dict[str, Any]] = []
    import requests

    with requests.Session() as session:
        session.headers["User-Agent"] = f"geovae/{_version('geovae')} (+GEOparse)"

        def fetch(owner: str, names: list[str], folder: Path) -> list[Path]:
            paths = []
            for name in names:
                url = rewrite_url(by_name[(owner, name)], base)
                rec = download_file(url, folder / name, session=session, **dl)
                rec["owner"] = owner
                records.append(rec)
                paths.append(folder / name)
            return paths

        if plan["level"] == "samples":
            parts = []
            for gsm, choice in plan["samples"].items():
                paths = fetch(gsm, choice["files"], root / gsm)
                part = _read_group(choice["format"], paths, adapter, modality)
                parts.append(_tag_sample(part, gsm, gse.gsms[gsm].metadata))
                log.info("%s/%s: %d cells x %d features", acc, gsm, *part.shape)
            for gsm, why in plan["skipped"].items():
                log.warning("%s/%s skipped: %s (files %s)", acc, gsm, why, sample_urls[gsm])
            adata = _merge(parts)
            used = [r["file"] for r in records]
        elif is_raw_tar:
            tar_path = fetch("series", plan["series"]["files"], root / "suppl")[0]
            groups = _unpack_raw_tar(tar_path, root / "RAW")
            adata, raw_plan = _read_raw_tar_groups(acc, groups, gse, samples, file_pattern,
                                                   adapter, modality)
            plan["raw_tar"] = raw_plan
            used = [f"{tar_path.name}:{f}" for c in raw_plan.values() for f in c["files"]]
        else:
            choice = plan["series"]
            paths = fetch("series", choice["files"], root / "suppl")
            adata = _read_group(choice["format"], paths, adapter, modality)
            used = choice["files"]

        cell_tables = _join_cell_tables(adata, acc, gse, series_urls, sample_urls, plan, set(used), obs_files,
                                        fetch, root)

    as_counts_csr(adata)
    check_counts(adata, source=f"{acc} ({', '.join(used)})")
    organisms = sorted({o for g in gse.gsms.values() for o in g.metadata.get("organism_ch1", [])})
    adata.uns["geo"] = {"accession": acc, "level": plan["level"], "files": list(used),
                        "organism": organisms, "modality": modality}

    manifest: dict[str, Any] = {
        "accession": acc,
        "base_url": base,
        "created": _now(),
        "seconds": round(time.monotonic() - t0, 3),
        "soft": soft_rec,
        "available": {
            "series": [_file_name(u) for u in series_urls],
            "samples": {g: [_file_name(u) for u in us] for g, us in sample_urls.items()},
        },
        "plan": plan,
        "cell_tables": cell_tables,
        "organism": organisms,
        "files": records,
        "n_obs": int(adata.n_obs),
        "n_vars": int(adata.n_vars),
        "versions": {
            "geovae": _version("geovae"),
            "GEOparse": _version("GEOparse"),
            "anndata": _version("anndata"),
            "scanpy": _version("scanpy"),
            "python": platform.python_version(),
        },
        "platform": sys.platform,
    }
    return adata, manifest


def _read_raw_tar_groups(
    acc: str,
    groups: dict[str, list[Path]],
    gse: Any,
    samples: list[str] | None,
    file_pattern: str | None,
    adapter: str | None,
    modality: str,
) -> tuple[AnnData, dict[str, Any]]:
    """Read every GSM group unpacked from ``GSE*_RAW.tar`` (see :func:`acquire_geo`)."""
    names = {g: [p.name for p in ps] for g, ps in groups.items() if g != "other"}
    pat = re.compile(file_pattern) if file_pattern else None
    if pat is not None and any(pat.search(n) for ns in names.values() for n in ns):
        names = {g: [n for n in ns if pat.search(n)] for g, ns in names.items()}
    wanted = samples if samples is not None else sorted(names)
    missing = [g for g in wanted if g not in names]
    if missing:
        raise ValueError(f"{acc}_RAW.tar: samples {missing} have no files in the archive "
                         f"(it holds {sorted(names)})")
    plan: dict[str, Any] = {}
    parts = []
    for gsm in wanted:
        opts = _options(names[gsm], "sample", modality)
        if not opts:
            if samples is not None:
                raise ValueError(f"{acc}_RAW.tar: no usable file for {gsm}: {names[gsm]}")
            log.warning("%s_RAW.tar: %s skipped, no usable file in %s", acc, gsm, names[gsm])
            continue
        fmt, chosen = opts[0]
        plan[gsm] = {"format": fmt, "files": chosen}
        folder = groups[gsm][0].parent
        part = _read_group(fmt, [folder / n for n in chosen], adapter, modality)
        meta = gse.gsms[gsm].metadata if gsm in gse.gsms else None
        parts.append(_tag_sample(part, gsm, meta))
        log.info("%s_RAW.tar/%s: %d cells x %d features (%s)", acc, gsm, *part.shape, fmt)
    if not parts:
        raise ValueError(f"{acc}_RAW.tar: no sample has a usable file; members: {names}")
    return _merge(parts), plan


def _join_cell_tables(adata: AnnData, acc: str, gse: Any, series_urls: list[str], sample_urls: dict[str, list[str]],
                      plan: dict[str, Any], used: set[str], obs_files: str | Sequence[str] | None, fetch: Any,
                      root: Path) -> list[dict[str, Any]]:
    """Find (or take from ``obs_files``), download and join the series' per-cell annotation tables."""
    from geovae.data.cell_metadata import is_cell_table_name, join_cell_tables

    explicit = bool(obs_files)
    wanted = re.compile(globs_to_regex(obs_files)) if explicit else None

    def pick(names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in used and (wanted.search(n) if wanted else is_cell_table_name(n))]

    read_samples = list(plan["samples"]) if plan["level"] == "samples" else list(sample_urls)
    chosen: list[tuple[str, str | None, Path]] = []
    for name in pick(_file_name(u) for u in series_urls):
        chosen.append((name, None, fetch("series", [name], root / "suppl")[0]))
    for gsm in read_samples:
        for name in pick(_file_name(u) for u in sample_urls.get(gsm, [])):
            chosen.append((name, gsm, fetch(gsm, [name], root / gsm)[0]))
    if explicit and not chosen:
        raise ValueError(f"{acc}: obs_files {obs_files!r} match no supplementary file of the series or its samples")
    if not chosen:
        return []
    titles = {gsm: "; ".join(obj.metadata.get("title", [])) for gsm, obj in gse.gsms.items()}
    records = join_cell_tables(adata, chosen, titles, explicit)
    for rec in records:
        log.info("%s: cell table %s: %s", acc, rec["file"], rec.get("skipped") or
                 f"{rec['n_matched']} cells matched (rate {rec['match_rate']:.2f}), columns {rec['columns']}")
    return records
