"""Wall time per Snakemake rule, from the workflow's ``benchmark:`` files (issue #10).

Usage::

    .venv/bin/python benchmarks/bench_pipeline.py [--logs logs/benchmarks] [--by rule|job]
        [--run "snakemake -c2 --configfile config/config.yaml"] [--quick]

Every rule writes ``logs/benchmarks/<rule>/<wildcards...>.tsv`` (Snakemake's ``benchmark:``
directive: ``s``, ``h:m:s``, ``max_rss`` MiB, ..., ``cpu_time``; one row per repeat). This
script reads them all and prints, per rule (``--by rule``) or per job (``--by job``): number
of jobs, summed wall seconds, summed CPU seconds, the largest ``max_rss``, and the share of the
total; then the total wall seconds summed over jobs (the serial cost of the pipeline: with
several cores the elapsed time is shorter) and the elapsed span when ``--run`` timed one.

``--run CMD`` first runs ``CMD`` (e.g. a Snakemake invocation; it is split like a shell
command line, without a shell) and reports its elapsed wall time next to the per-rule table;
the workflow only writes benchmark files for the jobs it ran, so run it on a clean
``results/`` for a full picture. ``--quick`` only changes the default ``--run`` to nothing
(parse what is there).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_benchmarks(logs: Path) -> list[dict[str, object]]:
    """One record per benchmark file: rule, job (path below the rule), s, cpu_time, max_rss.

    A file with several rows (``benchmark: repeat(...)``) contributes its mean.

    Raises
    ------
    FileNotFoundError
        If ``logs`` does not exist.
    ValueError
        If a file lacks the ``s`` column (names the file).
    """
    if not logs.is_dir():
        raise FileNotFoundError(f"{logs} not found: run the workflow first (its rules write benchmark: files there)")
    records = []
    for path in sorted(logs.rglob("*.tsv")):
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        if "s" not in rows[0]:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column; columns {list(rows[0])})")

        def mean(key: str) -> float:
            values = [float(r[key]) for r in rows if r.get(key) not in (None, "", "NA", "-")]
            return sum(values) / len(values) if values else float("nan")

        rel = path.relative_to(logs)
        records.append({"rule": rel.parts[0] if len(rel.parts) > 1 else rel.stem,
                        "job": str(rel.with_suffix("")), "s": mean("s"),
                        "cpu_time": mean("cpu_time"), "max_rss": mean("max_rss")})
    return records


def summarise(records: list[dict[str, object]], by: str) -> list[dict[str, object]]:
    """Aggregate records per ``rule`` or per ``job``, sorted by wall seconds (largest first)."""
    groups: dict[str, list[dict[str, object]]] = defaultdict(list)
    for rec in records:
        groups[str(rec[by])].append(rec)
    rows = []
    for key, recs in groups.items():
        rows.append({"name": key, "jobs": len(recs), "s": sum(float(r["s"]) for r in recs),
                     "cpu_time": sum(float(r["cpu_time"]) for r in recs if r["cpu_time"] == r["cpu_time"]),
                     "max_rss": max(float(r["max_rss"]) for r in recs)})
    return sorted(rows, key=lambda r: -float(r["s"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=ROOT / "logs" / "benchmarks")
    parser.add_argument("--by", choices=["rule", "job"], default="rule")
    parser.add_argument("--run", default=None, help="command to run (and time) first, e.g. a snakemake call")
    parser.add_argument("--quick", action="store_true", help="only parse existing benchmark files")
    args = parser.parse_args(argv)

    elapsed = None
    if args.run and not args.quick:
        t0 = time.perf_counter()
        proc = subprocess.run(shlex.split(args.run), cwd=ROOT)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"[warn] {args.run!r} exited with {proc.returncode}", file=sys.stderr)
    try:
        records = read_benchmarks(args.logs)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(str(exc))
    rows = summarise(records, args.by)
    total = sum(float(r["s"]) for r in rows)
    width = max([len(str(r["name"])) for r in rows] + [10])
    print(f"{args.by:<{width}} {'jobs':>5} {'wall s':>9} {'cpu s':>9} {'max RSS MiB':>12} {'share':>6}")
    for r in rows:
        share = 100 * float(r["s"]) / total if total else 0.0
        print(f"{r['name']:<{width}} {r['jobs']:>5} {r['s']:>9.1f} {r['cpu_time']:>9.1f} "
              f"{r['max_rss']:>12.0f} {share:>5.1f}%")
    print(f"{'total':<{width}} {len(records):>5} {total:>9.1f}   (wall seconds summed over jobs)")
    if elapsed is not None:
        print(f"elapsed wall time of {args.run!r}: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
