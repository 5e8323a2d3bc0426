"""Training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


def loss_curves(history: pd.DataFrame, path: str | Path | None = None, title: str = "",
                best_epoch: int | None = None) -> plt.Figure:
    """Plot every loss term per epoch, training and validation in the same panel.

    Parameters
    ----------
    history
        One row per epoch; numeric columns are loss terms (``train_*`` / ``val_*`` or plain names).
    path
        When given, save the figure there (PNG) and close it.
    title
        Figure title.
    best_epoch
        Epoch whose weights were kept (early stopping), marked by a dashed line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    numeric = history.select_dtypes("number")
    columns = [c for c in numeric.columns if c not in ("epoch", "seconds")]
    terms = list(dict.fromkeys(c.split("_", 1)[1] if c.startswith(("train_", "val_")) else c for c in columns))
    n = max(len(terms), 1)
    ncols = min(n, 4)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    x = history["epoch"] if "epoch" in history else range(len(history))
    for ax, term in zip(axes.ravel(), terms):
        for column, label, style in ((f"train_{term}", "training", "-"), (f"val_{term}", "validation", "--"),
                                     (term, term, "-")):
            if column in numeric:
                ax.plot(x, numeric[column], style, lw=1.2, label=label)
        if best_epoch:
            ax.axvline(best_epoch, color="0.3", lw=0.8, ls=":", label=f"kept: epoch {best_epoch}")
        ax.set_title(term, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130, bbox_inches="tight")
        plt.close(fig)
    return fig
