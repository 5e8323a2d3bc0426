"""Scaling of preprocessing and training: wall time and peak RSS per dataset size (issue #10).

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--sizes 10000 50000 200000 1000000]
        [--genes 5000] [--density 0.02] [--threads 2] [--epoch-fraction 1.0]
        [--workdir benchmarks/out/scale] [--keep]

For every size, three fresh subprocesses (so ``ru_maxrss`` is the peak of that phase and size
alone, loading its input included):

1. ``simulate``: sparse raw counts, ``n`` cells x ``--genes`` genes, ``--density`` non-zero
   (genes drawn with gamma-distributed popularity, 8 cell groups with their own marker genes,
   counts 1 + geometric), written as ``.npz`` (CSR);
2. ``preprocess``: :func:`geovae.preprocessing.preprocess_rna` (QC with ``min_genes`` = a quarter of the
   expected genes per cell, seurat_v3 HVG on the sparse counts keeping all ``--genes``,
   log-normalisation, z-score statistics), written as ``.h5ad``; the script checks that
   ``X`` and ``layers["counts"]`` are still sparse;
3. ``train``: LiVAE (defaults: 128 hidden, 10 latent, NB, batch 128), one epoch with a 10 %
   validation pass (``model.train(max_epochs=1)``). With ``--epoch-fraction f < 1`` only the
   first ``f`` of a seeded permutation of the cells is trained on (same code path,
   ``geovae.training.trainer._run_epoch``; the whole dataset is still loaded and moved to the
   training device, so the memory figure is that of a full epoch) and the time is per cell trained.

Printed per size: seconds and peak RSS (GiB) of each phase, training microseconds per cell and
its ratio to the 50,000-cell run (the issue's target: <= 1.5 at 1M cells, and < 8 GiB).
``--quick``: 10,000 and 50,000 cells.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def simulate_sparse_counts(n_cells: int, n_genes: int, density: float, seed: int = 0) -> tuple[Any, Any]:
    """CSR raw counts with about ``density`` non-zeros and group labels, built chunk by chunk.

    No dense ``n_cells x n_genes`` array is created: each chunk of cells draws its number of
    detected genes per cell (Poisson around ``density * n_genes``), the genes (gamma-distributed
    popularity, boosted 20x for the cell's group markers) and counts (1 + geometric).
    """
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n_groups = 8
    popularity = rng.gamma(0.5, 1.0, n_genes)
    markers = rng.permutation(n_genes)[: n_groups * 50].reshape(n_groups, 50)
    labels = rng.integers(0, n_groups, n_cells)
    group_cdf = []
    for g in range(n_groups):
        weights = popularity.copy()
        weights[markers[g]] *= 20.0
        group_cdf.append(np.cumsum(weights) / weights.sum())
    chunks = []
    for start in range(0, n_cells, 20000):
        lab = labels[start:start + 20000]
        per_cell = np.minimum(rng.poisson(density * n_genes, len(lab)), n_genes)
        rows = np.repeat(np.arange(len(lab)), per_cell)
        cols = np.empty(len(rows), dtype=np.int32)
        group_of_entry = np.repeat(lab, per_cell)
        for g in range(n_groups):
            sel = group_of_entry == g
            cols[sel] = np.searchsorted(group_cdf[g], rng.random(int(sel.sum())))
        np.minimum(cols, n_genes - 1, out=cols)
        vals = (1 + rng.geometric(0.3, len(rows))).astype(np.float32)
        chunk = sp.csr_matrix((vals, (rows, cols)), shape=(len(lab), n_genes), dtype=np.float32)
        chunk.sum_duplicates()
        chunks.append(chunk)
    return sp.vstack(chunks, format="csr"), labels


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase for one size in this process; return its figures."""
    import numpy as np
    import scipy.sparse as sp

    n = args.n
    base = args.workdir / f"n{n}_g{args.genes}"
    t0 = time.perf_counter()
    out: dict[str, Any] = {"phase": args.phase, "n_cells": n}
    if args.phase == "simulate":
        counts, labels = simulate_sparse_counts(n, args.genes, args.density)
        sp.save_npz(f"{base}.npz", counts, compressed=False)
        np.save(f"{base}_labels.npy", labels)
        out["density"] = counts.nnz / (counts.shape[0] * counts.shape[1])
    elif args.phase == "preprocess":
        import anndata as ad
        import pandas as pd

        from geovae.preprocessing import preprocess_rna

        counts = sp.load_npz(f"{base}.npz").tocsr()
        labels = np.load(f"{base}_labels.npy")
        t0 = time.perf_counter()  # loading excluded from the time (not from the memory)
        adata = ad.AnnData(X=counts, obs=pd.DataFrame({"group": labels.astype(str)},
                                                      index=[f"c{i}" for i in range(n)]),
                           var=pd.DataFrame(index=[f"g{j}" for j in range(args.genes)]))
        pre = preprocess_rna(adata, min_genes=max(1, int(args.density * args.genes / 4)), n_top_genes=args.genes,
                             mito_prefix="MT-")
        out["seconds"] = time.perf_counter() - t0
        out["sparse"] = bool(sp.issparse(pre.X) and sp.issparse(pre.layers["counts"]))
        out["shape"] = list(pre.shape)
        pre.write_h5ad(f"{base}.h5ad")
    else:
        import anndata as ad
        import torch

        from geovae.models.livae import LiVAE

        torch.set_num_threads(args.threads)
        import torch._dynamo  # noqa: F401  (imported by the first optimizer; keep it out of the time)

        adata = ad.read_h5ad(f"{base}.h5ad")
        LiVAE.setup_anndata(adata, layer="counts")
        model = LiVAE(adata)
        t0 = time.perf_counter()
        if args.epoch_fraction >= 1.0:
            model.train(max_epochs=1, batch_size=128, early_stopping=False, progress_bar=False, device="cpu")
            out["cells_trained"] = int(model.metadata["n_train"])
        else:
            from geovae.training.trainer import _run_epoch

            data = model._batches(adata, with_counts=True)
            device = torch.device("cpu")
            order = np.random.default_rng(0).permutation(adata.n_obs)[: int(args.epoch_fraction * adata.n_obs)]
            optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-3, fused=True)
            _run_epoch(model.module, data, order, 128, device, None, optimizer, None, 1.0)
            out["cells_trained"] = int(len(order))
        out["seconds"] = time.perf_counter() - t0
        out["us_per_cell"] = 1e6 * out["seconds"] / out["cells_trained"]
    out.setdefault("seconds", time.perf_counter() - t0)
    out["peak_rss_gib"] = _peak_rss_gib()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 and 50,000 cells")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--density", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epoch-fraction", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "scale")
    parser.add_argument("--keep", action="store_true", help="keep the simulated/preprocessed files")
    parser.add_argument("--phase", choices=["simulate", "preprocess", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print("RESULT " + json.dumps(_phase(args)), flush=True)
        return
    sizes = args.sizes or ([10000, 50000] if args.quick else [10000, 50000, 200000, 1000000])
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"# {args.genes} genes, density {args.density}, {args.threads} thread(s), "
          f"epoch fraction {args.epoch_fraction}")
    print(f"{'cells':>9} {'sim s':>7} {'prep s':>8} {'prep GiB':>9} {'sparse':>6} {'train s':>8} "
          f"{'train GiB':>9} {'us/cell':>8} {'vs 50k':>7}")
    results = []
    ref_us = None
    for n in sizes:
        row: dict[str, Any] = {"n_cells": n}
        for phase in ("simulate", "preprocess", "train"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--n", str(n),
                   "--genes", str(args.genes), "--density", str(args.density), "--threads", str(args.threads),
                   "--epoch-fraction", str(args.epoch_fraction), "--workdir", str(args.workdir)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONWARNINGS": "ignore"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"[fail] {phase} at {n} cells (exit {proc.returncode}):\n{proc.stderr[-2000:]}", flush=True)
                break
            row[phase] = json.loads(lines[-1][len("RESULT "):])
        results.append(row)
        if "train" not in row:
            continue
        if n == 50000:
            ref_us = row["train"]["us_per_cell"]
        ratio = f"{row['train']['us_per_cell'] / ref_us:.2f}" if ref_us else "-"
        print(f"{n:>9} {row['simulate']['seconds']:>7.1f} {row['preprocess']['seconds']:>8.1f} "
              f"{row['preprocess']['peak_rss_gib']:>9.2f} {str(row['preprocess']['sparse']):>6} "
              f"{row['train']['seconds']:>8.1f} {row['train']['peak_rss_gib']:>9.2f} "
              f"{row['train']['us_per_cell']:>8.0f} {ratio:>7}", flush=True)
        if not args.keep:
            for suffix in (".npz", "_labels.npy", ".h5ad"):
                Path(f"{args.workdir / f'n{n}_g{args.genes}'}{suffix}").unlink(missing_ok=True)
    (args.workdir / "scale.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
