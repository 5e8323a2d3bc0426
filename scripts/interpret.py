"""Rule interpret: latent components -> correlated genes, best markers, GO ORA + GSEA, validation, figures."""

from geovae.interpretation import interpret_run
from geovae.plotting.enrichment import group_component_heatmap, marker_dotplot
from geovae.run_folder import read_latent, read_normalised, run_loadings
from geovae.runinfo import atomic_outputs, log_to, run_info, write_json

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    wc, params = snakemake.wildcards, snakemake.params
    adata = read_normalised(snakemake.input.data)  # X only: the raw-count layer is not used here
    embedding = read_latent(snakemake.input.embedding, cells=adata.obs_names)
    adata.obsm["X_latent"] = embedding.obsm["X_latent"]
    loadings, centrality = run_loadings(embedding)  # models with feature loadings (siVAE, PCA, NMF, ...)
    result = interpret_run(adata, latent_key="X_latent", modality=params.modality, gmt=params.gmt or None,
                           n_top=params.n_top, min_coverage=params.min_coverage,
                           gsea_permutations=params.gsea_permutations, seed=int(wc.seed),
                           loadings=loadings, centrality=centrality, rotation=params.rotation)
    result.components.to_csv(out.components, sep="\t", index=False)
    result.component_genes.to_csv(out.genes, sep="\t", index=False)
    result.enrichment.to_csv(out.enrichment, sep="\t", index=False)
    result.gsea.to_csv(out.gsea, sep="\t", index=False)
    result.validation.to_csv(out.validation, sep="\t", index=False)
    result.loading_genes.to_csv(out.loading_genes, sep="\t", index=False)
    result.save_figures(dotplot=out.dotplot, heatmap=out.heatmap, correlation=out.correlation)
    result.save_component_umaps(embedding.obsm["X_umap"], out.umaps)
    # groups: the label column when the sheet names one, else the Leiden clusters of the embedding
    groupby = params.label_key if params.label_key and params.label_key in adata.obs else "leiden"
    if groupby == "leiden":
        adata.obs["leiden"] = embedding.obs["leiden"].to_numpy()
    group_component_heatmap(result.latent, adata.obs[groupby], list(result.correlations.columns), out.groups,
                            title=groupby)
    marker_dotplot(adata, result.components["best_marker"].dropna().tolist(), groupby, out.markers)
    write_json(out.info, run_info(dataset=wc.dataset, model=wc.model, seed=int(wc.seed), gmt=params.gmt,
                                  rotation=params.rotation,
                                  warnings=result.warnings, n_terms=int(len(result.enrichment)),
                                  n_gsea_rows=int(len(result.gsea)), gsea_permutations=params.gsea_permutations,
                                  validation_note=result.validation_note))
    for message in result.warnings:
        print("WARNING:", message)
