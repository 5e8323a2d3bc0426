"""Plotting verbs that take AnnData, scanpy style (``geovae.pl.umap(adata, color=...)``).

Each verb reads what it draws from the AnnData that ``geovae.tl`` / the pipeline's
``embedding.h5ad`` hold and hands the arrays to the figure functions of :mod:`geovae.plotting`
(which the pipeline calls directly). ``path=`` saves the figure (PNG) and closes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from geovae.interpretation.components import component_names
from geovae.plotting.embedding import embedding_scatter
from geovae.plotting.training import loss_curves

__all__ = ["embedding", "umap", "tsne", "loss", "components", "component_correlation", "group_components",
           "markers", "embedding_scatter", "loss_curves", "enrichment_dotplot", "component_heatmap"]


def _obsm(adata: Any, key: str) -> Any:
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm has no {key!r} (available: {list(adata.obsm.keys())})")
    return adata.obsm[key]


def _color(adata: Any, color: str | Sequence[str] | None) -> tuple[list[str | None], pd.DataFrame]:
    """obs columns and genes (``var_names``, values from ``X``) to colour by, as one frame."""
    keys = [color] if isinstance(color, str) or color is None else list(color)
    frame = adata.obs.copy()
    for key in keys:
        if key is None or key in frame:
            continue
        if key not in adata.var_names:
            raise KeyError(f"{key!r} is neither an obs column nor a gene of adata.var_names")
        values = adata[:, key].X
        frame[key] = values.toarray().ravel() if hasattr(values, "toarray") else values.ravel()
    return keys, frame


def embedding(adata: Any, basis: str = "umap", color: str | Sequence[str] | None = None,
              path: str | Path | None = None, title: str = "") -> Any:
    """Scatter of ``obsm["X_<basis>"]``, one panel per obs column or gene in ``color``.

    Parameters
    ----------
    adata
        AnnData with ``obsm["X_<basis>"]``.
    basis
        ``"umap"``, ``"tsne"`` or any 2-D ``obsm`` key without its ``X_`` prefix.
    color
        obs column(s) or gene name(s); ``None`` draws grey points.
    path, title
        Where to save the figure; title prefix.

    Returns
    -------
    matplotlib.figure.Figure
    """
    keys, frame = _color(adata, color)
    label = {"umap": "UMAP", "tsne": "t-SNE"}.get(basis, basis)
    return embedding_scatter(_obsm(adata, f"X_{basis}"), frame, keys, label, path=path, title=title)


def umap(adata: Any, color: str | Sequence[str] | None = None, path: str | Path | None = None, title: str = "") -> Any:
    """:func:`embedding` of ``obsm["X_umap"]``.

    Parameters
    ----------
    adata, color, path, title
        As in :func:`embedding`.
    """
    return embedding(adata, "umap", color, path, title)


def tsne(adata: Any, color: str | Sequence[str] | None = None, path: str | Path | None = None, title: str = "") -> Any:
    """:func:`embedding` of ``obsm["X_tsne"]``.

    Parameters
    ----------
    adata, color, path, title
        As in :func:`embedding`.
    """
    return embedding(adata, "tsne", color, path, title)


def loss(model: Any, path: str | Path | None = None, title: str = "") -> Any:
    """Training and validation loss terms per epoch of a trained model (its ``history``), with the
    early-stopping epoch (``metadata["best_epoch"]``) marked.

    Parameters
    ----------
    model
        A trained model of the zoo.
    path, title
        Where to save the figure; its title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    best = getattr(model, "metadata", {}).get("best_epoch")
    return loss_curves(model.history, path=path, title=title, best_epoch=int(best) if best else None)


def components(adata: Any, top_n: int = 5, include_negative: bool = True, path: str | Path | None = None) -> Any:
    """Heatmap of each component's top genes (both tails by default), from the component
    annotation stored by :func:`geovae.interpretation.annotate_components`
    (``varm["component_correlation"]``).

    Parameters
    ----------
    adata
        AnnData with ``varm["component_correlation"]``.
    top_n
        Genes taken per component and tail.
    include_negative
        Also the most negatively correlated genes.
    path
        Where to save the figure.
    """
    from geovae.plotting.enrichment import component_heatmap as heatmap

    if "component_correlation" not in adata.varm:
        raise KeyError("adata.varm has no 'component_correlation': run geovae.interpretation.annotate_components")
    corr = adata.varm["component_correlation"]
    table = pd.DataFrame(corr, index=adata.var_names, columns=component_names(corr.shape[1]))
    return heatmap(table, top_n=top_n, include_negative=include_negative, path=path)


def component_correlation(adata: Any, use_rep: str = "X_latent", path: str | Path | None = None) -> Any:
    """Pearson correlations between the components of ``obsm[use_rep]`` (zero in white).

    Parameters
    ----------
    adata
        AnnData with the latent.
    use_rep
        ``obsm`` key of the latent.
    path
        Where to save the figure.
    """
    from geovae.plotting.enrichment import component_correlation_heatmap

    latent = _obsm(adata, use_rep)
    latent = pd.DataFrame(latent, columns=component_names(latent.shape[1]))
    return component_correlation_heatmap(latent.corr(), path=path)


def group_components(adata: Any, groupby: str, use_rep: str = "X_latent", path: str | Path | None = None) -> Any:
    """Mean activation of every component of ``obsm[use_rep]`` per group of ``obs[groupby]``.

    Parameters
    ----------
    adata
        AnnData with the latent.
    groupby
        ``obs`` column of the groups (cell type, cluster).
    use_rep
        ``obsm`` key of the latent.
    path
        Where to save the figure.
    """
    from geovae.plotting.enrichment import group_component_heatmap

    latent = _obsm(adata, use_rep)
    return group_component_heatmap(latent, adata.obs[groupby], component_names(latent.shape[1]), path=path,
                                   title=groupby)


def markers(adata: Any, genes: Sequence[str], groupby: str, path: str | Path | None = None) -> None:
    """scanpy's dot plot of ``genes`` by ``obs[groupby]`` (fraction expressing, mean expression).

    Parameters
    ----------
    adata
        AnnData with expression in ``X``.
    genes
        Genes to show.
    groupby
        ``obs`` column of the groups.
    path
        Where to save the figure.
    """
    from geovae.plotting.enrichment import marker_dotplot

    marker_dotplot(adata, list(genes), groupby, path=path)


def __getattr__(name: str) -> Any:
    if name in {"enrichment_dotplot", "component_heatmap"}:  # table-based figures of the interpretation
        from geovae.plotting import enrichment

        return getattr(enrichment, name)
    raise AttributeError(f"module 'geovae.pl' has no attribute {name!r}")
