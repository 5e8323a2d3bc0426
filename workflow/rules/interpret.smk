# Stage 6: per latent component, correlated genes (both tails), best marker, GO enrichment (ORA + pre-ranked
# GSEA), ground-truth program validation (simulated datasets) and activation-vs-marker UMAPs.


rule interpret:
    input:
        data="results/{dataset}/preprocessed.h5ad",
        embedding="results/{dataset}/{model}/{seed}/embedding.h5ad",
    output:
        components=report(
            "results/{dataset}/{model}/{seed}/components.tsv",
            caption="../report/components_table.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "components table"},
        ),
        genes="results/{dataset}/{model}/{seed}/component_genes.tsv",
        enrichment=report(
            "results/{dataset}/{model}/{seed}/enrichment.tsv",
            caption="../report/enrichment_table.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "GO enrichment table"},
        ),
        gsea="results/{dataset}/{model}/{seed}/gsea.tsv",
        validation="results/{dataset}/{model}/{seed}/program_validation.tsv",
        loading_genes="results/{dataset}/{model}/{seed}/loading_genes.tsv",
        info="results/{dataset}/{model}/{seed}/interpret_info.json",
        dotplot=report(
            "results/{dataset}/{model}/{seed}/enrichment_dotplot.png",
            caption="../report/enrichment.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "GO enrichment"},
        ),
        heatmap=report(
            "results/{dataset}/{model}/{seed}/component_heatmap.png",
            caption="../report/components.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "component genes"},
        ),
        correlation=report(
            "results/{dataset}/{model}/{seed}/component_correlation.png",
            caption="../report/component_correlation.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "component correlation"},
        ),
        groups=report(
            "results/{dataset}/{model}/{seed}/group_components.png",
            caption="../report/group_components.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "components by cell type"},
        ),
        markers=report(
            "results/{dataset}/{model}/{seed}/marker_dotplot.png",
            caption="../report/marker_dotplot.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "marker dot plot"},
        ),
        umaps=report(
            "results/{dataset}/{model}/{seed}/component_umaps.png",
            caption="../report/component_umaps.rst",
            category="Interpretation",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "component UMAPs"},
        ),
    params:
        gmt=gene_sets_for,
        label_key=lambda wc: DATASETS.loc[wc.dataset, "label_key"],
        modality=modality,
        n_top=lambda wc: dcfg(wc)["interpret"]["n_top"],
        min_coverage=lambda wc: dcfg(wc)["interpret"]["min_coverage"],
        gsea_permutations=lambda wc: dcfg(wc)["interpret"]["gsea_permutations"],
        rotation=lambda wc: dcfg(wc)["interpret"]["rotation"],
    log:
        "logs/interpret/{dataset}/{model}/{seed}.log",
    benchmark:
        "logs/benchmarks/interpret/{dataset}/{model}/{seed}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/interpret.py"


# Not part of the default targets: rebuild the shipped GO BP gene sets. `source=debian` (apt-get download of
# r-bioc-org.hs.eg.db + r-bioc-go.db, needs apt access) or `source=enrichr` (needs internet), e.g.
#   snakemake --cores 1 refresh_gene_sets --config refresh_gene_sets_source=enrichr
rule refresh_gene_sets:
    output:
        touch("logs/refresh_gene_sets.done"),
    params:
        source=config["refresh_gene_sets_source"],
        library=config["refresh_gene_sets_library"],
    log:
        "logs/refresh_gene_sets.log",
    benchmark:
        "logs/benchmarks/refresh_gene_sets/all.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "(if [ {params.source} = enrichr ]; then"
        " python scripts/build_gene_sets.py enrichr --library {params.library}"
        " --out resources/go/{params.library}_human.gmt.gz;"
        " else python scripts/build_gene_sets.py debian --species human --out resources/go"
        " && python scripts/build_gene_sets.py debian --species mouse --out resources/go; fi) > {log} 2>&1"
