"""Program recovery with and without a post-hoc rotation of the latent, on SIMULATED gene programs.

Trains each model on the built-in ``sim_programs`` (SIMULATED: identity and activity programs, true
programs in ``varm["programs"]``) with the pipeline's preprocessing and training defaults, then annotates
its latent with ``rotation`` none / varimax / ica (``geovae.interpretation.interpret_run``) and prints, per
model, seed and rotation:

- ``found``: programs whose best component's top genes are significantly enriched for them (BH p < 0.05);
- ``precision``: mean precision@N of the best component's top genes;
- ``unique``: programs found by a component that finds no other program (one program, one axis);
- ``score_r``: mean |r| between the best-correlated component and the true program usage.

    .venv/bin/python benchmarks/bench_rotation.py [--models livae,vae,betavae,betatcvae,sivae] [--seeds 0]
        [--max-epochs 300] [--out benchmarks/results/rotation.tsv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def recovery(validation: pd.DataFrame) -> dict[str, float]:
    """Summary of one validation table (see the module docstring)."""
    found = validation["adj_p_value"].astype(float) < 0.05
    owners = validation.loc[found, "enriched_component"].astype(str)
    unique = int((owners.map(owners.value_counts()) == 1).sum())
    return {"programs": int(len(validation)), "found": int(found.sum()), "unique": unique,
            "precision": float(validation["precision_at_n"].astype(float).mean()),
            "score_r": float(np.abs(validation["score_r"].astype(float)).mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="livae,vae,betavae,betatcvae,sivae")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the table as TSV")
    args = parser.parse_args()

    import torch

    from geovae.data import load_builtin
    from geovae.interpretation import interpret_run
    from geovae.interpretation.rotation import ROTATIONS
    from geovae.preprocessing import preprocess_rna
    from geovae.tl import embed

    torch.set_num_threads(args.threads)
    data = preprocess_rna(load_builtin("sim_programs"))
    rows = []
    for model in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            adata = data.copy()
            start = time.perf_counter()
            train = {"progress_bar": False, **({"max_epochs": args.max_epochs} if args.max_epochs else {})}
            embed(adata, model=model, key_added="X_latent", seed=seed, device="cpu", train=train)
            seconds = time.perf_counter() - start
            for rotation in ROTATIONS:
                result = interpret_run(adata, gmt=None, gsea_permutations=0, seed=seed, rotation=rotation)
                rows.append({"model": model, "seed": seed, "rotation": rotation, "train_s": round(seconds, 1),
                             **recovery(result.validation)})
                print("\t".join(str(v) for v in rows[-1].values()), flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby(["model", "rotation"], sort=False)[["found", "unique", "precision", "score_r"]].mean()
    print(summary.round(3).to_string())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
