"""GEO URLs and resumable, verified downloads (the network half of :mod:`geovae.data.geo`)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname



from geovae.options import GEO


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


