"""Declarations of every pipeline option: one place for each default.

Each block of the workflow config (``preprocess.rna``, ``preprocess.atac``, ``train``, ``embed``,
``metrics``, ``interpret``, ``benchmark``, ``resources``, ``geo`` and the top-level keys) is a frozen
dataclass below. Its field defaults are the defaults of the package functions (which refer to them,
e.g. ``min_genes: int = RNA_QC.min_genes``), of the workflow (the config schema is built from them by
:func:`geovae.workflow_config.config_schema`), of the CLI's flags and of the option tables in
``docs/options.md``. This module imports nothing heavy, so the Snakemake process can read it.

Each field carries ``help`` and a JSON-schema fragment (``schema``) in its metadata.
"""

from __future__ import annotations

import difflib
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Iterable, Mapping

__all__ = [
    "opt", "RnaPreprocessOptions", "AtacPreprocessOptions", "TrainingConfig", "EmbedOptions", "MetricsOptions",
    "InterpretOptions", "BenchmarkOptions", "ResourceOptions", "GeoOptions", "RunOptions",
    "RNA", "ATAC", "TRAIN", "EMBED", "METRICS", "INTERPRET", "GEO", "BLOCKS", "option_defaults",
    "option_table", "WORKFLOW_TRAIN_KEYS", "nearest", "training_config", "TRAINING_OPTIONS",
]


def opt(default: Any, help: str, **schema: Any) -> Any:
    """A dataclass field with its default, a one-line ``help`` and a JSON-schema fragment.

    Parameters
    ----------
    default
        The option's default (a list default is stored as a tuple to keep the dataclass frozen).
    help
        One-line description shown in the CLI, the schema and the docs.
    **schema
        JSON-schema keywords (``type``, ``minimum``, ``enum``, ...).

    Returns
    -------
    dataclasses.Field
        The field.
    """
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata={"help": help, "schema": schema})


@dataclass(frozen=True)
class RnaPreprocessOptions:
    """scRNA-seq QC, highly variable genes and model input (``preprocess.rna``)."""

    qc: str = opt("adaptive", "cell QC: adaptive (outliers by MADs per sample) or fixed (min_genes, max_pct_mito)",
                  type="string", enum=["adaptive", "fixed"])
    n_mads: float = opt(5.0, "adaptive QC: MADs from the sample median of log counts and log genes",
                        type="number", exclusiveMinimum=0)
    mito_n_mads: float = opt(3.0, "adaptive QC: MADs above the sample median of the mitochondrial percentage",
                             type="number", exclusiveMinimum=0)
    min_genes_floor: int = opt(20, "adaptive QC: cells with fewer detected genes are empty barcodes, removed",
                               type="integer", minimum=0)
    qc_sample_key: str = opt("sample", "obs column whose samples QC runs within (when the data have it)",
                             type="string")
    min_genes: int = opt(200, "fixed QC: keep cells with at least this many detected genes", type="integer", minimum=0)
    max_pct_mito: float = opt(20.0, "fixed QC: drop cells with more than this percentage of mitochondrial counts",
                              type="number", minimum=0, maximum=100)
    min_cells: int = opt(3, "keep genes detected in at least this many kept cells", type="integer", minimum=0)
    mito_prefix: tuple[str, ...] = opt(["MT-", "mt-"], "gene-name prefixes of mitochondrial genes",
                                       type="array", items={"type": "string"})
    n_top_genes: int = opt(5000, "highly variable genes kept (LiVAE paper section 2.6.2)", type="integer", minimum=10)
    hvg_flavor: str = opt("seurat_v3", "scanpy highly-variable-genes flavor",
                          type="string", enum=["seurat_v3", "seurat", "cell_ranger"])
    target_sum: float = opt(1e4, "library size after normalisation, before log1p", type="number", exclusiveMinimum=0)
    center_scale: bool = opt(True, "z-score the model input per gene (per minibatch, sparse-safe)", type="boolean")
    clip: float | None = opt(10.0, "clip the z-scored input at +-clip (null: no clipping)",
                             type=["number", "null"], exclusiveMinimum=0)


