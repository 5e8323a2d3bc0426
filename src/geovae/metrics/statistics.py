"""Across-dataset statistics of a benchmark, following the LiVAE paper (section 2.9).

Paired design: every model is evaluated on the same datasets. Per metric, the paired differences
``reference - comparator`` are tested for normality with Shapiro-Wilk; when all are normal the
omnibus test is a repeated-measures ANOVA with Tukey HSD post hoc tests, otherwise a Friedman test
with Bonferroni-corrected Wilcoxon signed-rank post hoc tests. Stars: * p<0.05, ** p<0.01, *** p<0.001.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .glossary import GLOSSARY, describe

#: Metrics where a lower value is better (used for ranks and the direction note).
LOWER_IS_BETTER = frozenset(m for m, (_, better) in GLOSSARY.items() if better == "lower")

#: Columns of :func:`paired_comparison`.
COMPARISON_COLUMNS = ["metric", "category", "reference", "comparator", "n_datasets", "mean_difference",
                      "shapiro_min_p", "normal", "omnibus_test", "omnibus_p", "posthoc_test", "p_value",
                      "stars", "note"]


def stars(p: float) -> str:
    """Significance stars as in the paper's tables (``""`` for p >= 0.05 or NaN)."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def rm_anova(values: np.ndarray) -> tuple[float, float]:
    """One-way repeated-measures ANOVA.

    Parameters
    ----------
    values
        ``n_subjects x k_conditions`` (datasets x models), complete.

    Returns
    -------
    F statistic and p-value with ``(k-1, (k-1)(n-1))`` degrees of freedom.
    """
    y = np.asarray(values, dtype=float)
    n, k = y.shape
    grand = y.mean()
    ss_cond = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_subj = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_err = ((y - grand) ** 2).sum() - ss_cond - ss_subj
    df_cond, df_err = k - 1, (k - 1) * (n - 1)
    if ss_err <= 0 or df_err <= 0:
        return float("inf") if ss_cond > 0 else float("nan"), 0.0 if ss_cond > 0 else float("nan")
    f_stat = (ss_cond / df_cond) / (ss_err / df_err)
    return float(f_stat), float(stats.f.sf(f_stat, df_cond, df_err))


