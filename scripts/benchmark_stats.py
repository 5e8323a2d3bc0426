"""Rule benchmark_stats: results/metrics.tsv -> paired statistics, Markdown table and figures."""

from pathlib import Path

import pandas as pd

from geovae.metrics.statistics import comparison_markdown, model_ranks, paired_comparison
from geovae.plotting.benchmark import paired_difference_boxplots, rank_heatmap
from geovae.runinfo import atomic_outputs, log_to

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    params = snakemake.params
    metrics = pd.read_csv(snakemake.input[0], sep="\t")
    comparison = paired_comparison(metrics, reference=params.reference, min_datasets=params.min_datasets)
    comparison.to_csv(out.table, sep="\t", index=False, float_format="%.6g")
    Path(out.markdown).write_text(comparison_markdown(comparison))
    paired_difference_boxplots(metrics, reference=params.reference, path=out.boxplots)
    ranks = model_ranks(metrics)
    ranks.to_csv(out.ranks, sep="\t", float_format="%.4g")
    rank_heatmap(ranks, path=out.heatmap)
    print(comparison_markdown(comparison))
