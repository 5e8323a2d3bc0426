#!/usr/bin/env python
"""Seeded benchmark on real labelled scRNA-seq data: LiVAE against its variants and baselines (issue #23).

Datasets: the built-in ``pbmc68k`` (labels ``obs["bulk_labels"]``) and the two real count matrices of
``../shared/data/real/`` (``human_kidney_top2000.h5ad``, ``cbmc_citeseq_top2000.h5ad``; labels
``obs["cell_type_id"]``). A missing file is reported and skipped. Every set goes through the pipeline's own
preprocessing (``geovae.preprocessing.preprocess_rna``, behind ``geovae.pp.preprocess_rna``, with the
package defaults) and every model is trained with the pipeline's training defaults
(``geovae.options.TrainingConfig``: its epoch cap, early stopping) through ``geovae.tl.embed``; the UMAP
is the pipeline's (``geovae.tl.umap``, the run's seed).

Models: ``livae`` (the paper's squared Lorentz distance, the default), ``livae_unsquared``
(``lorentz_squared=False``, the authors' code), ``vae`` (no bottleneck, no Lorentz term: the paper's
ablation), ``betavae``, ``sivae``, ``pca`` and ``scvi`` (only when scvi-tools is importable).

Per dataset, model and seed (metrics from ``geovae.metrics.evaluate`` with the pipeline's metric settings):
NMI / ARI of KMeans (k = number of labels) and of Leiden, kNN accuracy, ASW, DC / Q_local / Q_global of the
UMAP (against the latent), the same three of the latent against the preprocessed expression (``*_latent``,
``geovae.metrics.fidelity.embedding_fidelity`` on the pipeline's seeded subsample), noise resilience, the
wall seconds of training (``train_seconds``, fit + encoding) and the epochs trained. Paired tests of LiVAE
against every other model (``geovae.metrics.statistics.paired_comparison``, one pair per (dataset, seed)),
the paper's Table 1 directions (LiVAE > VAE on DC_umap, Q_global_umap, noise_resilience) and the Lorentz
distance rule of issue #23 (squared vs unsquared), each as a two-model paired test.

Outputs under ``--out``: ``realdata_long.tsv`` (dataset, model, seed, metric, value, category),
``realdata_summary.tsv`` (mean, sd, n over seeds), ``realdata_paired.tsv``, ``realdata_table1.tsv``,
``realdata_lorentz_rule.tsv``, ``realdata_report.md`` (everything printed) and ``realdata.png``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_realdata.py                 # full: 3 sets, every model, seeds 0-4 (hours)
    .venv/bin/python benchmarks/bench_realdata.py --quick         # under 10 min on 2 cores (see --help)
    .venv/bin/python benchmarks/bench_realdata.py --smoke --out /tmp/realdata   # seconds: the test's mode
    .venv/bin/python benchmarks/bench_realdata.py --datasets pbmc68k,human_kidney --models livae,vae \\
        --seeds 0,1,2 --data-dir ../shared/data/real --resume
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "realdata"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a benchmark dataset comes from and which ``obs`` column holds its labels."""

    source: str  # "builtin" name or a file name under --data-dir
    label_key: str
    builtin: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "pbmc68k": DatasetSpec("pbmc68k", "bulk_labels", builtin=True),
    "human_kidney": DatasetSpec("human_kidney_top2000.h5ad", "cell_type_id"),
    "cbmc_citeseq": DatasetSpec("cbmc_citeseq_top2000.h5ad", "cell_type_id"),
}

#: Benchmark name -> (registry model, parameters that differ from the model's defaults).
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "livae": ("livae", {}),
    "livae_unsquared": ("livae", {"lorentz_squared": False}),
    "vae": ("vae", {}),
    "betavae": ("betavae", {}),
    "sivae": ("sivae", {}),
    "pca": ("pca", {}),
    "scvi": ("scvi", {}),
    # issue #23's trade-off curve: the Lorentz weight with the bottleneck on (livae is 10, the paper's)
    "livae_lw0": ("livae", {"lorentz_weight": 0.0}),
    "livae_lw1": ("livae", {"lorentz_weight": 1.0}),
    "livae_lw3": ("livae", {"lorentz_weight": 3.0}),
    "livae_lw30": ("livae", {"lorentz_weight": 30.0}),
    # training variants (options in MODEL_TRAIN): why clustering falls with training length (bench_epochs.py)
    "livae_eps": ("livae", {}),
    "livae_lr3e-4": ("livae", {}),
    # early stopping on any improvement (min_rel_delta 0: the default before 2026-12-07, issue #24)
    "livae_rel0": ("livae", {}),
    # model-input variant (options in MODEL_INPUT): what the z-scoring and clipping of the input cost
    "livae_noscale": ("livae", {}),
    # size variants: the latent (paper 10) and the bottleneck (paper 2)
    "livae_latent20": ("livae", {"latent_dim": 20}),
    "livae_bottleneck8": ("livae", {"bottleneck_dim": 8}),
    # siVAE with a tenth of the KL weight: prevents most of its posterior collapse on the SIMULATED sim_atac
    "sivae_beta0.1": ("sivae", {"beta_kl": 0.1}),
}
#: Training options of a benchmark model beyond the pipeline's (Adam eps 0.01 is scvi-tools' setting).
MODEL_TRAIN: dict[str, dict[str, Any]] = {"livae_eps": {"adam_eps": 0.01}, "livae_lr3e-4": {"lr": 3e-4},
                                        "livae_rel0": {"min_rel_delta": 0.0}}
