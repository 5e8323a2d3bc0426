"""Rule train: preprocessed AnnData -> checkpoint, latent means, loss history and curves."""

import anndata as ad

from geovae.gpu import visible_devices_for_job
from geovae.io import write_latent_table
from geovae.pl import loss_curves
from geovae.runinfo import log_to, run_info, write_json
from geovae.tl import fit_model, model_outputs

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    wc = snakemake.wildcards
    adata = ad.read_h5ad(snakemake.input[0])
    # one GPU slot per concurrent job (CUDA_VISIBLE_DEVICES), see geovae.gpu
    with visible_devices_for_job(int(snakemake.resources.get("gpu", 0))) as gpus:
        if gpus is not None:
            print(f"CUDA_VISIBLE_DEVICES={gpus}")
        model = fit_model(adata, model=wc.model, params=snakemake.params.model_params, train=snakemake.params.train,
                          device=snakemake.params.device, seed=int(wc.seed), progress_bar=True)
    outputs = model_outputs(model)
    write_latent_table(snakemake.output.latent, adata.obs_names, outputs["latent"], outputs["bottleneck"])
    model.history.to_csv(snakemake.output.history, sep="\t", index=False)
    loss_curves(model.history, snakemake.output.loss, title=f"{wc.model} on {wc.dataset} (seed {wc.seed})")
    model.save(snakemake.output.model, overwrite=True)
    write_json(snakemake.output.info, run_info(dataset=wc.dataset, model=wc.model, seed=int(wc.seed),
                                               params=dict(getattr(model, "params", {})), train=dict(snakemake.params.train),
                                               training=model.metadata))