def _wide(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = metrics[metrics["metric"] == metric]
    wide = rows.pivot_table(index="dataset", columns="model", values="value", aggfunc="mean")
    return wide.dropna(axis=0, how="any")


def paired_comparison(metrics: pd.DataFrame, reference: str = "livae", min_datasets: int = 3,
                      alpha: float = 0.05) -> pd.DataFrame:
    """Paired differences of ``reference`` against every other model, per metric, with the paper's tests.

    Parameters
    ----------
    metrics
        Tidy table with columns ``dataset, model, seed, metric, value`` (and optionally ``category``);
        seeds are averaged per dataset and model first.
    reference
        Model compared against all others (differences are ``reference - comparator``).
    min_datasets
        Fewest datasets with complete results for a test; below it the row says so instead of a p-value.
    alpha
        Level of the Shapiro-Wilk normality decision.

    Returns
    -------
    pandas.DataFrame
        One row per (metric, comparator) with the columns of :data:`COMPARISON_COLUMNS`.
    """
    if reference not in set(metrics["model"]):
        raise ValueError(f"reference model {reference!r} has no metrics; models: {sorted(set(metrics['model']))}")
    category = (metrics.drop_duplicates("metric").set_index("metric")["category"]
                if "category" in metrics else pd.Series(dtype=str))
    rows: list[dict] = []
    for metric in pd.unique(metrics["metric"]):
        better = describe(metric)[1]
        if not better:  # settings and counts (leiden_resolution, K_max, ...) are not ranked
            continue
        wide = _wide(metrics, metric)
        if reference not in wide.columns:
            continue
        comparators = [m for m in wide.columns if m != reference]
        n = len(wide)
        diffs = {c: (wide[reference] - wide[c]).to_numpy() for c in comparators}
        base = {"metric": metric, "category": category.get(metric, ""), "reference": reference, "n_datasets": n}
        if not comparators:
            continue
        if n < min_datasets:
            for c in comparators:
                rows.append({**base, "comparator": c, "mean_difference": float(np.mean(diffs[c])) if n else np.nan,
                             "note": f"not tested: {n} dataset(s) with complete results, at least {min_datasets} needed"})
            continue
        shapiro = [stats.shapiro(d).pvalue if np.ptp(d) > 0 else 1.0 for d in diffs.values()]
        normal = bool(min(shapiro) > alpha)
        models = [reference, *comparators]
        values = wide[models].to_numpy(float)
        omnibus_test, omnibus_p = "", np.nan
        if normal:
            if len(models) >= 3:
                omnibus_test, omnibus_p = "repeated-measures ANOVA", rm_anova(values)[1]
            if len(models) == 2:  # two models: the paired test (Tukey HSD would ignore the pairing)
                d = diffs[comparators[0]]
                p = float(stats.ttest_rel(values[:, 0], values[:, 1]).pvalue) if np.ptp(d) > 0 else float(d[0] == 0)
                posthoc, posthoc_test = {comparators[0]: p if np.isfinite(p) else 1.0}, "paired t-test"
            else:
                tukey = stats.tukey_hsd(*[values[:, j] for j in range(len(models))])
                posthoc = {c: float(tukey.pvalue[0, j + 1]) for j, c in enumerate(comparators)}
                posthoc_test = "Tukey HSD"
        else:
            if len(models) >= 3:
                omnibus_test, omnibus_p = "Friedman", float(stats.friedmanchisquare(*values.T).pvalue)
            posthoc = {}
            for c in comparators:
                d = diffs[c]
                p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
                posthoc[c] = min(1.0, p * len(comparators))
            posthoc_test = "Wilcoxon signed-rank (Bonferroni)"
        for c, shapiro_p in zip(comparators, shapiro):
            rows.append({**base, "comparator": c, "mean_difference": float(np.mean(diffs[c])),
                         "shapiro_min_p": float(min(shapiro)), "normal": normal, "omnibus_test": omnibus_test,
                         "omnibus_p": omnibus_p, "posthoc_test": posthoc_test, "p_value": posthoc[c],
                         "stars": stars(posthoc[c]), "note": ""})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def comparison_markdown(comparison: pd.DataFrame, digits: int = 3) -> str:
    """Markdown table shaped like the paper's Tables 1-9: metrics x comparators, ``difference + stars``.

    Cells of untested comparisons carry a dagger and the note is printed under the table.
    """
    if comparison.empty:
        return "No comparison: the benchmark needs at least two models with metrics on the same datasets.\n"
    reference = comparison["reference"].iloc[0]
    comparators = list(pd.unique(comparison["comparator"]))
    lines = [f"Paired differences ({reference} - comparator), mean over datasets; "
             "* p<0.05, ** p<0.01, *** p<0.001.", "",
             "| category | metric | " + " | ".join(comparators) + " |",
             "|---|---|" + "---|" * len(comparators)]
    notes = set()
    for (cat, metric), group in comparison.groupby(["category", "metric"], sort=False):
        cells = []
        by_comp = group.set_index("comparator")
        for c in comparators:
            if c not in by_comp.index:
                cells.append("")
                continue
            row = by_comp.loc[c]
            diff = row["mean_difference"]
            text = "" if not np.isfinite(diff) else f"{diff:+.{digits}f}"
            if row["note"]:
                notes.add(row["note"])
                text += " †"
            else:
                text += row["stars"]
            cells.append(text)
        lines.append(f"| {cat} | {metric} | " + " | ".join(cells) + " |")
    for note in sorted(notes):
        lines.append(f"\n† {note}")
    return "\n".join(lines) + "\n"


def model_ranks(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean rank (1 = best) of each model per ranked metric over datasets (direction from
    :mod:`geovae.metrics.glossary`: ``DAV`` and ``COR`` lower is better; settings such as
    ``leiden_resolution`` or ``K_max`` are not ranked).

    Returns
    -------
    ``models x metrics`` DataFrame of mean ranks.
    """
    out = {}
    for metric in pd.unique(metrics["metric"]):
        better = describe(metric)[1]
        if not better:  # settings and counts (leiden_resolution, K_max, ...) are not ranked
            continue
        wide = _wide(metrics, metric)
        if wide.shape[1] < 1 or wide.empty:
            continue
        ascending = better == "lower"
        out[metric] = wide.rank(axis=1, ascending=ascending, method="average").mean(axis=0)
    return pd.DataFrame(out)
