"""The whole pipeline at atlas scale: wall time, peak RSS and growth exponent per rule (issue #24).

Usage::

    .venv/bin/python benchmarks/bench_pipeline_scale.py [--sizes 10000 100000 1000000] [--genes 2000]
        [--max-epochs N] [--cores 2] [--work benchmarks/out/pipeline_scale] [--keep] [--resume]

For every size ``n`` (smallest first):

1. a fresh subprocess builds SIMULATED counts with the project's simulator
   (:func:`geovae.data.simulate.simulate_programs`: Splatter-style gamma-Poisson counts, 10 cell
   types with their identity programs and one activity program, log-normal library sizes with a
   median of ~660 counts over 2,000 genes, ~14 % non-zero entries: the sparsity of 10x data
   restricted to 2,000 variable genes) and writes them to ``<work>/data/simulated_n<n>.h5ad``.
   The simulator draws 512 cells at a time and keeps only their sparse rows, so its memory is
   O(non-zeros), never cells x genes; its time and peak RSS are reported as ``build (driver)``;
2. a config and a dataset sheet for it are written: one dataset ``simulated_n<n>`` (source
   ``local``, description ``SIMULATED: ...``, label ``group``), one model (``livae``), one seed,
   every other option at its default (``--max-epochs`` sets ``train.max_epochs`` for a quick run);
3. the real workflow runs on it: ``snakemake --cores <cores>`` in ``<work>/run_n<n>/`` (results,
   logs and Snakemake's metadata of that size alone), with the Snakefile of this checkout;
4. the per-rule figures come from the rules' ``benchmark:`` files
   (:func:`bench_pipeline.read_benchmarks`): wall seconds (summed over the rule's jobs) and the
   largest ``max_rss`` (MiB).

Printed (Markdown) and written to ``<work>/pipeline_scale.tsv`` (long form: rule, n_cells, jobs,
seconds, max_rss_mib, exponent): per rule and size the seconds and peak RSS, and between
consecutive sizes the growth exponent ``log(t2 / t1) / log(n2 / n1)`` (1: linear; n log n is a
little above 1; 2: quadratic). Rows ``total`` (rule seconds summed, largest peak) and ``elapsed``
(wall time of the Snakemake call) follow the rules.

The sizes share one numba cache (``<work>/cache/numba``, filled before the first size), so no
size pays the one-off compilation of pynndescent. Without ``--keep`` the data and run folders
are deleted at the end (the TSV stays). A 1M-cell run needs about 2.3 GB for the data file and
several GB for the run's results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

from bench_pipeline import read_benchmarks  # noqa: E402

#: Cell types of the simulated data (identity programs of ``simulate_programs``).
N_TYPES = 10
#: Log-normal library size: median exp(6.5) ~ 660 counts over 2,000 genes, ~14 % non-zero, ~265 genes per
#: cell: between real 2,000-gene UMI sets (CITE-seq CBMC, human kidney: 7-9 % non-zero, ~115 genes per cell)
#: and deeper 10x v3 data.
LIB_LOG_MEAN = 6.5
#: Spread of the library sizes (real data spread more than the simulator's default 0.3).
LIB_LOG_SD = 0.6
#: Genes per simulated program when the genes allow it (the simulator's default).
PROGRAM_SIZE = 100
#: Pipeline order of the rules in the table; rules not listed follow in alphabetical order.
RULE_ORDER = ("acquire", "preprocess", "train", "embed", "metrics", "interpret", "aggregate_metrics",
              "summary", "benchmark_stats")
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
TSV_COLUMNS = ("rule", "n_cells", "jobs", "seconds", "max_rss_mib", "exponent")
#: Rows after the rules: rule seconds summed, the Snakemake call's wall time, the data builder.
EXTRA_ROWS = ("total", "elapsed", "build (driver)")


def dataset_id(n_cells: int) -> str:
    """Dataset id of the simulated data of ``n_cells`` cells (also its file stem)."""
    return f"simulated_n{n_cells}"


def program_size(n_genes: int) -> int:
    """Genes per program: the simulator's 100, fewer when ``n_genes`` cannot hold 11 programs twice over.

    Raises
    ------
    ValueError
        If ``n_genes`` is too small for one gene per program.
    """
    size = min(PROGRAM_SIZE, n_genes // (2 * (N_TYPES + 1)))
    if size < 1:
        raise ValueError(f"--genes {n_genes}: need at least {2 * (N_TYPES + 1)} genes for {N_TYPES} cell types")
    return size


def build_dataset(n_cells: int, n_genes: int, path: Path, seed: int = 0) -> dict[str, Any]:
    """Simulate ``n_cells`` x ``n_genes`` SIMULATED counts and write them to ``path`` (h5ad).

    Parameters
    ----------
    n_cells, n_genes
        Matrix size.
    path
        Output ``.h5ad`` (written under a temporary name, then renamed).
    seed
        Seed of the simulator.

    Returns
    -------
    dict
        ``n_cells``, ``n_genes``, ``density`` (fraction of non-zeros), ``median_counts`` per cell,
        ``seconds`` and ``peak_rss_mib`` of this process.
    """
    import numpy as np

    from geovae.data.simulate import simulate_programs

    start = time.perf_counter()
    adata = simulate_programs(n_cells=n_cells, n_genes=n_genes, n_groups=N_TYPES,
                              program_size=program_size(n_genes), lib_log_mean=LIB_LOG_MEAN,
                              lib_log_sd=LIB_LOG_SD, seed=seed)
    adata.uns["description"] = (f"SIMULATED counts for the pipeline scale benchmark "
                                f"(benchmarks/bench_pipeline_scale.py), {n_cells} cells")
    counts = adata.X
    summary = {"n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars),
               "density": counts.nnz / (adata.n_obs * adata.n_vars),
               "median_counts": float(np.median(np.asarray(counts.sum(axis=1)).ravel()))}
    partial = path.with_name(path.name + ".partial")
    adata.write_h5ad(partial)
    partial.replace(path)
    summary["seconds"] = time.perf_counter() - start
    summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return summary


def build_in_subprocess(n_cells: int, n_genes: int, path: Path, seed: int) -> dict[str, Any]:
    """:func:`build_dataset` in a fresh interpreter (so its peak RSS is the builder's alone)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build-one", str(path), "--sizes", str(n_cells),
           "--genes", str(n_genes), "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {path.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_inputs(run_dir: Path, data: Path, n_cells: int, max_epochs: int | None) -> Path:
    """Write the dataset sheet and config of one size into ``run_dir``; return the config's path."""
    sheet = run_dir / "datasets.tsv"
    row = {"dataset": dataset_id(n_cells), "source": "local", "accession": "", "path": str(data.resolve()),
           "modality": "rna", "species": "simulated", "label_key": "group", "batch_key": "",
           "data_type": "steady_state",
           "description": f"SIMULATED: simulate_programs, {n_cells} cells, {N_TYPES} cell types (scale benchmark)"}
    sheet.write_text("\t".join(row) + "\n" + "\t".join(row.values()) + "\n")
    config: dict[str, Any] = {"datasets": str(sheet.resolve()), "models": ["livae"], "seeds": [0]}
    if max_epochs is not None:
        config["train"] = {"max_epochs": int(max_epochs)}
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def warm_numba_cache(env: dict[str, str]) -> None:
    """Import umap-learn once with ``env``'s NUMBA_CACHE_DIR, so pynndescent's compiled functions are cached
    before the first size runs (no size pays the one-off compilation)."""
    subprocess.run([sys.executable, "-c", "import umap"], env=env, check=True, capture_output=True)


def run_workflow(run_dir: Path, config: Path, cores: int, env: dict[str, str], resume: bool = False) -> float:
    """Run the checkout's workflow in ``run_dir``; return its wall seconds.

    With ``resume`` the directory is unlocked first, the jobs an interrupted attempt left incomplete are
    rerun and its finished ones kept.

    Raises
    ------
    RuntimeError
        If Snakemake fails (the message ends with its log's last lines).
    """
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(run_dir),
           "--cores", str(cores), "--configfile", str(config)] + (["--rerun-incomplete"] if resume else [])
    log = run_dir / ("snakemake_resume.log" if resume else "snakemake.log")
    if resume:  # an interrupted attempt leaves Snakemake's lock behind
        subprocess.run(cmd + ["--unlock"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, check=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"snakemake failed in {run_dir} (exit {proc.returncode}); end of {log}:\n{tail}")
    return elapsed


def rule_figures(logs: Path) -> dict[str, dict[str, float]]:
    """Per rule: number of jobs, wall seconds summed over them and the largest ``max_rss`` (MiB)."""
    figures: dict[str, dict[str, float]] = {}
    for rec in read_benchmarks(logs):
        entry = figures.setdefault(str(rec["rule"]), {"jobs": 0, "seconds": 0.0, "max_rss_mib": float("nan")})
        entry["jobs"] += 1
        entry["seconds"] += float(rec["s"])
        rss = float(rec["max_rss"])
        if not math.isnan(rss):
            entry["max_rss_mib"] = rss if math.isnan(entry["max_rss_mib"]) else max(entry["max_rss_mib"], rss)
    return figures


def growth_exponent(n1: int, t1: float, n2: int, t2: float) -> float:
    """``log(t2 / t1) / log(n2 / n1)``; NaN when a time is missing or not positive or ``n1 == n2``."""
    if not (t1 > 0 and t2 > 0) or n1 <= 0 or n2 <= 0 or n1 == n2:
        return float("nan")
    return math.log(t2 / t1) / math.log(n2 / n1)


def ordered_rules(names: set[str]) -> list[str]:
    """Rule names in pipeline order (:data:`RULE_ORDER`), the others after them alphabetically."""
    known = [r for r in RULE_ORDER if r in names]
    return known + sorted(names - set(known))


def long_table(per_size: dict[int, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per (rule, size) with the exponent from the previous size (NaN for the first)."""
    sizes = sorted(per_size)
    names = set().union(*(per_size[n] for n in sizes)) if sizes else set()
    rows = []
    for rule in [*ordered_rules(names - set(EXTRA_ROWS)), *EXTRA_ROWS]:
        previous: tuple[int, float] | None = None
        for n in sizes:
            fig = per_size[n].get(rule)
            if fig is None:
                previous = None
                continue
            exponent = growth_exponent(previous[0], previous[1], n, fig["seconds"]) if previous else float("nan")
            rows.append({"rule": rule, "n_cells": n, "jobs": int(fig.get("jobs", 1)), "seconds": fig["seconds"],
                         "max_rss_mib": fig.get("max_rss_mib", float("nan")), "exponent": exponent})
            previous = (n, fig["seconds"])
    return rows


def with_totals(figures: dict[str, dict[str, float]], elapsed: float,
                build: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``figures`` plus the rows of :data:`EXTRA_ROWS`: ``total`` (rule seconds summed, largest peak),
    ``elapsed`` (the Snakemake call) and ``build (driver)`` (the data builder)."""
    peaks = [f["max_rss_mib"] for f in figures.values() if not math.isnan(f["max_rss_mib"])]
    out = dict(figures)
    out["total"] = {"jobs": sum(int(f["jobs"]) for f in figures.values()),
                    "seconds": sum(f["seconds"] for f in figures.values()),
                    "max_rss_mib": max(peaks) if peaks else float("nan")}
    out["elapsed"] = {"jobs": 1, "seconds": elapsed, "max_rss_mib": float("nan")}
    out["build (driver)"] = {"jobs": 1, "seconds": float(build["seconds"]), "max_rss_mib": float(build["peak_rss_mib"])}
    return out


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Wide Markdown table: per rule, seconds and peak RSS per size, then the exponents between sizes."""
    sizes = sorted({int(r["n_cells"]) for r in rows})
    by_key = {(r["rule"], int(r["n_cells"])): r for r in rows}
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    header = ["rule"]
    for n in sizes:
        header += [f"{n:,} s", f"{n:,} peak MiB"]
    header += [f"exp {a:,}->{b:,}" for a, b in zip(sizes, sizes[1:], strict=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rule in rules:
        cells = [rule]
        for n in sizes:
            r = by_key.get((rule, n))
            cells += [_fmt(r["seconds"], 1), _fmt(r["max_rss_mib"], 0)] if r else ["-", "-"]
        for b in sizes[1:]:
            r = by_key.get((rule, b))
            cells.append(_fmt(r["exponent"], 2) if r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tsv(rows: list[dict[str, Any]], path: Path) -> None:
    """The long table as TSV (columns :data:`TSV_COLUMNS`; NaN written as ``nan``)."""
    lines = ["\t".join(TSV_COLUMNS)]
    for r in rows:
        lines.append("\t".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in TSV_COLUMNS))
    path.write_text("\n".join(lines) + "\n")


def run_size(n_cells: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Build the data of one size, run the workflow on it and return its per-rule figures with totals."""
    data = args.work / "data" / f"{dataset_id(n_cells)}.h5ad"
    data.parent.mkdir(parents=True, exist_ok=True)
    run_dir = args.work / f"run_n{n_cells}"
    if args.resume and data.exists() and run_dir.exists():
        # the earlier attempt's data and finished jobs are kept; their benchmark: files stay in the table
        build_json = data.with_suffix(".json")
        build = json.loads(build_json.read_text()) if build_json.exists() else {"seconds": float("nan"),
                                                                                "peak_rss_mib": float("nan")}
        print(f"[{n_cells:,} cells] resuming in {run_dir} (finished jobs are not rerun)", flush=True)
        elapsed = run_workflow(run_dir, run_dir / "config.yaml", args.cores, env, resume=True)
        print(f"[{n_cells:,} cells] resumed workflow finished in {elapsed:.1f} s", flush=True)
        return with_totals(rule_figures(run_dir / "logs" / "benchmarks"), elapsed, build)
    build = build_in_subprocess(n_cells, args.genes, data, args.seed)
    data.with_suffix(".json").write_text(json.dumps(build))
    print(f"[{n_cells:,} cells] built {data.name}: {build['n_genes']:,} genes, {100 * build['density']:.1f} % "
          f"non-zero, median {build['median_counts']:,.0f} counts per cell ({build['seconds']:.1f} s, "
          f"{build['peak_rss_mib']:,.0f} MiB peak)", flush=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a previous attempt's outputs would make Snakemake skip the jobs
    run_dir.mkdir(parents=True)
    config = write_inputs(run_dir, data, n_cells, args.max_epochs)
    elapsed = run_workflow(run_dir, config, args.cores, env)
    print(f"[{n_cells:,} cells] workflow finished in {elapsed:.1f} s", flush=True)
    return with_totals(rule_figures(run_dir / "logs" / "benchmarks"), elapsed, build)


def clean_work(work: Path, sizes: Sequence[int]) -> None:
    """Delete the run folders of ``sizes`` and the data folder (the TSV and the numba cache stay)."""
    for n in sizes:
        shutil.rmtree(work / f"run_n{n}", ignore_errors=True)
    shutil.rmtree(work / "data", ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="numbers of cells")
    parser.add_argument("--genes", type=int, default=2000, help="simulated genes (all kept as HVGs by default)")
    parser.add_argument("--max-epochs", type=int, default=None, help="train.max_epochs (default: the config's)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "pipeline_scale",
                        help="work folder (data, one run folder per size, the TSV)")
    parser.add_argument("--keep", action="store_true", help="keep the data and run folders")
    parser.add_argument("--resume", action="store_true",
                        help="reuse a kept size's data and run folder: rerun only the jobs that did not finish "
                             "(their rule figures come from each job's own benchmark: file; 'elapsed' is the "
                             "resumed call's); implies --keep")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulator")
    parser.add_argument("--build-one", type=Path, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    args.keep = args.keep or args.resume
    if any(n < 2 for n in args.sizes):
        parser.error("--sizes must be at least 2 cells each")
    try:
        program_size(args.genes)  # fails early on too few genes
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; return the long table (also printed and written as TSV)."""
    args = parse_args(argv)
    if args.build_one is not None:
        print(json.dumps(build_dataset(args.sizes[0], args.genes, args.build_one, args.seed)))
        return []
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(args.work / "cache" / "numba"))
    warm_numba_cache(env)
    per_size: dict[int, dict[str, dict[str, float]]] = {}
    tsv = args.work / "pipeline_scale.tsv"
    for n in sorted(set(args.sizes)):
        per_size[n] = run_size(n, args, env)  # a failure stops here and leaves its folders for inspection
        write_tsv(long_table(per_size), tsv)  # after every size: a failed larger size keeps the smaller ones
    if not args.keep:
        clean_work(args.work, per_size)
    rows = long_table(per_size)
    print()
    print(markdown_table(rows))
    print(f"\n(SIMULATED data; wall seconds summed over each rule's jobs, peak = largest max_rss; "
          f"exponent = log(t2/t1) / log(n2/n1)). TSV: {tsv}")
    return rows


if __name__ == "__main__":
    main()
