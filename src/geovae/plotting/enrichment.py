"""Figures for latent-component annotation: GO enrichment dot plot and gene heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

_TAIL_MARK = {"positive": "+", "negative": "-"}


def _shorten(text: str, width: int = 55) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _finish(ax: plt.Axes, path: str | Path | None) -> plt.Axes:
    if path is not None:
        fig = ax.figure
        fig.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(fig)
    return ax


def enrichment_dotplot(enrich_df: pd.DataFrame, top_n: int = 5, ax: plt.Axes | None = None,
                       path: str | Path | None = None) -> plt.Axes:
    """Dot plot of the significant, deduplicated GO terms per component and tail.

    Only terms with an adjusted p-value below
    :data:`geovae.interpretation.enrichment.SIGNIFICANCE` are drawn, near-duplicates collapsed onto
    the most significant one (:func:`geovae.interpretation.enrichment.collapse_redundant_terms`; the
    number collapsed is shown after the name); long names are wrapped, not cut.

    Parameters
    ----------
    enrich_df
        Output of :func:`geovae.interpretation.enrich_components`.
    top_n
        Terms kept per (component, tail) after deduplication, most significant first.
    ax
        Axes to draw on; a new figure is created when ``None``.
    path
        When given, the figure is saved there (150 dpi) and closed.

    Returns
    -------
    matplotlib.axes.Axes
        x: ``component`` + tail sign (``Z1+``/``Z1-``), y: term, dot size: overlap,
        colour: ``-log10(adj_p_value)`` from the significance threshold up. A table without a
        significant term gives an axes with a note.
    """
    import textwrap

    from geovae.interpretation.enrichment import SIGNIFICANCE, collapse_redundant_terms

    kept = collapse_redundant_terms(enrich_df) if enrich_df is not None and len(enrich_df) else None
    if kept is None or len(kept) == 0:
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 2))
        note = (enrich_df.attrs.get("warning") if enrich_df is not None else None) or (
            f"no GO term with adjusted p < {SIGNIFICANCE}")
        ax.text(0.5, 0.5, _shorten(str(note), 90), ha="center", va="center", fontsize=8, wrap=True)
        ax.set_axis_off()
        return _finish(ax, path)

    df = kept.copy()
    df["column"] = df["component"].astype(str) + df["tail"].map(_TAIL_MARK).fillna("?")
    columns = list(dict.fromkeys(df["column"]))
    top = df.groupby("column", sort=False).head(top_n)
    terms = list(dict.fromkeys(top["term"]))
    show = df[df["term"].isin(terms)]
    collapsed = show.groupby("term")["n_collapsed"].max()
    labels = [textwrap.fill(t + (f"  (+{collapsed[t]} similar)" if collapsed.get(t, 0) else ""), 60)
              for t in terms]
    x = show["column"].map(columns.index).to_numpy()
    y = show["term"].map(terms.index).to_numpy()
    score = -np.log10(np.clip(show["adj_p_value"].to_numpy(dtype=float), 1e-300, 1.0))
    size = 20 + 25 * show["overlap"].to_numpy(dtype=float)
    lines = sum(label.count("\n") + 1 for label in labels)

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5 + 0.5 * len(columns), 1.5 + 0.3 * lines))
    points = ax.scatter(x, y, s=size, c=score, cmap="viridis", vmin=-np.log10(SIGNIFICANCE),
                        edgecolors="0.2", linewidths=0.4)
    ax.figure.colorbar(points, ax=ax, fraction=0.04, pad=0.02, label="-log10 adjusted p (BH)")
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=9)
    ax.set_yticks(range(len(terms)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(len(terms) - 0.5, -0.5)
    ax.grid(True, color="0.92", linewidth=0.5)
    ax.set_axisbelow(True)
    for overlap in sorted({int(v) for v in np.quantile(show["overlap"], [0.0, 0.5, 1.0])}):
        ax.scatter([], [], s=20 + 25 * overlap, c="0.6", label=str(overlap))
    ax.legend(title="top genes\nin term", loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=7,
              title_fontsize=7, frameon=False)
    ax.set_title(f"GO BP terms with adjusted p < {SIGNIFICANCE} (near-duplicates collapsed)", fontsize=9)
    return _finish(ax, path)


def component_heatmap(corr_table: pd.DataFrame, top_n: int = 5, ax: plt.Axes | None = None,
                      include_negative: bool = False, path: str | Path | None = None) -> plt.Axes:
    """Heatmap of gene-component correlations for each component's top genes.

    Parameters
    ----------
    corr_table
        ``genes x components`` correlations, e.g.
        ``pd.DataFrame(adata.varm["component_correlation"], index=adata.var_names,
        columns=component_names(d))``.
    top_n
        Most positively correlated genes taken per component (their union is shown).
    ax
        Axes to draw on; a new figure is created when ``None``.
    include_negative
        Also take the ``top_n`` most negatively correlated genes per component.
    path
        When given, the figure is saved there (150 dpi) and closed.

    Returns
    -------
    matplotlib.axes.Axes
        Rows: genes (grouped by the component that selected them), columns: components,
        diverging colour scale fixed to [-1, 1].
    """
    if corr_table.shape[1] == 0 or corr_table.shape[0] == 0:
        raise ValueError("corr_table is empty; expected genes x components correlations")
    values = corr_table.astype(float)
    genes: list[str] = []
    for comp in values.columns:
        col = values[comp].dropna()
        genes.extend(col[col > 0].nlargest(top_n).index)
        if include_negative:
            genes.extend(col[col < 0].nsmallest(top_n).index)
    genes = list(dict.fromkeys(genes))
    mat = values.loc[genes].to_numpy()

    if ax is None:
        _, ax = plt.subplots(figsize=(2.0 + 0.4 * values.shape[1], 1.0 + 0.18 * max(len(genes), 1)))
    image = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="correlation")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in values.columns], rotation=90, fontsize=8)
    ax.set_yticks(range(len(genes)), [_shorten(str(g), 30) for g in genes], fontsize=6)
    ax.set_title("Top genes per latent component", fontsize=9)
    return _finish(ax, path)


def component_umaps(umap: np.ndarray, latent: np.ndarray, markers: list[tuple[str, np.ndarray] | None],
                    component_labels: list[str] | None = None, pairs_per_row: int = 2, point_size: float = 4.0,
                    path: str | Path | None = None) -> plt.Figure:
    """Per component, the UMAP coloured by its activation next to the UMAP coloured by its best marker.

    Parameters
    ----------
    umap
        ``cells x 2`` embedding coordinates (e.g. ``obsm["X_umap"]``).
    latent
        ``cells x d`` component activations.
    markers
        Per component ``(gene name, cells-long expression)`` of its best marker, or ``None``
        (then the marker panel says so).
    component_labels
        Panel titles (default ``Z1..Zd``).
    pairs_per_row
        (activation, marker) pairs per figure row.
    point_size
        Scatter marker size.
    path
        When given, the figure is saved there (120 dpi) and closed.

    Returns
    -------
    matplotlib.figure.Figure
        ``ceil(d / pairs_per_row)`` rows of ``2 * pairs_per_row`` panels (LiVAE paper Fig. 12B layout).
    """
    umap = np.asarray(umap, dtype=float)
    latent = np.asarray(latent, dtype=float)
    if umap.ndim != 2 or umap.shape[1] < 2 or latent.shape[0] != umap.shape[0]:
        raise ValueError(f"umap {umap.shape} must be cells x 2 and match latent {latent.shape}")
    d = latent.shape[1]
    if len(markers) != d:
        raise ValueError(f"markers has {len(markers)} entries for {d} components")
    labels = component_labels or [f"Z{k + 1}" for k in range(d)]
    pairs_per_row = max(1, min(pairs_per_row, d))
    n_rows = int(np.ceil(d / pairs_per_row))
    fig, axes = plt.subplots(n_rows, 2 * pairs_per_row, figsize=(3.0 * 2 * pairs_per_row, 2.8 * n_rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k in range(d):
        row, col = divmod(k, pairs_per_row)
        ax_z, ax_g = axes[row, 2 * col], axes[row, 2 * col + 1]
        order = np.argsort(np.abs(latent[:, k]), kind="stable")  # strongest activations drawn on top
        limit = float(np.max(np.abs(latent[:, k]))) or 1.0  # symmetric limits: white is an activation of 0
        pts = ax_z.scatter(umap[order, 0], umap[order, 1], c=latent[order, k], s=point_size, cmap="coolwarm",
                           vmin=-limit, vmax=limit, linewidths=0, rasterized=True)
        fig.colorbar(pts, ax=ax_z, fraction=0.046, pad=0.02, label="activation (latent mean)")
        ax_z.set_title(f"{labels[k]} activation", fontsize=8)
        if markers[k] is None:
            ax_g.text(0.5, 0.5, "no positively\ncorrelated gene", ha="center", va="center", fontsize=8)
        else:
            gene, expr = markers[k]
            expr = np.asarray(expr, dtype=float).ravel()
            order = np.argsort(expr, kind="stable")  # high expression drawn on top
            pts = ax_g.scatter(umap[order, 0], umap[order, 1], c=expr[order], s=point_size, cmap="viridis",
                               linewidths=0, rasterized=True)
            fig.colorbar(pts, ax=ax_g, fraction=0.046, pad=0.02, label="log1p normalised expression")
            ax_g.set_title(f"{labels[k]} best marker: {_shorten(str(gene), 25)}", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig


def component_correlation_heatmap(correlation: pd.DataFrame, path: str | Path | None = None,
                                  threshold: float | None = None) -> plt.Axes:
    """Heatmap of the Pearson correlations between component activations, zero in white.

    Parameters
    ----------
    correlation
        ``d x d`` correlations (``InterpretationResult.component_correlation``).
    path
        When given, the figure is saved there (150 dpi) and closed.
    threshold
        |r| from which a pair is outlined as redundant (default:
        :data:`geovae.interpretation.components.REDUNDANT_CORRELATION`).

    Returns
    -------
    matplotlib.axes.Axes
    """
    from geovae.interpretation.components import REDUNDANT_CORRELATION

    threshold = REDUNDANT_CORRELATION if threshold is None else threshold
    values = correlation.to_numpy(dtype=float)
    d = len(correlation)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * d, 1.0 + 0.45 * d))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1.0, vmax=1.0)  # symmetric limits: white is r = 0
    ax.set_xticks(range(d), correlation.columns, rotation=90, fontsize=8)
    ax.set_yticks(range(d), correlation.index, fontsize=8)
    for i in range(d):
        for j in range(d):
            if i != j and abs(values[i, j]) >= threshold:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="black"))
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Pearson r of activations")
    ax.set_title(f"Component correlation (outlined: |r| >= {threshold:g})", fontsize=9)
    fig.tight_layout()
    return _finish(ax, path)


def group_component_heatmap(latent: np.ndarray, groups: pd.Series, names: Sequence[str],
                            path: str | Path | None = None, title: str = "") -> plt.Axes:
    """Mean activation of every component in every group of cells (cell type or cluster), zero in white.

    Parameters
    ----------
    latent
        ``cells x d`` activations.
    groups
        Group of every cell (missing values are left out).
    names
        Component names.
    path
        When given, the figure is saved there (150 dpi) and closed.
    title
        Name of the grouping, shown in the title (e.g. the label column).

    Returns
    -------
    matplotlib.axes.Axes
    """
    frame = pd.DataFrame(np.asarray(latent, dtype=float), columns=list(names))
    frame["group"] = np.asarray(groups.astype(object))
    means = frame.dropna(subset=["group"]).groupby("group", observed=True).mean()
    limit = float(np.nanmax(np.abs(means.to_numpy()))) if means.size else 1.0
    fig, ax = plt.subplots(figsize=(1.8 + 0.5 * len(names), 1.2 + 0.3 * len(means)))
    image = ax.imshow(means.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(names)), list(names), rotation=90, fontsize=8)
    ax.set_yticks(range(len(means)), [_shorten(str(g), 40) for g in means.index], fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="mean activation")
    ax.set_title(f"Mean component activation by {title or 'group'}", fontsize=9)
    return _finish(ax, path)


def marker_dotplot(adata: Any, markers: Sequence[str], groupby: str, path: str | Path | None = None) -> None:
    """scanpy's dot plot of the components' best markers by ``groupby`` (fraction expressing, mean expression).

    Parameters
    ----------
    adata
        Preprocessed data (log-normalised expression in ``.X``) with ``obs[groupby]``.
    markers
        Genes to show (the components' best markers, duplicates dropped).
    groupby
        obs column of the groups.
    path
        PNG written there.
    """
    import scanpy as sc

    genes = [g for g in dict.fromkeys(map(str, markers)) if g in adata.var_names]
    if not genes or groupby not in adata.obs:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no marker genes or no groups to show", ha="center", va="center", fontsize=8)
        ax.set_axis_off()
        _finish(ax, path)
        return
    data = adata[adata.obs[groupby].notna().to_numpy(), genes].copy()  # the shown genes only (atlas memory)
    data.obs[groupby] = data.obs[groupby].astype(str).astype("category")
    dot = sc.pl.dotplot(data, genes, groupby=groupby, show=False, return_fig=True,
                        colorbar_title="mean log1p\nexpression", size_title="fraction of\ncells (%)")
    dot.savefig(path, dpi=130, bbox_inches="tight")
    plt.close("all")
