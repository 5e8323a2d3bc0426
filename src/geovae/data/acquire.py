"""One entry point that turns a dataset-sheet row into a raw-count AnnData."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import anndata as ad

from geovae.runinfo import run_info


def acquire_dataset(row: Mapping[str, Any], geo_base_url: str | None = None,
                    cache_dir: str | Path = "cache/geo") -> tuple[ad.AnnData, dict[str, Any]]:
    """Load the dataset described by one row of the dataset sheet.

    Parameters
    ----------
    row
        Sheet row with at least ``dataset``, ``source`` (``builtin``, ``local`` or ``geo``),
        ``modality``, ``species`` and ``accession`` or ``path``.
    geo_base_url
        Root of the GEO FTP tree (or a mirror / local directory) for ``source: geo``.
    cache_dir
        Download cache for ``source: geo`` (one sub-directory per accession).

    Raises
    ------
    DatasetError
        (a ``ValueError``) when the data cannot be read or are not raw counts: the message names
        the dataset, its source and the file; ``KeyError`` for a ``label_key``/``batch_key`` that
        is not an obs column.

    Returns
    -------
    adata
        Integer counts in ``.X`` (CSR), cells x features, with ``uns["geovae_dataset"]`` holding the row.
    manifest
        Provenance: source, files or URLs, sizes and checksums where applicable, versions.
    """
    name = str(row["dataset"])
    source = str(row["source"])
    origin = {"builtin": f"builtin dataset '{row.get('accession')}'", "local": f"local file '{row.get('path')}'",
              "geo": f"GEO accession '{row.get('accession')}'"}.get(source, f"source '{source}'")
    try:
        adata, manifest = _load(row, name, source, origin, geo_base_url, cache_dir)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if f"dataset '{name}'" in message:
            raise
        raise DatasetError(f"dataset '{name}' ({origin}): {message}") from exc
    label_key = row.get("label_key") or None
    if label_key and label_key not in adata.obs:
        raise KeyError(f"dataset '{name}': label_key '{label_key}' is not an obs column of {origin}; "
                       f"available: {', '.join(map(str, adata.obs.columns)) or 'none'}")
    batch_key = row.get("batch_key") or None
    if batch_key and batch_key not in adata.obs:
        raise KeyError(f"dataset '{name}': batch_key '{batch_key}' is not an obs column of {origin}; "
                       f"available: {', '.join(map(str, adata.obs.columns)) or 'none'}")
    adata.uns["geovae_dataset"] = {k: ("" if v is None else str(v)) for k, v in row.items()}
    adata.uns["species"] = _species(str(row.get("species") or "unknown"),
                                    adata.uns.get("geo", {}).get("organism", []))
    if str(row.get("modality", "rna")) == "rna":  # Ensembl IDs -> symbols (the GO gene sets use symbols)
        from geovae.data.gene_ids import map_ensembl_ids

        manifest["gene_ids"] = map_ensembl_ids(adata, str(row.get("species") or ""))
        if manifest["gene_ids"]["applied"]:
            g = manifest["gene_ids"]
            print(f"dataset '{name}': {g['n_mapped']} of {g['n_ensembl']} Ensembl IDs mapped to gene symbols "
                  f"({g['n_unmapped']} unmapped kept as IDs, {g['n_duplicate_symbols']} duplicate symbols made "
                  f"unique); original IDs in var['gene_id']")
    manifest["n_cells"], manifest["n_features"] = int(adata.n_obs), int(adata.n_vars)
    manifest["run_info"] = run_info()
    return adata, manifest


class DatasetError(ValueError):
    """A dataset of the sheet cannot be acquired; the message names the dataset, its source and the file."""


def _load(row: Mapping[str, Any], name: str, source: str, origin: str, geo_base_url: str | None,
          cache_dir: str | Path) -> tuple[ad.AnnData, dict[str, Any]]:
    """Read the counts of one sheet row (see :func:`acquire_dataset`) and check them."""
    from geovae.data.validate import check_counts

    manifest: dict[str, Any] = {"dataset": name, "source": source}
    if source == "builtin":
        from geovae.data.builtin import load_builtin

        adata = load_builtin(str(row["accession"]))
        manifest["builtin"] = str(row["accession"])
    elif source == "local":
        from geovae.data.local import read_local

        path = Path(str(row["path"]))
        if not path.exists():
            raise FileNotFoundError(f"dataset '{name}': local path '{path}' does not exist")
        adata = read_local(path, adapter=row.get("adapter") or None,
                           modality=str(row.get("modality") or "rna"))
        manifest["path"] = str(path.resolve())
    elif source == "geo":
        from geovae.data.geo import DEFAULT_GEO_BASE_URL, acquire_geo

        samples = [s.strip() for s in str(row.get("samples") or "").split(",") if s.strip()]
        adata, geo_manifest = acquire_geo(str(row["accession"]), cache_dir=Path(cache_dir),
                                          base_url=geo_base_url or DEFAULT_GEO_BASE_URL,
                                          samples=samples or None, files=row.get("files") or None,
                                          adapter=row.get("adapter") or None,
                                          modality=str(row.get("modality") or "rna"),
                                          obs_files=row.get("obs_files") or None)
        manifest.update(geo_manifest)
    else:
        raise ValueError(f"dataset '{name}': unknown source '{source}' (expected builtin, local or geo)")
    check_counts(adata, source=f"{origin} (dataset '{name}')")
    return adata, manifest


_ORGANISMS = {"homo sapiens": "human", "mus musculus": "mouse", "danio rerio": "zebrafish",
              "rattus norvegicus": "rat", "macaca mulatta": "macaque", "sus scrofa": "pig"}


def _species(sheet: str, organisms: object) -> str:
    """The sheet's species, or the GEO organism when the sheet says ``unknown``."""
    if sheet != "unknown":
        return sheet
    found = {_ORGANISMS.get(str(o).strip().lower(), "") for o in list(organisms or [])}
    return found.pop() if len(found) == 1 and "" not in found else sheet
