"""The workflow's config and dataset sheet, read and validated in one place.

``workflow/rules/common.smk`` calls :func:`complete_config` and :func:`load_sheet`; the CLI and the
tests use the same functions. The config schema is built from the option declarations of
:mod:`geovae.options` and the model registry, so a default is written once. Nothing here imports torch
unless the config holds a model parameter block (its keys are checked against the model's own
defaults).
"""

from __future__ import annotations

import copy
import os
import sys
from typing import Any, Mapping

from .options import BLOCKS, block_fields, nearest, option_defaults
from .schemas import datasets_schema, registry_specs

__all__ = ["ConfigError", "config_schema", "default_config", "complete_config", "load_sheet", "options_markdown",
           "generated_files", "dataset_config", "check_per_dataset_ids", "PER_DATASET_KEYS"]


class ConfigError(ValueError):
    """The workflow config is invalid; the message names the key."""


def _block_schema(path: str | None) -> dict[str, Any]:
    props = {}
    for f in block_fields(path):
        prop = dict(f.metadata["schema"])
        prop["description"] = f.metadata["help"]
        prop["default"] = option_defaults(BLOCKS[path], [f.name])[f.name]
        props[f.name] = prop
    return {"type": "object", "properties": props, "additionalProperties": False}


def _model_block_schema(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": ["object", "null"], "description": f"parameters of model {name} ({spec['family']}); "
            "keys and defaults: `geovae models`"}


