# Stage 4: latent -> UMAP and t-SNE, embedding.h5ad and figures coloured by label / batch.


rule embed:
    input:
        data="results/{dataset}/preprocessed.h5ad",
        latent="results/{dataset}/{model}/{seed}/latent.h5ad",
        train_info="results/{dataset}/{model}/{seed}/train_info.json",
    output:
        h5ad="results/{dataset}/{model}/{seed}/embedding.h5ad",
        info="results/{dataset}/{model}/{seed}/embed_info.json",
        umap=report(
            "results/{dataset}/{model}/{seed}/umap.png",
            caption="../report/umap.rst",
            category="Embeddings",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "UMAP"},
        ),
        tsne=report(
            "results/{dataset}/{model}/{seed}/tsne.png",
            caption="../report/tsne.rst",
            category="Embeddings",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "t-SNE"},
        ),
        overview=report(
            "results/{dataset}/{model}/{seed}/overview.png",
            caption="../report/overview.rst",
            category="Embeddings",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "Leiden, QC, spatial"},
        ),
    params:
        label_key=lambda wc: DATASETS.loc[wc.dataset, "label_key"],
        batch_key=lambda wc: DATASETS.loc[wc.dataset, "batch_key"],
        settings=lambda wc: dcfg(wc)["embed"],
        seed=lambda wc: int(wc.seed),
    log:
        "logs/embed/{dataset}/{model}/{seed}.log",
    benchmark:
        "logs/benchmarks/embed/{dataset}/{model}/{seed}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/embed.py"
