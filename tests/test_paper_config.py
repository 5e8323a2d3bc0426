"""The LiVAE paper's dataset sheet (config/paper/datasets.tsv) and its config build a job graph offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from project_copy import workflow_copy

ROOT = Path(__file__).resolve().parents[1]
SHEET = ROOT / "config" / "paper" / "datasets.tsv"
REFERENCE = ROOT.parent / "shared" / "reference" / "livae_paper_datasets.tsv"


def _sheet() -> pd.DataFrame:
    return pd.read_csv(SHEET, sep="\t", dtype=str, keep_default_na=False, comment="#")


def test_paper_sheet_rows_are_valid() -> None:
    sheet = _sheet()
    schema = yaml.safe_load((ROOT / "src" / "geovae" / "schemas" / "datasets.schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for record in sheet.to_dict("records"):
        row = {k: v for k, v in record.items() if v != ""}
        errors = [e.message for e in validator.iter_errors(row)]
        assert not errors, (record["dataset"], errors)
    assert sheet["dataset"].is_unique and len(sheet) == 81
    assert set(sheet["modality"]) == {"rna", "atac"}
    assert (sheet["modality"] == "atac").sum() == 33
    # multi-sample series carry the sample batch key
    assert (sheet.loc[sheet["description"].str.contains(r"\d+ samples\)"), "batch_key"] == "sample").all()


def test_paper_sheet_matches_reference_table() -> None:
    if not REFERENCE.exists():
        pytest.skip("paper reference table not found because ../shared is missing")
    ref = pd.read_csv(REFERENCE, sep="\t", dtype=str)
    sheet = _sheet().set_index("accession")
    text = SHEET.read_text()
    for rec in ref.to_dict("records"):
        acc = rec["accession"].strip()
        if acc in sheet.index:
            assert sheet.loc[acc, "modality"] == rec["modality"]
            assert f"{rec['n_samples']} sample" in sheet.loc[acc, "description"]
        else:  # not a GEO series: explained in a comment line
            assert re.search(rf"^# {re.escape(acc)}\t", text, flags=re.M), acc


def test_snakemake_dry_run_paper_config_offline(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile", "config/paper.yaml"],
        cwd=workflow_copy(tmp_path / "p"), capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    for rule in ("acquire", "preprocess", "train", "embed", "metrics", "interpret"):
        assert counts.get(rule) == "81", (rule, counts)
