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
                 train_seconds: Mapping[str, float] | None = None,
                 validation: Mapping[str, pd.DataFrame] | None = None,
                 gsea: Mapping[str, pd.DataFrame] | None = None) -> str:
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
    validation
        Per run id the ground-truth program validation table (empty for real data).
    gsea
        Per run id the pre-ranked GSEA table (``component, term, nes, fdr, ...``).
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
    parts += _validation_section(validation or {})
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
        ranked = (gsea or {}).get(run)
        if ranked is not None and not ranked.empty and "fdr" in ranked:
            best = (ranked.sort_values(["fdr", "p_value"], kind="stable")
                    .groupby("component", sort=False).head(1).set_index("component"))
            shown["top_GSEA_term"] = shown["component"].map(best["term"])
            shown["top_GSEA_NES"] = shown["component"].map(best["nes"])
            shown["top_GSEA_FDR"] = shown["component"].map(best["fdr"])
        parts.append(_table(shown.set_index("component")))
    parts.append("</body></html>")
    return "\n".join(parts)


def validation_summary(validation: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (dataset, model) means of the ground-truth validation over programs and seeds.

    Parameters
    ----------
    validation
        Per run id (``dataset/model/seed``) the table of
        :func:`geovae.interpretation.validate_programs`; empty tables are skipped.

    Returns
    -------
    pandas.DataFrame
        Index ``(dataset, model)``; columns ``programs``, ``found`` (programs with a
        component enriched at adjusted p < 0.05), ``precision_at_n``, ``r_precision``,
        ``agreement`` (fraction of programs whose enriched component is also the one best
        correlated with the program score).
    """
    rows = []
    for run, table in validation.items():
        if table is None or table.empty:
            continue
        dataset, model = run.split("/")[:2]
        agreement = pd.to_numeric(table["agreement"].map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0}),
                                  errors="coerce")
        rows.append({"dataset": dataset, "model": model, "programs": len(table),
                     "found": int((pd.to_numeric(table["adj_p_value"], errors="coerce") < 0.05).sum()),
                     "precision_at_n": float(pd.to_numeric(table["precision_at_n"]).mean()),
                     "r_precision": float(pd.to_numeric(table["r_precision"]).mean()),
                     "agreement": float(agreement.mean())})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).groupby(["dataset", "model"]).mean()


def _validation_section(validation: Mapping[str, pd.DataFrame]) -> list[str]:
    summary = validation_summary(validation)
    if summary.empty:
        return []
    parts = ["<h2>Ground-truth validation of latent components (simulated programs)</h2>",
             "<p>Per true gene program: the component whose top genes are most enriched for it (hypergeometric), "
             "precision@N of those top genes, and whether that component is also the one best correlated with "
             "the program's cell score. Means over programs and seeds:</p>", _table(summary)]
    for run, table in validation.items():
        if table is not None and not table.empty:
            parts += [f"<h3>{html.escape(run)}</h3>", _table(table.set_index("program"))]
    return parts
