"""Rule summary: results/report/summary.html for the Snakemake report."""

import json
from pathlib import Path

import pandas as pd

from geovae.report import load_run_tables, run_id, summary_html
from geovae.runinfo import atomic_outputs, log_to

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    inp = snakemake.input  # noqa: F821
    tables = load_run_tables(components=inp.components, enrichment=inp.enrichment,
                             interpret_info=inp.interpret_info, train_info=inp.train_info,
                             validation=getattr(inp, "validation", []), gsea=getattr(inp, "gsea", []))
    page = summary_html(pd.read_csv(inp.metrics, sep="\t"), tables["components"], tables["enrichment"],
                        tables["warnings"], tables["train_seconds"], validation=tables["validation"],
                        gsea=tables["gsea"], per_dataset=snakemake.config.get("per_dataset"),
                        qc={Path(path).parent.name: pd.read_csv(path, sep="\t") for path in inp.qc},
                        thumbnails={run_id(a): [a, b, c] for a, b, c in zip(inp.umaps, inp.dotplots, inp.losses)},
                        simulated_datasets=[d for d, row in snakemake.params.species.items() if row == "simulated"],
                        cell_tables={Path(path).parent.name: json.loads(Path(path).read_text()).get("cell_tables", [])
                                     for path in inp.manifests})
    Path(out[0]).write_text(page)
