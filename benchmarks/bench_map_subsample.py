"""Maps fit on a subsample, the other cells placed: time and quality against maps of every cell (issue #24).

Above ``embed.map_cells`` cells (default 50,000) the embed rule fits UMAP and t-SNE on a seeded
subsample and places every other cell at the inverse-distance-weighted mean of its nearest fitted
cells (:func:`geovae.embedding.place_cells`). This script measures, per latent and ``map_cells``
value (0 = every cell, the reference): wall seconds of each step of :func:`geovae.embedding.embed_2d`
and each map's quality: distance correlation, Q_local and Q_global against the latent (the
pipeline's seeded 3,000-cell subsample), the 15-NN label accuracy of the map over all cells
(cross-validated, as the metrics rule) and the same accuracy over the placed cells alone.

Latents: the real labelled sets of ``bench_realdata`` (PCA, 10 components, of the preprocessed
expression; these sets are small, so ``map_cells`` is set below their size to exercise the placement)
and any ``--latent`` file (an ``embedding.h5ad`` / ``latent.h5ad`` of the pipeline, e.g. the 100,000-cell
SIMULATED run of ``bench_pipeline_scale.py --keep``, with ``--label-key``).

    .venv/bin/python benchmarks/bench_map_subsample.py --datasets human_kidney,cbmc_citeseq --map-cells 0,2000,4000
    .venv/bin/python benchmarks/bench_map_subsample.py --datasets "" --map-cells 0,50000,20000 \\
        --latent benchmarks/out/pipeline_scale/run_n100000/results/simulated_n100000/livae/0/embedding.h5ad
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embedding import latent_of, score  # noqa: E402
from bench_realdata import DEFAULT_DATA_DIR, load_dataset  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "embedding"


def placed_accuracy(xy: np.ndarray, labels: np.ndarray, placed: np.ndarray, n_max: int = 10_000,
                    seed: int = 0) -> float:
    """15-NN label accuracy on the map of (a seeded subsample of at most ``n_max``) placed cells."""
    from geovae.metrics import neighbour_label_accuracy
    from geovae.metrics.fidelity import subsample_indices

    if placed.size == 0:
        return float("nan")
    return neighbour_label_accuracy(xy, labels, placed[subsample_indices(placed.size, n_max, seed)], k=15)


def latents(args: argparse.Namespace):
    """(name, latent, labels) of every requested real set and ``--latent`` file."""
    import anndata as ad

    for name in [d for d in args.datasets.split(",") if d]:
        data = load_dataset(name, args.data_dir, None)
        if data is not None:
            yield name, latent_of(data, "pca", 0), data.obs["label"].to_numpy()
    for path in args.latent:
        a = ad.read_h5ad(path, backed="r")
        key = args.rep if args.rep in a.obsm else next(k for k in a.obsm if k not in ("X_umap", "X_tsne"))
        yield Path(path).parent.parent.parent.name, np.asarray(a.obsm[key], dtype=np.float32), a.obs[args.label_key].to_numpy()


def main(argv: list[str] | None = None) -> int:
    from geovae.embedding import embed_2d

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="human_kidney,cbmc_citeseq", help="comma-separated bench_realdata sets ('' for none)")
    p.add_argument("--latent", nargs="*", default=[], help="pipeline h5ad files holding a latent in obsm")
    p.add_argument("--rep", default="X_latent", help="obsm key of the latent in --latent files")
    p.add_argument("--label-key", default="group", help="obs label column of --latent files")
    p.add_argument("--map-cells", default="0,2000,4000", help="comma-separated embed.map_cells values (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    embed_2d(np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32), map_cells=100)  # numba warm-up
    rows = []
    for name, latent, labels in latents(args):
        for map_cells in (int(v) for v in args.map_cells.split(",")):
            coords, seconds, _, fitted = embed_2d(latent, seed=args.seed, n_jobs=args.threads, map_cells=map_cells)
            row = {"dataset": name, "n_cells": latent.shape[0], "map_cells": map_cells,
                   "fitted": int(fitted.sum()), **{f"{k}_s": round(v, 2) for k, v in seconds.items()},
                   **score(latent, coords, labels)}
            for key, xy in coords.items():
                row[f"kNN_accuracy_placed_{key.removeprefix('X_')}"] = placed_accuracy(xy, labels, np.flatnonzero(~fitted))
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "map_subsample.tsv", sep="\t", index=False)
    pd.set_option("display.width", 250)
    print(table.set_index(["dataset", "map_cells"]).T.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
