# Stage 6: per latent component, correlated genes (both tails), best marker and GO enrichment.


rule interpret:
    input:
        data="results/{dataset}/preprocessed.h5ad",
        embedding="results/{dataset}/{model}/{seed}/embedding.h5ad",
    output:
        components="results/{dataset}/{model}/{seed}/components.tsv",
        genes="results/{dataset}/{model}/{seed}/component_genes.tsv",
        enrichment="results/{dataset}/{model}/{seed}/enrichment.tsv",
        info="results/{dataset}/{model}/{seed}/interpret_info.json",
        dotplot=report(
            "results/{dataset}/{model}/{seed}/enrichment_dotplot.png",
            caption="../report/enrichment.rst",
            category="Interpretation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "GO enrichment"},
        ),
        heatmap=report(
            "results/{dataset}/{model}/{seed}/component_heatmap.png",
            caption="../report/components.rst",
            category="Interpretation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "component genes"},
        ),
    params:
        gmt=gene_sets_for,
        modality=modality,
        n_top=config["interpret"]["n_top"],
        min_coverage=config["interpret"].get("min_coverage", 0.05),
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
