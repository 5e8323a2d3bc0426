"""Rule summary: results/report/summary.html for the Snakemake report."""

import json
from pathlib import Path

import pandas as pd

from geovae.report import summary_html
from geovae.runinfo import log_to


def run_id(path: str) -> str:
    return "/".join(Path(path).parts[-4:-1])


with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    inp = snakemake.input
    components = {run_id(p): pd.read_csv(p, sep="\t") for p in inp.components}
    enrichment = {run_id(p): pd.read_csv(p, sep="\t") for p in inp.enrichment}
    warnings = {run_id(p): json.loads(Path(p).read_text()).get("warnings", []) for p in inp.interpret_info}
    seconds = {run_id(p): json.loads(Path(p).read_text())["training"].get("train_seconds")
               for p in inp.train_info}
    # program_validation.tsv / gsea.tsv are listed by the summary rule when the interpret stage writes them
    validation = {run_id(p): pd.read_csv(p, sep="\t") for p in getattr(inp, "validation", [])}
    gsea = {run_id(p): pd.read_csv(p, sep="\t") for p in getattr(inp, "gsea", [])}
    page = summary_html(pd.read_csv(inp.metrics, sep="\t"), components, enrichment, warnings, seconds,
                        validation=validation, gsea=gsea)
    Path(snakemake.output[0]).write_text(page)
