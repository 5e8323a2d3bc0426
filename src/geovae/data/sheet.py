"""Read, validate and append rows of the dataset sheet (``config/datasets.tsv``).

The sheet is a tab-separated table with one row per dataset; every row is validated
against the JSON schema shipped with the package (``geovae/schemas/datasets.schema.yaml``; the
workflow reads the sheet through :func:`read_sheet` too). Empty cells and absent optional columns
are treated as absent fields.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

#: Column order of a new sheet (the order of ``config/datasets.tsv``).
SHEET_COLUMNS = ("dataset", "source", "accession", "path", "modality", "species", "label_key",
                 "batch_key", "data_type", "description")
#: Optional columns a sheet may add to its header (defined in the schema): GEO sample and file
#: selection, a forced reader, and ``spatial_key`` (obsm key of spot coordinates; models that
#: require coordinates, such as dpvae, run only on datasets that set it).
OPTIONAL_COLUMNS = ("samples", "files", "obs_files", "adapter", "spatial_key")

class SheetError(ValueError):
    """The dataset sheet or a new row is invalid; the message names the file, row and field."""


def find_schema(sheet: str | Path | None = None) -> Path:
    """The dataset-row JSON schema file shipped with the package.

    Parameters
    ----------
    sheet
        Ignored (kept for callers that pass the sheet); the schema is package data.

    Returns
    -------
    pathlib.Path
        ``geovae/schemas/datasets.schema.yaml``.
    """
    from geovae.schemas import DATASETS_SCHEMA_FILE

    return DATASETS_SCHEMA_FILE


def load_schema(path: str | Path | None = None, sheet: str | Path | None = None) -> dict[str, Any]:
    """Load the dataset-row JSON schema.

    Parameters
    ----------
    path
        Schema file; ``None`` uses the package's (:func:`geovae.schemas.datasets_schema`).
    sheet
        Ignored (kept for callers that pass the sheet).

    Returns
    -------
    dict
        The parsed schema.
    """
    import yaml

    if path is None:
        from geovae.schemas import datasets_schema

        return datasets_schema()
    return yaml.safe_load(Path(path).read_text())


def row_errors(row: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Validation problems of one sheet row, as ``"field <name>: <message>"`` strings.

    Parameters
    ----------
    row
        Column -> value; empty strings and ``None`` count as absent.
    schema
        Schema from :func:`load_schema`.

    Returns
    -------
    list of str
        Empty when the row is valid.
    """
    import jsonschema

    record = {str(k): str(v) for k, v in row.items() if v is not None and str(v) != ""}
    validator = jsonschema.Draft202012Validator(dict(schema))
    problems = []
    for err in sorted(validator.iter_errors(record), key=lambda e: list(e.path)):
        field = ".".join(map(str, err.path)) or "(row)"
        problems.append(f"field {field}: {err.message}")
    return problems


