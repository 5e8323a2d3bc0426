"""Rule preprocess: raw counts -> model-ready AnnData (QC/HVG for RNA, TF-IDF/HVP for ATAC)."""

import anndata as ad

from geovae.pp import preprocess
from geovae.runinfo import log_to

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    raw = ad.read_h5ad(snakemake.input[0])
    adata = preprocess(raw, modality=snakemake.params.modality, **snakemake.params.settings)
    print(f"preprocessed: {adata.n_obs} cells x {adata.n_vars} features kept of {raw.n_obs} x {raw.n_vars}")
    adata.write_h5ad(snakemake.output[0], compression="gzip")
