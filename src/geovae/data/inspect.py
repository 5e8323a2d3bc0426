"""See a GEO series before running it: samples, files, the layout each is read with, cell tables.

Only the family SOFT file and the first bytes of the per-cell tables are read (HTTP range requests
where the server allows, else a stream cut after the first bytes), so it is quick on atlas-sized
series; it works against the same ``geo.base_url`` mirrors (URL or local folder) as the pipeline.
"""

from __future__ import annotations

import io
import re
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["inspect_series", "format_inspection", "HEAD_BYTES"]

#: Bytes read from the start of each per-cell table.
HEAD_BYTES = 256 * 1024
#: Columns that look like cell labels or batches (case-insensitive search).
LABEL_RE = re.compile(r"cell_?type|celltype|label|annotation|cluster|lineage|identity|ident|subclass|class", re.I)
BATCH_RE = re.compile(r"sample|batch|donor|patient|orig\.ident|library|individual|subject", re.I)
SPECIES = {"Homo sapiens": "human", "Mus musculus": "mouse"}


def _head(url_or_path: str, n_bytes: int = HEAD_BYTES, timeout: float = 30) -> bytes:
    """The first ``n_bytes`` of a URL or local file (gzip members decompressed as far as they go)."""
    if re.match(r"^https?://", url_or_path):
        import requests

        with requests.get(url_or_path, headers={"Range": f"bytes=0-{n_bytes - 1}"}, stream=True,
                          timeout=timeout) as response:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_content(1 << 16):
                data += chunk
                if len(data) >= n_bytes:
                    break
            data = data[:n_bytes]
    else:
        path = url_or_path[7:] if url_or_path.startswith("file://") else url_or_path
        with open(path, "rb") as handle:
            data = handle.read(n_bytes)
    if data[:2] == b"\x1f\x8b":
        data = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data)
    return data


def _peek_table(text: str) -> pd.DataFrame:
    """Parse the complete lines of a table's first bytes (R or pandas layout, tab or comma)."""
    lines = text.splitlines()[:-1] or text.splitlines()  # the last line may be cut
    sep = "\t" if lines and lines[0].count("\t") >= lines[0].count(",") else ","
    header, first = (lines + ["", ""])[0].split(sep), (lines + ["", ""])[1].split(sep)
    frame = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep, dtype=str, keep_default_na=False,
                        index_col=0 if len(header) == len(first) - 1 else None)
    frame.columns = [str(c).strip().strip('"') for c in frame.columns]
    return frame


