"""The run summary page embedded in the Snakemake report."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from geovae.interpretation.enrichment import SIGNIFICANCE
from geovae.metrics.glossary import glossary_table

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
                 gsea: Mapping[str, pd.DataFrame] | None = None,
                 per_dataset: Mapping[str, Mapping[str, Any]] | None = None,
                 qc: Mapping[str, pd.DataFrame] | None = None,
                 cell_tables: Mapping[str, list[Mapping[str, Any]]] | None = None,
                 simulated_datasets: Iterable[str] | None = None,
                 thumbnails: Mapping[str, Iterable[str | Path]] | None = None) -> str:
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
    per_dataset
        The config's ``per_dataset`` block (settings that differ for one dataset), shown as a table.
    qc
        Per dataset the QC table of the preprocess stage (``qc.tsv``: per sample cells in, removed by
        each rule, kept); a dataset that kept less than half of its cells is flagged.
    cell_tables
        Per dataset the per-cell annotation tables joined at acquisition (``cell_tables`` of the
        acquire manifest: file, match rate, columns added).
    simulated_datasets
        Datasets of SIMULATED data (sheet species ``simulated``), marked as such in the tables.
    thumbnails
        Per run id the figures shown as small images next to its components (UMAP, GO dot plot, loss).
    """
    parts = ["<html><head><meta charset='utf-8'><title>geovae summary</title>",
             "<style>body{font-family:sans-serif;margin:2em} .table{border-collapse:collapse;font-size:12px;"
             "display:block;overflow-x:auto;max-width:100%}"
             " .table td,.table th{padding:2px 8px;border-bottom:1px solid #ddd} .warn{color:#a40}</style>",
             "</head><body><h1>geovae run summary</h1>"]
    headline = metrics[metrics["metric"].isin(HEADLINE_METRICS)]
    if not headline.empty:
        wide = headline.pivot_table(index=["dataset", "model"], columns="metric", values="value", aggfunc="mean")
        wide = wide[[m for m in HEADLINE_METRICS if m in wide.columns]]
        simulated = set(simulated_datasets or ())
        if simulated:
            wide = wide.rename(index=lambda d: f"{d} (SIMULATED)" if d in simulated else d, level=0)
        parts += ["<h2>Headline metrics (mean over seeds)</h2>", _table(wide),
                  "<details><summary>What each metric means</summary>",
                  _table(glossary_table(list(wide.columns))), "</details>"]
    if train_seconds:
        parts += ["<h2>Training time (s)</h2>",
                  _table(pd.Series(train_seconds, name="seconds").to_frame())]
    parts += _qc_section(qc or {})
    joined = [{"dataset": d, "file": r.get("file"), "cells matched": r.get("n_matched", ""),
               "match rate": r.get("match_rate"), "joined by": r.get("key", ""),
               "columns": ", ".join(r.get("columns", [])) or r.get("skipped", "")}
              for d, records in (cell_tables or {}).items() for r in records]
    if joined:
        parts += ["<h2>Cell annotation tables</h2>", _table(pd.DataFrame(joined).set_index(["dataset", "file"]))]
    if per_dataset:
        rows = [{"dataset": d, "setting": key, "value": value}
                for d, block in per_dataset.items() for key, value in _flatten(block)]
        parts += ["<h2>Per-dataset settings</h2>",
                  "<p>These datasets ran with settings that differ from the config's (config key per_dataset).</p>",
                  _table(pd.DataFrame(rows).set_index(["dataset", "setting"]))]
    parts += _validation_section(validation or {})
    parts.append("<h2>Latent components</h2>")
    for run, table in components.items():
        parts.append(f"<h3>{html.escape(run)}</h3>")
        parts += [_thumbnail(path) for path in (thumbnails or {}).get(run, [])]
        for message in warnings.get(run, []):
            parts.append(f"<p class='warn'>Warning: {html.escape(str(message))}</p>")
        shown = table.copy()
        enr = enrichment.get(run)
        if enr is not None and not enr.empty and "adj_p_value" in enr:
            best = (enr[enr["tail"] == "positive"].sort_values("adj_p_value")
                    .groupby("component", sort=False).head(1).set_index("component"))
            shown["top_GO_term_positive"] = shown["component"].map(best["term"])
            shown["top_GO_adj_p"] = shown["component"].map(best["adj_p_value"])
            shown["top_GO_significant"] = shown["top_GO_adj_p"] < SIGNIFICANCE
        ranked = (gsea or {}).get(run)
        if ranked is not None and not ranked.empty and "fdr" in ranked:
            best = (ranked.sort_values(["fdr", "p_value"], kind="stable")
                    .groupby("component", sort=False).head(1).set_index("component"))
            shown["top_GSEA_term"] = shown["component"].map(best["term"])
            shown["top_GSEA_NES"] = shown["component"].map(best["nes"])
            limit = best.get("at_resolution_limit", pd.Series(False, index=best.index)).astype(bool)
            shown["top_GSEA_FDR"] = [
                f"< {fdr:.3g}" if at_limit else f"{fdr:.3g}"
                for fdr, at_limit in zip(shown["component"].map(best["fdr"]), shown["component"].map(limit))]
        parts.append(_table(shown.set_index("component")))
    if components:
        parts.append(f"<p>GO over-representation: hypergeometric test, Benjamini-Hochberg adjusted p-values "
                     f"(geovae.interpretation.enrichment); <i>top_GO_significant</i> marks adjusted p &lt; {SIGNIFICANCE}. GSEA FDRs "
                     "written &lt; x sit at the permutation resolution 1/(permutations + 1); raise "
                     "interpret.gsea_permutations to resolve them.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _thumbnail(path: str | Path, width: int = 320) -> str:
    """A PNG shrunk to ``width`` pixels, inline (data URI), captioned with its file name."""
    import base64
    import io

    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((width, width * 4))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode()
    name = html.escape(Path(path).name)
    return (f"<figure style='display:inline-block;margin:4px'><img src='data:image/png;base64,{data}' "
            f"alt='{name}'><figcaption style='font-size:11px'>{name}</figcaption></figure>")


def _qc_section(qc: Mapping[str, pd.DataFrame]) -> list[str]:
    """Cells kept by QC per dataset, with a warning where fewer than half were kept."""
    from geovae.preprocessing.qc import QC_WARN_FRACTION

    if not qc:
        return []
    rows, parts = [], ["<h2>Quality control</h2>"]
    for dataset, table in qc.items():
        removed = {c[len("removed_"):]: int(table[c].sum()) for c in table.columns if c.startswith("removed_")}
        cells_in, kept = int(table["cells_in"].sum()), int(table["cells_kept"].sum())
        rows.append({"dataset": dataset, "samples": len(table), "cells in": cells_in, "cells kept": kept,
                     "kept (%)": round(100 * kept / cells_in, 1) if cells_in else 0.0,
                     "failing each rule": ", ".join(f"{k} {v}" for k, v in removed.items())})
        if cells_in and kept / cells_in < QC_WARN_FRACTION:
            parts.append(f"<p class='warn'>Warning: QC kept only {kept} of {cells_in} cells of "
                         f"{html.escape(dataset)}; see its QC figure (category Quality control).</p>")
    parts.insert(1, _table(pd.DataFrame(rows).set_index("dataset")))
    return parts


def _flatten(block: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"train": {"lr": 1}}`` -> ``[("train.lr", 1)]``."""
    out: list[tuple[str, Any]] = []
    for key, value in block.items():
        if isinstance(value, Mapping):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def run_id(path: str | Path) -> str:
    """``dataset/model/seed`` of a per-run file ``results/<dataset>/<model>/<seed>/<file>``."""
    return "/".join(Path(path).parts[-4:-1])


def load_run_tables(components: Iterable[str | Path] = (), enrichment: Iterable[str | Path] = (),
                    interpret_info: Iterable[str | Path] = (), train_info: Iterable[str | Path] = (),
                    validation: Iterable[str | Path] = (), gsea: Iterable[str | Path] = ()) -> dict[str, dict]:
    """Read the per-run outputs of the interpret and train stages, keyed by run id.

    Parameters
    ----------
    components, enrichment, validation, gsea
        ``components.tsv``, ``enrichment.tsv``, ``program_validation.tsv``, ``gsea.tsv`` files.
    interpret_info
        ``interpret_info.json`` files (their ``warnings`` list is read).
    train_info
        ``train_info.json`` files (their ``training.train_seconds`` is read).

    Returns
    -------
    dict
        ``{"components", "enrichment", "validation", "gsea": {run: DataFrame}, "warnings": {run: [str]},
        "train_seconds": {run: float}}``.

    Raises
    ------
    ValueError
        A file that cannot be parsed (named).
    """
    def tsv(path: str | Path) -> pd.DataFrame:
        try:
            return pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a readable TSV table ({err})") from err

    def info(path: str | Path) -> dict:
        try:
            return json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err})") from err

    return {"components": {run_id(p): tsv(p) for p in components},
            "enrichment": {run_id(p): tsv(p) for p in enrichment},
            "validation": {run_id(p): tsv(p) for p in validation},
            "gsea": {run_id(p): tsv(p) for p in gsea},
            "warnings": {run_id(p): list(info(p).get("warnings", [])) for p in interpret_info},
            "train_seconds": {run_id(p): info(p).get("training", {}).get("train_seconds") for p in train_info}}


#: Columns of :func:`program_validation_table`.
PROGRAM_VALIDATION_COLUMNS = ["dataset", "model", "program", "program_size", "seeds", "found", "enriched_component",
                              "precision_at_n", "precision_at_n_sd", "r_precision", "score_component",
                              "abs_score_r", "agreement"]


def _as_float_bool(values: pd.Series) -> pd.Series:
    mapped = values.map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0, 1: 1.0, 0: 0.0})
    return pd.to_numeric(mapped, errors="coerce")


def program_validation_table(validation: Mapping[str, pd.DataFrame], alpha: float = 0.05) -> pd.DataFrame:
    """Benchmark table of the ground-truth validation: one row per dataset x model x true program.

    Parameters
    ----------
    validation
        Per run id (``dataset/model/seed``) the table of
        :func:`geovae.interpretation.validate_programs` (one row per program); empty tables
        (datasets without programs) are skipped.
    alpha
        A program counts as found in a seed when its best component's BH-adjusted p < ``alpha``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PROGRAM_VALIDATION_COLUMNS`: ``seeds`` (runs aggregated), ``found``
        (fraction of seeds in which the program was found), ``enriched_component`` and
        ``score_component`` (the component whose top genes are most enriched for the program,
        and the one best correlated with the program score, per seed in seed order,
        ``;``-separated: component indices are not comparable across seeds), means over seeds of
        ``precision_at_n`` (with its sample SD, empty for one seed), ``r_precision`` and
        ``abs_score_r`` (|r| of that best-correlated component), ``agreement`` (fraction of
        seeds in which the two components coincide). Sorted by dataset, model, then program
        order of the first run.
    """
    required = ["program", "program_size", "enriched_component", "adj_p_value", "precision_at_n", "r_precision",
                "score_component", "score_r", "agreement"]
    frames = []
    for run, table in validation.items():
        if table is None or table.empty:
            continue
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise ValueError(f"program validation table of run {run!r} lacks column(s) {missing}")
        dataset, model, seed = (run.split("/") + ["", "", ""])[:3]
        frames.append(table.assign(dataset=dataset, model=model, seed=seed,
                                   _order=np.arange(len(table))))
    if not frames:
        return pd.DataFrame(columns=PROGRAM_VALIDATION_COLUMNS)
    long = pd.concat(frames, ignore_index=True)
    long["_seed"] = pd.to_numeric(long["seed"], errors="coerce")
    long = long.sort_values(["dataset", "model", "_seed", "seed"], kind="stable")

    def joined(values: pd.Series) -> str:
        return ";".join("" if pd.isna(v) else str(v) for v in values)

    rows = []
    for (dataset, model, program), block in long.groupby(["dataset", "model", "program"], sort=False):
        precision = pd.to_numeric(block["precision_at_n"], errors="coerce")
        rows.append({
            "dataset": dataset, "model": model, "program": program,
            "program_size": int(pd.to_numeric(block["program_size"]).max()), "seeds": len(block),
            "found": float((pd.to_numeric(block["adj_p_value"], errors="coerce") < alpha).mean()),
            "enriched_component": joined(block["enriched_component"]),
            "precision_at_n": float(precision.mean()),
            "precision_at_n_sd": float(precision.std(ddof=1)) if len(block) > 1 else np.nan,
            "r_precision": float(pd.to_numeric(block["r_precision"], errors="coerce").mean()),
            "score_component": joined(block["score_component"]),
            "abs_score_r": float(pd.to_numeric(block["score_r"], errors="coerce").abs().mean()),
            "agreement": float(_as_float_bool(block["agreement"]).mean()),
            "_order": int(block["_order"].min()),
        })
    out = pd.DataFrame(rows).sort_values(["dataset", "model", "_order"], kind="stable")
    return out[PROGRAM_VALIDATION_COLUMNS].reset_index(drop=True)


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
        component enriched at adjusted p < 0.05, mean over seeds), ``precision_at_n``,
        ``r_precision``, ``agreement`` (fraction of programs whose enriched component is also
        the one best correlated with the program score), each a mean over programs of the
        per-program seed means of :func:`program_validation_table`.
    """
    table = program_validation_table(validation)
    if table.empty:
        return pd.DataFrame()
    return table.groupby(["dataset", "model"], sort=True).agg(
        programs=("program", "size"), found=("found", "sum"), precision_at_n=("precision_at_n", "mean"),
        r_precision=("r_precision", "mean"), agreement=("agreement", "mean"))


def _validation_section(validation: Mapping[str, pd.DataFrame]) -> list[str]:
    summary = validation_summary(validation)
    if summary.empty:
        return []
    per_program = program_validation_table(validation).set_index(["dataset", "model", "program"])
    return ["<h2>Ground-truth validation of latent components (simulated programs)</h2>",
            "<p>Per true gene program: the component whose top genes are most enriched for it (hypergeometric), "
            "precision@N of those top genes, and whether that component is also the one best correlated with "
            "the program's cell score. Means over programs and seeds:</p>", _table(summary),
            "<p>One row per model and program (also <code>results/benchmark/program_validation.tsv</code>); "
            "<code>found</code> and <code>agreement</code> are fractions of seeds, components are listed per "
            "seed:</p>", _table(per_program)]
