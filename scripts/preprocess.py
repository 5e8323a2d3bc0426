"""Rule preprocess: raw counts -> model-ready AnnData (QC/HVG for RNA, TF-IDF/HVP for ATAC)."""

import time

import anndata as ad

from geovae.pp import preprocess
from geovae.runinfo import atomic_outputs, log_to, provenance

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    start = time.perf_counter()
    raw = ad.read_h5ad(snakemake.input[0])
    adata = preprocess(raw, modality=snakemake.params.modality, **snakemake.params.settings)
    print(f"preprocessed: {adata.n_obs} cells x {adata.n_vars} features kept of {raw.n_obs} x {raw.n_vars}")
    adata.uns["geovae"] = provenance(config=snakemake.config, rule="preprocess",
                                     dataset=snakemake.wildcards.dataset,
                                     timings={"preprocess": time.perf_counter() - start})
    adata.write_h5ad(out[0], compression="gzip")
