"""Training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


def loss_curves(history: pd.DataFrame, path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Plot every loss term of ``history`` per epoch, train and validation side by side.

    Parameters
    ----------
    history
        One row per epoch; numeric columns are loss terms (``train_*`` / ``val_*`` or plain names).
    path
        When given, save the figure there (PNG) and close it.
    title
        Figure title.
    """
    numeric = history.select_dtypes("number")
    terms = [c for c in numeric.columns if c != "epoch"]
    n = max(len(terms), 1)
    ncols = min(n, 4)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    x = history["epoch"] if "epoch" in history else range(len(history))
    for ax, term in zip(axes.ravel(), terms):
        ax.plot(x, numeric[term], lw=1.2)
        ax.set_title(term, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130, bbox_inches="tight")
        plt.close(fig)
    return fig
