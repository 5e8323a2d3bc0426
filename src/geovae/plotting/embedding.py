"""Scatter plots of 2-D embeddings coloured by categorical or continuous obs values."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _scatter(ax: plt.Axes, xy: np.ndarray, values: pd.Series | np.ndarray | None, title: str) -> None:
    size = max(2.0, 30000.0 / max(len(xy), 1) ** 1.2)
    if values is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c="0.3", linewidths=0)
    elif isinstance(values, pd.Series) and not pd.api.types.is_numeric_dtype(values):
        cats = values.astype("category")
        cmap = plt.get_cmap("tab20" if len(cats.cat.categories) > 10 else "tab10")
        for i, cat in enumerate(cats.cat.categories):
            mask = (cats == cat).to_numpy()
            ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=cmap(i % cmap.N), label=str(cat), linewidths=0)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2, frameon=False)
    else:
        points = ax.scatter(xy[:, 0], xy[:, 1], s=size, c=np.asarray(values, dtype=float), cmap="viridis",
                            linewidths=0)
        plt.colorbar(points, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def embedding_scatter(xy: np.ndarray, obs: pd.DataFrame, color: Sequence[str | None], basis: str,
                      path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Draw one panel per entry of ``color`` (obs column or ``None`` for uncoloured).

    Parameters
    ----------
    xy
        ``n x 2`` coordinates.
    obs
        Cell metadata aligned with ``xy``.
    color
        obs columns to colour by; ``None`` draws grey points.
    basis
        Axis label prefix, e.g. ``"UMAP"`` or ``"t-SNE"``.
    path
        When given, the figure is saved there (PNG, 150 dpi) and closed.
    title
        Figure title prefix.
    """
    color = list(color) or [None]
    fig, axes = plt.subplots(1, len(color), figsize=(5.2 * len(color), 4.2), squeeze=False)
    for ax, key in zip(axes[0], color):
        values = obs[key] if key is not None else None
        _scatter(ax, np.asarray(xy), values, f"{title} {basis} - {key or 'cells'}".strip())
        ax.set_xlabel(f"{basis} 1")
        ax.set_ylabel(f"{basis} 2")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(fig)
    return fig


#: QC columns of the preprocessed data drawn on the embedding, when present.
QC_COLUMNS = ("total_counts", "n_genes_by_counts", "n_peaks", "pct_counts_mt")


def overview_panels(umap: np.ndarray, obs: pd.DataFrame, spatial: np.ndarray | None = None,
                    color: Sequence[str] = (), path: str | Path | None = None, title: str = "") -> plt.Figure:
    """UMAP coloured by Leiden clusters and by each QC metric; spot coordinates too, when present.

    Parameters
    ----------
    umap
        ``n x 2`` UMAP coordinates.
    obs
        Cell metadata: ``leiden``, the QC columns of :data:`QC_COLUMNS` that exist, and ``color``.
    spatial
        ``n x 2`` spot coordinates (spatial data), drawn coloured by ``leiden`` and ``color``.
    color
        Further obs columns (label, batch) for the spatial panels.
    path
        When given, the figure is saved there (PNG, 130 dpi) and closed.
    title
        Figure title prefix.

    Returns
    -------
    matplotlib.figure.Figure
    """
    umap_keys = [k for k in ("leiden", *QC_COLUMNS) if k in obs]
    spatial_keys = [k for k in ("leiden", *color) if k and k in obs] if spatial is not None else []
    panels = [("UMAP", umap, k) for k in umap_keys] + [("spatial", spatial, k) for k in spatial_keys]
    n_cols = min(len(panels), 3) or 1
    n_rows = max(1, -(-len(panels) // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.6 * n_cols, 3.9 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (basis, xy, key) in zip(axes.ravel(), panels):
        ax.set_axis_on()
        _scatter(ax, np.asarray(xy), obs[key], f"{title} {basis} - {key}".strip())
        ax.set_xlabel(f"{basis} 1" if basis == "UMAP" else "x")
        ax.set_ylabel(f"{basis} 2" if basis == "UMAP" else "y")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130, bbox_inches="tight")
        plt.close(fig)
    return fig
