"""geovae.interpretation: latent-component annotation and offline GO enrichment.

* :func:`annotate_components` -> ``varm["component_correlation"]``, ``uns["geovae_components"]``
* :func:`enrich_components` -> tidy over-representation table (gseapy, no network)
* :func:`prerank_components` -> tidy pre-ranked GSEA table (gseapy, no network)
* :func:`validate_programs` -> components matched to ground-truth gene programs
* :func:`build_go_bp_gene_sets` -> GO BP gene sets from Bioconductor SQLite annotation files
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
    empty_gsea,
    enrich_components,
    gene_set_coverage,
    prerank_components,
    read_gmt,
    write_gmt,
)
from geovae.interpretation.genesets import build_go_bp_gene_sets, write_go_bp_gmt
from geovae.interpretation.validation import empty_validation, validate_adata, validate_programs
from geovae.interpretation.pipeline import InterpretationResult, interpret_run

__all__ = [
    "InterpretationResult",
    "interpret_run",
    "GeneSetCoverageWarning",
    "annotate_components",
    "build_go_bp_gene_sets",
    "empty_gsea",
    "empty_validation",
    "prerank_components",
    "validate_adata",
    "validate_programs",
    "write_go_bp_gmt",
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