def inspect_series(accession: str, base_url: str | None = None, cache_dir: str | Path = "cache/geo",
                   modality: str = "rna") -> dict[str, Any]:
    """What geovae would read from a GEO series, from its SOFT file and the heads of its cell tables.

    Parameters
    ----------
    accession
        ``GSE...``.
    base_url
        GEO root (default: :data:`geovae.options.GEO`'s ``base_url``), a mirror URL or a local folder.
    cache_dir
        Where the SOFT file is cached (as the pipeline does).
    modality
        ``"rna"`` or ``"atac"`` (the file preference of the plan).

    Returns
    -------
    dict
        ``accession``, ``title``, ``species``, ``samples`` (GSM, title, characteristics, files),
        ``series_files``, ``plan`` (as :func:`geovae.data.geo.plan_files`), ``cell_tables`` (file,
        columns, label-like and batch-like columns with example values) and ``sheet_row``.
    """
    from geovae.data.cell_metadata import is_cell_table_name
    from geovae.data.geo import series_soft
    from geovae.data.geo_download import _file_name, _normalize_base, rewrite_url
    from geovae.data.geo_plan import _supplementary, parse_characteristics, plan_files
    from geovae.options import GEO

    acc = accession.strip().upper()
    base = _normalize_base(base_url or GEO.base_url)
    gse, _ = series_soft(acc, base, cache_dir)
    series_urls = _supplementary(gse.metadata)
    samples = []
    for gsm, obj in gse.gsms.items():
        samples.append({"gsm": gsm, "title": "; ".join(obj.metadata.get("title", [])),
                        "characteristics": parse_characteristics(obj.metadata.get("characteristics_ch1", [])),
                        "files": [_file_name(u) for u in _supplementary(obj.metadata)]})
    try:
        plan: Any = plan_files([_file_name(u) for u in series_urls], {s["gsm"]: s["files"] for s in samples},
                               modality=modality)
    except ValueError as exc:
        plan = {"error": str(exc)}
    tables = []
    owners = [(None, u) for u in series_urls] + [(s["gsm"], u) for s in samples
                                                  for u in _supplementary(gse.gsms[s["gsm"]].metadata)]
    for owner, url in owners:
        name = _file_name(url)
        if not is_cell_table_name(name):
            continue
        try:
            frame = _peek_table(_head(rewrite_url(url, base)).decode("utf-8", errors="replace"))
        except Exception as exc:  # a table that cannot be peeked is listed with the reason
            tables.append({"file": name, "owner": owner, "error": str(exc)})
            continue
        entry = {"file": name, "owner": owner, "columns": list(frame.columns), "rows_read": int(len(frame)),
                 "example_barcodes": list(map(str, frame.index[:3])) if frame.index.name or len(frame) else []}
        for kind, pattern in (("label_columns", LABEL_RE), ("batch_columns", BATCH_RE)):
            entry[kind] = {c: sorted(frame[c].unique().tolist())[:12] for c in frame.columns
                           if pattern.search(c) and frame[c].nunique() <= max(50, len(frame) // 5)}
        tables.append(entry)
    organisms = sorted({o for g in gse.gsms.values() for o in g.metadata.get("organism_ch1", [])})
    species = SPECIES.get(organisms[0], re.sub(r"[^a-z_]", "_", organisms[0].lower())) if len(organisms) == 1 else ""
    label = next((c for t in tables for c in t.get("label_columns", {})), "")
    row = {"dataset": acc, "source": "geo", "accession": acc, "modality": modality, "species": species or "human",
           "label_key": label, "data_type": "steady_state"}
    return {"accession": acc, "title": "; ".join(gse.metadata.get("title", [])), "organisms": organisms,
            "species": species, "samples": samples, "series_files": [_file_name(u) for u in series_urls],
            "plan": plan, "cell_tables": tables, "sheet_row": row}


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`inspect_series`, ending with the sheet row it would use.

    Parameters
    ----------
    info
        The result of :func:`inspect_series`.

    Returns
    -------
    str
    """
    out = [f"{info['accession']}: {info['title']}", f"organism: {', '.join(info['organisms']) or '?'}",
           f"samples ({len(info['samples'])}):"]
    for s in info["samples"]:
        chars = "; ".join(f"{k}: {v}" for k, v in s["characteristics"].items())
        out.append(f"  {s['gsm']}  {s['title']}  [{chars}]  files: {', '.join(s['files']) or 'none'}")
    out.append(f"series files: {', '.join(info['series_files']) or 'none'}")
    plan = info["plan"]
    if "error" in plan:
        out.append(f"read plan: none ({plan['error']})")
    elif plan["level"] == "series":
        out.append(f"read plan: series file(s) {', '.join(plan['series']['files'])} as {plan['series']['format']}")
    else:
        out.append("read plan: per sample")
        out += [f"  {g}: {', '.join(c['files'])} as {c['format']}" for g, c in plan["samples"].items()]
    out.append(f"per-cell tables ({len(info['cell_tables'])}):")
    for t in info["cell_tables"]:
        if "error" in t:
            out.append(f"  {t['file']}: cannot read its head ({t['error']})")
            continue
        out.append(f"  {t['file']} ({t['owner'] or 'series'}): columns {', '.join(t['columns'])}; "
                   f"barcodes e.g. {', '.join(t['example_barcodes'])}")
        for kind in ("label_columns", "batch_columns"):
            for column, values in t[kind].items():
                out.append(f"    {kind[:-8]} column {column!r}: {', '.join(map(str, values))}")
    row = info["sheet_row"]
    out += ["sheet row (config/datasets.tsv columns dataset, source, accession, modality, species, label_key, "
            "data_type):", "\t".join(str(row[k]) for k in ("dataset", "source", "accession", "modality", "species",
                                                           "label_key", "data_type"))]
    return "\n".join(out)
