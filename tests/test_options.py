"""One declaration per option: the package, the CLI and the workflow see the same defaults; every
training option reaches the training loop through ``train=`` and as a keyword; typos are named."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from geovae import options as O
from geovae.workflow_config import ConfigError, complete_config, default_config, generated_files

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- defaults agree


def _defaults(func) -> dict:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_package_functions_take_their_defaults_from_the_declarations() -> None:
    from geovae.embedding import embed_2d
    from geovae.interpretation.pipeline import interpret_run
    from geovae.metrics import evaluate
    from geovae.preprocessing.atac import preprocess_atac
    from geovae.preprocessing.rna import preprocess_rna, qc_rna
    from geovae.tl import tsne, umap

    for func, declared in ((preprocess_rna, O.RNA), (qc_rna, O.RNA), (preprocess_atac, O.ATAC)):
        got = _defaults(func)
        for f in fields(declared):
            if f.name in got:
                assert got[f.name] == getattr(declared, f.name), (func.__name__, f.name)
    assert set(_defaults(preprocess_rna)) >= {f.name for f in fields(O.RNA)}
    assert set(_defaults(preprocess_atac)) >= {f.name for f in fields(O.ATAC)}
    ev = _defaults(evaluate)
    assert (ev["n_subsample"], ev["seed"], ev["mode"]) == (O.METRICS.n_subsample, O.METRICS.seed, O.METRICS.mode)
    assert ev["mode"] == "steady_state"  # the CLI's and the pipeline's mode, now the package's too
    em = _defaults(embed_2d)
    assert (em["n_neighbors"], em["min_dist"], em["perplexity"]) == (
        O.EMBED.umap_n_neighbors, O.EMBED.umap_min_dist, O.EMBED.tsne_perplexity)
    assert _defaults(umap)["n_neighbors"] == O.EMBED.umap_n_neighbors
    assert _defaults(tsne)["perplexity"] == O.EMBED.tsne_perplexity
    it = _defaults(interpret_run)
    assert (it["n_top"], it["min_coverage"], it["gsea_permutations"]) == (
        O.INTERPRET.n_top, O.INTERPRET.min_coverage, O.INTERPRET.gsea_permutations)


def test_training_defaults_are_the_pipelines() -> None:
    """``max_epochs`` was 300 in the config and 200 in the package: one value now, seen by all."""
    from geovae.training import TrainingConfig

    assert TrainingConfig().max_epochs == O.TRAIN.max_epochs == 300
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    full = complete_config(shipped)
    for key in O.WORKFLOW_TRAIN_KEYS:
        assert full["train"][key] == getattr(TrainingConfig(), key), key
    assert full["preprocess"]["rna"]["n_top_genes"] == O.RNA.n_top_genes
    assert full["metrics"]["n_subsample"] == O.METRICS.n_subsample


def test_shipped_config_restates_no_default() -> None:
    """config/config.yaml holds choices only: a value equal to its default would be a second copy."""
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    defaults = default_config()
    blocks = [k for k, v in shipped.items() if isinstance(v, dict)]
    assert not blocks, f"config.yaml restates option blocks {blocks}; defaults live in geovae.options"
    assert set(shipped) <= set(defaults)


def test_cli_flags_and_help_come_from_the_declarations(capsys: pytest.CaptureFixture[str]) -> None:
    from geovae.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    flags = {a.dest: a for a in train._actions}
    for f in O.block_fields("train"):
        assert f.name in flags, f"geovae train has no flag for training option {f.name}"
        assert flags[f.name].default is None  # not given -> the declared default applies
        assert f"default: {f.default}" in flags[f.name].help
    assert flags["device"].default == O.TRAIN.device and flags["seed"].default == O.TRAIN.seed
    ev = {a.dest: a.default for a in sub.choices["evaluate"]._actions}
    assert (ev["mode"], ev["n_subsample"], ev["seed"]) == (O.METRICS.mode, O.METRICS.n_subsample, O.METRICS.seed)
    acq = {a.dest: a.default for a in sub.choices["acquire"]._actions}
    assert acq["cache_dir"] == O.GEO.cache_dir and acq["base_url"] == O.GEO.base_url


def test_generated_files_are_in_sync() -> None:
    """Schemas and docs/options.md are generated from the declarations (`geovae config --write .`)."""
    for rel, text in generated_files().items():
        assert (ROOT / rel).read_text() == text, f"{rel} is stale: run `geovae config --write .`"
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["train"]["properties"]["max_epochs"]["default"] == O.TRAIN.max_epochs
    assert schema["properties"]["preprocess"]["properties"]["rna"]["additionalProperties"] is False


def test_workflow_sees_the_declared_defaults(tmp_path: Path) -> None:
    """The Snakemake process fills the config from the package (dry run of a copy of the workflow)."""
    import subprocess
    import sys

    from project_copy import workflow_copy

    project = workflow_copy(tmp_path / "p")
    probe = project / "workflow" / "rules" / "probe.smk"
    probe.write_text("rule probe_defaults:\n    output: 'probe.yaml'\n    run:\n"
                     "        import yaml\n        open(output[0], 'w').write(yaml.safe_dump(config))\n")
    with (project / "Snakefile").open("a") as handle:
        handle.write('\ninclude: "workflow/rules/probe.smk"\n')
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "probe_defaults"], cwd=project,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = yaml.safe_load((project / "probe.yaml").read_text())
    assert seen["train"]["max_epochs"] == O.TRAIN.max_epochs
    assert seen["metrics"] == default_config()["metrics"]
    assert seen["preprocess"]["atac"]["binarize"] is O.ATAC.binarize


# --------------------------------------------------------------------------- typos


@pytest.mark.parametrize(("config", "message"), [
    ({"trian": {"max_epochs": 3}}, "unknown key 'trian' (did you mean 'train'?)"),
    ({"train": {"max_epoch": 3}}, "unknown key 'train.max_epoch' (did you mean 'max_epochs'?)"),
    ({"preprocess": {"rna": {"min_gene": 3}}}, "'preprocess.rna.min_gene' (did you mean 'min_genes'?)"),
    ({"livae": {"lorentz_wieght": 1}}, "'livae.lorentz_wieght' of model 'livae' (did you mean 'lorentz_weight'?)"),
    ({"models": ["livea"]}, "unknown model(s) livea (did you mean 'livae'?)"),
    ({"train": {"max_epochs": "many"}}, "train.max_epochs"),
])
def test_config_typos_are_named(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        complete_config(config)
    assert message in str(err.value)


def test_misspelt_config_key_stops_the_workflow_before_any_job(tmp_path: Path) -> None:
    import subprocess
    import sys

    from project_copy import workflow_copy

    project = workflow_copy(tmp_path / "p")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "trian={}"],
                          cwd=project, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "unknown key 'trian' (did you mean 'train'?)" in proc.stdout + proc.stderr
    assert not (project / "results").exists()


# --------------------------------------------------------------------------- train options, both routes

#: A non-default value for every training option.
NON_DEFAULT = {"max_epochs": 7, "epoch_budget": 1000, "batch_size": 33, "lr": 0.02, "device": "cpu", "early_stopping": False,
               "validation_fraction": 0.2, "patience": 3, "min_delta": 0.5, "min_rel_delta": 0.01, "seed": 5,
               "progress_bar": False,
               "grad_clip": None, "use_amp": False, "cpu_amp": True, "weight_decay": 0.01, "adam_eps": 0.01,
               "checkpoint_dir": "somewhere", "checkpoint_every": 4, "checkpoint_key": "ignored",
               "divergence_restarts": 0}


def test_every_training_option_has_a_test_value() -> None:
    assert set(NON_DEFAULT) == set(O.TRAINING_OPTIONS)
    for name, value in NON_DEFAULT.items():
        assert value != getattr(O.TRAIN, name), name


@pytest.fixture
def captured(monkeypatch):
    """Replace the training loop by a recorder of the config it receives."""
    import pandas as pd

    import geovae.models.base as base
    from geovae.training import TrainingResult

    seen = []

    def fake_train_module(module, data, config):
        seen.append(config)
        return TrainingResult(history=pd.DataFrame({"epoch": [1], "train_total": [0.0]}), metadata={})

    monkeypatch.setattr(base, "train_module", fake_train_module)
    return seen


@pytest.fixture(scope="module")
def tiny():
    from simulated import simulated_counts

    return simulated_counts(n_cells=60, n_genes=20)


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_training_option_through_both_routes(name: str, captured: list, tiny) -> None:
    from geovae import tl
    from geovae.models import LiVAE

    value = NON_DEFAULT[name]
    tl.fit_model(tiny.copy(), model="livae", params={"latent_dim": 2, "hidden_dim": 8}, train={name: value})
    LiVAE.setup_anndata(adata := tiny.copy())
    LiVAE(adata, latent_dim=2, hidden_dim=8).train(**{name: value})
    via_train, via_keyword = captured
    if name == "checkpoint_key":  # the model hashes its own name and parameters into the key
        assert via_train.checkpoint_key == via_keyword.checkpoint_key != value
        return
    expected = str(value) if name == "checkpoint_dir" else value
    assert getattr(via_train, name) == getattr(via_keyword, name) == expected


def test_keyword_and_train_dict_conflict_is_named(captured: list, tiny) -> None:
    from geovae import tl

    params = {"latent_dim": 2, "hidden_dim": 8}
    with pytest.raises(ValueError, match="'progress_bar' given twice"):
        tl.fit_model(tiny.copy(), params=params, train={"progress_bar": False}, progress_bar=True)
    tl.fit_model(tiny.copy(), params=params, train={"seed": 3}, seed=3)  # same value twice: fine
    assert captured[-1].seed == 3
    with pytest.raises(TypeError, match=r"unknown training option 'progres_bar' \(did you mean 'progress_bar'\?\)"):
        tl.fit_model(tiny.copy(), params=params, train={"progres_bar": False})


def test_embed_with_progress_bar_in_train_trains_for_real(tiny) -> None:
    """The README's call that raised 'got multiple values for keyword argument progress_bar'."""
    from geovae import tl

    adata = tiny.copy()
    model = tl.embed(adata, model="livae", params={"latent_dim": 2, "hidden_dim": 8},
                     train={"progress_bar": False, "max_epochs": 2})
    assert adata.obsm["X_livae"].shape == (adata.n_obs, 2)
    assert model.metadata["config"]["progress_bar"] is False and len(model.history) == 2


@pytest.mark.parametrize("model", ["pca", "sivae"])
def test_other_models_name_unknown_training_options(model: str, tiny) -> None:
    from geovae import tl

    with pytest.raises(TypeError, match="max_epochs"):
        tl.fit_model(tiny.copy(), model=model, train={"max_epoch": 2})
