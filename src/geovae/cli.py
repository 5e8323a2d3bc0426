"""The ``geovae`` command line: train, evaluate, acquire, datasets, run.

Exit codes: 0 success, 1 runtime error (bad input file, failed download, invalid sheet, ...),
2 usage error (unknown option, bad ``--param``, missing ``--modality`` for raw counts).
Expected errors print one ``geovae <command>: error: ...`` line; ``--traceback`` shows the
Python traceback as well.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from geovae.options import GEO, METRICS, TRAIN, block_fields

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

#: Exceptions reported as one line (exit 1) instead of a traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, KeyError, ValueError, RuntimeError, OSError, TypeError,
)


class UsageError(Exception):
    """Bad combination of command-line arguments (exit code 2)."""


# --------------------------------------------------------------------------- helpers


def _add_option_flags(parser: argparse.ArgumentParser, path: str) -> None:
    """One ``--flag`` per option of the config block ``path`` (geovae.options), default ``None`` = not given."""
    for f in block_fields(path):
        kind = f.metadata["schema"].get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        flag = "--" + f.name.replace("_", "-")
        # argparse %-formats help texts: a literal "%" in an option's description must be doubled
        text = f"{f.metadata['help']} (default: {f.default})".replace("%", "%%")
        if "boolean" in kinds:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            convert = int if "integer" in kinds else float if "number" in kinds else str
            parser.add_argument(flag, dest=f.name, type=convert, default=None, help=text)


def parse_params(items: Sequence[str] | None, option: str = "--param") -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``10`` -> int, ``true`` -> bool).

    Parameters
    ----------
    items
        Strings such as ``"latent_dim=8"`` or ``"likelihood=zinb"``.
    option
        Option name used in error messages.

    Returns
    -------
    dict
        Parameter name -> typed value.

    Raises
    ------
    UsageError
        For an item without ``=`` or with an empty key.
    """
    import yaml

    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects key=value, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            params[key.strip()] = value
    return params


def _model_param_names(cls: type) -> list[str]:
    if hasattr(cls, "default_params"):
        return sorted(cls.default_params())
    import inspect

    return [p for p in inspect.signature(cls.__init__).parameters if p not in {"self", "adata"}]


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    text = str(exc) or type(exc).__name__
    return text.strip()


