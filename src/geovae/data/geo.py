"""Acquire single-cell counts from a GEO series (GSE) through GEOparse.

Steps of :func:`acquire_geo`:

1. download ``{base_url}/series/GSE123nnn/GSE123456/soft/GSE123456_family.soft.gz``
   into the cache and parse it with :func:`GEOparse.get_GEO`;
2. collect the series and sample ``supplementary_file*`` entries and rewrite
   their ``ftp://ftp.ncbi.nlm.nih.gov/geo/...`` URLs onto ``base_url`` (an
   HTTP(S) mirror, a local directory or a ``file://`` URL);
3. choose the files to use (see :func:`plan_files`), download them (streaming,
   resumable ``.part`` files with HTTP Range, retries with exponential backoff,
   size check, sha256) and read them with :func:`geovae.data.readers.read_local`;
4. concatenate samples with ``obs["sample"]`` (GSM id) plus the sample title
   and ``characteristics_ch1`` ``key: value`` pairs as obs columns.
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

import anndata as ad
import pandas as pd
from anndata import AnnData

from geovae.data.readers import find_10x_triplets, read_local
from geovae.data.validate import as_counts_csr, check_counts

__all__ = [
    "DEFAULT_GEO_BASE_URL",
    "GEODownloadError",
    "acquire_geo",
    "accession_stem",
    "download_file",
    "parse_characteristics",
    "plan_files",
    "rewrite_url",
    "series_soft_url",
]

log = logging.getLogger(__name__)

DEFAULT_GEO_BASE_URL = "https://ftp.ncbi.nlm.nih.gov/geo"
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
    r"norm|tpm|fpkm|rpkm|cpm|scaled|log|peaks\.bed|fragments",
    re.IGNORECASE,
)
_COUNTS_HINT_RE = re.compile(r"count|umi|raw|matrix|expr|dge", re.IGNORECASE)


def _options(names: Sequence[str], level: str) -> list[tuple[str, list[str]]]:
    """Usable (format, files) options among ``names``, best first."""
    found: dict[str, list[tuple[str, list[str]]]] = {
        k: [] for k in ("10x_mtx", "10x_h5", "h5ad", "tar", "dense")
    }
    for trip in find_10x_triplets(names):
        found["10x_mtx"].append(("10x_mtx", [trip["matrix"], trip["barcodes"], trip["features"]]))
    in_triplets = {f for _, files in found["10x_mtx"] for f in files}
    for name in sorted(names, key=lambda n: (0 if "filtered" in n.lower() else 1, n)):
        low = name.lower()
        base = low[:-3] if low.endswith(".gz") else low
        if base.endswith(".h5ad"):
            found["h5ad"].append(("h5ad", [name]))
        elif base.endswith(".h5") and "molecule_info" not in low:
            found["10x_h5"].append(("10x_h5", [name]))
        elif _TAR_RE.search(name) and not (level == "series" and "_raw.tar" in low):
            found["tar"].append(("tar", [name]))
        elif _TEXT_RE.search(name) and name not in in_triplets and not _NOT_COUNTS_RE.search(name):
            found["dense"].append(("dense", [name]))
    found["dense"].sort(key=lambda o: (0 if _COUNTS_HINT_RE.search(o[1][0]) else 1, o[1][0]))
    order = (
        ("10x_mtx", "10x_h5", "h5ad", "tar", "dense")
        if level == "sample"
        else ("h5ad", "10x_h5", "10x_mtx", "tar", "dense")
    )
    return [opt for kind in order for opt in found[kind]]


def plan_files(
    series_files: Sequence[str],
    sample_files: dict[str, Sequence[str]],
    level: str = "auto",
    file_pattern: str | None = None,
) -> dict[str, Any]:
    """Decide which supplementary files to download (pure function of file names).

    Sample level prefers a 10x mtx triplet, then a 10x ``.h5``, ``.h5ad``, a
    ``.tar[.gz]`` archive, then a dense counts table; series level prefers
    ``.h5ad``, then ``.h5``, a triplet, an archive (not ``GSE*_RAW.tar``, which
    bundles the sample files) and a dense table. Dense tables whose names
    suggest metadata or normalized values (``norm``, ``tpm``, ``log`` ...) are
    not candidates. ``level="auto"`` uses the samples when every sample has a
    usable file, else the series files, else the samples that have one.

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

    per_sample = {gsm: _options(keep(files), "sample") for gsm, files in sample_files.items()}
    usable = {gsm: opts[0] for gsm, opts in per_sample.items() if opts}
    series_opts = _options(keep(series_files), "series")

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
        "matrix.mtx+barcodes.tsv+features/genes.tsv, 10x .h5, .h5ad, .tar[.gz] of those, "
        f"dense counts .csv/.tsv/.txt[.gz]); found {listing}"
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


def _read_group(fmt: str, paths: list[Path]) -> AnnData:
    # a triplet is read through its matrix file so that the prefix selects it
    return read_local(paths[0], adapter=None if fmt != "10x_mtx" else "10x_mtx")


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
    )
    if samples is not None and plan["level"] == "samples" and plan["skipped"]:
        raise ValueError(
            f"{acc}: requested samples without a usable supplementary file: "
            + "; ".join(f"{g}: {sample_urls[g]}" for g in plan["skipped"])
        )
    if samples is not None and plan["level"] == "series" and level != "series":
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
                part = _read_group(choice["format"], paths)
                part.obs_names = [f"{gsm}_{b}" for b in part.obs_names]
                for key, value in _sample_obs(gsm, gse.gsms[gsm].metadata).items():
                    part.obs[key] = value
                parts.append(part)
                log.info("%s/%s: %d cells x %d features", acc, gsm, *part.shape)
            for gsm, why in plan["skipped"].items():
                log.warning("%s/%s skipped: %s (files %s)", acc, gsm, why, sample_urls[gsm])
            if len(parts) == 1:
                adata = parts[0]
            else:
                adata = ad.concat(parts, join="outer", merge="same", fill_value=0)
            for col in adata.obs.columns:
                if adata.obs[col].dtype == object:  # sample metadata; missing stays NaN
                    adata.obs[col] = adata.obs[col].astype("category")
            used = [r["file"] for r in records]
        else:
            choice = plan["series"]
            paths = fetch("series", choice["files"], root / "suppl")
            adata = _read_group(choice["format"], paths)
            used = choice["files"]

    as_counts_csr(adata)
    check_counts(adata, source=f"{acc} ({', '.join(used)})")
    adata.uns["geo"] = {"accession": acc, "level": plan["level"], "files": list(used)}

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
