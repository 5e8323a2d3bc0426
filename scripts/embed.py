"""Rule embed: the run's latent.h5ad -> embedding.h5ad (scanpy-ready: expression, labels, QC, Leiden, latent,
X_umap, X_tsne, provenance) and figures."""

import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geovae.embedding import embed_2d
from geovae.metrics.clustering import leiden_clusters
from geovae.neighbors import DEFAULT_N_NEIGHBORS, store_neighbors
from geovae.pl import embedding_scatter
from geovae.plotting.embedding import overview_panels
from geovae.run_folder import read_latent, scanpy_ready
from geovae.runinfo import atomic_outputs, log_to, provenance, run_info, write_json
from geovae.workflow_config import dataset_config

with log_to(snakemake.log[0]), atomic_outputs(snakemake.output) as out:  # noqa: F821 (injected by Snakemake)
    wc, params = snakemake.wildcards, snakemake.params
    data = ad.read_h5ad(snakemake.input.data, backed="r")
    obs = data.obs.copy()
    result = read_latent(snakemake.input.latent, cells=obs.index)
    training = json.loads(Path(snakemake.input.train_info).read_text()).get("training", {})
    settings = params.settings
    # one neighbour search serves UMAP, t-SNE, Leiden and the file's scanpy graph
    coords, seconds, neighbors, map_fitted = embed_2d(
        result.obsm["X_latent"], n_neighbors=settings["umap_n_neighbors"], min_dist=settings["umap_min_dist"],
        perplexity=settings["tsne_perplexity"], seed=params.seed, n_jobs=snakemake.threads,
        tsne_method=settings["tsne_method"], neighbors_method=settings["neighbors_method"],
        extra_neighbors=DEFAULT_N_NEIGHBORS, map_cells=settings["map_cells"])
    result.obs = obs
    result.obsm.update(coords)
    if not map_fitted.all():  # maps fit on a seeded subsample (embed.map_cells), the other cells placed
        result.obs["map_fitted"] = map_fitted
    # Leiden clusters of the latent (scanpy's default graph and resolution), for the overview figure and users
    start = time.perf_counter()
    clusters = leiden_clusters(result.obsm["X_latent"], n_neighbors=DEFAULT_N_NEIGHBORS, seed=params.seed, neighbors=neighbors)
    seconds["leiden"] = time.perf_counter() - start
    result.obs["leiden"] = pd.Categorical(clusters.astype(str), categories=[str(c) for c in np.unique(clusters)])
    store_neighbors(result, neighbors, DEFAULT_N_NEIGHBORS, use_rep=f"X_{wc.model}", seed=params.seed)
    if "program_usage" in data.obsm:  # simulated ground truth, used by the program-recovery metrics
        result.obsm["program_usage"] = data.obsm["program_usage"]
    info = run_info(dataset=wc.dataset, model=wc.model, seed=params.seed, seconds=seconds, settings=dict(settings))
    result.uns["geovae_embed"] = {"seconds": seconds, "map_fitted_cells": int(map_fitted.sum())}
    result.uns["geovae"] = provenance(
        config=dataset_config(snakemake.config, wc.dataset), seed=params.seed, device=training.get("device"), rule="embed",
        dataset=wc.dataset, model=wc.model, device_name=training.get("device_name"),
        timings={"train": training.get("train_seconds"), **{f"embed_{k}": v for k, v in seconds.items()}})
    scanpy_ready(result, snakemake.input.data, wc.model).write_h5ad(out.h5ad)
    color = [key for key in (params.label_key, params.batch_key) if key] or [None]
    title = f"{wc.model} / {wc.dataset}"
    if not map_fitted.all():
        title += f" (map fit on {int(map_fitted.sum()):,} of {map_fitted.size:,} cells)"
    embedding_scatter(coords["X_umap"], obs, color, "UMAP", out.umap, title=title)
    embedding_scatter(coords["X_tsne"], obs, color, "t-SNE", out.tsne, title=title)
    overview_panels(coords["X_umap"], result.obs, data.obsm["spatial"] if "spatial" in data.obsm else None,
                    color=[params.label_key], path=out.overview, title=title)
    write_json(out.info, info)
    print(f"UMAP {seconds['umap']:.1f} s, t-SNE {seconds['tsne']:.1f} s")
