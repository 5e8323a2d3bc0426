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

import logging
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import tarfile

import anndata as ad
from anndata import AnnData

from geovae.data.local import read_local
from geovae.data.validate import as_counts_csr, check_counts

from geovae.data.geo_download import (DEFAULT_GEO_BASE_URL, GEODownloadError, _file_name, _normalize_base, _now,
                                      accession_stem, download_file, rewrite_url, series_soft_url)
from geovae.data.geo_plan import (_options, _sample_obs, _supplementary, globs_to_regex, group_by_sample,
                                  parse_characteristics, plan_files)

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
    "series_soft",
    "series_soft_url",
]

log = logging.getLogger(__name__)

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
    acc = accession.strip().upper()
    base = _normalize_base(base_url)
    if files:
        glob_re = globs_to_regex(files)
        file_pattern = glob_re if not file_pattern else f"(?={glob_re})(?:{file_pattern})"
    root = Path(cache_dir) / acc
    t0 = time.monotonic()
    dl = {"timeout": timeout, "retries": retries, "backoff": backoff, "progress": progress}
    gse, soft_rec = series_soft(acc, base, cache_dir, **dl)

    series_urls = _supplementary(gse.metadata)
    sample_urls = {gsm: _supplementary(obj.metadata) for gsm, obj in gse.gsms.items()}
    if samples is not None:
        unknown = [s for s in samples if s not in sample_urls]
        if unknown:
            raise ValueError(f"{acc}: samples {unknown} not in the series (has {sorted(sample_urls)})")
        sample_urls = {gsm: sample_urls[gsm] for gsm in samples}
    plan = plan_files([_file_name(u) for u in series_urls],
                      {gsm: [_file_name(u) for u in urls] for gsm, urls in sample_urls.items()},
                      level=level, file_pattern=file_pattern, modality=modality)
    _check_requested_samples(acc, plan, samples, sample_urls, level)

    import requests

    with requests.Session() as session:
        session.headers["User-Agent"] = f"geovae/{_version('geovae')} (+GEOparse)"
        fetch = _Fetcher(session, base, series_urls, sample_urls, dl)
        adata, used = _read_plan(acc, plan, gse, fetch, root, samples, sample_urls, file_pattern, adapter, modality)
        cell_tables = _join_cell_tables(adata, acc, gse, series_urls, sample_urls, plan, set(used), obs_files,
                                        fetch, root)

    as_counts_csr(adata)
    check_counts(adata, source=f"{acc} ({', '.join(used)})")
    organisms = sorted({o for g in gse.gsms.values() for o in g.metadata.get("organism_ch1", [])})
    adata.uns["geo"] = {"accession": acc, "level": plan["level"], "files": list(used),
                        "organism": organisms, "modality": modality}
    manifest: dict[str, Any] = {
        "accession": acc, "base_url": base, "created": _now(), "seconds": round(time.monotonic() - t0, 3),
        "soft": soft_rec,
        "available": {"series": [_file_name(u) for u in series_urls],
                      "samples": {g: [_file_name(u) for u in us] for g, us in sample_urls.items()}},
        "plan": plan, "cell_tables": cell_tables, "organism": organisms, "files": fetch.records,
        "n_obs": int(adata.n_obs), "n_vars": int(adata.n_vars),
        "versions": {name: _version(name) for name in ("geovae", "GEOparse", "anndata", "scanpy")}
        | {"python": platform.python_version()},
        "platform": sys.platform,
    }
    return adata, manifest