@dataclass(frozen=True)
class AtacPreprocessOptions:
    """scATAC-seq QC, TF-IDF and highly variable peaks (``preprocess.atac``)."""

    qc: str = opt("adaptive", "cell QC: adaptive (outliers by MADs per sample, above min_peaks) or fixed (min_peaks)",
                  type="string", enum=["adaptive", "fixed"])
    n_mads: float = opt(5.0, "adaptive QC: MADs from the sample median of log counts and log peaks",
                        type="number", exclusiveMinimum=0)
    qc_sample_key: str = opt("sample", "obs column whose samples QC runs within (when the data have it)",
                             type="string")
    min_peaks: int = opt(10, "keep cells with at least this many accessible peaks (both QC modes)",
                         type="integer", minimum=0)
    min_cells: int = opt(3, "keep peaks accessible in at least this many kept cells", type="integer", minimum=0)
    binarize: bool = opt(True, "binarize counts before TF-IDF (LiVAE paper section 2.6.3)", type="boolean")
    scale_factor: float = opt(1e4, "TF-IDF scale factor", type="number", exclusiveMinimum=0)
    log: bool = opt(True, "log1p of the scaled TF-IDF", type="boolean")
    n_top_peaks: int = opt(10000, "highly variable peaks kept (LiVAE paper section 2.6.3)", type="integer", minimum=10)
    min_frac: float = opt(0.01, "keep peaks open in at least this fraction of cells", type="number", minimum=0, maximum=1)
    max_frac: float = opt(0.95, "keep peaks open in at most this fraction of cells", type="number", minimum=0, maximum=1)
    center_scale: bool = opt(True, "z-score the model input per peak", type="boolean")
    clip: float | None = opt(10.0, "clip the z-scored input at +-clip (null: no clipping)",
                             type=["number", "null"], exclusiveMinimum=0)


