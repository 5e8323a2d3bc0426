# Stage 7: an HTML summary (metric table, enrichment highlights, warnings) for `snakemake --report`.


rule summary:
    input:
        metrics="results/metrics.tsv",
        components=run_targets("results/{dataset}/{model}/{seed}/components.tsv"),
        enrichment=run_targets("results/{dataset}/{model}/{seed}/enrichment.tsv"),
        interpret_info=run_targets("results/{dataset}/{model}/{seed}/interpret_info.json"),
        train_info=run_targets("results/{dataset}/{model}/{seed}/train_info.json"),
    output:
        report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "metrics and components"},
        ),
    log:
        "logs/report/summary.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/summary.py"
