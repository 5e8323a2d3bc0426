# Stage 1: built-in, local or GEO data -> integer counts in results/{dataset}/raw.h5ad
# No rule-level `retries`: transient download errors are retried inside geovae.data.geo.download_file
# (backoff, HTTP Range resume); a bad input (truncated file, unknown accession) fails once, naming it.


rule acquire:
    output:
        h5ad="results/{dataset}/raw.h5ad",
        manifest="results/{dataset}/acquire_manifest.json",
    params:
        row=dataset_row,
        base_url=config["geo"]["base_url"],
        cache_dir=config["geo"]["cache_dir"],
    log:
        "logs/acquire/{dataset}.log",
    benchmark:
        "logs/benchmarks/acquire/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/acquire.yaml"
    script:
        "../../scripts/acquire.py"