@dataclass
class TrainingConfig:
    """Settings of :func:`geovae.training.train_module` and of every model's ``train`` (``train`` block).

    Defaults follow the LiVAE paper (section 2.7) where it states them. Early stopping: stop when
    the monitored loss (validation ``total``; training ``total`` if the validation set is empty) has
    not improved by more than ``max(min_delta, min_rel_delta * |best loss|)`` for ``patience`` epochs, then
    restore the weights of the last epoch that improved by that much.
    A checkpoint written under the same parameters (``checkpoint_key``) is resumed from. When a loss
    becomes NaN/inf, training restarts from the last good checkpoint with the learning rate halved,
    at most ``divergence_restarts`` times, then fails naming the epoch and the loss terms.
    """

    max_epochs: int = opt(300, "epoch cap (early stopping usually ends training earlier)", type="integer", minimum=1)
    epoch_budget: int = opt(2_000_000, "cells x epochs: the epoch cap becomes round(epoch_budget / cells) when that "
                            "is lower, i.e. at most ~15,600 minibatch steps on large data (binds above ~6,700 cells "
                            "at max_epochs 300; early stopping ended LiVAE within 0.9M on real sets up to 8,617 "
                            "cells); 8000000 is scvi-tools' rule; 0: no budget", type="integer", minimum=0)
    batch_size: int = opt(128, "minibatch size (LiVAE paper section 2.7)", type="integer", minimum=2)
    lr: float = opt(1e-3, "Adam learning rate (benchmarks/lr_sweep.py)", type="number", exclusiveMinimum=0)
    device: str = opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N", type="string",
                      pattern="^(auto|cpu|cuda(:[0-9]+)?)$")
    early_stopping: bool = opt(True, "stop when the validation loss stops improving", type="boolean")
    validation_fraction: float = opt(0.1, "seeded share of cells held out for early stopping",
                                     type="number", minimum=0, exclusiveMaximum=1)
    patience: int = opt(20, "epochs without improvement before stopping", type="integer", minimum=1)
    min_delta: float = opt(0.0, "smallest improvement of the validation loss that counts", type="number", minimum=0)
    min_rel_delta: float = opt(1e-3, "smallest improvement that counts, as a fraction of the best loss so far "
                               "(scale-free; the larger of this and min_delta applies; 1e-3: 26 % fewer epochs on "
                               "3 real sets x 3 seeds, no metric changed: benchmarks/README.md; 0: any improvement)",
                               type="number", minimum=0, exclusiveMaximum=1)
    seed: int = opt(0, "seed of weights, validation split and minibatch order", type="integer", minimum=0)
    progress_bar: bool = opt(True, "show a progress bar over epochs", type="boolean")
    grad_clip: float | None = opt(1.0, "max global gradient norm (LiVAE paper: 1.0); null disables clipping",
                                  type=["number", "null"], exclusiveMinimum=0)
    use_amp: bool = opt(True, "mixed precision on CUDA (ignored on the CPU)", type="boolean")
    cpu_amp: bool = opt(False, "bfloat16 autocast on CPUs with native bf16 (AVX512-BF16/AMX); changes the numbers",
                        type="boolean")
    weight_decay: float = opt(0.0, "Adam weight decay", type="number", minimum=0)
    adam_eps: float = opt(1e-8, "Adam epsilon (1e-8: torch's default; scvi-tools trains with 0.01, which damps "
                          "the small late-training steps: benchmarks/bench_epochs.py)", type="number",
                          exclusiveMinimum=0)
    checkpoint_dir: str | None = opt(None, "folder of the resumable checkpoint (null: none on disk)",
                                     type=["string", "null"])
    checkpoint_every: int = opt(10, "epochs between checkpoints", type="integer", minimum=1)
    checkpoint_key: str = opt("", "extra identity hashed into the checkpoint (the model's parameters)", type="string")
    divergence_restarts: int = opt(1, "restarts with half the learning rate after a NaN/inf loss",
                                   type="integer", minimum=0)

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.epoch_budget < 0:
            raise ValueError(f"epoch_budget must be >= 0, got {self.epoch_budget}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not 0.0 <= self.min_rel_delta < 1.0:
            raise ValueError(f"min_rel_delta must be in [0, 1), got {self.min_rel_delta}")
        if not self.adam_eps > 0:
            raise ValueError(f"adam_eps must be > 0, got {self.adam_eps}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.divergence_restarts < 0:
            raise ValueError(f"divergence_restarts must be >= 0, got {self.divergence_restarts}")

    def epochs_for(self, n_cells: int) -> int:
        """Epoch cap for a dataset of ``n_cells``: ``max_epochs``, lowered by ``epoch_budget`` on large data.

        Parameters
        ----------
        n_cells
            Cells (rows) of the training data, validation cells included.

        Returns
        -------
        int
            ``min(max_epochs, max(1, round(epoch_budget / n_cells)))``; ``max_epochs`` when the
            budget is 0.
        """
        if not self.epoch_budget or n_cells <= 0:
            return self.max_epochs
        return min(self.max_epochs, max(1, round(self.epoch_budget / n_cells)))


#: Every option :meth:`train` of a model accepts (the fields of :class:`TrainingConfig`).
TRAINING_OPTIONS = tuple(f.name for f in fields(TrainingConfig))


def nearest(key: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or ``""`` when none is close.

    Parameters
    ----------
    key
        The unknown name.
    valid
        Accepted names.

    Returns
    -------
    str
        The hint, with a leading space.
    """
    match = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def training_config(options: Mapping[str, Any] | None = None, accepted: Iterable[str] = (),
                    owner: str = "train") -> TrainingConfig:
    """Build a :class:`TrainingConfig` from user options, naming any unknown key.

    Parameters
    ----------
    options
        Option name -> value; absent options take the declared defaults.
    accepted
        Further names the caller handles itself (e.g. siVAE's ``pretrain_epochs``); ignored here.
    owner
        Name used in the error message (e.g. ``"LiVAE.train"``).

    Returns
    -------
    TrainingConfig

    Raises
    ------
    TypeError
        For an option that is not a training option, with the nearest valid name.
    """
    options = scvi_training_names(options, owner)
    extra = set(accepted)
    valid = [*TRAINING_OPTIONS, *sorted(extra)]
    for key in options:
        if key not in TRAINING_OPTIONS and key not in extra:
            raise TypeError(f"{owner}: unknown training option {key!r}{nearest(key, valid)}; "
                            f"valid: {', '.join(valid)}")
    if options.get("checkpoint_dir") is not None:
        options["checkpoint_dir"] = str(options["checkpoint_dir"])
    return TrainingConfig(**{k: v for k, v in options.items() if k in TRAINING_OPTIONS})


#: scvi-tools training argument -> geovae training option (same meaning, translated by
#: :func:`scvi_training_names`).
SCVI_RENAMED = {"early_stopping_patience": "patience", "early_stopping_min_delta": "min_delta",
                "enable_progress_bar": "progress_bar", "gradient_clip_val": "grad_clip"}
#: scvi-tools arguments with no geovae counterpart, and what to use instead.
SCVI_REFUSED = {
    "check_val_every_n_epoch": "validation runs every epoch (it drives early stopping)",
    "shuffle_set_split": "the validation split is always a seeded shuffle (seed=)",
    "load_sparse_tensor": "sparse minibatches are always used for sparse data",
    "datasplitter_kwargs": "use validation_fraction and seed",
    "early_stopping_monitor": "early stopping monitors the validation loss",
    "n_epochs_kl_warmup": "set the model's own warm-up parameter where it has one (geovae models)",
    "n_steps_kl_warmup": "set the model's own warm-up parameter where it has one (geovae models)",
}


def scvi_training_names(options: Mapping[str, Any] | None, owner: str = "train") -> dict[str, Any]:
    """Translate scvi-tools' training arguments into geovae's, or refuse them saying what to use.

    ``accelerator`` ("cpu", "gpu", "cuda", "auto") and ``devices`` (1, or ``[k]`` for one GPU)
    become ``device``; ``train_size`` becomes ``validation_fraction = 1 - train_size``
    (``validation_size`` likewise); ``plan_kwargs`` may carry ``lr``, ``weight_decay`` and ``eps``
    (Adam's, as ``adam_eps``);
    ``early_stopping_patience``, ``early_stopping_min_delta``, ``enable_progress_bar`` and
    ``gradient_clip_val`` are renamed (:data:`SCVI_RENAMED`). A translated option that is also given
    under its geovae name with another value is an error.

    Parameters
    ----------
    options
        Training options as given by the user.
    owner
        Name used in messages.

    Raises
    ------
    TypeError
        For arguments geovae cannot honour (several devices, other ``plan_kwargs``,
        :data:`SCVI_REFUSED`), naming the geovae argument to use.
    ValueError
        For a translated option that contradicts one given under its geovae name.
    """
    options = dict(options or {})
    translated: dict[str, Any] = {}
    for name, reason in SCVI_REFUSED.items():
        if name in options:
            raise TypeError(f"{owner}: scvi-tools' {name!r} has no geovae counterpart: {reason}")
    for old, new in SCVI_RENAMED.items():
        if old in options:
            translated[new] = options.pop(old)
    accelerator, devices = options.pop("accelerator", None), options.pop("devices", None)
    if accelerator is not None or devices is not None:
        translated["device"] = _scvi_device(accelerator, devices, owner)
    for key, share in (("train_size", "train"), ("validation_size", "validation")):
        if options.get(key) is not None:
            value = float(options.pop(key))
            translated["validation_fraction"] = 1.0 - value if share == "train" else value
        options.pop(key, None)
    plan = dict(options.pop("plan_kwargs", None) or {})
    unknown = sorted(set(plan) - {"lr", "weight_decay", "eps"})
    if unknown:
        raise TypeError(f"{owner}: plan_kwargs {unknown} are not geovae training options; plan_kwargs may "
                        "carry lr, weight_decay and eps, the others are model parameters or not supported")
    if "eps" in plan:
        plan["adam_eps"] = plan.pop("eps")
    translated.update(plan)
    for key, value in translated.items():
        if key in options and options[key] != value:
            raise ValueError(f"{owner}: {key} given twice with different values ({options[key]!r} and "
                             f"{value!r} from scvi-tools' argument)")
        options[key] = value
    return options


def _scvi_device(accelerator: Any, devices: Any, owner: str) -> str:
    """``device`` for scvi-tools' ``accelerator`` / ``devices`` (one device only)."""
    if isinstance(devices, (list, tuple)):
        if len(devices) != 1:
            raise TypeError(f"{owner}: devices={devices!r}: geovae trains on one device; use device='cuda:<k>'")
        index: int | None = int(devices[0])
    elif devices in (None, 1, "auto", "1"):
        index = None
    else:
        raise TypeError(f"{owner}: devices={devices!r}: geovae trains on one device; use device='cuda:<k>'")
    kind = {"gpu": "cuda", "cuda": "cuda", "cpu": "cpu", "auto": "auto", None: "auto"}.get(accelerator)
    if kind is None:
        raise TypeError(f"{owner}: accelerator={accelerator!r} is not supported; use device='cpu', 'cuda' or 'auto'")
    if index is not None:
        if kind == "cpu":
            raise TypeError(f"{owner}: devices={devices!r} with accelerator='cpu'; use device='cpu'")
        return f"cuda:{index}"
    return kind


#: Training options set in the workflow's ``train`` block (the others come from elsewhere: ``device``
#: is a top-level key, ``seed`` the run's wildcard, checkpoints and the progress bar the train rule's).
WORKFLOW_TRAIN_KEYS = ("max_epochs", "epoch_budget", "batch_size", "lr", "early_stopping", "validation_fraction", "patience",
                       "min_delta", "min_rel_delta", "grad_clip", "use_amp", "cpu_amp", "weight_decay", "adam_eps",
                       "checkpoint_every", "divergence_restarts")


@dataclass(frozen=True)
class EmbedOptions:
    """2-D embeddings of the latent (``embed``)."""

    umap_n_neighbors: int = opt(15, "UMAP neighbourhood size (umap-learn default)", type="integer", minimum=2)
    umap_min_dist: float = opt(0.5, "UMAP minimum distance (as scanpy.tl.umap)", type="number", minimum=0)
    tsne_perplexity: float = opt(30.0, "t-SNE perplexity (openTSNE)", type="number", exclusiveMinimum=0)
    tsne_method: str = opt("auto", "t-SNE gradients: Barnes-Hut below 10,000 cells and FFT interpolation from "
                           "there (auto, openTSNE's rule), or bh / fft always", type="string",
                           enum=["auto", "bh", "fft"])
    neighbors_method: str = opt("auto", "search of the kNN graph shared by UMAP, t-SNE and Leiden: exact while "
                                "cells x neighbours <= 4,550,000 (50,000 cells at t-SNE's 91 neighbours, ~300,000 "
                                "at the 15 kept when the maps are subsampled) and pynndescent above (auto), or "
                                "exact / nndescent always",
                                type="string", enum=["auto", "exact", "nndescent"])
    map_cells: int = opt(50000, "cells the UMAP and t-SNE layouts are fit on: above it a seeded subsample of this "
                         "many cells is fit and every other cell is placed at the inverse-distance-weighted mean "
                         "of its nearest fitted cells in the latent (0: fit every cell); bounds the maps' cost at "
                         "atlas size", type="integer", minimum=0)


@dataclass(frozen=True)
class MetricsOptions:
    """Embedding metrics (``metrics``)."""

    n_subsample: int = opt(3000, "seeded cells used by the O(n^2) fidelity metrics (0: all)", type="integer", minimum=0)
    n_graph_subsample: int = opt(50000, "seeded labelled cells used by the kNN-graph label metrics (Leiden sweep, "
                                 "kNN accuracy) when a dataset has more (0: all); bounds their cost at atlas size",
                                 type="integer", minimum=0)
    seed: int = opt(0, "seed of the subsamples and of Leiden", type="integer", minimum=0)
    mode: str = opt("steady_state", "intrinsic-metric mode when the sheet gives no data_type",
                    type="string", enum=["steady_state", "trajectory"])


@dataclass(frozen=True)
class InterpretOptions:
    """Latent-component annotation and GO enrichment (``interpret``)."""

    n_top: int = opt(50, "genes per component tail tested for enrichment", type="integer", minimum=1)
    gene_sets: tuple = opt((("human", "resources/go/GO_BP_human_2022-07-01.gmt.gz"),
                            ("mouse", "resources/go/GO_BP_mouse_2022-07-01.gmt.gz")),
                           "GMT file per species (the sheet's species column picks one)",
                           type="object", additionalProperties={"type": "string"})
    gmt: str | None = opt(None, "one GMT file for every dataset (overrides gene_sets)", type=["string", "null"])
    min_coverage: float = opt(0.05, "warn when fewer of the model's genes are in the gene sets",
                              type="number", minimum=0, maximum=1)
    gsea_permutations: int = opt(100, "pre-ranked GSEA permutations per component (0: no GSEA)",
                                 type="integer", minimum=0)
    rotation: str = opt("varimax", "post-hoc rotation of the latent means before annotation (the model and "
                        "embedding are unchanged); varimax recovered the simulated programs best "
                        "(benchmarks/bench_rotation.py)", type="string", enum=["none", "varimax", "ica"])


@dataclass(frozen=True)
class BenchmarkOptions:
    """Across-model statistics (``benchmark``)."""

    reference: str = opt("livae", "model compared against all others", type="string")
    min_datasets: int = opt(3, "fewest datasets for a paired test", type="integer", minimum=2)


@dataclass(frozen=True)
class ResourceOptions:
    """Scheduler resources of the train rule (``resources``)."""

    train_mem_mb: int = opt(8000, "memory of a train job (MB)", type="integer", minimum=100)
    train_runtime_min: int = opt(120, "run time limit of a train job (minutes)", type="integer", minimum=1)


@dataclass(frozen=True)
class GeoOptions:
    """GEO downloads (``geo``)."""

    base_url: str = opt("https://ftp.ncbi.nlm.nih.gov/geo", "GEO root: NCBI, a mirror URL or a local folder",
                        type="string")
    cache_dir: str = opt("cache/geo", "download cache, reused across runs", type="string")


@dataclass(frozen=True)
class RunOptions:
    """Top-level keys of the workflow config."""

    datasets: str = opt("config/datasets.tsv", "dataset sheet (TSV)", type="string")
    models: tuple[str, ...] = opt(["livae"], "models trained on every dataset (`geovae models`)",
                                  type="array", items={"type": "string", "pattern": "^[a-z0-9_]+$"}, minItems=1)
    seeds: tuple[int, ...] = opt([0], "seeds of each run", type="array", items={"type": "integer", "minimum": 0},
                                 minItems=1)
    device: str = opt("auto", "torch device: auto (CUDA when available), cpu or cuda", type="string",
                      enum=["auto", "cpu", "cuda"])
    gpu: bool = opt(False, "ask the scheduler for a GPU for each train job (device auto)", type="boolean")
    per_dataset: tuple = opt((), "settings of one dataset, by dataset id: any of preprocess, train, embed, metrics, "
                             "interpret, models, seeds or a model's parameter block (see README 'Per-dataset settings')",
                             type="object", additionalProperties={"type": "object"})
    refresh_gene_sets_source: str = opt("debian", "source of the refresh_gene_sets rule (not a default target)",
                                        type="string", enum=["debian", "enrichr"])
    refresh_gene_sets_library: str = opt("GO_Biological_Process_2023", "Enrichr library of refresh_gene_sets",
                                         type="string")


RNA = RnaPreprocessOptions()
ATAC = AtacPreprocessOptions()
TRAIN = TrainingConfig()
EMBED = EmbedOptions()
METRICS = MetricsOptions()
INTERPRET = InterpretOptions()
GEO = GeoOptions()

#: Config path -> declaration (``None`` = top level).
BLOCKS: dict[str | None, type] = {
    None: RunOptions, "geo": GeoOptions, "preprocess.rna": RnaPreprocessOptions,
    "preprocess.atac": AtacPreprocessOptions, "train": TrainingConfig, "embed": EmbedOptions,
    "metrics": MetricsOptions, "interpret": InterpretOptions, "benchmark": BenchmarkOptions,
    "resources": ResourceOptions,
}


def _plain(value: Any, kind: Any = None) -> Any:
    """Declaration default -> config value: a tuple is a list, or a dict of its pairs for an
    ``object`` option (dataclass defaults must be immutable)."""
    if isinstance(value, tuple) and kind == "object":
        return {k: _plain(v) for k, v in value}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _field_default(f: Any) -> Any:
    return _plain(f.default if f.default is not MISSING else None, f.metadata.get("schema", {}).get("type"))


def _block_keys(path: str | None, declaration: type) -> list[str]:
    names = [f.name for f in fields(declaration)]
    return list(WORKFLOW_TRAIN_KEYS) if path == "train" else names


def option_defaults(declaration: type, keys: list[str] | None = None) -> dict[str, Any]:
    """The defaults of a declaration as plain config values.

    Parameters
    ----------
    declaration
        One of the option dataclasses.
    keys
        Only these fields (default: all).

    Returns
    -------
    dict
        Field name -> default (lists and dicts, as YAML would give them).
    """
    out = {}
    for f in fields(declaration):
        if keys is None or f.name in keys:
            out[f.name] = _field_default(f)
    return out


def block_fields(path: str | None) -> list[Any]:
    """Fields of the config block ``path`` (``None``: top level) that the workflow config accepts.

    Parameters
    ----------
    path
        A key of :data:`BLOCKS`.

    Returns
    -------
    list of dataclasses.Field
    """
    declaration = BLOCKS[path]
    keys = _block_keys(path, declaration)
    return [f for f in fields(declaration) if f.name in keys]


def option_table(path: str | None) -> str:
    """Markdown table (option, default, meaning) of one config block, for ``docs/options.md``.

    Parameters
    ----------
    path
        A key of :data:`BLOCKS`.

    Returns
    -------
    str
        The table, one row per option.
    """
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in block_fields(path):
        default = _field_default(f)
        shown = "null" if default is None else (str(default).lower() if isinstance(default, bool) else default)
        shown = str(shown).replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{shown}` | {f.metadata['help'].replace('|', '/')} |")
    return "\n".join(rows)
