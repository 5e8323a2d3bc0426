"""Rule preprocess: raw counts -> model-ready AnnData (QC/HVG for RNA, TF-IDF/HVP for ATAC), QC table and figure."""

import time

import anndata as ad
import pandas as pd

from geovae.plotting.qc import qc_distributions
from geovae.preprocessing import preprocess, qc_metrics
from geovae.runinfo import atomic_outputs, log_to, provenance
from geovae.workflow_config import dataset_config

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    dataset, settings, modality = snakemake.wildcards.dataset, snakemake.params.settings, snakemake.params.modality
    start = time.perf_counter()
    raw = ad.read_h5ad(snakemake.input[0])
    try:
        adata = preprocess(raw, modality=modality, **settings)
    except ValueError as exc:
        raise ValueError(f"dataset {dataset!r}, rule preprocess: {exc}") from exc
    record = adata.uns["geovae_qc"]
    print(f"QC ({record['mode']}): kept {record['n_obs_kept']} of {record['n_obs_in']} cells "
          f"({100 * record['fraction_kept']:.1f} %), {record['n_vars_kept']} of {record['n_vars_in']} features")
    for warning in record["warnings"]:
        print(f"WARNING: dataset {dataset!r}: {warning}")
    print(f"preprocessed: {adata.n_obs} cells x {adata.n_vars} features kept of {raw.n_obs} x {raw.n_vars}")
    pd.DataFrame(record["table"]).to_csv(out.qc_table, sep="\t", index=False)
    key = settings.get("qc_sample_key", "sample")
    qc_distributions(qc_metrics(raw, modality, **settings), raw.obs[key].to_numpy() if key in raw.obs else None,
                     record, out.qc, title=f"QC of {dataset} ({modality}, {record['mode']})")
    adata.uns["geovae"] = provenance(config=dataset_config(snakemake.config, dataset), rule="preprocess",
                                     dataset=dataset, timings={"preprocess": time.perf_counter() - start})
    adata.write_h5ad(out.h5ad, compression="gzip")
