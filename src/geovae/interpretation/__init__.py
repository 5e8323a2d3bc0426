"""geovae.interpretation: latent-component annotation and offline GO enrichment.

* :func:`annotate_components` -> ``varm["component_correlation"]``, ``uns["geovae_components"]``
* :func:`enrich_components` -> tidy over-representation table (gseapy, no network)
"""

from geovae.interpretation.components import (
    annotate_components,
    component_gene_correlations,
    component_names,
    components_from_uns,
)
from geovae.interpretation.enrichment import (
    GeneSetCoverageWarning,
    benjamini_hochberg,
    default_gene_set_path,
    enrich_components,
    gene_set_coverage,
    read_gmt,
    write_gmt,
)
from geovae.interpretation.pipeline import InterpretationResult, interpret_run

__all__ = [
    "InterpretationResult",
    "interpret_run",
    "GeneSetCoverageWarning",
    "annotate_components",
    "benjamini_hochberg",
    "component_gene_correlations",
    "component_names",
    "components_from_uns",
    "default_gene_set_path",
    "enrich_components",
    "gene_set_coverage",
    "read_gmt",
    "write_gmt",
]
