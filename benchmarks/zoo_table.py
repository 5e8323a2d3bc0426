#!/usr/bin/env python
"""Model x dataset table of a finished benchmark run: NMI, ARI, DC_umap and training seconds.

Usage (from the repository root, after ``snakemake --configfile config/config.yaml config/benchmark.yaml``)::

    python benchmarks/zoo_table.py [--results results] [--metrics NMI ARI DC_umap] [--out table.md]

Reads ``results/<dataset>/<model>/<seed>/metrics.tsv`` and ``train_info.json`` of every run found
(so it also works on a run that did not reach ``results/metrics.tsv``), averages over seeds and
prints one Markdown table per metric (models as rows, datasets as columns; ``-`` where the pair
does not apply or did not run), then the training seconds, and the runs that are missing a file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def collect(results: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per (dataset, model, seed, metric) plus ``train_seconds`` as a metric; and incomplete runs."""
    rows, incomplete = [], []
    for run in sorted(p for p in results.glob("*/*/*") if p.is_dir() and p.name.isdigit()):
        dataset, model, seed = run.parts[-3], run.parts[-2], int(run.name)
        metrics, info = run / "metrics.tsv", run / "train_info.json"
        if not metrics.exists() or not info.exists():
            incomplete.append(f"{dataset}/{model}/{seed}")
            continue
        table = pd.read_csv(metrics, sep="\t")
        for metric, value in zip(table["metric"], pd.to_numeric(table["value"], errors="coerce")):
            rows.append((dataset, model, seed, metric, value))
        seconds = json.loads(info.read_text()).get("training", {}).get("train_seconds")
        rows.append((dataset, model, seed, "train_seconds", seconds))
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "metric", "value"]), incomplete


def metric_table(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Models x datasets, mean over seeds."""
    sub = long[long["metric"] == metric]
    return sub.pivot_table(index="model", columns="dataset", values="value", aggfunc="mean")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--metrics", nargs="+", default=["NMI", "ARI", "DC_umap"])
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)

    long, incomplete = collect(args.results)
    if long.empty:
        print(f"no finished runs under {args.results}")
        return 1
    seeds = sorted(int(s) for s in long["seed"].unique())
    lines = [f"{long.groupby(['dataset', 'model']).ngroups} (dataset, model) pairs, seeds {seeds}"]
    for metric, digits in [(m, 3) for m in args.metrics] + [("train_seconds", 1)]:
        table = metric_table(long, metric)
        table = table.astype(object).where(table.notna(), None)  # "-" for pairs that did not run
        lines += ["", f"### {metric} (mean over seeds)", "",
                  table.to_markdown(floatfmt=f".{digits}f", missingval="-")]
    if incomplete:
        lines += ["", f"incomplete runs ({len(incomplete)}): " + ", ".join(incomplete)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
