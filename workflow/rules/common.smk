# Config and dataset sheet (read and validated by the package: geovae.workflow_config), wildcard
# constraints and target helpers.
import re
import sys
from pathlib import Path

# The checkout's package comes first, so the workflow always runs the code next to it: here, and in
# every job (use_checkout_code also sets PYTHONPATH), so that neither a conda env nor an installed
# copy can run a stale geovae after `git pull`.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from geovae.cluster import check_slurm_site
from geovae.schemas import registry_specs
from geovae.workflow_config import (
    check_per_dataset_ids,
    complete_config,
    dataset_config,
    load_sheet,
    use_checkout_code,
)

use_checkout_code(Path(workflow.basedir) / "src")

# Every default comes from geovae.options; unknown keys stop the run here, before any job.
_complete = complete_config(config)
config.clear()
config.update(_complete)

DATASETS = load_sheet(config["datasets"])
check_per_dataset_ids(config, DATASETS.index)
MODEL_SPECS = registry_specs()
# Effective config of each dataset: the config with its `per_dataset` block merged in.
DCONFIG = {d: dataset_config(config, d) for d in DATASETS.index}
MODELS = list(dict.fromkeys(str(m) for d in DATASETS.index for m in DCONFIG[d]["models"])) or [
    str(m) for m in config["models"]
]


def benchmark_item(path, **options):
    """``report(path, **options)`` when two or more models run (a benchmark to show), else the plain path."""
    return report(path, **options) if len(MODELS) > 1 else path


def dataset_title(wildcards):
    """Report subcategory of ``wildcards.dataset``: its name, marked SIMULATED for simulated sets
    (sheet species ``simulated``), so no simulated result is read as a real one."""
    species = str(DATASETS.loc[wildcards.dataset].get("species", "") or "")
    return f"{wildcards.dataset} (SIMULATED)" if species == "simulated" else wildcards.dataset


def dcfg(wildcards):
    """Effective config of ``wildcards.dataset`` (also recorded in each output's provenance)."""
    return DCONFIG[wildcards.dataset]


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
    return [(d, str(m)) for d in DATASETS.index for m in DCONFIG[d]["models"] if model_applies(d, str(m))]


def model_params(wildcards):
    """Hyperparameters of ``wildcards.model`` for the train rule: the model's config block, plus the
    sheet's ``spatial_key`` of the dataset for models that require coordinates (dpvae)."""
    params = dict(DCONFIG[wildcards.dataset].get(wildcards.model) or {})
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
    interpret = DCONFIG[wildcards.dataset]["interpret"]
    if interpret.get("gmt"):
        return interpret["gmt"]
    species = DATASETS.loc[wildcards.dataset, "species"]
    return interpret["gene_sets"].get(species, "")


def run_targets(pattern):
    """``pattern`` expanded over every applicable (dataset, model) pair and every seed of the dataset."""
    return [pattern.format(dataset=d, model=m, seed=s) for d, m in run_pairs() for s in DCONFIG[d]["seeds"]]


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
