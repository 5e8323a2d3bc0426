# Stage 7: an HTML summary (metric table, enrichment highlights, warnings) for `snakemake --report`.


rule summary:
    input:
        metrics="results/metrics.tsv",
        components=run_targets("results/{dataset}/{model}/{seed}/components.tsv"),
        enrichment=run_targets("results/{dataset}/{model}/{seed}/enrichment.tsv"),
        interpret_info=run_targets("results/{dataset}/{model}/{seed}/interpret_info.json"),
        validation=run_targets("results/{dataset}/{model}/{seed}/program_validation.tsv"),
        gsea=run_targets("results/{dataset}/{model}/{seed}/gsea.tsv"),
        train_info=run_targets("results/{dataset}/{model}/{seed}/train_info.json"),
        qc=[f"results/{d}/qc.tsv" for d in DATASETS.index],
        umaps=run_targets("results/{dataset}/{model}/{seed}/umap.png"),
        dotplots=run_targets("results/{dataset}/{model}/{seed}/enrichment_dotplot.png"),
        losses=run_targets("results/{dataset}/{model}/{seed}/loss.png"),
        manifests=[f"results/{d}/acquire_manifest.json" for d in DATASETS.index],
    params:
        species=lambda wc: DATASETS["species"].to_dict(),
    output:
        report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "metrics and components"},
        ),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report/summary.log",
    benchmark:
        "logs/benchmarks/summary/all.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/summary.py"


rule benchmark_stats:
    input:
        "results/metrics.tsv",
    output:
        table=benchmark_item(
            "results/benchmark/paired_differences.tsv",
            caption="../report/benchmark.rst",
            category="Benchmark",
            labels={"table": "paired differences and tests"},
        ),
        markdown="results/benchmark/paired_differences.md",
        ranks="results/benchmark/model_ranks.tsv",
        boxplots=benchmark_item(
            "results/benchmark/paired_differences.png",
            caption="../report/benchmark.rst",
            category="Benchmark",
            labels={"figure": "paired differences per category"},
        ),
        heatmap=benchmark_item(
            "results/benchmark/rank_heatmap.png",
            caption="../report/benchmark.rst",
            category="Benchmark",
            labels={"figure": "model x metric ranks"},
        ),
    params:
        reference=config["benchmark"]["reference"],
        min_datasets=config["benchmark"]["min_datasets"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report/benchmark_stats.log",
    benchmark:
        "logs/benchmarks/benchmark_stats/all.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/benchmark_stats.py"


rule program_validation:
    input:
        validation=run_targets("results/{dataset}/{model}/{seed}/program_validation.tsv"),
    output:
        report(
            "results/benchmark/program_validation.tsv",
            caption="../report/program_validation.rst",
            category="Interpretation",
            labels={"table": "ground-truth program validation"},
        ),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/report/program_validation.log",
    benchmark:
        "logs/benchmarks/program_validation/all.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/program_validation.py"
