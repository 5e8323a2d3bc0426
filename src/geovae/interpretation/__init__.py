"""geovae.interpretation: latent-component annotation and offline GO enrichment.

* :func:`annotate_components` -> ``varm["component_correlation"]``, ``uns["geovae_components"]``
* :func:`enrich_components` -> tidy over-representation table (gseapy, no network)
* :func:`prerank_components` -> tidy pre-ranked GSEA table (gseapy, no network)
* :func:`validate_programs` -> components matched to ground-truth gene programs
* :func:`build_go_bp_gene_sets` -> GO BP gene sets from Bioconductor SQLite annotation files
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geovae._lazy import lazy_exports

# names load from their submodules on first use (a job that needs one function does not load scanpy/gseapy)
_EXPORTS = {
    **dict.fromkeys(["annotate_components", "component_gene_correlations", "component_names", "components_from_uns"],
                    "components"),
    **dict.fromkeys(["GeneSetCoverageWarning", "benjamini_hochberg", "default_gene_set_path", "empty_gsea",
                     "enrich_components", "gene_set_coverage", "prerank_components", "read_gmt", "write_gmt"],
                    "enrichment"),
    **dict.fromkeys(["build_go_bp_gene_sets", "write_go_bp_gmt"], "genesets"),
    **dict.fromkeys(["empty_validation", "validate_adata", "validate_programs"], "validation"),
    **dict.fromkeys(["InterpretationResult", "interpret_run"], "pipeline"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from geovae.interpretation.components import (annotate_components, component_gene_correlations, component_names,
                                                  components_from_uns)
    from geovae.interpretation.enrichment import (GeneSetCoverageWarning, benjamini_hochberg, default_gene_set_path,
                                                  empty_gsea, enrich_components, gene_set_coverage, prerank_components,
                                                  read_gmt, write_gmt)
    from geovae.interpretation.genesets import build_go_bp_gene_sets, write_go_bp_gmt
    from geovae.interpretation.pipeline import InterpretationResult, interpret_run
    from geovae.interpretation.validation import empty_validation, validate_adata, validate_programs

__all__ = sorted(_EXPORTS)
