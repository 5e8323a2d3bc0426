"""One call that runs the whole interpret stage: annotation, enrichment, figures, warnings."""

from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.interpretation.components import (
    REDUNDANT_CORRELATION,
    annotate_components,
    component_names,
    component_redundancy,
    empty_loading_genes,
    loading_genes,
)
from geovae.interpretation.enrichment import (
    GeneSetCoverageWarning,
    empty_gsea,
    enrich_components,
    prerank_components,
)
from geovae.interpretation.validation import empty_validation, validate_adata
from geovae.options import INTERPRET


@dataclass
class InterpretationResult:
    """Tables and warnings of :func:`interpret_run`.

    Attributes
    ----------
    components
        One row per latent component (best markers, tail sizes).
    component_genes
        Tidy top genes per component and tail with Pearson and Spearman r.
    enrichment
        Tidy GO over-representation table (empty, with a warning, when it does not apply).
    correlations
        ``genes x components`` Pearson correlations.
    warnings
        Messages a user must see (no gene sets, poor gene-set coverage, ...).
    gsea
        Tidy pre-ranked GSEA table (:func:`prerank_components`; empty when skipped).
    validation
        Ground-truth program validation (:func:`validate_programs`; empty without programs).
    validation_note
        Why ``validation`` is empty or partial, else ``None``.
    latent
        ``cells x d`` activations used.
    markers
        Per component ``(best marker, its expression over cells)`` or ``None``.
    loading_genes
        Tidy top genes per component by model loading, with degree centrality and hub flag
        (:func:`~geovae.interpretation.components.loading_genes`; empty for models without loadings).
    component_correlation
        ``d x d`` Pearson correlations of the component activations
        (:func:`~geovae.interpretation.components.component_redundancy`).
    """

    components: pd.DataFrame
    component_genes: pd.DataFrame
    enrichment: pd.DataFrame
    correlations: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    gsea: pd.DataFrame = field(default_factory=empty_gsea)
    validation: pd.DataFrame = field(default_factory=empty_validation)
    validation_note: str | None = None
    latent: np.ndarray | None = None
    markers: list[tuple[str, np.ndarray] | None] = field(default_factory=list)
    loading_genes: pd.DataFrame = field(default_factory=empty_loading_genes)
    component_correlation: pd.DataFrame = field(default_factory=pd.DataFrame)

    def save_component_umaps(self, umap: np.ndarray, path: str | Path) -> None:
        """Write the activation-vs-best-marker UMAP panels of every component (PNG)."""
        from geovae.plotting.enrichment import component_umaps

        if self.latent is None:
            raise ValueError("no latent stored in this result")
        component_umaps(umap, self.latent, self.markers, component_labels=list(self.correlations.columns),
                        path=path)

    def save_figures(self, dotplot: str | Path, heatmap: str | Path, top_n: int = 5,
                     correlation: str | Path | None = None) -> None:
        """Write the enrichment dot plot, the component x top-gene heatmap and, when ``correlation`` is
        given, the component correlation heatmap (PNG)."""
        from geovae.plotting.enrichment import component_correlation_heatmap, component_heatmap, enrichment_dotplot

        if correlation is not None:
            component_correlation_heatmap(self.component_correlation, path=correlation)

        enrichment = self.enrichment
        if enrichment.empty and self.warnings:
            enrichment = enrichment.copy()
            enrichment.attrs["warning"] = " ".join(self.warnings)
        enrichment_dotplot(enrichment, top_n=top_n, path=dotplot)
        component_heatmap(self.correlations, top_n=top_n, path=heatmap)


def _marker_expression(adata: ad.AnnData, components: pd.DataFrame) -> list[tuple[str, np.ndarray] | None]:
    out: list[tuple[str, np.ndarray] | None] = []
    for gene in components["best_marker"]:
        if gene is None or (isinstance(gene, float) and np.isnan(gene)) or str(gene) not in adata.var_names:
            out.append(None)
            continue
        col = adata[:, str(gene)].X
        col = col.toarray() if sp.issparse(col) else np.asarray(col)
        out.append((str(gene), col.ravel().astype(np.float32)))
    return out


