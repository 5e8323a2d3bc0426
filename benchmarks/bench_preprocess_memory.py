"""Memory of the scRNA preprocessing step by step: time, current and peak RSS after each step (issue #24).

Usage::

    .venv/bin/python benchmarks/bench_preprocess_memory.py --cells 100000      # SIMULATED counts, built first
    .venv/bin/python benchmarks/bench_preprocess_memory.py --input raw.h5ad    # any raw count h5ad

Runs :func:`geovae.preprocessing.preprocess` (modality ``rna``, default settings) once, in this
process, with the steps it calls (``qc_rna``, ``log_normalize``, ``hvg``, ``set_model_input``)
wrapped so that each prints, when it returns, the seconds since the start, the process's current
RSS (``VmRSS``) and its peak so far (``VmHWM``), both from ``/proc/self/status`` (Linux). The
whole call and the gzip-compressed ``write_h5ad`` of the result (what the preprocess rule writes)
follow. The counts of ``--cells`` are those of ``bench_pipeline_scale.py`` (simulated with the
project's simulator; labelled SIMULATED), written to a temporary file first.

A matrix of ``nnz`` stored values takes ``8 * nnz`` bytes in float32 CSR (values and int32
column indices): the printed peaks are best read in units of that size (``matrix MiB`` in the
header).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

STEPS = ("qc_rna", "log_normalize", "hvg", "set_model_input")


def memory_mib() -> tuple[float, float]:
    """Current and peak resident memory of this process (MiB), from ``/proc/self/status``.

    Returns
    -------
    tuple of float
        ``(VmRSS, VmHWM)`` in MiB.
    """
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


def traced(name: str, func: Callable[..., Any], start: float, rows: list[dict[str, Any]]) -> Callable[..., Any]:
    """``func`` that records (and prints) the time and memory when it returns."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        record(name, start, rows)
        return result

    return wrapper


def record(name: str, start: float, rows: list[dict[str, Any]]) -> None:
    """Append and print one row: step, seconds since ``start``, current and peak RSS (MiB)."""
    rss, peak = memory_mib()
    rows.append({"step": name, "seconds": time.perf_counter() - start, "rss_mib": rss, "peak_mib": peak})
    print(f"| {name} | {rows[-1]['seconds']:.1f} | {rss:,.0f} | {peak:,.0f} |", flush=True)


def run(path: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Preprocess the raw counts in ``path`` with every step traced; return the rows printed.

    Parameters
    ----------
    path
        Raw count h5ad.
    out_dir
        Folder of the written result (deleted by the caller).

    Returns
    -------
    list of dict
        ``step``, ``seconds``, ``rss_mib``, ``peak_mib``.
    """
    import anndata as ad

    from geovae.preprocessing import preprocess, rna

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    raw = ad.read_h5ad(path)
    print(f"one float32 CSR matrix of these counts: {8 * raw.X.nnz / 2**20:,.0f} MiB\n"
          "| step | s | RSS MiB | peak MiB |\n|---|---|---|---|", flush=True)
    record(f"read ({raw.n_obs:,} x {raw.n_vars:,}, {raw.X.nnz / 1e6:.0f}M stored values)", start, rows)
    originals = {name: getattr(rna, name) for name in STEPS}
    try:
        for name, func in originals.items():
            setattr(rna, name, traced(name, func, start, rows))
        out = preprocess(raw, modality="rna")
    finally:
        for name, func in originals.items():
            setattr(rna, name, func)
    record("preprocess (whole call)", start, rows)
    out.write_h5ad(out_dir / "preprocessed.h5ad", compression="gzip")
    record("write_h5ad (gzip)", start, rows)
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Parse the arguments, build the data when asked, print the table; return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="raw count h5ad")
    source.add_argument("--cells", type=int, help="build SIMULATED counts of this many cells")
    parser.add_argument("--genes", type=int, default=2000, help="genes of the simulated counts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_pp_memory_") as tmp:
        path = args.input
        if path is None:
            from bench_pipeline_scale import build_in_subprocess

            path = Path(tmp) / "raw.h5ad"
            built = build_in_subprocess(args.cells, args.genes, path, seed=0)  # its memory is not this process's
            print(f"built SIMULATED counts: {built['n_cells']:,} x {built['n_genes']:,}, "
                  f"{100 * built['density']:.1f} % non-zero")
        return run(path, Path(tmp))


if __name__ == "__main__":
    main()
