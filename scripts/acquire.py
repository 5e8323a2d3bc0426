"""Rule acquire: dataset-sheet row -> results/{dataset}/raw.h5ad + acquire_manifest.json."""

import time

from geovae.data.acquire import acquire_dataset
from geovae.runinfo import atomic_outputs, log_to, provenance, write_json

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    start = time.perf_counter()
    adata, manifest = acquire_dataset(snakemake.params.row, geo_base_url=snakemake.params.base_url,
                                      cache_dir=snakemake.params.cache_dir)
    print(f"acquired {adata.n_obs} cells x {adata.n_vars} features")
    adata.uns["geovae"] = provenance(config=snakemake.config, rule="acquire",
                                     dataset=snakemake.wildcards.dataset,
                                     timings={"acquire": time.perf_counter() - start})
    adata.write_h5ad(out.h5ad, compression="gzip")
    write_json(out.manifest, manifest)
