"""Benchmark figures: paired-difference boxplots per metric category and a model x metric rank heatmap."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130, bbox_inches="tight")
        plt.close(fig)
    return fig


def paired_difference_boxplots(metrics: pd.DataFrame, reference: str = "livae",
                               path: str | Path | None = None) -> plt.Figure:
    """One panel per metric category; per metric, a box of ``reference - comparator`` over datasets.

    Parameters
    ----------
    metrics
        Tidy metrics (``dataset, model, seed, metric, value, category``); seeds are averaged.
    reference
        Model whose paired differences are drawn.
    path
        Where to save the PNG (the figure is closed then).
    """
    means = metrics.groupby(["category", "metric", "dataset", "model"], sort=False)["value"].mean().reset_index()
    categories = list(pd.unique(means["category"]))
    comparators = sorted(set(means["model"]) - {reference})
    if not comparators:  # one figure with a note, not one empty axes per category
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.text(0.5, 0.5, f"only {reference} ran: no paired differences (add models to the config's models)",
                ha="center", va="center", fontsize=9)
        ax.axis("off")
        return _save(fig, path)
    fig, axes = plt.subplots(len(categories) or 1, 1, figsize=(10, 2.8 * max(len(categories), 1)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, cat in zip(axes[:, 0], categories):
        sub = means[means["category"] == cat]
        metric_names = list(pd.unique(sub["metric"]))
        width = 0.8 / len(comparators)
        for j, comp in enumerate(comparators):
            data, positions = [], []
            for i, metric in enumerate(metric_names):
                wide = sub[sub["metric"] == metric].pivot(index="dataset", columns="model", values="value")
                if reference in wide and comp in wide:
                    diff = (wide[reference] - wide[comp]).dropna().to_numpy()
                    if diff.size:
                        data.append(diff)
                        positions.append(i + (j - (len(comparators) - 1) / 2) * width)
            if data:
                box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                                 showfliers=True, manage_ticks=False)
                for patch in box["boxes"]:
                    patch.set_facecolor(colours(j % 10))
                ax.plot([], [], color=colours(j % 10), lw=6, label=f"{reference} - {comp}")
        ax.axhline(0, color="0.5", lw=0.8, ls="--")
        ax.set_xticks(range(len(metric_names)), metric_names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{cat}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right", frameon=False)
    return _save(fig, path)


def rank_heatmap(ranks: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Heatmap of mean ranks (1 = best), models x metrics, from :func:`geovae.metrics.statistics.model_ranks`."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.32 * max(ranks.shape[1], 1), 1.2 + 0.4 * max(ranks.shape[0], 1)))
    if ranks.empty or ranks.shape[0] < 2:
        ax.text(0.5, 0.5, "no metrics" if ranks.empty else "one model: nothing to rank", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    image = ax.imshow(ranks.to_numpy(float), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(ranks.shape[1]), ranks.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(ranks.shape[0]), ranks.index, fontsize=8)
    for (i, j), value in np.ndenumerate(ranks.to_numpy(float)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(image, ax=ax, fraction=0.03, label="mean rank (1 = best)")
    return _save(fig, path)
