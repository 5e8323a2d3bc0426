"""Rule program_validation: results/benchmark/program_validation.tsv (one row per dataset x model x program)."""

from geovae.report import load_run_tables, program_validation_table
from geovae.runinfo import log_to

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    tables = load_run_tables(validation=snakemake.input.validation)  # noqa: F821
    table = program_validation_table(tables["validation"])
    table.to_csv(snakemake.output[0], sep="\t", index=False)  # noqa: F821
    print(f"{len(table)} (dataset, model, program) rows from {len(tables['validation'])} runs")
