"""UMAP and t-SNE of real latents: the embed rule's shared kNN graph against its previous code (issue #24).

Before, the embed rule ran umap-learn's ``UMAP`` (its own neighbour search and graph, numba-compiled in
every process) and openTSNE's FFT t-SNE (its own Annoy search) at every size. Now one exact neighbour
search serves both (and Leiden), the UMAP graph is computed in numpy, and t-SNE uses Barnes-Hut below
10,000 cells (openTSNE's own rule). This script measures what that changes, per real labelled set and
seed: wall seconds of each step (after a warm-up, so numba's one-off compilation is not counted; the
rule's per-process totals are in the pipeline benchmarks) and the quality of each 2-D map: distance
correlation, Q_local and Q_global against the latent (:func:`geovae.metrics.fidelity.embedding_fidelity`,
on the pipeline's seeded 3,000-cell subsample) and the 15-NN label accuracy of the map.

The latent is PCA (10 components) of the pipeline's preprocessed expression unless ``--model`` names
another registry model (trained with its defaults through ``geovae.tl.embed``).

    .venv/bin/python benchmarks/bench_embedding.py                      # pbmc68k + the two ../shared sets, seeds 0-2
    .venv/bin/python benchmarks/bench_embedding.py --datasets pbmc68k --seeds 0 --model livae
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_realdata import DATASETS, DEFAULT_DATA_DIR, load_dataset  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "embedding"


def previous_embed(latent: np.ndarray, seed: int, n_jobs: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The embed rule's previous code: umap-learn's UMAP class and openTSNE's FFT t-SNE, each searching its own neighbours."""
    import umap
    from openTSNE import TSNE

    from geovae.embedding import tsne_neighbors
    from geovae.options import EMBED

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    umap_xy = umap.UMAP(n_components=2, n_neighbors=EMBED.umap_n_neighbors, min_dist=EMBED.umap_min_dist,
                        random_state=seed).fit_transform(latent.astype(np.float32))
    seconds["umap"] = time.perf_counter() - start
    perplexity, _ = tsne_neighbors(latent.shape[0], EMBED.tsne_perplexity)
    start = time.perf_counter()
    tsne_xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=n_jobs,
                   negative_gradient_method="fft", verbose=False).fit(latent.astype(np.float64))
    seconds["tsne"] = time.perf_counter() - start
    return {"X_umap": np.asarray(umap_xy), "X_tsne": np.asarray(tsne_xy)}, seconds


def shared_embed(latent: np.ndarray, seed: int, n_jobs: int, tsne_method: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The embed rule's code now (:func:`geovae.embedding.embed_2d`)."""
    from geovae.embedding import embed_2d

    coords, seconds, _, _ = embed_2d(latent, seed=seed, n_jobs=n_jobs, tsne_method=tsne_method)
    return coords, seconds


METHODS = {
    "before: umap-learn + FFT t-SNE": lambda z, s, j: previous_embed(z, s, j),
    "now: shared graph, t-SNE auto": lambda z, s, j: shared_embed(z, s, j, "auto"),
    "shared graph, t-SNE FFT": lambda z, s, j: shared_embed(z, s, j, "fft"),
}


def score(latent: np.ndarray, coords: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Fidelity of each map to the latent (seeded subsample) and its 15-NN label accuracy."""
    from geovae.metrics.clustering import knn_accuracy
    from geovae.metrics.fidelity import LatentNeighbourhood, embedding_fidelity, subsample_indices
    from geovae.options import METRICS

    idx = subsample_indices(latent.shape[0], METRICS.n_subsample or None, METRICS.seed)
    neighbourhood = LatentNeighbourhood(latent[idx].astype(np.float64))
    out: dict[str, float] = {}
    for key, xy in coords.items():
        name = key.removeprefix("X_")
        fid = embedding_fidelity(None, np.asarray(xy, dtype=np.float64)[idx], latent=neighbourhood)
        out.update({f"{m}_{name}": float(fid[m]) for m in ("DC", "Q_local", "Q_global")})
        out[f"kNN_accuracy_{name}"] = knn_accuracy(xy, labels)["kNN_accuracy"]
    return out


def latent_of(data, model: str, seed: int) -> np.ndarray:
    """PCA (10) of the preprocessed expression, or a registry model's latent means."""
    if model == "pca":
        import scipy.sparse as sp
        from sklearn.decomposition import PCA

        X = data.X.toarray() if sp.issparse(data.X) else np.asarray(data.X)
        return PCA(n_components=10, random_state=0).fit_transform(X).astype(np.float32)
    import geovae

    adata = data.copy()
    geovae.tl.embed(adata, model=model, key_added="X_latent", seed=seed, train={"progress_bar": False})
    return np.asarray(adata.obsm["X_latent"], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated, of " + ",".join(DATASETS))
    p.add_argument("--seeds", default="0,1,2", help="comma-separated embedding seeds")
    p.add_argument("--model", default="pca", help="registry model whose latent is embedded (default pca)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    # warm-up: numba compiles umap-learn's and pynndescent's functions once per process
    warm = np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32)
    for method in METHODS.values():
        method(warm, 0, args.threads)

    rows = []
    for name in args.datasets.split(","):
        data = load_dataset(name, args.data_dir, None)
        if data is None:
            continue
        labels = data.obs["label"].to_numpy()
        for seed in seeds:
            latent = latent_of(data, args.model, seed)
            for method, run in METHODS.items():
                coords, seconds = run(latent, seed, args.threads)
                row = {"dataset": name, "n_cells": latent.shape[0], "seed": seed, "method": method,
                       **{f"{k}_s": v for k, v in seconds.items()}, **score(latent, coords, labels)}
                rows.append(row)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"embedding_{args.model}.tsv", sep="\t", index=False)
    cols = [c for c in table.columns if c not in ("dataset", "n_cells", "seed", "method")]
    summary = table.groupby(["dataset", "method"], sort=False)[cols].mean().round(3)
    pd.set_option("display.width", 250)
    print(f"\nmeans over seeds {seeds} (latent: {args.model}; threads {args.threads}):")
    print(summary.T.to_string())
    summary.to_csv(args.out / f"embedding_{args.model}_summary.tsv", sep="\t")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