def _read_h5ad(path: str) -> Any:
    import anndata as ad

    if not Path(path).is_file():
        raise FileNotFoundError(f"input file '{path}' does not exist")
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for a non-h5ad file
        raise ValueError(f"cannot read '{path}' as .h5ad: {_error_text(exc)}") from exc


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    """``geovae train``: (preprocess,) train one model and write its run folder (as the pipeline's)."""
    from geovae import tl
    from geovae.models import get_model
    from geovae.run_folder import LATENT_FILE, write_training_outputs
    from geovae.runinfo import run_info

    try:
        cls = get_model(args.model)
    except KeyError as exc:
        raise UsageError(_error_text(exc)) from exc
    known = _model_param_names(cls)
    params = {**({"likelihood": "auto"} if "likelihood" in known else {}), **parse_params(args.param)}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UsageError(f"unknown {args.model} parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    pp_params = parse_params(args.pp_param, "--pp-param")
    out = Path(args.out)
    if (out / "model").exists() and not args.overwrite:
        raise FileExistsError(f"'{out / 'model'}' exists; pass --overwrite or choose another --out")

    adata = _read_h5ad(args.input)
    info = adata.uns.get("geovae_input")
    if info is None:  # raw counts: preprocess with the chosen modality
        if args.modality is None:
            raise UsageError(f"'{args.input}' has no uns['geovae_input'] (raw counts?); pass --modality rna|atac "
                             "to preprocess it, or give a file written by geovae.pp")
        from geovae.preprocessing import preprocess

        n_obs, n_vars = adata.n_obs, adata.n_vars
        adata = preprocess(adata, modality=args.modality, **pp_params)
        _say(args, f"preprocessed ({args.modality}): {adata.n_obs}/{n_obs} cells x {adata.n_vars}/{n_vars} features")
        out.mkdir(parents=True, exist_ok=True)
        adata.write_h5ad(out / "preprocessed.h5ad", compression="gzip")
    else:
        modality = dict(info).get("modality")
        if args.modality is not None and modality is not None and args.modality != modality:
            raise UsageError(f"'{args.input}' was preprocessed as {modality}, not {args.modality}")
        if pp_params:
            raise UsageError(f"'{args.input}' is already preprocessed; --pp-param applies to raw counts only")

    train = {f.name: getattr(args, f.name) for f in block_fields("train") if getattr(args, f.name) is not None}
    resolved = tl.resolve_params(adata, params)
    model = tl.fit_model(adata, model=args.model, params=resolved, train=train, device=args.device,
                         seed=args.seed, layer=args.layer, batch_key=args.batch_key,
                         progress_bar=not args.quiet)
    out.mkdir(parents=True, exist_ok=True)
    record = run_info(input=str(args.input), model=args.model, seed=args.seed, params=resolved, train=train,
                      training=model.metadata)
    result = write_training_outputs(model, adata, model_dir=out / "model", latent=out / LATENT_FILE,
                                   history=out / "history.tsv", info=out / "train_info.json", record=record,
                                   loss=out / "loss.png", title=f"{args.model} on {Path(args.input).name}")
    if not args.no_2d:
        tl.umap(result, use_rep="X_latent", seed=args.seed)
        tl.tsne(result, use_rep="X_latent", seed=args.seed)
    result.write_h5ad(out / "embedding.h5ad")
    _say(args, f"wrote {out}/model, {LATENT_FILE}, history.tsv, loss.png, embedding.h5ad, train_info.json")
    return EXIT_OK


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``geovae evaluate``: metric table of an embedding.h5ad."""
    from geovae.metrics import evaluate

    adata = _read_h5ad(args.input)
    for key, what in ((args.label_key, "--label-key"), (args.batch_key, "--batch-key")):
        if key and key not in adata.obs.columns:
            raise KeyError(f"{what} '{key}' is not an obs column of '{args.input}'; "
                           f"available: {', '.join(map(str, adata.obs.columns)) or 'none'}")
    if args.latent_key not in adata.obsm:
        raise KeyError(f"--latent-key '{args.latent_key}' is not in obsm of '{args.input}'; "
                       f"available: {', '.join(adata.obsm.keys()) or 'none'}")
    table = evaluate(adata, latent_key=args.latent_key, label_key=args.label_key, batch_key=args.batch_key,
                     n_subsample=args.n_subsample or None,
                     n_graph_subsample=args.n_graph_subsample or None, seed=args.seed, mode=args.mode,
                     leiden=not args.no_leiden, n_jobs=args.threads)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, sep="\t", index=False, float_format="%.6g")
    else:
        table.to_csv(sys.stdout, sep="\t", index=False, float_format="%.6g")
    return EXIT_OK


# --------------------------------------------------------------------------- geo inspect


def cmd_geo_inspect(args: argparse.Namespace) -> int:
    """``geovae geo inspect``: samples, files, read plan, per-cell tables and the sheet row of a series."""
    import json

    from geovae.data.inspect import format_inspection, inspect_series

    info = inspect_series(args.accession, base_url=args.base_url, cache_dir=args.cache_dir, modality=args.modality)
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspection(info))
    return EXIT_OK


# --------------------------------------------------------------------------- acquire


def cmd_acquire(args: argparse.Namespace) -> int:
    """``geovae acquire``: download a GEO series into a raw-count h5ad."""
    import re

    from geovae.data.acquire import acquire_dataset
    from geovae.runinfo import write_json

    accession = args.accession.strip().upper()
    if not re.fullmatch(r"GSE[0-9]+", accession):
        raise UsageError(f"accession must look like GSE123456, got {args.accession!r}")
    row = {"dataset": accession, "source": "geo", "accession": accession}
    adata, manifest = acquire_dataset(row, geo_base_url=args.base_url, cache_dir=args.cache_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out, compression="gzip")
    manifest_path = Path(args.manifest) if args.manifest else out.with_name(out.name.split(".")[0] + "_manifest.json")
    write_json(manifest_path, manifest)
    print(f"{accession}: {adata.n_obs} cells x {adata.n_vars} features -> {out} (manifest {manifest_path})",
          file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- datasets


def cmd_datasets_add(args: argparse.Namespace) -> int:
    """``geovae datasets add``: append a validated GEO row to the dataset sheet."""
    from geovae.data.sheet import append_row, geo_row

    row = geo_row(args.accession, modality=args.modality, species=args.species, dataset=args.dataset,
                  label_key=args.label_key or "", batch_key=args.batch_key or "", data_type=args.data_type,
                  description=args.description or "", samples=args.samples or "", files=args.files or "")
    table = append_row(args.sheet, row)
    print(f"added dataset '{row['dataset']}' ({row['accession']}, {row['modality']}) to {args.sheet} "
          f"({len(table)} datasets)", file=sys.stderr)
    return EXIT_OK


def cmd_datasets_list(args: argparse.Namespace) -> int:
    """``geovae datasets list``: validate the sheet and print it."""
    from geovae.data.sheet import read_sheet

    table = read_sheet(args.sheet)
    table.to_csv(sys.stdout, sep="\t", index=False)
    return EXIT_OK


# --------------------------------------------------------------------------- config


def cmd_config(args: argparse.Namespace) -> int:
    """``geovae config``: the complete default config, the config schema, a config check, or the generated files."""
    import yaml

    from geovae import workflow_config as wc

    if args.write:
        root = Path(args.write)
        for rel, text in wc.generated_files().items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
            _say(args, f"wrote {root / rel}")
        return EXIT_OK
    if args.check:
        full = wc.complete_config(yaml.safe_load(Path(args.check).read_text()) or {})
        wc.load_sheet(full["datasets"])
        print(f"{args.check}: valid ({len(full['models'])} model(s), {len(full['seeds'])} seed(s))")
        return EXIT_OK
    value = wc.config_schema() if args.schema else wc.default_config()
    print(yaml.safe_dump(value, sort_keys=False, width=110), end="")
    return EXIT_OK


# --------------------------------------------------------------------------- models

def cmd_models(args: argparse.Namespace) -> int:
    """``geovae models``: the registry with each model's family, availability and default parameters."""
    from geovae.models import FAMILIES, available_models, get_model

    rows = []
    for name in available_models():
        try:
            cls = get_model(name)
            defaults = cls.default_params() if hasattr(cls, "default_params") else {}
            status, shown = "ok", ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        except ImportError as exc:  # optional dependency missing
            status, shown = "not installed", _error_text(exc).splitlines()[0]
        rows.append((name, FAMILIES.get(name, ""), status, shown))
    if args.names_only:
        print("\n".join(r[0] for r in rows))
        return EXIT_OK
    print("model\tfamily\tstatus\tdefaults")
    for row in rows:
        print("\t".join(row))
    return EXIT_OK


# --------------------------------------------------------------------------- run

RUN_HELP = """\
usage: geovae run [--project DIR] [SNAKEMAKE ARGS ...]

Run the geovae Snakemake workflow. Everything after `run` is passed to snakemake,
which runs in the project folder (the one holding the Snakefile), so the workflow
profile profiles/default (cores, retries, ...) applies. Examples:

  geovae run                          # default pipeline (config/config.yaml)
  geovae run -n                       # dry run: list the jobs
  geovae run --config device=cuda     # GPU workstation
  geovae run --profile profiles/slurm # SLURM cluster (see docs/slurm.md)
  geovae run --report results/report.html

options:
  -h, --help     show this help message and exit (use `geovae run -- --help` for snakemake's help)
  --project DIR  project folder (default: the nearest folder holding a Snakefile, from the
                 working directory upwards)

The exit code is snakemake's.
"""


def find_project(start: str | Path | None = None) -> Path:
    """Nearest folder at or above ``start`` (default: working directory) holding a ``Snakefile``.

    Parameters
    ----------
    start
        Folder to search from.

    Returns
    -------
    pathlib.Path
        The project folder.

    Raises
    ------
    FileNotFoundError
        When no ``Snakefile`` is found.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file():
            return folder
    raise FileNotFoundError(f"no Snakefile in '{here}' or its parents; cd into the geovae project or pass --project")


def snakemake_command(snakemake_args: Sequence[str]) -> list[str]:
    """The command ``geovae run`` executes: the snakemake of this Python environment plus ``snakemake_args``.

    Parameters
    ----------
    snakemake_args
        Arguments passed through.

    Returns
    -------
    list of str
        ``[<env>/bin/snakemake, *args]`` or ``[python, -m, snakemake, *args]``.
    """
    exe = Path(sys.executable).with_name("snakemake")
    if exe.is_file():
        return [str(exe), *snakemake_args]
    found = shutil.which("snakemake")
    if found:
        return [found, *snakemake_args]
    return [sys.executable, "-m", "snakemake", *snakemake_args]


def cmd_run(argv: Sequence[str]) -> int:
    """``geovae run``: thin wrapper around snakemake in the project folder."""
    argv = list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(RUN_HELP, end="")
        return EXIT_OK
    project = None
    if argv[:1] == ["--project"] or (argv and argv[0].startswith("--project=")):
        if argv[0] == "--project":
            if len(argv) < 2:
                raise UsageError("--project needs a folder")
            project, argv = argv[1], argv[2:]
        else:
            project, argv = argv[0].split("=", 1)[1], argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    root = find_project(project)
    command = snakemake_command(argv)
    try:
        import importlib.util

        if command[1:2] == ["-m"] and importlib.util.find_spec("snakemake") is None:
            raise ImportError
    except ImportError:
        raise FileNotFoundError("snakemake is not installed; pip install 'geovae[workflow]'") from None
    return subprocess.call(command, cwd=root, env=dict(os.environ))


# --------------------------------------------------------------------------- parser


def _add_train_command(sub: Any, fmt: type) -> None:
    """The ``geovae train`` subcommand."""
    p = sub.add_parser("train", formatter_class=fmt, help="train a model on one .h5ad and embed it",
                       description="Train one model on an AnnData file and write, under --out: model/ "
                                   "(LiVAE.load-able), latent.h5ad, history.tsv, loss.png, embedding.h5ad (obsm X_latent, "
                                   "X_bottleneck, X_umap, X_tsne) and train_info.json. A preprocessed input "
                                   "(written by geovae.pp, uns['geovae_input'] present) is used as is; raw counts "
                                   "are preprocessed first with --modality (and written to preprocessed.h5ad).",
                       epilog="example: geovae train --input raw.h5ad --modality rna --out runs/livae "
                              "--param latent_dim=8 --max-epochs 100")
    p.add_argument("--input", required=True, metavar="H5AD", help="preprocessed or raw-count .h5ad")
    p.add_argument("--model", default="livae",
                   help="model name from the registry (default: livae; `geovae models` lists them)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="model hyperparameter, repeatable (e.g. latent_dim=8, likelihood=zinb); "
                        "defaults: LiVAE paper section 2.7, likelihood auto = nb (RNA) / zinb (ATAC)")
    p.add_argument("--modality", choices=["rna", "atac"], help="preprocess raw counts as RNA or ATAC")
    p.add_argument("--pp-param", action="append", metavar="KEY=VALUE",
                   help="preprocessing setting for raw input, repeatable (e.g. n_top_genes=2000)")
    _add_option_flags(p, "train")
    p.add_argument("--device", default=TRAIN.device, choices=["auto", "cpu", "cuda"],
                   help=f"torch device (default: {TRAIN.device} = CUDA when available)")
    p.add_argument("--seed", type=int, default=TRAIN.seed,
                   help=f"seed of weights, minibatches and 2-D embeddings (default {TRAIN.seed})")
    p.add_argument("--layer", default="counts", help="layer with raw counts (default: counts)")
    p.add_argument("--batch-key", help="obs column with batches (the models that can condition on it do)")
    p.add_argument("--no-2d", action="store_true", help="skip UMAP and t-SNE")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR/model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=cmd_train)


def _add_evaluate_command(sub: Any, fmt: type) -> None:
    """The ``geovae evaluate`` subcommand."""
    p = sub.add_parser("evaluate", formatter_class=fmt, help="metrics of an embedding as a tidy TSV",
                       description="Compute the geovae metric suite (geovae.metrics.evaluate) of an embedding "
                                   ".h5ad (e.g. DIR/embedding.h5ad from geovae train) and write a tidy TSV "
                                   "(metric, value, category) to stdout or --out.")
    p.add_argument("--input", required=True, metavar="H5AD", help="AnnData with the latent in obsm")
    p.add_argument("--label-key", help="obs column with cell-type labels (enables clustering metrics)")
    p.add_argument("--batch-key", help="obs column with batches (enables iLISI)")
    p.add_argument("--latent-key", default="X_latent", help="obsm key of the latent (default: X_latent)")
    p.add_argument("--mode", default=METRICS.mode, choices=["steady_state", "trajectory"],
                   help=f"intrinsic-metric mode (default: {METRICS.mode})")
    p.add_argument("--n-subsample", type=int, default=METRICS.n_subsample,
                   help=f"cells used by the O(n^2) metrics (default {METRICS.n_subsample}; 0 = all)")
    p.add_argument("--seed", type=int, default=METRICS.seed,
                   help=f"seed of the subsample and Leiden (default {METRICS.seed})")
    p.add_argument("--n-graph-subsample", type=int, default=METRICS.n_graph_subsample,
                   help=f"labelled cells of the Leiden sweep and kNN accuracy (default {METRICS.n_graph_subsample}; "
                        "0 = all)")
    p.add_argument("--no-leiden", action="store_true", help="skip the Leiden sweep and kNN accuracy")
    p.add_argument("--threads", type=int, help="thread limit")
    p.add_argument("--out", metavar="TSV", help="output file (default: stdout)")
    p.set_defaults(func=cmd_evaluate)


def _add_geo_command(sub: Any, fmt: type) -> None:
    """The ``geovae geo`` subcommand."""
    p = sub.add_parser("geo", formatter_class=fmt, help="look at a GEO series before running it")
    geo_sub = p.add_subparsers(dest="geo_command", metavar="COMMAND", required=True)
    g = geo_sub.add_parser("inspect", formatter_class=fmt, help="samples, files, read plan, cell tables, sheet row",
                           description="List a GEO series' samples and supplementary files, the layout each would "
                                       "be read with, the per-cell tables found (columns, values of label- and "
                                       "batch-like columns) and the sheet row geovae would use. Reads only the "
                                       "SOFT file and the first bytes of the cell tables.")
    g.add_argument("accession", metavar="GSE", help="GEO series accession")
    g.add_argument("--base-url", default=GEO.base_url, help=f"GEO root (default: {GEO.base_url})")
    g.add_argument("--cache-dir", default=GEO.cache_dir, help=f"SOFT file cache (default: {GEO.cache_dir})")
    g.add_argument("--modality", default="rna", choices=["rna", "atac"], help="file preference (default: rna)")
    g.add_argument("--json", action="store_true", help="print JSON instead of text")
    g.set_defaults(func=cmd_geo_inspect)


def _add_acquire_command(sub: Any, fmt: type) -> None:
    """The ``geovae acquire`` subcommand."""
    p = sub.add_parser("acquire", formatter_class=fmt, help="download a GEO series into a raw-count .h5ad",
                       description="Download the supplementary count files of a GEO series (GSE) and write "
                                   "them as one raw-count .h5ad plus a JSON manifest (URLs, sizes, sha256).")
    p.add_argument("accession", metavar="GSE", help="GEO series accession, e.g. GSE123456")
    p.add_argument("--out", required=True, metavar="H5AD", help="output .h5ad")
    p.add_argument("--base-url", default=GEO.base_url,
                   help=f"GEO root: NCBI (default: {GEO.base_url}), a mirror URL or a local folder")
    p.add_argument("--cache-dir", default=GEO.cache_dir, help=f"download cache (default: {GEO.cache_dir})")
    p.add_argument("--manifest", metavar="JSON", help="manifest path (default: <out stem>_manifest.json)")
    p.set_defaults(func=cmd_acquire)


def _add_datasets_command(sub: Any, fmt: type) -> None:
    """The ``geovae datasets`` subcommand."""
    p = sub.add_parser("datasets", formatter_class=fmt, help="manage the dataset sheet",
                       description="Add GEO series to, or list, the dataset sheet (config/datasets.tsv) "
                                   "validated against workflow/schemas/datasets.schema.yaml.")
    dsub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    d = dsub.add_parser("add", formatter_class=fmt, help="append a validated GEO row",
                        description="Append a row for a GEO series to the dataset sheet; the row and the "
                                    "existing sheet are validated first and nothing is written on error.",
                        epilog="example: geovae datasets add GSE123456 --modality rna --label-key cell_type")
    d.add_argument("accession", metavar="GSE", help="GEO series accession")
    d.add_argument("--modality", required=True, choices=["rna", "atac"], help="rna or atac")
    d.add_argument("--species", default="human", help="picks the GO gene sets (default: human)")
    d.add_argument("--dataset", help="identifier in result paths (default: the accession)")
    d.add_argument("--label-key", help="obs column with cell labels")
    d.add_argument("--batch-key", help="obs column with batches")
    d.add_argument("--data-type", default="steady_state", choices=["steady_state", "trajectory"],
                   help="default: steady_state")
    d.add_argument("--description", help="free text for the report")
    d.add_argument("--samples", metavar="GSM,...", help="only these GEO samples (default: all, merged)")
    d.add_argument("--files", metavar="GLOB,...", help="only supplementary files matching these globs")
    d.add_argument("--sheet", default="config/datasets.tsv", help="sheet (default: config/datasets.tsv)")
    d.set_defaults(func=cmd_datasets_add)
    d = dsub.add_parser("list", help="validate and print the sheet",
                        description="Validate the dataset sheet and print it.")
    d.add_argument("--sheet", default="config/datasets.tsv", help="sheet (default: config/datasets.tsv)")
    d.set_defaults(func=cmd_datasets_list)


def _add_config_command(sub: Any, fmt: type) -> None:
    """The ``geovae config`` subcommand."""
    p = sub.add_parser("config", formatter_class=fmt, help="default config, config schema, check a config",
                       description="Print the complete default workflow config (every option with its default, "
                                   "from geovae.options), the config JSON schema, or check a config file and "
                                   "its dataset sheet.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--defaults", action="store_true", help="print the complete default config (the default)")
    what.add_argument("--schema", action="store_true", help="print the config JSON schema")
    what.add_argument("--check", metavar="YAML", help="validate a config file and its sheet, exit 1 if invalid")
    what.add_argument("--write", metavar="ROOT", help="(maintainers) regenerate the schema files and "
                                                      "docs/options.md under the project folder ROOT")
    p.set_defaults(func=cmd_config)


def _add_models_command(sub: Any, fmt: type) -> None:
    """The ``geovae models`` subcommand."""
    p = sub.add_parser("models", formatter_class=fmt, help="list the models of the zoo",
                       description="List the registered models (config names), their family, whether they "
                                   "can be imported here and their default parameters.")
    p.add_argument("--names-only", action="store_true", help="print the names only")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``geovae`` command (``run`` is handled before parsing)."""
    from geovae import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="geovae", formatter_class=fmt,
        description="Interpretable single-cell embeddings (LiVAE) from GEO data: train, evaluate, acquire, "
                    "manage the dataset sheet and run the Snakemake pipeline.",
        epilog="Exit codes: 0 ok, 1 runtime error, 2 usage error. Run 'geovae COMMAND --help' for details.")
    parser.add_argument("--version", action="version", version=f"geovae {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for add in (_add_train_command, _add_evaluate_command, _add_geo_command, _add_acquire_command, _add_datasets_command, _add_config_command, _add_models_command):
        add(sub, fmt)
    sub.add_parser("run", help="run the Snakemake pipeline (args go to snakemake)", add_help=False,
                   description="See 'geovae run --help'.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geovae`` command.

    Parameters
    ----------
    argv
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 ok, 1 runtime error, 2 usage error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # `run` passes everything after it to snakemake, so it is dispatched before argparse.
    first = next((i for i, a in enumerate(argv) if a != "--traceback"), None)
    is_run = first is not None and argv[first] == "run"
    show_traceback = "--traceback" in (argv[:first] if is_run else argv)
    parser = build_parser()
    command = "run"
    try:
        if is_run:
            return cmd_run(argv[first + 1:])
        args = parser.parse_args(argv)
        command = args.command or ""
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args))
    except UsageError as exc:
        print(f"geovae {command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("geovae: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if show_traceback:
            raise
        print(f"geovae {command}: error: {_error_text(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
