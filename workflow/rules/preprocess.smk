# Stage 2: scRNA QC + HVG or scATAC binarize + TF-IDF + HVP -> results/{dataset}/preprocessed.h5ad


rule preprocess:
    input:
        "results/{dataset}/raw.h5ad",
    output:
        "results/{dataset}/preprocessed.h5ad",
    params:
        modality=modality,
        settings=lambda wc: config["preprocess"][modality(wc)],
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "logs/benchmarks/preprocess/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/preprocess.py"
