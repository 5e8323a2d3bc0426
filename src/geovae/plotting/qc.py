"""Cell QC figure: the distribution of each QC metric per sample, with the bounds QC used."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

#: Metric -> (axis label, log scale).
_METRICS = {"total_counts": ("total counts", True), "n_genes_by_counts": ("detected genes", True),
            "pct_counts_mt": ("mitochondrial counts (%)", False), "n_peaks": ("accessible peaks", True)}
#: At most this many samples are drawn (the first ones, in data order).
MAX_SAMPLES = 12


def qc_distributions(metrics: pd.DataFrame, samples: np.ndarray | None, record: Mapping[str, Any],
                     path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Histogram of every QC metric per sample, with the lower/upper bounds of each QC rule drawn.

    Parameters
    ----------
    metrics
        Per-cell QC metrics of all cells before QC (``qc_metrics_rna`` / ``qc_metrics_atac``).
    samples
        Sample of each cell (None: one sample).
    record
        ``uns["geovae_qc"]`` of the preprocessed data (per-sample table of rules and bounds).
    path
        When given, save the figure there (PNG) and close it.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    columns = [c for c in _METRICS if c in metrics]
    table = pd.DataFrame(record.get("table", []))
    names = list(table["sample"])[:MAX_SAMPLES] if len(table) else ["all"]
    groups = np.full(len(metrics), "all", dtype=object) if samples is None else np.asarray(samples, dtype=str)
    fig, axes = plt.subplots(len(names), len(columns), figsize=(3.4 * len(columns), 2.3 * len(names)),
                             squeeze=False)
    for r, sample in enumerate(names):
        row = table[table["sample"] == sample].iloc[0] if len(table) else pd.Series(dtype=object)
        for c, column in enumerate(columns):
            ax = axes[r, c]
            label, log = _METRICS[column]
            values = metrics[column].to_numpy(dtype=float)[groups == sample]
            shown = np.log10(values + 1) if log else values
            ax.hist(shown, bins=50, color="#777", lw=0)
            for rule in pd.DataFrame(record.get("rules", {})).to_dict("records"):
                for bound in (row.get(f"{rule['name']}_min"), row.get(f"{rule['name']}_max")):
                    if rule["metric"] == column and bound is not None and np.isfinite(bound):
                        ax.axvline(np.log10(float(bound) + 1) if log else float(bound), color="#c33", lw=1.2, ls="--")
            ax.set_xlabel(f"log10({label} + 1)" if log else label, fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                kept = row.get("cells_kept", "?")
                ax.set_ylabel(f"{sample}\n{kept}/{row.get('cells_in', len(values))} kept\ncells", fontsize=8)
    fig.suptitle((title + "\n" if title else "") + "dashed: QC bounds (cells outside are removed)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig
