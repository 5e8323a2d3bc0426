"""Rule metrics: embedding.h5ad -> tidy metrics.tsv (dataset, model, seed, metric, value)."""

from geovae.metrics import evaluate
from geovae.run_folder import read_latent
from geovae.runinfo import atomic_outputs, log_to

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    wc, params = snakemake.wildcards, snakemake.params
    adata = read_latent(snakemake.input[0])  # the latent, maps and labels; not the expression
    table = evaluate(adata, latent_key="X_latent", label_key=params.label_key or None,
                     batch_key=params.batch_key or None, n_subsample=params.settings["n_subsample"],
                     n_graph_subsample=params.settings["n_graph_subsample"],
                     seed=params.settings["seed"], mode=params.data_type,
                     program_key="program_usage" if "program_usage" in adata.obsm else None)
    table.insert(0, "seed", int(wc.seed))
    table.insert(0, "model", wc.model)
    table.insert(0, "dataset", wc.dataset)
    table.to_csv(out[0], sep="\t", index=False, float_format="%.6g")
    print(table.to_string())