#: Model-input recipe of a benchmark model beyond the pipeline's (``set_model_input``'s ``center_scale``, ``clip``).
MODEL_INPUT: dict[str, dict[str, Any]] = {"livae_noscale": {"center_scale": False, "clip": None}}
#: Models that differ from livae by one training, input or size option, tested against it (not in the zoo run).
VARIANTS = [*MODEL_TRAIN, *MODEL_INPUT, "livae_latent20", "livae_bottleneck8"]
#: Models run on demand only: the variants and the other models' own variants.
NOT_IN_FULL = [*VARIANTS, "sivae_beta0.1"]
REFERENCE = "livae"
#: The trade-off curve, in order: model -> Lorentz weight (None: no bottleneck path, the paper's VAE ablation).
TRADEOFF: dict[str, float | None] = {"vae": None, "livae_lw0": 0.0, "livae_lw1": 1.0, "livae_lw3": 3.0,
                                     "livae": 10.0, "livae_lw30": 30.0}
#: The two sides of the trade-off (what a user picking cell types vs global structure looks at).
TRADEOFF_CLUSTERING = ["NMI", "ARI", "NMI_leiden", "kNN_accuracy"]
TRADEOFF_GEOMETRY = ["DC_umap", "Q_global_umap", "noise_resilience"]

#: Metrics of the printed tables and the figure (all of ``evaluate``'s go to the TSVs).
HEADLINE = ["NMI", "ARI", "NMI_leiden", "ARI_leiden", "kNN_accuracy", "ASW", "DC_umap", "Q_local_umap",
            "Q_global_umap", "DC_latent", "Q_local_latent", "Q_global_latent", "noise_resilience", "train_seconds",
            "n_epochs"]
#: The paper's Table 1 claims checked on real data: LiVAE higher than its ablation VAE.
TABLE1 = ["DC_umap", "Q_global_umap", "noise_resilience"]
#: Issue #23's rule for the Lorentz distance: clustering must improve, geometry must not get worse.
RULE_CLUSTERING, RULE_GEOMETRY = ["NMI", "ARI"], ["DC_umap", "Q_global_umap", "noise_resilience"]
#: The latent-vs-expression fidelity metrics: names the project's glossary does not know (see paired_tests).
LATENT_FIDELITY = {"DC_latent": "DC", "Q_local_latent": "Q_local", "Q_global_latent": "Q_global"}

#: What --quick and --smoke change (explicit flags still win).
FULL = {"datasets": list(DATASETS),
        "models": [m for m in MODELS if (m not in TRADEOFF or m in ("livae", "vae")) and m not in NOT_IN_FULL],
        "seeds": [0, 1, 2, 3, 4], "max_epochs": None, "max_cells": None}
TRADEOFF_MODE = {"models": list(TRADEOFF), "seeds": [0, 1, 2]}
QUICK = {"models": ["livae", "livae_unsquared", "vae", "betavae", "pca"], "seeds": [0, 1], "max_epochs": 20,
         "max_cells": 800}
