#!/usr/bin/env python
"""Clustering against training length without early stopping: why LiVAE's NMI falls after ~50 epochs (issue #23).

For each dataset, model variant, seed and epoch count E, the variant is trained from scratch for exactly E
epochs (``early_stopping=False``, every other training setting the pipeline's) and scored on its latent
means: KMeans NMI / ARI (:func:`geovae.metrics.clustering.clustering_metrics`, k = number of labels), the
15-NN label accuracy (:func:`geovae.metrics.clustering.knn_accuracy`), and what the loss history
says at epoch E: the training and validation reconstruction NLL (their gap measures overfitting of the
decoder), the KL, the geometric term, the mean per-dimension sd of the latent means and the mean
inverse dispersion ``theta`` of the NB likelihood. Datasets and their preprocessing are those of
``bench_realdata.py`` (pbmc68k built in, the real sets of ``../shared/data/real``).

Variants: any name of ``bench_realdata.MODELS`` (``livae``, ``vae``, ``livae_lw0``, ...), the training variants
among them with their options of ``bench_realdata.MODEL_TRAIN`` (``livae_eps``: Adam eps 0.01 as scvi-tools;
``livae_lr3e-4``: learning rate 3e-4); ``scvi`` runs where scvi-tools is importable.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_epochs.py                       # pbmc68k + kidney, livae and vae
    .venv/bin/python benchmarks/bench_epochs.py --datasets human_kidney --models livae,livae_lr3e-4 \\
        --epochs 25,50,100,200 --seeds 0,1 --out benchmarks/results/epochs.tsv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_realdata  # noqa: E402  (the benchmark's datasets, preprocessing and model variants)



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (lists split on commas)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="pbmc68k,human_kidney", help=f"of {','.join(bench_realdata.DATASETS)}")
    p.add_argument("--models", default="livae,vae", help=f"of {','.join(bench_realdata.MODELS)}")
    p.add_argument("--epochs", default="10,25,50,100,200", help="epoch counts, each a run from scratch")
    p.add_argument("--seeds", default="0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-cells", type=int, default=None, help="seeded subsample of raw cells (default all)")
    p.add_argument("--data-dir", type=Path, default=bench_realdata.DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=None, help="TSV of the rows (default: printed only)")
    args = p.parse_args(argv)
    args.datasets = [s for s in args.datasets.split(",") if s]
    args.models = [s for s in args.models.split(",") if s]
    args.epochs = sorted(int(s) for s in args.epochs.split(",") if s)
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [m for m in args.models if m not in bench_realdata.MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}")
    return args


def variant(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Registry model, model parameters and extra training options of a benchmark model name."""
    model, params = bench_realdata.MODELS[name]
    return model, params, bench_realdata.MODEL_TRAIN.get(name, {})


def run_one(data, name: str, seed: int, epochs: int) -> dict[str, Any]:
    """Train ``name`` for exactly ``epochs`` epochs and score it; one result row."""
    import geovae
    from geovae.metrics.clustering import clustering_metrics, knn_accuracy

    model, params, train = variant(name)
    adata = data.copy()
    start = time.perf_counter()
    instance = geovae.tl.embed(adata, model=model, key_added="X_latent", params=params, seed=seed,
                               train={"progress_bar": False, "early_stopping": False, "max_epochs": epochs, **train})
    seconds = time.perf_counter() - start
    Z = np.asarray(adata.obsm["X_latent"], dtype=np.float64)
    labels = adata.obs["label"].to_numpy()
    scores = clustering_metrics(Z, labels, seed=0)
    history = getattr(instance, "history", None)
    last = history.iloc[-1] if isinstance(history, pd.DataFrame) and len(history) else pd.Series(dtype=float)
    module = getattr(instance, "module", None)  # None for the scvi-tools wrappers (their own history names)
    theta = float(module.log_theta.detach().exp().mean()) if hasattr(module, "log_theta") else np.nan
    return {"model": name, "seed": seed, "epochs": epochs, "NMI": scores["NMI"], "ARI": scores["ARI"],
            "kNN_accuracy": knn_accuracy(Z, labels)["kNN_accuracy"],
            "train_recon": last.get("train_recon", np.nan), "val_recon": last.get("val_recon", np.nan),
            "overfit_gap": last.get("val_recon", np.nan) - last.get("train_recon", np.nan),
            "val_kl": last.get("val_kl", np.nan), "val_geo": last.get("val_geo", np.nan),
            "latent_sd": float(Z.std(axis=0).mean()), "theta_mean": theta, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    """Run every (dataset, model, seed, epochs) and print one row each, then the table."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for dataset in args.datasets:
        data = bench_realdata.load_dataset(dataset, args.data_dir, args.max_cells)
        if data is None:
            continue
        for name in args.models:
            for seed in args.seeds:
                for epochs in args.epochs:
                    row = {"dataset": dataset, **run_one(data, name, seed, epochs)}
                    rows.append(row)
                    print("\t".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                          flush=True)
                    if args.out:
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                        pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False, float_format="%.6g")
    if not rows:
        print("no dataset could be run")
        return 1
    table = pd.DataFrame(rows)
    print(table.groupby(["dataset", "model", "epochs"])[
        ["NMI", "ARI", "kNN_accuracy", "train_recon", "val_recon", "overfit_gap", "val_kl", "latent_sd",
         "theta_mean"]].mean().round(4).to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
