"""Per-cell annotation tables of GEO series (cell type, cluster, sample, QC flags), joined to the cells.

Series keep such tables next to the counts (``GSE..._metadata.csv.gz``, ``..._cell_annotation.tsv.gz``,
``..._celltypes.txt.gz``, ``..._barcodes_annotated.tsv.gz``). They are written by R (``write.csv``: the
header has one field fewer than the rows and the first column holds the barcodes) or by pandas (a named
``barcode``/``cell``/``cell_id`` column). :func:`join_cell_table` matches their rows to the cells by
barcode, tolerant of the usual decorations: a GSM id or sample-title prefix or suffix
(``GSM123_AAAC...``, ``sample1_AAAC...``), a ``-1`` suffix, and tables with a sample column (GSM id or
sample title) plus a barcode column for series whose samples reuse barcodes.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["CELL_TABLE_RE", "MIN_MATCH_RATE", "CellTableError", "is_cell_table_name", "read_cell_table",
           "join_cell_table", "join_cell_tables"]

#: Supplementary file names that look like per-cell annotation tables.
CELL_TABLE_RE = re.compile(
    r"(meta_?data|annot|cell_?types?|cell_?info|cell_?labels?|barcodes_annotated|clusters?|obs)"
    r"[^/]*\.(csv|tsv|txt|tab)(\.gz)?$", re.IGNORECASE)
#: Below this share of matched cells (or of the table's rows, whichever set is smaller) a join fails.
MIN_MATCH_RATE = 0.5
#: Column names that hold the cell barcode / the sample, in order of preference (case-insensitive).
BARCODE_COLUMNS = ("barcode", "barcodes", "cell_barcode", "cellbarcode", "cell_id", "cellid", "cell", "cells",
                   "cell_name", "obs_names", "index", "unnamed: 0", "")
SAMPLE_COLUMNS = ("sample", "gsm", "geo_accession", "sample_id", "sample_name", "sample_title", "orig.ident",
                  "library", "donor_sample")
_CORE_RE = re.compile(r"[ACGTN]{8,}")


class CellTableError(ValueError):
    """A cell table cannot be joined; the message names the file and shows barcodes of both sides."""


def is_cell_table_name(name: str) -> bool:
    """Whether a supplementary file name looks like a per-cell annotation table.

    Parameters
    ----------
    name
        File name.

    Returns
    -------
    bool
    """
    return bool(CELL_TABLE_RE.search(name)) and not re.search(r"matrix\.mtx|features|genes\.tsv", name, re.I)


def read_cell_table(path: str | Path) -> pd.DataFrame:
    """Read a per-cell table (CSV/TSV/TXT, gzipped or not) with the barcodes as index.

    The barcodes are the first column of an R ``write.csv`` table (header one field short), or a
    column named like :data:`BARCODE_COLUMNS`, else the first column.

    Parameters
    ----------
    path
        The table.

    Returns
    -------
    pandas.DataFrame
        Index: barcode strings (name ``"barcode"``); every other column as read.
    """
    path = Path(path)
    from geovae.data.readers import _open_maybe_gz, _sniff_sep

    sep = _sniff_sep(path)
    with _open_maybe_gz(path, "rt") as handle:
        header = handle.readline().rstrip("\r\n").split(sep)
        first = handle.readline().rstrip("\r\n").split(sep)
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=["", "NA"],
                        index_col=0 if len(header) == len(first) - 1 else None)
    if len(header) != len(first) - 1:  # pandas style: pick the barcode column
        lower = {str(c).strip().strip('"').lower(): c for c in table.columns}
        column = next((lower[n] for n in BARCODE_COLUMNS if n in lower), table.columns[0])
        table = table.set_index(column)
    table.index = table.index.astype(str).str.strip().str.strip('"')
    table.index.name = "barcode"
    table.columns = [str(c).strip().strip('"') for c in table.columns]
    return table


def _core(text: str) -> str:
    """The barcode inside a decorated cell name: the longest nucleotide run, else the name without
    a ``-N`` suffix."""
    runs = _CORE_RE.findall(text)
    return max(runs, key=len) if runs else re.sub(r"-\d+$", "", text)


def _sample_of(name: str, tokens: Mapping[str, str]) -> str | None:
    """The sample whose GSM id or title (a key of ``tokens``) is a prefix or suffix token of ``name``."""
    for token, gsm in tokens.items():
        if name.startswith(token) or name.endswith(token):
            return gsm
    return None


def join_cell_table(adata: AnnData, table: pd.DataFrame, source: str,
                    sample_titles: Mapping[str, str] | None = None,
                    min_rate: float = MIN_MATCH_RATE) -> dict[str, Any]:
    """Join a per-cell table to ``adata.obs`` by barcode (in place).

    Cells carry ``obs["barcode"]`` (the file's barcode) and ``obs["sample"]`` (GSM id) when read per
    sample; otherwise their names are used. Table rows are matched on (sample, barcode core) when the
    table or the row names identify a sample, else on the barcode core alone (a core shared by
    several cells is then ambiguous and left unmatched). Unmatched cells keep missing values.

    Parameters
    ----------
    adata
        Cells; gains the table's columns (a column whose name is taken gets the suffix ``_cells``).
    table
        From :func:`read_cell_table`.
    source
        File name, for messages and the record.
    sample_titles
        GSM id -> sample title, to recognise samples named by title.
    min_rate
        Fail below this match rate.

    Returns
    -------
    dict
        ``file``, ``n_rows``, ``n_cells``, ``n_matched``, ``cell_match_rate``, ``row_match_rate``,
        ``match_rate`` (matched over the smaller of cells and rows), ``columns`` (added) and ``key``.

    Raises
    ------
    CellTableError
        When the match rate is below ``min_rate``: names the file and shows barcodes of both sides.
    """
    titles = dict(sample_titles or {})
    tokens = {gsm: gsm for gsm in titles} | {title: gsm for gsm, title in titles.items() if title}
    tokens = dict(sorted(tokens.items(), key=lambda kv: -len(kv[0])))  # longest token first
    lower = {c.lower(): c for c in table.columns}
    sample_col = next((lower[n] for n in SAMPLE_COLUMNS if n in lower
                       and table[lower[n]].astype(str).isin(list(tokens)).mean() > 0.5), None)
    rows = table.index.to_numpy(dtype=str)
    if sample_col is not None:
        row_samples = table[sample_col].astype(str).map(tokens).to_numpy(dtype=object)
    else:
        row_samples = np.array([_sample_of(r, tokens) for r in rows], dtype=object)
    row_cores = np.array([_core(r) for r in rows], dtype=object)

    barcodes = adata.obs["barcode"].astype(str) if "barcode" in adata.obs else pd.Series(adata.obs_names)
    cell_cores = np.array([_core(b) for b in barcodes], dtype=object)
    cell_samples = (adata.obs["sample"].astype(str).to_numpy(dtype=object) if "sample" in adata.obs
                    else np.full(adata.n_obs, None, dtype=object))
    use_sample = sample_col is not None or any(s is not None for s in row_samples)
    use_sample = use_sample and any(s is not None for s in cell_samples)
    if use_sample:
        cell_keys = list(zip(cell_samples, cell_cores))
        row_keys = list(zip(row_samples, row_cores))
        key = f"sample ({sample_col or 'from the row names'}) + barcode"
    else:
        cell_keys, row_keys, key = list(cell_cores), list(row_cores), "barcode"
    position = pd.Series(range(len(rows)), index=pd.Index(row_keys, tupleize_cols=False))
    position = position[~position.index.duplicated(keep=False)]  # ambiguous rows match nothing
    cell_counts = Counter(cell_keys)
    unique_cells = np.array([cell_counts[k] == 1 for k in cell_keys], dtype=bool)
    found = pd.Index(position.index).get_indexer(pd.Index(cell_keys, tupleize_cols=False))
    found[~unique_cells] = -1
    n_matched = int((found >= 0).sum())
    record = {"file": source, "n_rows": int(len(rows)), "n_cells": int(adata.n_obs), "n_matched": n_matched,
              "cell_match_rate": round(n_matched / max(adata.n_obs, 1), 4),
              "row_match_rate": round(n_matched / max(len(rows), 1), 4),
              "match_rate": round(n_matched / max(min(adata.n_obs, len(rows)), 1), 4), "key": key}
    if record["match_rate"] < min_rate:
        raise CellTableError(
            f"cell table {source}: only {n_matched} of {adata.n_obs} cells / {len(rows)} rows match by {key} "
            f"(match rate {record['match_rate']:.2f} < {min_rate}); cell barcodes e.g. "
            f"{', '.join(barcodes[:3])}; table barcodes e.g. {', '.join(rows[:3])}")
    columns = [c for c in table.columns if c != sample_col]
    added = []
    rows_for_cells = position.to_numpy()[found.clip(0)] if len(position) else np.zeros(adata.n_obs, int)
    for column in columns:
        name = column if column not in adata.obs else f"{column}_cells"
        values = table[column].to_numpy(dtype=object)[rows_for_cells]
        values[found < 0] = None
        adata.obs[name] = pd.Categorical(values) if pd.Series(values).nunique() < 0.5 * len(values) else values
        added.append(name)
    record["columns"] = added
    return record


def join_cell_tables(adata: AnnData, paths: Sequence[tuple[str, str | None, Path]],
                     sample_titles: Mapping[str, str], explicit: bool) -> list[dict[str, Any]]:
    """Join the tables of ``paths`` (file name, owning GSM or None for the series, local path).

    The tables of single samples are stacked into one, with a ``sample`` column, before the join.
    Auto-discovered tables (``explicit=False``) whose rows match almost no cell (< 5 %) are recorded as
    ``skipped`` (they describe genes or samples, not cells); otherwise a failed join raises.

    Parameters
    ----------
    adata
        Cells; gains the tables' columns.
    paths
        ``(file name, GSM or None, path)`` per table.
    sample_titles
        GSM id -> sample title.
    explicit
        The tables were named in the sheet (``obs_files``): a failed join always raises.

    Returns
    -------
    list of dict
        One record per joined (or stacked) table, see :func:`join_cell_table`.
    """
    tables: list[tuple[str, pd.DataFrame]] = []
    stacked = []
    for name, owner, path in paths:
        table = read_cell_table(path)
        if owner is None:
            tables.append((name, table))
        else:
            stacked.append(table.assign(sample=owner) if "sample" not in table.columns else table)
    if stacked:
        names = ", ".join(n for n, owner, _ in paths if owner is not None)
        tables.append((names, pd.concat(stacked)))
    records = []
    for name, table in tables:
        try:
            records.append(join_cell_table(adata, table, name, sample_titles))
        except CellTableError as exc:
            probe = join_cell_table(adata.copy(), table, name, sample_titles, min_rate=0.0)
            if not explicit and probe["match_rate"] < 0.05:
                records.append({"file": name, "skipped": "not a per-cell table of these cells",
                                "match_rate": probe["match_rate"]})
                continue
            raise exc
    return records
