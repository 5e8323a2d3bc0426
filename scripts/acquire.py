"""Rule acquire: dataset-sheet row -> results/{dataset}/raw.h5ad + acquire_manifest.json."""

from geovae.data.acquire import acquire_dataset
from geovae.runinfo import log_to, write_json

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    adata, manifest = acquire_dataset(snakemake.params.row, geo_base_url=snakemake.params.base_url,
                                      cache_dir=snakemake.params.cache_dir)
    print(f"acquired {adata.n_obs} cells x {adata.n_vars} features")
    adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
    write_json(snakemake.output.manifest, manifest)