SMOKE = {**QUICK, "datasets": ["pbmc68k"], "models": ["livae", "vae"], "seeds": [0], "max_epochs": 2}
QUICK_HELP = (f"quick mode (< 10 min on 2 cores): models {','.join(QUICK['models'])} (siVAE, three "
              f"training phases and by far the slowest, and scVI left out), seeds {QUICK['seeds']}, at most "
              f"{QUICK['max_epochs']} epochs (early stopping still on), a seeded subsample of {QUICK['max_cells']} "
              "cells per dataset before preprocessing; the numbers are NOT comparable to the full run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options, with the defaults of the chosen mode (full, ``--quick`` or ``--smoke``) filled in.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        ``datasets``, ``models``, ``seeds`` as lists; ``max_epochs``/``max_cells`` None when not capped.
    """
    from geovae.options import TrainingConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", help=f"comma-separated, of {','.join(DATASETS)} (default: all)")
    p.add_argument("--models", help=f"comma-separated benchmark names {','.join(MODELS)} or any registry "
                   "model (default: all; scvi only when scvi-tools is importable)")
    p.add_argument("--seeds", help="comma-separated (default 0,1,2,3,4)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="folder of the real .h5ad files (default: shared/data/real beside the repository)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default benchmarks/results/realdata)")
    p.add_argument("--threads", type=int, default=2, help="torch threads and the metrics' BLAS/OpenMP threads")
    p.add_argument("--device", default=None, help="training device (default: the pipeline's, auto)")
    p.add_argument("--max-epochs", type=int, help=f"epoch cap (default: the pipeline's, {TrainingConfig().max_epochs})")
    p.add_argument("--max-cells", type=int, help="seeded subsample of cells per dataset (default: all)")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out's long table")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: report on the runs already in --out's long table (of --models, --seeds)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=QUICK_HELP)
    mode.add_argument("--smoke", action="store_true",
                      help="tiny end-to-end check (tests): pbmc68k, livae and vae, seed 0, 2 epochs")
    mode.add_argument("--tradeoff", action="store_true",
                      help=f"the Lorentz-weight trade-off curve: models {','.join(TRADEOFF)} (weights "
                      f"{[w for w in TRADEOFF.values() if w is not None]}, vae without bottleneck), seeds "
                      f"{TRADEOFF_MODE['seeds']}, full data and training; --resume into the full run's --out "
                      "reuses its livae and vae runs")
    args = p.parse_args(argv)
    defaults = {**FULL, **(QUICK if args.quick else {}), **(SMOKE if args.smoke else {}),
                **(TRADEOFF_MODE if args.tradeoff else {})}
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "tradeoff" if args.tradeoff else "full"
    for key in ("datasets", "models", "seeds"):
        given = getattr(args, key)
        setattr(args, key, [s.strip() for s in given.split(",") if s.strip()] if given else list(defaults[key]))
    args.seeds = [int(s) for s in args.seeds]
    for key in ("max_epochs", "max_cells"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; known: {list(DATASETS)}")
    return args


def resolve_models(names: list[str], trains: bool = True) -> dict[str, tuple[str, dict[str, Any]]]:
    """Benchmark name -> (registry model, params); scVI dropped, with a printed reason, without scvi-tools.

    Parameters
    ----------
    names
        Benchmark names (:data:`MODELS`) or registry names.
    trains
        False (``--report-only``): nothing is trained, so scVI's runs are reported without scvi-tools.

    Returns
    -------
    dict
        The runnable models, in the order given.
    """
    from geovae.models import REGISTRY

    resolved = {}
    for name in names:
        model, params = MODELS.get(name, (name, {}))
        if model not in REGISTRY:
            raise SystemExit(f"unknown model {name!r}; benchmark names {list(MODELS)}, registry {sorted(REGISTRY)}")
        if model == "scvi" and trains:
            try:
                from geovae.models.scvi_models import import_scvi
                import_scvi("scvi")
            except ImportError as err:
                print(f"[skip] {name}: {err}")
                continue
        resolved[name] = (model, params)
    return resolved


def load_dataset(name: str, data_dir: Path, max_cells: int | None):
    """Raw data of one benchmark set, subsampled when asked, preprocessed by the pipeline's defaults.

    Parameters
    ----------
    name
        Key of :data:`DATASETS`.
    data_dir
        Folder of the real files.
    max_cells
        Seeded subsample of the raw cells (seed 0, the same cells for every model and seed); None: all.

    Returns
    -------
    anndata.AnnData or None
        Preprocessed data with the labels as strings in ``obs["label"]``; None (printed) when the file is missing.
    """
    import anndata as ad

    from geovae.data.builtin import load_builtin
    from geovae.metrics.fidelity import subsample_indices
    # the function the pipeline's preprocess rule runs (returns a new AnnData; geovae.pp's verb wraps it)
    from geovae.preprocessing import preprocess_rna

    spec = DATASETS[name]
    if spec.builtin:
        raw = load_builtin(spec.source)
    else:
        path = data_dir / spec.source
        if not path.exists():
            print(f"[skip] {name}: {path} not found (set --data-dir; ../shared/data/real/README.md)")
            return None
        raw = ad.read_h5ad(path)
    if max_cells is not None and raw.n_obs > max_cells:
        raw = raw[subsample_indices(raw.n_obs, max_cells, seed=0)].copy()
    data = preprocess_rna(raw)
    data.obs["label"] = data.obs[spec.label_key].astype(str).astype("category")
    print(f"{name}: {raw.n_obs} cells in, {data.n_obs} x {data.n_vars} after preprocessing, "
          f"{data.obs['label'].nunique()} labels ({spec.label_key})", flush=True)
    return data


def expression_reference(data, threads: int):
    """The seeded fidelity subsample of the pipeline's metrics and the neighbourhoods of its expression.

    The latent's DC / Q_local / Q_global are scored against the preprocessed (log-normalised HVG)
    expression ``data.X`` of the same cells :func:`geovae.metrics.evaluate` uses for the UMAP's.

    Parameters
    ----------
    data
        Preprocessed AnnData.
    threads
        Threads of the ranking.

    Returns
    -------
    tuple
        ``(indices, LatentNeighbourhood)``; one per dataset, reused for every model and seed.
    """
    import scipy.sparse as sp

    from geovae.metrics.fidelity import LatentNeighbourhood, subsample_indices
    from geovae.options import METRICS

    idx = subsample_indices(data.n_obs, METRICS.n_subsample or None, METRICS.seed)
    X = data.X[idx]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return idx, LatentNeighbourhood(X.astype(np.float64), n_jobs=threads)


def run_one(data, model: str, params: dict[str, Any], seed: int, train: dict[str, Any], reference,
            threads: int, model_input: dict[str, Any] | None = None) -> pd.DataFrame:
    """Train one model with one seed, embed with UMAP and score it.

    Parameters
    ----------
    data
        Preprocessed AnnData (copied, not modified).
    model, params
        Registry model and its non-default parameters.
    seed
        Seed of the training and of the UMAP (as the pipeline's run seed).
    train
        Training options beyond the defaults (``progress_bar``, the epoch cap in the quick modes).
    reference
        ``(indices, LatentNeighbourhood)`` of :func:`expression_reference`.
    threads
        Limit of BLAS/OpenMP threads in the metrics.
    model_input
        A model-input recipe other than the preprocessing's (``center_scale``, ``clip``).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, value, category``.
    """
    import geovae
    from geovae.metrics.fidelity import embedding_fidelity
    from geovae.options import METRICS

    adata = data.copy()
    if model_input:
        from geovae.preprocessing.input import set_model_input
        set_model_input(adata, adata.uns["geovae_input"]["modality"], **model_input)
    start = time.perf_counter()
    instance = geovae.tl.embed(adata, model=model, key_added="X_latent", params=params, train=train, seed=seed)
    seconds = time.perf_counter() - start
    geovae.tl.umap(adata, use_rep="X_latent", seed=seed)
    table = geovae.metrics.evaluate(adata, latent_key="X_latent", label_key="label", embedding_keys={"umap": "X_umap"},
                                    n_subsample=METRICS.n_subsample or None, seed=METRICS.seed, mode=METRICS.mode,
                                    n_jobs=threads)
    idx, neighbourhood = reference
    latent = embedding_fidelity(None, np.asarray(adata.obsm["X_latent"], dtype=np.float64)[idx], latent=neighbourhood)
    extra = [(f"{base}_latent", latent[base], "latent") for base in LATENT_FIDELITY.values()]
    extra += [("train_seconds", seconds, "time"),
              ("n_epochs", float(instance.metadata.get("n_epochs", np.nan)), "time")]
    return pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof 1; NaN for one seed) and number of seeds per dataset, model and metric.

    Parameters
    ----------
    long
        Columns ``dataset, model, seed, metric, value``.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, model, metric, mean, sd, n``.
    """
    grouped = long.groupby(["dataset", "model", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", sd="std", n="count").reset_index()


def markdown_tables(summary: pd.DataFrame, metrics: list[str], models: list[str]) -> str:
    """One Markdown table per dataset: models x metrics, ``mean ± sd`` over seeds.

    Parameters
    ----------
    summary
        Output of :func:`summarise`.
    metrics
        Columns, in order (absent ones are left out).
    models
        Rows, in order.

    Returns
    -------
    str
    """
    blocks = []
    for dataset, sub in summary.groupby("dataset", sort=False):
        cols = [m for m in metrics if m in set(sub["metric"])]
        cell = {(r.model, r.metric): _mean_sd(r.mean, r.sd, r.metric) for r in sub.itertuples()}
        lines = [f"### {dataset} (mean ± sd over seeds; n = {int(sub['n'].max())})", "",
                 "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for model in [m for m in models if m in set(sub["model"])]:
            lines.append(f"| {model} | " + " | ".join(cell.get((model, c), "-") for c in cols) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _mean_sd(mean: float, sd: float, metric: str) -> str:
    digits = {"train_seconds": 1, "n_epochs": 0}.get(metric, 3)
    return f"{mean:.{digits}f}" + ("" if pd.isna(sd) else f" ± {sd:.{digits}f}")


def by_unit(long: pd.DataFrame) -> pd.DataFrame:
    """The long table with one pairing unit per (dataset, seed): ``dataset`` becomes ``dataset/seed``.

    :func:`geovae.metrics.statistics.paired_comparison` pairs models over datasets after averaging
    seeds; with this relabelling it pairs them over (dataset, seed) instead.
    """
    units = long.assign(dataset=long["dataset"] + "/" + long["seed"].astype(str), seed=0)
    return units


def paired_tests(long: pd.DataFrame, reference: str = REFERENCE, metrics: list[str] | None = None) -> pd.DataFrame:
    """The project's paired comparison of ``reference`` against every other model, over (dataset, seed).

    The glossary of :mod:`geovae.metrics.glossary` gives a direction only to the bare names and their
    ``_umap``/``_tsne`` suffixes, so the ``*_latent`` metrics are tested under their base names and
    renamed back; ``train_seconds`` and ``n_epochs`` have no direction and are not tested.

    Parameters
    ----------
    long
        Columns ``dataset, model, seed, metric, value, category``.
    reference
        Model compared against all others (differences are ``reference - comparator``).
    metrics
        Metrics to test (default: all ranked ones).

    Returns
    -------
    pandas.DataFrame
        :data:`geovae.metrics.statistics.COMPARISON_COLUMNS`; empty when the reference did not run.
    """
    from geovae.metrics.statistics import COMPARISON_COLUMNS, paired_comparison

    units = by_unit(long if metrics is None else long[long["metric"].isin(metrics)])
    if reference not in set(units["model"]) or units["model"].nunique() < 2:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    latent = units["metric"].isin(list(LATENT_FIDELITY))
    parts = [pd.DataFrame(columns=COMPARISON_COLUMNS)]
    if (~latent).any():
        parts.append(paired_comparison(units[~latent], reference=reference))
    if latent.any():
        renamed = units[latent].assign(metric=units.loc[latent, "metric"].map(LATENT_FIDELITY))
        back = {base: name for name, base in LATENT_FIDELITY.items()}
        parts.append(paired_comparison(renamed, reference=reference).assign(
            metric=lambda t: t["metric"].map(back), category="latent"))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COMPARISON_COLUMNS)


def partial_models(long: pd.DataFrame, reference: str = REFERENCE) -> list[str]:
    """Models of ``long`` missing some of the (dataset, seed) units ``reference`` ran.

    The project's comparison of several models pairs them on the units all of them ran, so one such
    model would shrink every comparison to its units; :func:`report` compares them alone instead.

    Parameters
    ----------
    long
        Columns ``dataset, model, seed, ...``.
    reference
        The model whose units count as complete.

    Returns
    -------
    list of str
        The incomplete models, in the order they first appear.
    """
    ran = {model: set(zip(t["dataset"], t["seed"])) for model, t in long.groupby("model", sort=False)}
    if reference not in ran:
        return []
    return [model for model, got in ran.items() if model != reference and not ran[reference] <= got]


def two_model_tests(long: pd.DataFrame, first: str, second: str, metrics: list[str]) -> pd.DataFrame:
    """``first`` against ``second`` alone on ``metrics``, paired over (dataset, seed), with the project's tests.

    Parameters
    ----------
    long
        Columns ``dataset, model, seed, metric, value, category``.
    first, second
        Models; differences are ``first - second``.
    metrics
        Metrics to compare.

    Returns
    -------
    pandas.DataFrame
        Per metric: both means, ``mean_difference``, ``wins`` (units where ``first`` is higher) of
        ``n_units``, ``p_value``, the test used and its note.
    """
    pair = long[long["model"].isin([first, second]) & long["metric"].isin(metrics)]
    tests = paired_tests(pair, reference=first).set_index("metric") if not pair.empty else pd.DataFrame()
    rows = []
    for metric in metrics:
        wide = by_unit(pair[pair["metric"] == metric]).pivot_table(index="dataset", columns="model", values="value")
        wide = wide.dropna() if {first, second} <= set(wide.columns) else pd.DataFrame(columns=[first, second])
        test = tests.loc[metric] if metric in tests.index else pd.Series(dtype=object)
        rows.append({"metric": metric, f"{first}_mean": wide[first].mean(), f"{second}_mean": wide[second].mean(),
                     "mean_difference": test.get("mean_difference", np.nan),
                     "wins": int((wide[first] > wide[second]).sum()), "n_units": len(wide),
                     "p_value": test.get("p_value", np.nan), "test": test.get("posthoc_test", ""),
                     "note": test.get("note", "" if len(wide) else "no paired results")})
    table = pd.DataFrame(rows)
    table[["test", "note"]] = table[["test", "note"]].fillna("")
    return table


def verdict(difference: float, p_value: float, note: str = "") -> str:
    """Whether "first > second" reproduces: ``yes`` (p < 0.05), ``direction only``, ``no`` or ``not tested``."""
    if note or not np.isfinite(difference):
        return "not tested"
    if difference > 0:
        return "yes" if p_value < 0.05 else "direction only (p >= 0.05)"
    return "no, reversed (p < 0.05)" if p_value < 0.05 else "no (p >= 0.05)"


def table1_directions(long: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 directions on this data: LiVAE > VAE on :data:`TABLE1`, with a verdict each."""
    table = two_model_tests(long, REFERENCE, "vae", TABLE1)
    table["reproduces"] = [verdict(d, p, n) for d, p, n in zip(table["mean_difference"], table["p_value"],
                                                                table["note"])]
    return table


def lorentz_rule(long: pd.DataFrame, other: str = "livae_unsquared") -> tuple[pd.DataFrame, str]:
    """Issue #23's rule for the default Lorentz distance, evaluated on this run.

    The default (squared) changes only if ``other`` is higher on mean NMI and mean ARI with p < 0.05 and
    not significantly lower (p < 0.05) on any geometry metric of :data:`RULE_GEOMETRY`.

    Returns
    -------
    tuple
        The per-metric table (``other - livae``) and a one-line decision.
    """
    if not {other, REFERENCE} <= set(long["model"]):
        return pd.DataFrame(), f"rule not evaluated: {other} or {REFERENCE} did not run"
    table = two_model_tests(long, other, REFERENCE, RULE_CLUSTERING + RULE_GEOMETRY)
    if table.empty or table["note"].astype(bool).any():
        return table, f"rule not evaluated: {other} and {REFERENCE} need >= 3 paired (dataset, seed) units"
    by = table.set_index("metric")
    better = all(by.loc[m, "mean_difference"] > 0 and by.loc[m, "p_value"] < 0.05 for m in RULE_CLUSTERING)
    worse = [m for m in RULE_GEOMETRY if by.loc[m, "mean_difference"] < 0 and by.loc[m, "p_value"] < 0.05]
    if better and not worse:
        return table, f"rule met: {other} clusters better (NMI, ARI, p < 0.05) and is no worse on geometry"
    reason = "geometry worse on " + ", ".join(worse) if better else "not better on both NMI and ARI with p < 0.05"
    return table, f"rule not met ({reason}): the default stays {REFERENCE} (squared)"


def tradeoff_table(long: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """The Lorentz-weight trade-off: each :data:`TRADEOFF` model against ``reference`` on both sides.

    Only the (dataset, seed) units every trade-off model ran are used, so each point of the curve is
    averaged over the same runs.

    Parameters
    ----------
    long
        Columns ``dataset, model, seed, metric, value, category``.
    reference
        The default the others are tested against (paired over units, the project's tests).

    Returns
    -------
    pandas.DataFrame
        Per model and metric of :data:`TRADEOFF_CLUSTERING` + :data:`TRADEOFF_GEOMETRY`: ``lorentz_weight``
        (NaN: no bottleneck), ``side``, ``mean``, ``sd`` over units, ``difference`` to ``reference``,
        ``p_value``, ``wins`` of ``n_units``; empty when fewer than two trade-off models ran.
    """
    metrics = TRADEOFF_CLUSTERING + TRADEOFF_GEOMETRY
    present = [m for m in TRADEOFF if m in set(long["model"])]
    columns = ["model", "lorentz_weight", "side", "metric", "mean", "sd", "difference", "p_value", "wins", "n_units"]
    if len(present) < 2 or reference not in present:
        return pd.DataFrame(columns=columns)
    sub = long[long["model"].isin(present) & long["metric"].isin(metrics)]
    ran = sub.groupby(["dataset", "seed"])["model"].nunique()
    common = ran[ran == len(present)].index
    sub = sub.set_index(["dataset", "seed"]).loc[lambda t: t.index.isin(common)].reset_index()
    rows = []
    for model in present:
        tests = (two_model_tests(sub, model, reference, metrics).set_index("metric") if model != reference
                 else pd.DataFrame())
        for metric in metrics:
            values = sub.loc[(sub["model"] == model) & (sub["metric"] == metric), "value"]
            test = tests.loc[metric] if metric in tests.index else pd.Series(dtype=object)
            rows.append({"model": model, "lorentz_weight": TRADEOFF[model] if TRADEOFF[model] is not None else np.nan,
                         "side": "clustering" if metric in TRADEOFF_CLUSTERING else "geometry", "metric": metric,
                         "mean": values.mean(), "sd": values.std(), "difference": test.get("mean_difference", 0.0),
                         "p_value": test.get("p_value", np.nan), "wins": test.get("wins", np.nan),
                         "n_units": len(values)})
    return pd.DataFrame(rows, columns=columns)


def tradeoff_verdicts(table: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Issue #23's reading of the curve, per model against ``reference``.

    ``better default``: higher NMI and ARI (p < 0.05) and no geometry metric significantly lower;
    ``trade``: clustering significantly better on NMI or ARI and geometry significantly worse (a preset,
    not a default); ``no clustering gain``: neither NMI nor ARI significantly higher.
    """
    rows = []
    for model, sub in table[table["model"] != reference].groupby("model", sort=False):
        by = sub.set_index("metric")
        up = [m for m in ("NMI", "ARI") if by.loc[m, "difference"] > 0 and by.loc[m, "p_value"] < 0.05]
        down = [m for m in TRADEOFF_GEOMETRY if by.loc[m, "difference"] < 0 and by.loc[m, "p_value"] < 0.05]
        verdict_ = ("better default" if len(up) == 2 and not down else "trade" if up and down
                    else "clustering better, geometry not worse (one of NMI/ARI)" if up
                    else "no clustering gain")
        rows.append({"model": model, "clustering_up": ",".join(up), "geometry_down": ",".join(down),
                     "verdict": verdict_})
    return pd.DataFrame(rows, columns=["model", "clustering_up", "geometry_down", "verdict"])


def training_variant_tests(long: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Each variant of :data:`VARIANTS` (training or model input) that ran against ``reference``, paired over units.

    Returns
    -------
    pandas.DataFrame
        Per variant and metric (:data:`TRADEOFF_CLUSTERING` + :data:`TRADEOFF_GEOMETRY`): both means,
        ``difference``, ``p_value``, ``wins`` of ``n_units``; with :func:`tradeoff_verdicts` it reads like the
        trade-off curve. Empty when none ran.
    """
    metrics = TRADEOFF_CLUSTERING + TRADEOFF_GEOMETRY
    parts = []
    for model in [m for m in VARIANTS if m in set(long["model"])]:
        table = two_model_tests(long, model, reference, metrics)
        parts.append(table.rename(columns={f"{model}_mean": "mean", f"{reference}_mean": "reference_mean",
                                           "mean_difference": "difference"}).assign(model=model))
    columns = ["model", "metric", "mean", "reference_mean", "difference", "p_value", "wins", "n_units", "test", "note"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def tradeoff_markdown(table: pd.DataFrame) -> str:
    """Models x metrics: ``mean (difference to livae, stars)`` over the common units."""
    from geovae.metrics.statistics import stars

    metrics = TRADEOFF_CLUSTERING + TRADEOFF_GEOMETRY
    n = int(table["n_units"].max())
    lines = [f"Mean over the {n} (dataset, seed) units every trade-off model ran; in brackets the paired "
             f"difference to {REFERENCE} (weight 10); * p<0.05, ** p<0.01, *** p<0.001.", "",
             "| model | bottleneck | Lorentz weight | " + " | ".join(metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    for model, sub in table.groupby("model", sort=False):
        by = sub.set_index("metric")
        weight = by["lorentz_weight"].iloc[0]
        cells = []
        for m in metrics:
            r = by.loc[m]
            cells.append(f"{r['mean']:.3f}" if model == REFERENCE else
                         f"{r['mean']:.3f} ({r['difference']:+.3f}{stars(r['p_value'])})")
        lines.append(f"| {model} | {'no' if pd.isna(weight) else 'yes'} | {'-' if pd.isna(weight) else f'{weight:g}'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_tradeoff(table: pd.DataFrame, path: Path) -> None:
    """The trade-off figure: each side's metrics against the Lorentz weight, and NMI against DC_umap.

    Parameters
    ----------
    table
        Output of :func:`tradeoff_table`.
    path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    weights = table.dropna(subset=["lorentz_weight"])
    no_bn = table[table["lorentz_weight"].isna()]
    for ax, side in zip(axes[:2], ("clustering", "geometry")):
        for i, (metric, sub) in enumerate(weights[weights["side"] == side].groupby("metric", sort=False)):
            colour = plt.get_cmap("tab10")(i)
            sub = sub.sort_values("lorentz_weight")
            ax.errorbar(sub["lorentz_weight"], sub["mean"], yerr=sub["sd"], marker="o", ms=4, capsize=2,
                        color=colour, label=metric)
            ref = no_bn[no_bn["metric"] == metric]
            if len(ref):
                ax.axhline(ref["mean"].iloc[0], color=colour, ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks([0, 1, 3, 10, 30], ["0", "1", "3", "10\n(paper)", "30"])
        ax.set_xlim(-0.3, 40)
        ax.set_xlabel("Lorentz weight (bottleneck on); dotted: no bottleneck (vae)")
        ax.set_title(f"{side} (mean ± sd over units)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[2]
    wide = table.set_index(["model", "metric"])["mean"].unstack()
    err = table.set_index(["model", "metric"])["sd"].unstack()  # NaN (no bar) with one unit
    for model in pd.unique(table["model"]):
        w = table.loc[table["model"] == model, "lorentz_weight"].iloc[0]
        ax.errorbar(wide.loc[model, "DC_umap"], wide.loc[model, "NMI"], xerr=err.loc[model, "DC_umap"],
                    yerr=err.loc[model, "NMI"], fmt="o", ms=5, capsize=2, alpha=0.8)
        ax.annotate("vae (no bottleneck)" if pd.isna(w) else f"weight {w:g}", (wide.loc[model, "DC_umap"],
                    wide.loc[model, "NMI"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("UMAP distance correlation (global geometry)")
    ax.set_ylabel("KMeans NMI (cell types)")
    ax.set_title("the trade-off", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_summary(long: pd.DataFrame, metrics: list[str], models: list[str], path: Path) -> None:
    """One panel per metric: every seed as a point, mean ± sd per model, datasets side by side.

    Parameters
    ----------
    long
        Columns ``dataset, model, seed, metric, value``.
    metrics, models
        Panels and x positions, in order.
    path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if m in set(long["metric"])]
    datasets = list(pd.unique(long["dataset"]))
    ncol = 4
    nrow = max(1, -(-len(metrics) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.9 * nrow), squeeze=False)
    width = 0.8 / max(1, len(datasets))
    colours = plt.get_cmap("tab10")
    for ax, metric in zip(axes.ravel(), metrics):
        sub = long[long["metric"] == metric]
        for j, dataset in enumerate(datasets):
            for i, model in enumerate(models):
                values = sub.loc[(sub["dataset"] == dataset) & (sub["model"] == model), "value"].dropna()
                if values.empty:
                    continue
                x = i + (j - (len(datasets) - 1) / 2) * width
                ax.scatter(np.full(len(values), x), values, s=9, alpha=0.45, color=colours(j % 10), linewidths=0)
                ax.errorbar(x, values.mean(), yerr=values.std() if len(values) > 1 else None, fmt="o", ms=4,
                            color=colours(j % 10), capsize=2, label=dataset if i == 0 else None)
        ax.set_title(metric, fontsize=9)
        ax.set_xticks(range(len(models)), models, rotation=40, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(datasets), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def header(args: argparse.Namespace, models: list[str]) -> str:
    """The printed description of the run: settings, what the mode changes, versions and date."""
    import torch

    import geovae
    from geovae.options import TrainingConfig

    cfg = TrainingConfig()
    epochs = args.max_epochs or cfg.max_epochs
    lines = [f"# bench_realdata ({args.mode}), {dt.datetime.now().isoformat(timespec='seconds')}",
             f"geovae {geovae.__version__}, torch {torch.__version__}, {args.threads} thread(s), device "
             f"{args.device or cfg.device}",
             f"datasets {args.datasets}; models {models}; seeds {args.seeds}",
             f"training: pipeline defaults (max_epochs {epochs}, early_stopping {cfg.early_stopping}, patience "
             f"{cfg.patience}, lr {cfg.lr}, batch {cfg.batch_size}); preprocessing: preprocess_rna defaults",
             f"cells per dataset: {args.max_cells or 'all'}; data dir {args.data_dir}; out {args.out}"]
    if args.mode in ("quick", "smoke"):
        lines.append(f"MODE {args.mode}: " + (QUICK_HELP if args.mode == "quick" else
                                              "smoke test only, the numbers mean nothing"))
    return "\n".join(lines)


def run_all(args: argparse.Namespace, models: dict[str, tuple[str, dict[str, Any]]], long_path: Path) -> pd.DataFrame:
    """Every (dataset, model, seed) run not already in the long table; the table is rewritten after each run.

    Returns
    -------
    pandas.DataFrame
        The long table (``dataset, model, seed, metric, value, category``).
    """
    columns = ["dataset", "model", "seed", "metric", "value", "category"]
    long = pd.read_csv(long_path, sep="\t") if args.resume and long_path.exists() else pd.DataFrame(columns=columns)
    done = set(zip(long["dataset"], long["model"], long["seed"].astype(int)))
    train = {"progress_bar": False, **({"max_epochs": args.max_epochs} if args.max_epochs else {}),
             **({"device": args.device} if args.device else {})}
    for dataset in args.datasets:
        todo = [(m, s) for m in models for s in args.seeds if (dataset, m, s) not in done]
        data = load_dataset(dataset, args.data_dir, args.max_cells) if todo else None
        if data is None:
            continue
        reference = expression_reference(data, args.threads)
        for name, seed in todo:
            model, params = models[name]
            start = time.perf_counter()
            table = run_one(data, model, params, seed, {**train, **MODEL_TRAIN.get(name, {})}, reference,
                            args.threads, MODEL_INPUT.get(name))
            table.insert(0, "seed", seed)
            table.insert(0, "model", name)
            table.insert(0, "dataset", dataset)
            long = pd.concat([long, table[columns]], ignore_index=True) if len(long) else table[columns]
            long.to_csv(long_path, sep="\t", index=False, float_format="%.6g")
            get = table.set_index("metric")["value"]
            print(f"{dataset}\t{name}\tseed {seed}\tNMI {get['NMI']:.3f}\tARI {get['ARI']:.3f}\tDC_umap "
                  f"{get['DC_umap']:.3f}\tepochs {get['n_epochs']:.0f}\ttrain {get['train_seconds']:.1f} s\t"
                  f"total {time.perf_counter() - start:.1f} s", flush=True)
    return long


def report(long: pd.DataFrame, models: list[str], out: Path) -> str:
    """Write the summary, the paired tests, Table 1 and the rule; return the Markdown text printed."""
    from geovae.metrics.statistics import comparison_markdown

    summary = summarise(long)
    summary.to_csv(out / "realdata_summary.tsv", sep="\t", index=False, float_format="%.6g")
    # the comparison of the zoo leaves the curve's extra weights out (they may have run fewer seeds)
    curve_only = [m for m in TRADEOFF if m not in (REFERENCE, "vae")] + VARIANTS
    zoo = long[~long["model"].isin(curve_only)]
    partial = partial_models(zoo)
    paired = paired_tests(zoo[~zoo["model"].isin(partial)])
    paired.to_csv(out / "realdata_paired.tsv", sep="\t", index=False, float_format="%.6g")
    partial_text = ""
    if partial:
        metrics = TRADEOFF_CLUSTERING + TRADEOFF_GEOMETRY
        tables = [two_model_tests(long, REFERENCE, m, metrics).rename(columns={f"{m}_mean": "comparator_mean"})
                  .assign(comparator=m) for m in partial]
        table = pd.concat(tables, ignore_index=True)
        table = table[["comparator", *[c for c in table.columns if c != "comparator"]]]
        table.to_csv(out / "realdata_paired_partial.tsv", sep="\t", index=False, float_format="%.6g")
        partial_text = "\n".join([
            f"Models that ran on fewer (dataset, seed) units than {REFERENCE}, left out of the table above (one "
            f"comparison over all models uses only the units all of them ran) and compared alone with "
            f"{REFERENCE} over the units both ran:", "", table.to_markdown(index=False, floatfmt=".4g"), ""])
    table1 = table1_directions(long)
    table1.to_csv(out / "realdata_table1.tsv", sep="\t", index=False, float_format="%.6g")
    rule, decision = lorentz_rule(long)
    rule.to_csv(out / "realdata_lorentz_rule.tsv", sep="\t", index=False, float_format="%.6g")
    plot_summary(long, HEADLINE, models, out / "realdata.png")
    curve = tradeoff_table(long)
    curve_text = ""
    if not curve.empty:
        curve.to_csv(out / "realdata_tradeoff.tsv", sep="\t", index=False, float_format="%.6g")
        verdicts = tradeoff_verdicts(curve)
        verdicts.to_csv(out / "realdata_tradeoff_verdicts.tsv", sep="\t", index=False)
        plot_tradeoff(curve, out / "realdata_tradeoff.png")
        curve_text = "\n".join(["## The Lorentz-weight trade-off (issue #23)", "", tradeoff_markdown(curve),
                                 verdicts.to_markdown(index=False), ""])
    variants = training_variant_tests(long)
    if not variants.empty:
        variants.to_csv(out / "realdata_training_variants.tsv", sep="\t", index=False, float_format="%.6g")
        variant_verdicts = tradeoff_verdicts(variants)
        curve_text += "\n".join(["", f"## Training variants against {REFERENCE} (paired over (dataset, seed))", "",
                                  variants.to_markdown(index=False, floatfmt=".4g"), "",
                                  variant_verdicts.to_markdown(index=False), ""])
    n_units = long.groupby(["dataset", "seed"]).ngroups
    heading = [m for m in HEADLINE if m in set(long["metric"])]
    paired_text = (comparison_markdown(paired[paired["metric"].isin(heading)]) if not paired.empty
                   else "No paired comparison: livae and at least one other model are needed.\n")
    return "\n".join([
        "## Metrics", "", markdown_tables(summary, HEADLINE, models),
        f"## Paired tests, {REFERENCE} - comparator, over {n_units} (dataset, seed) units", "", paired_text,
        partial_text,
        "## The paper's Table 1 directions: livae > vae (two-model paired tests)", "",
        table1.to_markdown(index=False, floatfmt=".4g"), "",
        "## Lorentz distance rule (issue #23): livae_unsquared - livae", "",
        rule.to_markdown(index=False, floatfmt=".4g") if not rule.empty else "", "", decision, "", curve_text])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when no dataset could be run."""
    args = parse_args(argv)
    import torch

    # umap-learn says it runs single-threaded under a fixed random_state (the pipeline's choice) once per run
    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
    torch.set_num_threads(args.threads)
    models = resolve_models(args.models, trains=not args.report_only)
    args.out.mkdir(parents=True, exist_ok=True)
    text = header(args, list(models))
    print(text, flush=True)
    started = time.perf_counter()
    long_path = args.out / "realdata_long.tsv"
    if args.report_only:
        if not long_path.exists():
            raise SystemExit(f"--report-only: no runs to report, {long_path} does not exist")
        long = pd.read_csv(long_path, sep="\t")
    else:
        long = run_all(args, models, long_path)
    if long.empty:
        print("no run finished: every dataset was skipped")
        return 1
    long = long[long["model"].isin(list(models)) & long["dataset"].isin(args.datasets) & long["seed"].isin(args.seeds)]
    body = report(long, list(models), args.out)
    footer = f"wall time {time.perf_counter() - started:.0f} s; outputs in {args.out}"
    print(body + "\n" + footer)
    (args.out / "realdata_report.md").write_text(text + "\n\n" + body + "\n" + footer + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