def series_soft(accession: str, base_url: str, cache_dir: str | Path, **download: Any) -> tuple[Any, dict[str, Any]]:
    """Download (or reuse) a series' family SOFT file and parse it with GEOparse.

    Parameters
    ----------
    accession
        ``GSE...`` (upper case).
    base_url
        Normalised GEO root (see :func:`acquire_geo`).
    cache_dir
        Cache root; the file goes to ``cache_dir/<GSE>/<GSE>_family.soft.gz``.
    **download
        Options of :func:`download_file` (``timeout``, ``retries``, ``backoff``, ``progress``).

    Returns
    -------
    tuple
        The GEOparse ``GSE`` object and the download record.
    """
    import GEOparse

    root = Path(cache_dir) / accession
    root.mkdir(parents=True, exist_ok=True)
    soft_path = root / f"{accession}_family.soft.gz"
    try:
        record = download_file(series_soft_url(accession, base_url), soft_path, **download)
    except GEODownloadError as exc:
        raise GEODownloadError(f"{accession}: cannot get the family SOFT file: {exc}") from exc
    return GEOparse.get_GEO(filepath=str(soft_path), geotype="GSE", silent=True), record


def _check_requested_samples(acc: str, plan: dict[str, Any], samples: list[str] | None,
                             sample_urls: dict[str, list[str]], level: str) -> None:
    """Requested samples must be readable as samples (a series-level file would ignore the request)."""
    if samples is None:
        return
    if plan["level"] == "samples" and plan["skipped"]:
        raise ValueError(f"{acc}: requested samples without a usable supplementary file: "
                         + "; ".join(f"{g}: {sample_urls[g]}" for g in plan["skipped"]))
    is_raw_tar = plan["level"] == "series" and plan["series"]["format"] == "raw_tar"
    if plan["level"] == "series" and level != "series" and not is_raw_tar:
        raise ValueError(f"{acc}: requested samples {samples} have no usable per-sample file; only the series "
                         f"file(s) {plan['series']['files']} are usable (call with samples=None or "
                         "level='series' to read them)")


class _Fetcher:
    """Downloads supplementary files by (owner, name) into a folder, keeping one record per file."""

    def __init__(self, session: Any, base: str, series_urls: list[str], sample_urls: dict[str, list[str]],
                 download: dict[str, Any]) -> None:
        self.session, self.base, self.download = session, base, download
        self.by_name: dict[tuple[str, str], str] = {("series", _file_name(u)): u for u in series_urls}
        for gsm, urls in sample_urls.items():
            self.by_name.update({(gsm, _file_name(u)): u for u in urls})
        self.records: list[dict[str, Any]] = []

    def __call__(self, owner: str, names: list[str], folder: Path) -> list[Path]:
        paths = []
        for name in names:
            url = rewrite_url(self.by_name[(owner, name)], self.base)
            record = download_file(url, folder / name, session=self.session, **self.download)
            record["owner"] = owner
            self.records.append(record)
            paths.append(folder / name)
        return paths


def _read_plan(acc: str, plan: dict[str, Any], gse: Any, fetch: _Fetcher, root: Path, samples: list[str] | None,
               sample_urls: dict[str, list[str]], file_pattern: str | None, adapter: str | None,
               modality: str) -> tuple[AnnData, list[str]]:
    """Download and read the planned files; returns the counts and the files used."""
    if plan["level"] == "samples":
        parts = []
        for gsm, choice in plan["samples"].items():
            part = _read_group(choice["format"], fetch(gsm, choice["files"], root / gsm), adapter, modality)
            parts.append(_tag_sample(part, gsm, gse.gsms[gsm].metadata))
            log.info("%s/%s: %d cells x %d features", acc, gsm, *part.shape)
        for gsm, why in plan["skipped"].items():
            log.warning("%s/%s skipped: %s (files %s)", acc, gsm, why, sample_urls[gsm])
        return _merge(parts), [r["file"] for r in fetch.records]
    if plan["series"]["format"] == "raw_tar":
        tar_path = fetch("series", plan["series"]["files"], root / "suppl")[0]
        groups = _unpack_raw_tar(tar_path, root / "RAW")
        adata, raw_plan = _read_raw_tar_groups(acc, groups, gse, samples, file_pattern, adapter, modality)
        plan["raw_tar"] = raw_plan
        return adata, [f"{tar_path.name}:{f}" for c in raw_plan.values() for f in c["files"]]
    choice = plan["series"]
    paths = fetch("series", choice["files"], root / "suppl")
    return _read_group(choice["format"], paths, adapter, modality), list(choice["files"])

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
