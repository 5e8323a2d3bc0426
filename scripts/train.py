"""Rule train: preprocessed AnnData -> the run folder's model, latent.h5ad, loss history and curves.

Training checkpoints to ``params.checkpoint_dir`` (not a declared output, so Snakemake keeps it when
the job fails or is killed, and a rerun with the same parameters resumes from it); it is removed
once every output has been written.
"""

import shutil

import anndata as ad

from geovae.data.validate import check_trainable
from geovae.gpu import visible_devices_for_job
from geovae.models import get_model
from geovae.run_folder import write_training_outputs
from geovae.runinfo import atomic_outputs, log_to, run_info
from geovae.tl import fit_model

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    wc, params = snakemake.wildcards, snakemake.params
    with atomic_outputs(snakemake.output) as out:
        adata = ad.read_h5ad(snakemake.input[0])
        cls = get_model(wc.model)
        latent_dim = {**cls.default_params(), **dict(params.model_params)}.get("latent_dim")
        for message in check_trainable(adata, wc.dataset, latent_dim, params.train.get("batch_size")):
            print("WARNING:", message)
        # the sheet's batch_key conditions the models that can use it; the others train without it
        batch_key = params.batch_key or None
        if batch_key and not cls.supports_batch:
            print(f"{wc.model} does not condition on batches: batch_key {batch_key!r} used by the metrics only")
            batch_key = None
        # every model accepts the training options (non-neural ones ignore checkpoints)
        train = {**params.train, "checkpoint_dir": params.checkpoint_dir}
        # one GPU slot per concurrent job (CUDA_VISIBLE_DEVICES), see geovae.gpu
        with visible_devices_for_job(int(snakemake.resources.get("gpu", 0))) as gpus:
            if gpus is not None:
                print(f"CUDA_VISIBLE_DEVICES={gpus}")
            model = fit_model(adata, model=wc.model, params=params.model_params, train=train,
                              device=params.device, seed=int(wc.seed), progress_bar=True, batch_key=batch_key)
        record = run_info(dataset=wc.dataset, model=wc.model, seed=int(wc.seed),
                          params=dict(getattr(model, "params", {})), train=dict(params.train),
                          per_dataset=dict(params.per_dataset), batch_key=batch_key or "", training=model.metadata)
        write_training_outputs(model, adata, model_dir=out.model, latent=out.latent, history=out.history,
                               info=out.info, record=record, loss=out.loss,
                               title=f"{wc.model} on {wc.dataset} (seed {wc.seed})")
    shutil.rmtree(params.checkpoint_dir, ignore_errors=True)  # outputs complete: nothing left to resume
