# Stage 2: scRNA QC + HVG or scATAC binarize + TF-IDF + HVP -> results/{dataset}/preprocessed.h5ad


rule preprocess:
    input:
        "results/{dataset}/raw.h5ad",
    output:
        h5ad="results/{dataset}/preprocessed.h5ad",
        qc_table="results/{dataset}/qc.tsv",
        qc=report(
            "results/{dataset}/qc.png",
            caption="../report/qc.rst",
            category="Quality control",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "figure": "QC metrics"},
        ),
    params:
        modality=modality,
        settings=lambda wc: dcfg(wc)["preprocess"][modality(wc)],
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
