#!/usr/bin/env python
"""Load test: the benchmark config with ``--keep-going`` plus a deliberately broken dataset; peak RSS per job.

Usage (from the repository root)::

    python benchmarks/bench_load.py [--cores 2] [--configfile config/config.yaml config/benchmark.yaml]
        [--out benchmarks/out/load] [--dry-run] [-- extra snakemake arguments]

What it does:

1. copies the dataset sheet named by the config into ``--out`` and appends a dataset
   ``broken_truncated`` (a local h5ad cut in half) that must fail in ``acquire`` while every other
   dataset goes on;
2. runs ``snakemake --cores N --keep-going`` with the given config files plus an overlay pointing
   ``datasets`` at the copied sheet (results go to ``results/`` of the repository, as a normal run);
3. reads the ``benchmark:`` files (``logs/benchmarks/<rule>/...tsv``, Snakemake's ``max_rss`` column
   in MB) of the jobs run by this invocation and writes ``--out/peak_rss.tsv`` (one row per job) and
   ``--out/peak_rss_by_rule.tsv``, and prints the per-rule and overall peaks;
4. checks that the broken dataset failed with a message naming it and its file (``logs/acquire``).

The exit status is 0 when only the broken dataset (and what depends on it) failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BROKEN = "broken_truncated"


def merged_config(files: list[str]) -> dict:
    """The config files merged in order (later keys win, nested mappings merged)."""
    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            base[key] = update(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
        return base

    config: dict = {}
    for name in files:
        update(config, yaml.safe_load((ROOT / name).read_text()) or {})
    return config


def broken_sheet(config: dict, out: Path) -> Path:
    """Copy of the dataset sheet plus one dataset whose h5ad file is truncated."""
    sheet = pd.read_csv(ROOT / config["datasets"], sep="\t", dtype=str, keep_default_na=False, comment="#")
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    cells = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, size=(300, 200)).astype(np.float32)))
    cells.write_h5ad(out / "broken.h5ad")
    data = (out / "broken.h5ad").read_bytes()
    (out / "broken.h5ad").write_bytes(data[: len(data) // 2])
    row = {column: "" for column in sheet.columns}
    row.update(dataset=BROKEN, source="local", path=str(out / "broken.h5ad"), modality="rna", species="human",
               data_type="steady_state")
    sheet = pd.concat([sheet, pd.DataFrame([row])], ignore_index=True)
    path = out / "datasets_with_broken.tsv"
    sheet.to_csv(path, sep="\t", index=False)
    return path


def read_benchmarks(since: float) -> pd.DataFrame:
    """One row per benchmark file written after ``since``: rule, job (wildcards path), seconds, max_rss (MB)."""
    rows = []
    for path in sorted((ROOT / "logs" / "benchmarks").rglob("*.tsv")):
        if path.stat().st_mtime < since:
            continue
        table = pd.read_csv(path, sep="\t")
        if table.empty:
            continue
        rel = path.relative_to(ROOT / "logs" / "benchmarks")
        rss = pd.to_numeric(table["max_rss"], errors="coerce")
        rows.append({"rule": rel.parts[0], "job": str(rel.with_suffix(""))[len(rel.parts[0]) + 1:],
                     "seconds": float(table["s"].max()), "max_rss_mb": float(rss.max())})
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", nargs="+", default=["config/config.yaml", "config/benchmark.yaml"])
    parser.add_argument("--out", default="benchmarks/out/load")
    parser.add_argument("--dry-run", action="store_true", help="only show the jobs (snakemake -n)")
    parser.add_argument("extra", nargs="*", help="further snakemake arguments (after --)")
    args = parser.parse_args(argv)

    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = merged_config(args.configfile)
    sheet = broken_sheet(config, out)
    overlay = out / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": str(sheet)}))

    command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--keep-going",
               "--configfile", *args.configfile, str(overlay), *(["-n"] if args.dry_run else []), *args.extra]
    print("$", " ".join(command), flush=True)
    start = time.time()
    with open(out / "snakemake.log", "w") as log:
        proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    print(f"snakemake exit status {proc.returncode} after {wall:.0f} s (log: {out / 'snakemake.log'})")
    if args.dry_run:
        return proc.returncode

    jobs = read_benchmarks(start)
    jobs.sort_values("max_rss_mb", ascending=False).to_csv(out / "peak_rss.tsv", sep="\t", index=False)
    by_rule = jobs.groupby("rule").agg(jobs=("job", "size"), peak_rss_mb=("max_rss_mb", "max"),
                                       median_rss_mb=("max_rss_mb", "median"), total_seconds=("seconds", "sum"))
    by_rule.sort_values("peak_rss_mb", ascending=False).to_csv(out / "peak_rss_by_rule.tsv", sep="\t")
    print(by_rule.sort_values("peak_rss_mb", ascending=False).to_string(float_format=lambda v: f"{v:.1f}"))
    if len(jobs):
        top = jobs.loc[jobs["max_rss_mb"].idxmax()]
        print(f"overall peak RSS {top['max_rss_mb']:.1f} MB ({top['rule']} {top['job']}); {len(jobs)} jobs, "
              f"wall {wall:.0f} s")

    log_file = ROOT / "logs" / "acquire" / f"{BROKEN}.log"
    text = log_file.read_text() if log_file.exists() else ""
    named = f"dataset '{BROKEN}'" in text and "broken.h5ad" in text
    print(f"broken dataset reported with its name and file: {named} ({log_file})")
    failures = failed_jobs((out / "snakemake.log").read_text())
    others = [f"{rule} ({wildcards})" for rule, wildcards in failures if BROKEN not in wildcards]
    print(f"failed jobs: {len(failures)}; not caused by the broken dataset: {others or 'none'}")
    return 0 if named and not others and not (ROOT / "results" / BROKEN / "raw.h5ad").exists() else 1


def failed_jobs(log: str) -> list[tuple[str, str]]:
    """(rule, what) of every ``Error in rule`` block of a Snakemake log: ``what`` is the block's
    ``wildcards:`` line, or its ``output:`` line where Snakemake prints no wildcards."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Error in rule"):
            rule = line.split("Error in rule", 1)[1].strip(" :")
            block = []
            for ln in lines[i + 1:i + 12]:
                if not ln.startswith("    "):  # the indented block ends (Logfile ..., blank line)
                    break
                block.append(ln.strip())
            fields = dict(ln.split(":", 1) for ln in block if ":" in ln)
            found.append((rule, (fields.get("wildcards") or fields.get("output") or "").strip()))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
