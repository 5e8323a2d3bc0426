# Stage 5: the metric suite per run (tidy TSV) and its aggregation over all runs.


rule metrics:
    input:
        "results/{dataset}/{model}/{seed}/embedding.h5ad",
    output:
        "results/{dataset}/{model}/{seed}/metrics.tsv",
    params:
        label_key=lambda wc: DATASETS.loc[wc.dataset, "label_key"],
        batch_key=lambda wc: DATASETS.loc[wc.dataset, "batch_key"],
        data_type=lambda wc: DATASETS.loc[wc.dataset, "data_type"] or dcfg(wc)["metrics"]["mode"],
        settings=lambda wc: dcfg(wc)["metrics"],
    log:
        "logs/metrics/{dataset}/{model}/{seed}.log",
    benchmark:
        "logs/benchmarks/metrics/{dataset}/{model}/{seed}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/metrics.py"


rule aggregate_metrics:
    input:
        run_targets("results/{dataset}/{model}/{seed}/metrics.tsv"),
    output:
        report(
            "results/metrics.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"table": "all metrics (tidy)"},
        ),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/metrics/aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate_metrics/all.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/aggregate_metrics.py"