def config_schema() -> dict[str, Any]:
    """JSON schema of the workflow config, built from :mod:`geovae.options` and the registry.

    Every block has ``additionalProperties: false`` and ``default:`` values. A model's parameter
    block (named after the model) is an object whose keys are checked against the model's
    defaults by :func:`complete_config`.

    Returns
    -------
    dict
        JSON schema (draft 2020-12).
    """
    schema = _block_schema(None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = ("geovae workflow configuration, generated from geovae.options "
                             "(`geovae config --schema`); every key is optional")
    props = schema["properties"]
    props["preprocess"] = {"type": "object", "additionalProperties": False,
                           "properties": {"rna": _block_schema("preprocess.rna"),
                                          "atac": _block_schema("preprocess.atac")}}
    for path in BLOCKS:
        if path is not None and "." not in path:
            props[path] = _block_schema(path)
    for name, spec in registry_specs().items():
        props[name] = _model_block_schema(name, spec)
    return dict(sorted(schema.items(), key=lambda kv: kv[0] != "$schema"))


def default_config() -> dict[str, Any]:
    """The complete default workflow config (what an empty config file gives).

    Returns
    -------
    dict
        Every block with its defaults.
    """
    config: dict[str, Any] = {}
    for path, declaration in BLOCKS.items():
        defaults = option_defaults(declaration, [f.name for f in block_fields(path)])
        if path is None:
            config.update(defaults)
            continue
        target = config
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = defaults
    return config


def _check_keys(given: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> None:
    props = schema.get("properties", {})
    for key, value in given.items():
        if key not in props:
            if schema.get("additionalProperties", True) is False:
                raise ConfigError(f"config: unknown key '{where}{key}'{nearest(key, list(props))}; "
                                  f"valid keys{' of ' + where.rstrip('.') if where else ''}: {', '.join(props)}")
            continue
        sub = props[key]
        if isinstance(value, Mapping) and "properties" in sub:
            _check_keys(value, sub, f"{where}{key}.")


def _merge(defaults: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_model_params(name: str, params: Mapping[str, Any] | None, where: str = "") -> None:
    """Raise :class:`ConfigError` for a parameter that model ``name`` does not take.

    Parameters
    ----------
    name
        Registry name.
    params
        The model's parameter block.
    where
        Prefix of the key in messages (e.g. ``"livae."``).
    """
    if not params:
        return
    if not isinstance(params, Mapping):
        raise ConfigError(f"config: {where or name + '.'} must be a mapping of parameters, got {params!r}")
    from .models import get_model
    from .distributions.likelihoods import LIKELIHOODS

    try:
        defaults = get_model(name).default_params()
    except ImportError:  # an optional extra (scvi-tools) that is not installed: checked by its train job
        return
    accepted = sorted(defaults)
    for key, value in params.items():
        if key not in defaults:
            raise ConfigError(f"config: unknown parameter '{where or name + '.'}{key}' of model {name!r}"
                              f"{nearest(key, accepted)}; valid: {', '.join(accepted)}")
        problem = _value_problem(key, value, defaults[key], LIKELIHOODS)
        if problem:
            raise ConfigError(f"config: {where or name + '.'}{key}: {problem}")


def _value_problem(key: str, value: Any, default: Any, likelihoods: tuple[str, ...]) -> str:
    """Why ``value`` cannot replace ``default`` (same kind of value; known likelihood names), or ``""``."""
    if key == "likelihood":
        allowed = ["auto", *likelihoods, *([default] if default not in likelihoods else [])]
        return "" if value in allowed else f"{value!r} is not one of {allowed}"
    if default is None:
        return ""
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else f"{value!r} is not a boolean"
    if isinstance(default, int):
        return "" if isinstance(value, int) and not isinstance(value, bool) else f"{value!r} is not an integer"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return "" if ok else f"{value!r} is not a number"
    if isinstance(default, str):
        return "" if isinstance(value, str) else f"{value!r} is not a string"
    return ""


def complete_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a workflow config and fill in every default.

    Parameters
    ----------
    config
        The config as Snakemake or ``yaml.safe_load`` gives it (``--config seeds=[0,1]`` may give
        digit strings).

    Returns
    -------
    dict
        A new, complete config.

    Raises
    ------
    ConfigError
        For an unknown key (named, with the nearest valid one), a value of the wrong type, an
        unknown model or an unknown model parameter.
    """
    import jsonschema

    given = dict(config)
    if "seeds" in given:
        given["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in given["seeds"]]
    schema = config_schema()
    _check_keys(given, schema, "")
    _check_per_dataset(given)
    full = _merge(default_config(), given)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(full), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(map(str, err.path)) or "(top level)"
        raise ConfigError(f"config: {key}: {err.message}")
    specs = registry_specs()
    unknown = [m for m in full["models"] if m not in specs]
    if unknown:
        raise ConfigError(f"config 'models': unknown model(s) {', '.join(unknown)}"
                          f"{nearest(unknown[0], list(specs))}; available: {', '.join(sorted(specs))}")
    for name in specs:
        if full.get(name):
            check_model_params(name, full[name], f"{name}.")
    return full


#: Keys a dataset's block of ``per_dataset`` may set (plus any model's parameter block).
PER_DATASET_KEYS = ("preprocess", "train", "embed", "metrics", "interpret", "models", "seeds")


def _check_per_dataset(given: Mapping[str, Any]) -> None:
    """Each ``per_dataset`` block sets only per-dataset keys, and the config it gives is valid."""
    blocks = given.get("per_dataset") or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"config: per_dataset must map dataset ids to settings, got {blocks!r}")
    valid = [*PER_DATASET_KEYS, *registry_specs()]
    base = {k: v for k, v in given.items() if k != "per_dataset"}
    for dataset, block in blocks.items():
        if not isinstance(block, Mapping):
            raise ConfigError(f"config: per_dataset.{dataset} must be a mapping of settings, got {block!r}")
        for key in block:
            if key not in valid:
                raise ConfigError(f"config: unknown key 'per_dataset.{dataset}.{key}'{nearest(key, valid)}; "
                                  f"a dataset may set: {', '.join(PER_DATASET_KEYS)} or a model's parameters")
        try:
            complete_config(_merge(base, block))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("config: ", f"config: per_dataset.{dataset}: ", 1)) from None


def check_per_dataset_ids(config: Mapping[str, Any], datasets: Any) -> None:
    """Every dataset id of ``per_dataset`` is in the sheet.

    Parameters
    ----------
    config
        A complete config.
    datasets
        The sheet's dataset ids.

    Raises
    ------
    ConfigError
        Naming the unknown id and the nearest one of the sheet.
    """
    ids = [str(d) for d in datasets]
    for dataset in config.get("per_dataset") or {}:
        if str(dataset) not in ids:
            raise ConfigError(f"config: per_dataset names dataset {dataset!r}, which is not in the sheet "
                              f"{config['datasets']}{nearest(dataset, ids)}; datasets: {', '.join(ids)}")


def dataset_config(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The effective config of one dataset: ``config`` with ``per_dataset[dataset]`` merged in.

    Parameters
    ----------
    config
        A complete config (from :func:`complete_config`).
    dataset
        Dataset id.

    Returns
    -------
    dict
        A complete config; ``per_dataset`` holds only this dataset's block (empty when none).
    """
    block = dict((config.get("per_dataset") or {}).get(dataset) or {})
    merged = _merge({k: v for k, v in config.items() if k != "per_dataset"}, block)
    merged["per_dataset"] = {dataset: block} if block else {}
    return merged


def use_checkout_code(src: str | os.PathLike) -> None:
    """Put the checkout's ``src`` first on ``sys.path`` and on ``PYTHONPATH`` (inherited by every job:
    rule scripts in conda envs, local or cluster jobs), so the workflow runs the code beside it and
    never a stale installed copy (a conda env is not rebuilt when only the package changes).

    Parameters
    ----------
    src
        The checkout's ``src`` folder.
    """
    src = str(src)
    if src not in sys.path:
        sys.path.insert(0, src)
    current = os.environ.get("PYTHONPATH", "")
    if src not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, current) if p)


def load_sheet(path: str) -> Any:
    """Read and validate the dataset sheet for the workflow (every optional column filled with ``""``).

    Parameters
    ----------
    path
        The sheet (config key ``datasets``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``dataset`` (the column is kept).
    """
    from .data.sheet import read_sheet

    return read_sheet(path, schema=datasets_schema()).set_index("dataset", drop=False)


def options_markdown() -> str:
    """``docs/options.md``: one table per config block, generated from :mod:`geovae.options`.

    Returns
    -------
    str
        Markdown text.
    """
    from .options import option_table

    parts = ["# Options", "",
             "<!-- generated from src/geovae/options.py by `geovae config --write`; edit the declarations -->", "",
             "Every option of the workflow config (`config/config.yaml`, `--config key=value`) with its default. "
             "The same declarations give the package functions their defaults (`geovae.pp`, `geovae.tl`, "
             "`geovae.metrics.evaluate`, every model's `train(**options)`), the CLI's flags and the config "
             "schema (`workflow/schemas/config.schema.yaml`). A model's own parameters (a block named after "
             "the model, e.g. `livae: {lorentz_weight: 3}`) are listed by `geovae models` and in "
             "`docs/models/`. Unknown keys stop the run before any job, naming the nearest valid key.", ""]
    titles = {None: "Top level", "train": "train (also every model's `train(**options)` and `tl.embed(train=...)`)"}
    for path, declaration in BLOCKS.items():
        parts += [f"## {titles.get(path, path)}", "", (declaration.__doc__ or "").strip().splitlines()[0], "",
                  option_table(path), ""]
    parts += ["The training options not in the workflow's `train` block (`device` is a top-level key, `seed` "
              "comes from `seeds`; `progress_bar`, `checkpoint_dir`, `checkpoint_key` are set by the train rule) "
              "are accepted by every model's `train()` and by `tl.embed(train=...)`:", "",
              _training_only_table(), ""]
    return "\n".join(parts)


def _training_only_table() -> str:
    from dataclasses import fields

    from .options import WORKFLOW_TRAIN_KEYS, TrainingConfig

    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in fields(TrainingConfig):
        if f.name not in WORKFLOW_TRAIN_KEYS:
            default = "null" if f.default is None else f.default
            default = str(default).lower() if isinstance(default, bool) else default
            rows.append(f"| `{f.name}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)


def generated_files() -> dict[str, str]:
    """Files of the repository generated from the declarations: path (from the project root) -> text.

    Returns
    -------
    dict
        ``workflow/schemas/config.schema.yaml``, ``workflow/schemas/datasets.schema.yaml`` and
        ``docs/options.md``.
    """
    import yaml

    header = ("# Generated by `geovae config --write` from the package ({}); do not edit: edit the source.\n")
    dump = {"width": 110, "sort_keys": False, "allow_unicode": True}
    return {
        "workflow/schemas/config.schema.yaml": header.format("src/geovae/options.py")
        + yaml.safe_dump(config_schema(), **dump),
        "workflow/schemas/datasets.schema.yaml": header.format("src/geovae/schemas/datasets.schema.yaml")
        + yaml.safe_dump(datasets_schema(), **dump),
        "docs/options.md": options_markdown(),
    }
