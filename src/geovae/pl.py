"""Figures drawn by the pipeline, usable from a notebook."""

from geovae.plotting.embedding import embedding_scatter
from geovae.plotting.training import loss_curves


def __getattr__(name: str):
    if name in {"enrichment_dotplot", "component_heatmap"}:
        from geovae.plotting import enrichment

        return getattr(enrichment, name)
    raise AttributeError(f"module 'geovae.pl' has no attribute {name!r}")


__all__ = ["embedding_scatter", "loss_curves", "enrichment_dotplot", "component_heatmap"]
