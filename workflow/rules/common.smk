# Config and dataset-sheet validation, wildcard constraints and target helpers.
import re
from pathlib import Path

import jsonschema
import pandas as pd
import yaml
from snakemake.utils import validate


# `--config seeds=[0,1]` arrives as strings: accept digit strings as integer seeds.
config["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in config.get("seeds", [])]
validate(config, schema="../schemas/config.schema.yaml")


def load_dataset_sheet(path):
    """Read the dataset sheet and validate every row, naming the row and field that fail."""
    sheet_path = Path(path)
    if not sheet_path.exists():
        raise ValueError(f"dataset sheet '{path}' (config key 'datasets') does not exist")
    sheet = pd.read_csv(sheet_path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    schema_path = Path(workflow.basedir) / "workflow" / "schemas" / "datasets.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for line, record in enumerate(sheet.to_dict("records"), start=2):
        row = {k: v for k, v in record.items() if v != ""}
        for err in sorted(validator.iter_errors(row), key=lambda e: list(e.path)):
            field = ".".join(map(str, err.path)) or "(row)"
            problems.append(f"{path} line {line} (dataset '{record.get('dataset', '?')}'): field {field}: {err.message}")
    duplicated = sheet["dataset"][sheet["dataset"].duplicated()].tolist() if "dataset" in sheet else []
    if duplicated:
        problems.append(f"{path}: duplicated dataset ids: {', '.join(duplicated)}")
    if problems:
        raise ValueError("invalid dataset sheet:\n  " + "\n  ".join(problems))
    return sheet.set_index("dataset", drop=False)


DATASETS = load_dataset_sheet(config["datasets"])
MODELS = [str(m) for m in config["models"]]
SEEDS = [str(s) for s in config["seeds"]]

# The model registry of the package, read as a file (the Snakemake process need not import geovae).
MODEL_SPECS = yaml.safe_load((Path(workflow.basedir) / "src" / "geovae" / "models" / "registry.yaml").read_text())
_unknown_models = [m for m in MODELS if m not in MODEL_SPECS]
if _unknown_models:
    raise ValueError(f"config 'models': unknown model(s) {', '.join(_unknown_models)}; "
                     f"available: {', '.join(sorted(MODEL_SPECS))}")


def model_applies(dataset, model):
    """Whether ``model`` runs on ``dataset``: its modality is one the model handles and the sheet
    provides what it requires (``spatial``: a ``spatial_key`` column value)."""
    spec = MODEL_SPECS[model]
    row = DATASETS.loc[dataset]
    if row["modality"] not in spec.get("modalities", ["rna", "atac"]):
        return False
    if "spatial" in spec.get("requires", []) and not str(row.get("spatial_key", "") or ""):
        return False
    return True


def train_env(wildcards):
    """Conda env of the train rule: envs/<extra>.yaml for models of an optional extra (scvi-tools),
    envs/train.yaml otherwise."""
    extra = MODEL_SPECS[wildcards.model].get("extra")
    return f"../../envs/{extra}.yaml" if extra else "../../envs/train.yaml"


def run_pairs():
    """(dataset, model) pairs the workflow trains, in sheet x config order."""
    return [(d, m) for d in DATASETS.index for m in MODELS if model_applies(d, m)]


def model_params(wildcards):
    """Hyperparameters of ``wildcards.model`` for the train rule: the model's config block, plus the
    sheet's ``spatial_key`` of the dataset for models that require coordinates (dpvae)."""
    params = dict(config.get(wildcards.model, {}) or {})
    if "spatial" in MODEL_SPECS[wildcards.model].get("requires", []):
        key = str(DATASETS.loc[wildcards.dataset].get("spatial_key", "") or "")
        if key:
            params["spatial_key"] = key
    return params


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS.index)) or "NONE",
    model="|".join(map(re.escape, MODELS)),
    seed=r"\d+",


def dataset_row(wildcards):
    """The sheet row of ``wildcards.dataset`` as a plain dict."""
    return DATASETS.loc[wildcards.dataset].to_dict()


def modality(wildcards):
    return DATASETS.loc[wildcards.dataset, "modality"]


def run_dir(wildcards):
    return f"results/{wildcards.dataset}/{wildcards.model}/{wildcards.seed}"


def gene_sets_for(wildcards):
    """GMT file for the dataset's species (config interpret.gmt overrides), or '' when none applies."""
    if config["interpret"].get("gmt"):
        return config["interpret"]["gmt"]
    species = DATASETS.loc[wildcards.dataset, "species"]
    return config["interpret"]["gene_sets"].get(species, "")


def run_targets(pattern):
    """``pattern`` expanded over every applicable (dataset, model) pair and every seed."""
    return [pattern.format(dataset=d, model=m, seed=s) for d, m in run_pairs() for s in SEEDS]


def all_targets():
    return [
        "results/metrics.tsv",
        *run_targets("results/{dataset}/{model}/{seed}/umap.png"),
        *run_targets("results/{dataset}/{model}/{seed}/tsne.png"),
        *run_targets("results/{dataset}/{model}/{seed}/loss.png"),
        *run_targets("results/{dataset}/{model}/{seed}/components.tsv"),
        *run_targets("results/{dataset}/{model}/{seed}/enrichment.tsv"),
        *run_targets("results/{dataset}/{model}/{seed}/enrichment_dotplot.png"),
        "results/report/summary.html",
        "results/benchmark/paired_differences.tsv",
        "results/benchmark/program_validation.tsv",
    ]
