"""Benchmark of geovae.metrics: vectorised fidelity vs a straightforward reference, suite timings.

Usage::

    PYTHONPATH=src python benchmarks/bench_metrics.py [--sizes 2000 5000 10000]
        [--ref-size 5000] [--check-size 1000] [--n-jobs N]

Data: a seeded Gaussian mixture latent (n x 10, 8 components) and two 2-D embeddings of it
(a noisy linear projection and a tanh-warped one; no UMAP/t-SNE run, so the timing is the
metrics' alone). Every measurement runs in its own subprocess, so peak memory
(``ru_maxrss``) is that of one measurement.

1. equality: reference vs vectorised fidelity on ``--check-size`` cells (Q_NX for every K,
   DC, Q_local, Q_global, K_max);
2. speed: both embeddings' fidelity at ``--ref-size`` cells, reference (per-row ranking loop,
   ``np.add.at`` co-ranking matrix, Python loop over K, ``spearmanr`` of the full flattened
   distance matrices, latent side recomputed per embedding) vs vectorised (latent side once);
3. the suite (KMeans clustering metrics + both embeddings' fidelity + intrinsic; Leiden sweep
   and kNN accuracy timed separately) at each of ``--sizes`` cells, all cells used.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from geovae.metrics import (  # noqa: E402
    LatentNeighbourhood,
    clustering_metrics,
    coranking_qnx,
    embedding_fidelity,
    fidelity_from_qnx,
    intrinsic_metrics,
    knn_accuracy,
    leiden_metrics,
)


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Seeded mixture latent (n x 10, 8 components) and two 2-D embeddings of it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    centres = rng.normal(size=(8, 10)) * 4.0
    Z = centres[labels] + rng.normal(size=(n, 10))
    W1, W2 = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))
    embeddings = {
        "umap": Z @ W1 + 0.5 * rng.normal(size=(n, 2)),
        "tsne": np.tanh(Z @ W2 / 10.0) * 10.0 + 0.2 * rng.normal(size=(n, 2)),
    }
    return Z, labels, embeddings


def reference_fidelity(Z: np.ndarray, Y: np.ndarray) -> dict[str, object]:
    """The straightforward implementation (per-row loops, np.add.at, loop over K)."""
    n = Z.shape[0]

    def ranks(X: np.ndarray) -> np.ndarray:
        D = squareform(pdist(X))
        R = np.zeros((n, n), dtype=np.int64)
        for i in range(n):
            row = D[i].copy()
            row[i] = -np.inf
            R[i, np.argsort(row, kind="stable")] = np.arange(n)
        return R

    rz, ry = ranks(Z), ranks(Y)
    off = ~np.eye(n, dtype=bool)
    Q = np.zeros((n - 1, n - 1), dtype=np.int64)
    np.add.at(Q, (rz[off] - 1, ry[off] - 1), 1)
    del rz, ry, off
    qnx, block = [], 0
    for K in range(1, n - 1):
        block += Q[K - 1, :K].sum() + Q[:K, K - 1].sum() - Q[K - 1, K - 1]
        qnx.append(block / (K * n))
    del Q
    dc = float(spearmanr(squareform(pdist(Z)).ravel(), squareform(pdist(Y)).ravel())[0])
    return {"qnx": np.array(qnx), **fidelity_from_qnx(np.array(qnx), dc)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed(func, *args, **kwargs):
    """Result, wall seconds and CPU seconds (all threads of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = func(*args, **kwargs)
    return out, (time.perf_counter() - wall, time.process_time() - cpu)


def worker_check(n: int, n_jobs: int | None) -> dict:
    Z, _, embs = synthetic(n, seed=1)
    latent = LatentNeighbourhood(Z, n_jobs=n_jobs)
    result = {}
    for name, Y in embs.items():
        ref = reference_fidelity(Z, Y)
        fast = embedding_fidelity(None, Y, latent=latent)
        qnx = coranking_qnx(None, Y, latent=latent)
        result[name] = {
            "max_abs_diff_qnx": float(np.max(np.abs(qnx - ref["qnx"]))),
            **{k: abs(fast[k] - ref[k]) for k in ("DC", "Q_local", "Q_global", "K_max", "overall_embedding_quality")},
        }
    return result


def worker_speed(n: int, which: str, n_jobs: int | None) -> dict:
    Z, _, embs = synthetic(n)
    base = peak_rss_mib()

    def run() -> dict:
        if which == "reference":
            return {name: reference_fidelity(Z, Y) for name, Y in embs.items()}
        latent = LatentNeighbourhood(Z, n_jobs=n_jobs)
        return {name: embedding_fidelity(None, Y, latent=latent) for name, Y in embs.items()}

    out, (wall, cpu) = timed(run)
    metrics = {name: {k: float(v) for k, v in res.items() if k != "qnx"} for name, res in out.items()}
    return {"seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib(), "data_rss_mib": base,
            "metrics": metrics}


def worker_suite(n: int, n_jobs: int | None) -> dict:
    Z, labels, embs = synthetic(n)
    base = peak_rss_mib()
    t = {}
    _, t["clustering"] = timed(clustering_metrics, Z, labels)
    latent, t["fidelity_latent"] = timed(LatentNeighbourhood, Z, n_jobs=n_jobs)
    for name, Y in embs.items():
        _, t[f"fidelity_{name}"] = timed(embedding_fidelity, None, Y, latent=latent)
    _, t["intrinsic"] = timed(intrinsic_metrics, Z)
    suite = [sum(v[i] for v in t.values()) for i in (0, 1)]
    _, t["leiden_sweep"] = timed(leiden_metrics, Z, labels)
    _, t["knn_accuracy"] = timed(knn_accuracy, Z, labels)
    return {"suite_seconds": suite[0], "suite_cpu_seconds": suite[1], "parts": t,
            "peak_rss_mib": peak_rss_mib(), "data_rss_mib": base}


def run_worker(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--ref-size", type=int, default=5000)
    parser.add_argument("--check-size", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: available CPUs)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jobs = [] if args.n_jobs is None else ["--n-jobs", str(args.n_jobs)]

    if args.worker:
        if args.n_jobs is not None:  # as evaluate(n_jobs=...): also cap OpenMP/BLAS threads
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=args.n_jobs)
        kind, n = args.worker[0], int(args.worker[1])
        if kind == "check":
            out = worker_check(n, args.n_jobs)
        elif kind == "suite":
            out = worker_suite(n, args.n_jobs)
        else:
            out = worker_speed(n, kind, args.n_jobs)
        print(json.dumps(out))
        return

    from geovae.metrics.fidelity import default_n_jobs

    print(f"threads: {args.n_jobs if args.n_jobs is not None else default_n_jobs()}")
    check = run_worker(["check", str(args.check_size), *jobs])
    print(f"\n[1] equality, reference vs vectorised, {args.check_size} cells (absolute differences)")
    for name, diffs in check.items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.1e}" for k, v in diffs.items()))

    print(f"\n[2] fidelity of both embeddings at {args.ref_size} cells")
    ref = run_worker(["reference", str(args.ref_size), *jobs])
    fast = run_worker(["fast", str(args.ref_size), *jobs])
    for label, res in (("reference", ref), ("vectorised", fast)):
        print(
            f"  {label:10s} wall {res['seconds']:7.2f} s  cpu {res['cpu_seconds']:7.2f} s"
            f"  peak RSS {res['peak_rss_mib']:7.0f} MiB (data {res['data_rss_mib']:.0f} MiB)"
        )
    print(
        f"  speed-up x{ref['seconds'] / fast['seconds']:.1f} (wall),"
        f" x{ref['cpu_seconds'] / fast['cpu_seconds']:.1f} (cpu)"
    )
    for name in ref["metrics"]:
        diff = max(abs(ref["metrics"][name][k] - fast["metrics"][name][k]) for k in ref["metrics"][name])
        print(f"  {name}: max |reference - vectorised| over the metrics = {diff:.1e}")

    print("\n[3] suite (clustering + fidelity of both embeddings + intrinsic), all cells;")
    print("    parts as wall/cpu seconds; Leiden sweep and kNN accuracy are not in the suite total")
    for n in args.sizes:
        res = run_worker(["suite", str(n), *jobs])
        parts = ", ".join(f"{k} {w:.2f}/{c:.2f}" for k, (w, c) in res["parts"].items())
        print(
            f"  n={n:6d}: suite wall {res['suite_seconds']:6.2f} s, cpu {res['suite_cpu_seconds']:6.2f} s,"
            f" peak RSS {res['peak_rss_mib']:6.0f} MiB (data {res['data_rss_mib']:.0f} MiB)\n      {parts}"
        )


if __name__ == "__main__":
    main()