def read_sheet(path: str | Path, schema: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read and validate a dataset sheet.

    Parameters
    ----------
    path
        Tab-separated sheet; lines starting with ``#`` are comments.
    schema
        Row schema (default: :func:`load_schema` for this sheet).

    Returns
    -------
    pandas.DataFrame
        All columns as strings (empty cells as ``""``), in file order; the columns of
        :data:`SHEET_COLUMNS` and :data:`OPTIONAL_COLUMNS` that the file lacks are added, empty.

    Raises
    ------
    FileNotFoundError
        If the sheet does not exist.
    SheetError
        Listing every invalid row (file, line, dataset, field) and duplicated dataset ids.
    """
    sheet_path = Path(path)
    if not sheet_path.is_file():
        raise FileNotFoundError(f"dataset sheet '{path}' does not exist")
    table = pd.read_csv(sheet_path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    if "dataset" not in table.columns:
        raise SheetError(f"{path}: no 'dataset' column (columns: {', '.join(table.columns)})")
    schema = schema if schema is not None else load_schema(sheet=sheet_path)
    problems = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        for message in row_errors(record, schema):
            problems.append(f"{path} line {line} (dataset '{record.get('dataset', '?')}'): {message}")
    duplicated = table["dataset"][table["dataset"].duplicated()].tolist()
    if duplicated:
        problems.append(f"{path}: duplicated dataset ids: {', '.join(duplicated)}")
    if problems:
        raise SheetError("invalid dataset sheet:\n  " + "\n  ".join(problems))
    for column in (*SHEET_COLUMNS, *OPTIONAL_COLUMNS):  # absent optional columns read as empty
        if column not in table.columns:
            table[column] = ""
    return table


def geo_row(accession: str, modality: str, species: str = "human", dataset: str | None = None,
            label_key: str = "", batch_key: str = "", data_type: str = "steady_state",
            description: str = "", samples: str = "", files: str = "") -> dict[str, str]:
    """Build the sheet row of a GEO series.

    Parameters
    ----------
    accession
        Series accession (``GSE`` followed by digits; upper-cased here).
    modality
        ``"rna"`` or ``"atac"``.
    species
        Picks the GO gene sets (``human`` ships with the project).
    dataset
        Identifier used in result paths (default: the accession).
    label_key, batch_key
        obs columns with cell labels / batches, when known.
    data_type
        ``"steady_state"`` or ``"trajectory"`` (selects the intrinsic-metric mode).
    description
        Free text shown in the report.
    samples
        Comma-separated GSM ids to read (default: all samples, merged).
    files
        Comma-separated shell globs restricting the supplementary files used.

    Returns
    -------
    dict
        Column -> value for every column of :data:`SHEET_COLUMNS`.
    """
    acc = accession.strip().upper()
    row = {"dataset": dataset or acc, "source": "geo", "accession": acc, "path": "", "modality": modality,
           "species": species, "label_key": label_key, "batch_key": batch_key, "data_type": data_type,
           "description": description}
    row.update({k: v for k, v in (("samples", samples), ("files", files)) if v})
    return row


def append_row(path: str | Path, row: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Validate ``row`` and append it to the sheet at ``path`` (created with a header if absent).

    The existing sheet is validated first, so a broken sheet is never extended. Values must
    not contain tabs or newlines.

    Parameters
    ----------
    path
        Dataset sheet.
    row
        Column -> value; columns missing from the sheet are an error, absent ones are left empty.
    schema
        Row schema (default: :func:`load_schema` for this sheet).

    Returns
    -------
    pandas.DataFrame
        The sheet after the append.

    Raises
    ------
    SheetError
        Invalid row, duplicated dataset id, unknown column, or an invalid existing sheet.
    """
    sheet_path = Path(path)
    schema = schema if schema is not None else load_schema(sheet=sheet_path)
    values = {str(k): "" if v is None else str(v) for k, v in row.items()}
    bad = [k for k, v in values.items() if any(c in v for c in "\t\r\n")]
    if bad:
        raise SheetError(f"new row: field(s) {', '.join(bad)} contain a tab or newline")
    problems = row_errors(values, schema)
    if problems:
        raise SheetError(f"new row (dataset '{values.get('dataset', '?')}'): " + "; ".join(problems))
    if sheet_path.exists():
        table = read_sheet(sheet_path, schema)
        columns = list(pd.read_csv(sheet_path, sep="\t", dtype=str, nrows=0, comment="#").columns)  # the header
        unknown = [k for k, v in values.items() if k not in columns and v != ""]
        if unknown:
            raise SheetError(f"{path}: has no column(s) {', '.join(unknown)}; add them to its header line first")
        if values["dataset"] in set(table["dataset"]):
            raise SheetError(f"{path}: dataset '{values['dataset']}' is already in the sheet; "
                             "pick another id with --dataset")
        text = sheet_path.read_text()
        with sheet_path.open("a", newline="") as handle:
            if text and not text.endswith("\n"):
                handle.write("\n")
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerow([values.get(c, "") for c in columns])
    else:
        sheet_path.parent.mkdir(parents=True, exist_ok=True)
        columns = list(SHEET_COLUMNS) + [k for k in values if k not in SHEET_COLUMNS]
        with sheet_path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(columns)
            writer.writerow([values.get(c, "") for c in columns])
    return read_sheet(sheet_path, schema)
