"""Which supplementary files of a GEO series to read, and the samples' metadata (pure functions of names)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fnmatch


from geovae.data.readers import find_10x_triplets


log = logging.getLogger(__name__)

_RESERVED_OBS = {"sample", "title", "source_name_ch1", "organism_ch1"}


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


