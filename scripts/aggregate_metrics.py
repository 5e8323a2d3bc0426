"""Rule aggregate_metrics: concatenate the per-run metric tables into results/metrics.tsv."""

import pandas as pd

from geovae.runinfo import atomic_outputs, log_to

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    tables = [pd.read_csv(path, sep="\t") for path in snakemake.input]
    merged = pd.concat(tables, ignore_index=True)
    merged.to_csv(out[0], sep="\t", index=False, float_format="%.6g")
    print(f"{len(merged)} metric rows from {len(tables)} runs")
