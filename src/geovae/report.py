"""The run summary page embedded in the Snakemake report."""

from __future__ import annotations

import html
from typing import Iterable, Mapping

import pandas as pd

#: Metrics shown in the headline table (full list in results/metrics.tsv).
HEADLINE_METRICS = ("NMI", "ARI", "AMI", "ASW", "ASW_label", "CAL", "DAV", "COR", "DC_umap",
                    "overall_embedding_quality_umap", "DC_tsne", "overall_embedding_quality_tsne",
                    "overall_intrinsic_quality", "iLISI", "program_spearman_mean")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(border=0, classes="table", float_format=lambda v: f"{v:.4g}", na_rep="")


def summary_html(metrics: pd.DataFrame, components: Mapping[str, pd.DataFrame],
                 enrichment: Mapping[str, pd.DataFrame], warnings: Mapping[str, Iterable[str]],
                 train_seconds: Mapping[str, float] | None = None) -> str:
    """Render the run summary as a standalone HTML page.

    Parameters
    ----------
    metrics
        Tidy metrics (``dataset, model, seed, metric, value``).
    components
        Per run id (``dataset/model/seed``) the components table of the interpret stage.
    enrichment
        Per run id the enrichment table (``component, tail, term, adj_p_value, ...``).
    warnings
        Per run id the warnings raised by the interpret stage.
    train_seconds
        Per run id the training wall time.
    """
    parts = ["<html><head><meta charset='utf-8'><title>geovae summary</title>",
             "<style>body{font-family:sans-serif;margin:2em} .table{border-collapse:collapse;font-size:12px}"
             " .table td,.table th{padding:2px 8px;border-bottom:1px solid #ddd} .warn{color:#a40}</style>",
             "</head><body><h1>geovae run summary</h1>"]
    headline = metrics[metrics["metric"].isin(HEADLINE_METRICS)]
    if not headline.empty:
        wide = headline.pivot_table(index=["dataset", "model"], columns="metric", values="value", aggfunc="mean")
        wide = wide[[m for m in HEADLINE_METRICS if m in wide.columns]]
        parts += ["<h2>Headline metrics (mean over seeds)</h2>", _table(wide)]
    if train_seconds:
        parts += ["<h2>Training time (s)</h2>",
                  _table(pd.Series(train_seconds, name="seconds").to_frame())]
    parts.append("<h2>Latent components</h2>")
    for run, table in components.items():
        parts.append(f"<h3>{html.escape(run)}</h3>")
        for message in warnings.get(run, []):
            parts.append(f"<p class='warn'>Warning: {html.escape(str(message))}</p>")
        shown = table.copy()
        enr = enrichment.get(run)
        if enr is not None and not enr.empty and "adj_p_value" in enr:
            best = (enr[enr["tail"] == "positive"].sort_values("adj_p_value")
                    .groupby("component", sort=False).head(1).set_index("component"))
            shown["top_GO_term_positive"] = shown["component"].map(best["term"])
            shown["top_GO_adj_p"] = shown["component"].map(best["adj_p_value"])
        parts.append(_table(shown.set_index("component")))
    parts.append("</body></html>")
    return "\n".join(parts)
