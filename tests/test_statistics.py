"""Across-dataset statistics (paper section 2.9) on planted cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from geovae.metrics.statistics import comparison_markdown, model_ranks, paired_comparison, rm_anova
from geovae.metrics.statistics import stars as star_string


def _tidy(values: dict[str, np.ndarray], metric: str = "NMI", category: str = "clustering") -> pd.DataFrame:
    rows = []
    for model, vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"dataset": f"d{i}", "model": model, "seed": 0, "metric": metric, "value": v,
                         "category": category})
    return pd.DataFrame(rows)


def test_stars_thresholds() -> None:
    assert [star_string(p) for p in (0.2, 0.04, 0.009, 0.0009, float("nan"))] == ["", "*", "**", "***", ""]


def test_rm_anova_two_conditions_equals_paired_t_squared() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=12)
    b = a + 0.5 + rng.normal(scale=0.3, size=12)
    f_stat, p = rm_anova(np.column_stack([a, b]))
    t = stats.ttest_rel(a, b)
    assert f_stat == pytest.approx(t.statistic**2, rel=1e-10)
    assert p == pytest.approx(t.pvalue, rel=1e-8)


def test_normal_differences_use_anova_and_tukey() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.6, size=15)
    table = _tidy({"livae": base + 0.2 + rng.normal(scale=0.02, size=15),
                   "vae": base + rng.normal(scale=0.02, size=15),
                   "ivae": base + 0.19 + rng.normal(scale=0.02, size=15)})
    out = paired_comparison(table, reference="livae").set_index("comparator")
    assert set(out["omnibus_test"]) == {"repeated-measures ANOVA"} and bool(out["normal"].iloc[0])
    assert out.loc["vae", "mean_difference"] == pytest.approx(0.2, abs=0.02)
    assert out.loc["vae", "stars"] == "***"          # large, consistent improvement
    assert out.loc["ivae", "p_value"] > 0.05            # 0.01 apart: not significant
    assert out.loc["vae", "posthoc_test"] == "Tukey HSD"


def test_skewed_differences_use_friedman_and_bonferroni_wilcoxon() -> None:
    diffs = np.array([0.01] * 9 + [5.0])                 # one extreme dataset: not normal
    base = np.linspace(0.1, 1.0, 10)
    table = _tidy({"livae": base + diffs, "vae": base, "ivae": base - diffs})
    out = paired_comparison(table, reference="livae").set_index("comparator")
    assert not bool(out["normal"].iloc[0]) and out["omnibus_test"].iloc[0] == "Friedman"
    expected = min(1.0, stats.wilcoxon(diffs).pvalue * 2)
    assert out.loc["vae", "p_value"] == pytest.approx(expected)


def test_too_few_datasets_are_reported_not_tested() -> None:
    table = _tidy({"livae": np.array([0.5, 0.6]), "vae": np.array([0.4, 0.5])})
    out = paired_comparison(table, reference="livae", min_datasets=3)
    assert np.isnan(out["p_value"]).all() and "at least 3 needed" in out["note"].iloc[0]
    md = comparison_markdown(out)
    assert "†" in md and "+0.100" in md


def test_ranks_respect_direction() -> None:
    table = pd.concat([_tidy({"a": np.array([1.0, 1.0]), "b": np.array([2.0, 2.0])}, "NMI"),
                       _tidy({"a": np.array([1.0, 1.0]), "b": np.array([2.0, 2.0])}, "DAV")])
    ranks = model_ranks(table)
    assert ranks.loc["b", "NMI"] == 1 and ranks.loc["a", "DAV"] == 1


def test_unknown_reference_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="reference model 'livae'"):
        paired_comparison(_tidy({"vae": np.array([0.1, 0.2, 0.3])}))


def test_two_models_use_the_paired_t_test() -> None:
    """Two models: a consistent small difference on datasets of very different levels is significant
    for the paired test (Tukey HSD, which ignores the pairing, would not see it)."""
    levels = np.array([0.2, 0.5, 0.8, 0.35, 0.65])
    gain = np.array([0.030, 0.020, 0.025, 0.028, 0.022])
    rows = [(f"d{i}", m, 0, "NMI", v) for i, (lo, g) in enumerate(zip(levels, gain))
            for m, v in (("livae", lo + g), ("vae", lo))]
    table = paired_comparison(pd.DataFrame(rows, columns=["dataset", "model", "seed", "metric", "value"]))
    row = table.set_index("comparator").loc["vae"]
    assert row["posthoc_test"] == "paired t-test"
    assert row["p_value"] == pytest.approx(stats.ttest_rel(levels + gain, levels).pvalue)
    assert row["p_value"] < 0.001 < stats.tukey_hsd(levels + gain, levels).pvalue[0, 1]
