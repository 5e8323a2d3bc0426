# geovae: GEO single-cell data -> LiVAE embeddings, metrics, annotated components and a report.
from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/interpret.smk"
include: "workflow/rules/report.smk"


# Seconds-long aggregation and report rules run where Snakemake runs, not as cluster jobs.
localrules:
    aggregate_metrics,
    summary,
    benchmark_stats,
    program_validation,
    refresh_gene_sets,


onstart:
    # SLURM: stop before the first sbatch when a job would have no partition or account (and the
    # cluster supplies no default); the profile names neither, they belong to the site.
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        check_slurm_site({job.rule.name: job.resources for job in workflow.dag.needrun_jobs() if not job.is_local})


rule all:
    input:
        all_targets(),
    default_target: True
