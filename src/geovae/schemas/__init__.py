"""Schemas shipped with the package: the dataset-sheet row schema and the model registry.

Read without importing torch, so the Snakemake process can use them (through
:mod:`geovae.workflow_config`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
#: JSON schema of one row of the dataset sheet.
DATASETS_SCHEMA_FILE = HERE / "datasets.schema.yaml"
#: The model zoo: config name -> target, family, modalities, requires, extra.
REGISTRY_FILE = HERE / "registry.yaml"


@lru_cache(maxsize=1)
def _read(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def datasets_schema() -> dict[str, Any]:
    """The dataset-sheet row schema (a fresh copy).

    Returns
    -------
    dict
        JSON schema (draft 2020-12) of one sheet row.
    """
    import copy

    return copy.deepcopy(_read(DATASETS_SCHEMA_FILE))


def registry_specs() -> dict[str, dict[str, Any]]:
    """Registry records with their defaults filled in.

    Returns
    -------
    dict
        Model name -> ``{target, family, modalities, requires, extra}``.
    """
    return {name: {"modalities": ["rna", "atac"], "requires": [], "extra": None, **spec}
            for name, spec in _read(REGISTRY_FILE).items()}