def interpret_run(adata: ad.AnnData, latent_key: str = "X_latent", modality: str = "rna",
                  gmt: str | Path | None = None, n_top: int = INTERPRET.n_top,
                  min_coverage: float = INTERPRET.min_coverage, gsea_permutations: int = INTERPRET.gsea_permutations,
                  seed: int = 0, loadings: pd.DataFrame | None = None, centrality: pd.Series | None = None,
                  rotation: str = INTERPRET.rotation) -> InterpretationResult:
    """Annotate every latent component and test its top genes for GO enrichment.

    Parameters
    ----------
    adata
        Preprocessed data (normalized expression in ``.X``) with the latent in ``obsm[latent_key]``.
    latent_key
        obsm key of the latent means.
    modality
        ``"rna"`` or ``"atac"``; peaks are annotated by correlation but not tested against gene sets.
    gmt
        Gene-set file for the dataset's species; ``None`` skips enrichment with a warning.
    n_top
        Genes per tail (LiVAE section 3.11 style annotation; default 50).
    min_coverage
        Minimum fraction of features found in the gene sets before enrichment is attempted.
    gsea_permutations
        Permutations of the pre-ranked GSEA per component; 0 skips GSEA.
    seed
        GSEA permutation seed.
    loadings, centrality
        Feature loadings (``genes x components``, e.g. siVAE's ``get_loadings()``) and per-gene degree
        centrality of the model, when it has them: the components table gains ``top_loading_positive``,
        ``top_loading_negative`` and ``hub_genes`` and :attr:`InterpretationResult.loading_genes` is filled.
    rotation
        ``"none"``, ``"varimax"`` or ``"ica"``: annotate the latent in rotated axes
        (:func:`geovae.interpretation.rotation.rotate_latent`). Not applied (with a message) to a model
        with ``loadings``: they define its axes.
    """
    notes: list[str] = []
    if rotation != "none" and loadings is not None:
        # a model with feature loadings (siVAE, PCA, NMF) defines its axes by them: annotate those axes
        notes.append(f"rotation {rotation!r} not applied: the model's feature loadings define its components")
        rotation = "none"
    if rotation != "none":
        from geovae.interpretation.rotation import rotate_latent

        adata = adata.copy()
        adata.obsm[latent_key] = rotate_latent(adata.obsm[latent_key], rotation, seed=seed)
    components, component_genes = annotate_components(adata, latent_key=latent_key, n_top=n_top)
    components.insert(1, "rotation", rotation)  # the axes annotated: the latent's own ("none") or rotated ones
    redundancy, component_correlation = component_redundancy(adata.obsm[latent_key], component_genes,
                                                             list(components["component"]))
    components = components.merge(redundancy, on="component", how="left")
    by_loading = empty_loading_genes()
    if loadings is not None:
        if loadings.shape[1] != len(components):
            raise ValueError(f"loadings have {loadings.shape[1]} components, the latent has {len(components)}")
        known = set(map(str, loadings.index))
        missing = [g for g in map(str, adata.var_names) if g not in known]
        if missing:
            raise ValueError(f"loadings lack {len(missing)} of the data's features (first: {missing[0]!r})")
        loadings = loadings.set_axis(list(components["component"]), axis=1)
        summary, by_loading = loading_genes(loadings, centrality, n_top=n_top)
        components = components.merge(summary, on="component", how="left")
    correlations = pd.DataFrame(adata.varm["component_correlation"], index=adata.var_names,
                                columns=component_names(adata.obsm[latent_key].shape[1]))
    messages: list[str] = notes + _redundancy_messages(redundancy)
    enrichment = pd.DataFrame(columns=["component", "tail", "term", "overlap", "p_value", "adj_p_value", "genes"])
    if modality == "atac":
        messages.append("features are peaks, not genes: GO enrichment skipped (needs a peak-to-gene annotation)")
    elif gmt is None:
        species = adata.uns.get("geovae_dataset", {}).get("species", "unknown")
        messages.append(f"no gene sets configured for species '{species}' "
                        "(config interpret.gene_sets or interpret.gmt): GO enrichment skipped")
    else:
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always", GeneSetCoverageWarning)
            enrichment = enrich_components(component_genes, gmt, background=list(adata.var_names),
                                           min_overlap_fraction=min_coverage)
        messages += [str(w.message) for w in caught if issubclass(w.category, GeneSetCoverageWarning)]
    gsea = empty_gsea()
    if gmt is not None and modality != "atac" and gsea_permutations > 0 and enrichment.attrs.get("n_terms_tested"):
        gsea = prerank_components(correlations, gmt, permutations=gsea_permutations, seed=seed,
                                  min_overlap_fraction=min_coverage)
    validation, note = validate_adata(adata, correlations, latent_key=latent_key, n_top=n_top)
    return InterpretationResult(components, component_genes, enrichment, correlations, messages, gsea=gsea,
                                validation=validation, validation_note=note,
                                latent=np.asarray(adata.obsm[latent_key], dtype=np.float64),
                                markers=_marker_expression(adata, components), loading_genes=by_loading,
                                component_correlation=component_correlation)


def _redundancy_messages(redundancy: pd.DataFrame) -> list[str]:
    """One message naming the pairs of components that repeat each other, when there are any."""
    pairs = sorted({tuple(sorted((row.component, other))) for row in redundancy.itertuples()
                    for other in str(row.redundant_with).split(";") if other})
    if not pairs:
        return []
    return [f"{len(pairs)} pair(s) of components carry the same signal (|r| >= {REDUNDANT_CORRELATION} between "
            f"their activations): {', '.join(f'{a}-{b}' for a, b in pairs)}; read them as one program each "
            "(components.tsv: redundant_with)"]
