"""Faults at the level of the Snakemake workflow (issue #9).

Fast: schema errors in the config or the dataset sheet stop the run before any job (dry runs).
Slow (real runs on pbmc68k): ``--keep-going`` past broken datasets, provenance in every h5ad, and a
train job killed with SIGTERM or SIGKILL that, rerun, resumes from its checkpoint and ends with outputs
identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import geo_server as gs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
RUN = "results/pbmc/livae/0"


def _snakemake(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _sheet(rows: list[dict[str, str]]) -> pd.DataFrame:
    base = {"source": "builtin", "accession": "", "path": "", "modality": "rna", "species": "human",
            "label_key": "", "batch_key": "", "data_type": "steady_state"}
    return pd.DataFrame([{**base, **row} for row in rows])


def _config(work: Path, sheet: pd.DataFrame, **train: object) -> Path:
    sheet.to_csv(work / "datasets.tsv", sep="\t", index=False)
    config = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    config["datasets"] = str(work / "datasets.tsv")
    config["interpret"]["gene_sets"]["human"] = str(ROOT / "resources" / "go" / "GO_Biological_Process_2021_human.gmt.gz")
    config["geo"] = {"base_url": str(work / "empty_geo_mirror"), "cache_dir": str(work / "geo_cache")}
    config["train"].update(train)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


PBMC = {"dataset": "pbmc", "accession": "pbmc68k", "label_key": "bulk_labels"}
#: Long enough (epochs) to be killed mid-run, short in seconds.
TRAIN = {"max_epochs": 24, "early_stopping": False, "checkpoint_every": 3}


# ----------------------------------------------------------------------------- before any job
BAD_ROWS = [
    ({"dataset": "../evil"}, "field dataset"),
    ({"dataset": "has space"}, "field dataset"),
    ({"dataset": "typo", "source": "geo", "accession": "GSE12x"}, "field accession"),
    ({"dataset": "weird", "modality": "protein"}, "field modality"),
]


def test_bad_sheet_rows_fail_before_any_job(tmp_path):
    """Unsafe ids (path traversal, spaces), a malformed accession and an unknown modality: every bad
    row is named in one error, before any job runs."""
    rows = [PBMC, *({"accession": "pbmc68k", **row} for row, _ in BAD_ROWS)]
    config = _config(tmp_path, _sheet(rows))
    proc = _snakemake("-n", "--cores", "1", "--configfile", str(config), cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    for line, (row, field) in enumerate(BAD_ROWS, start=3):
        assert f"line {line} (dataset '{row['dataset']}'): {field}" in out, (row, out[-3000:])
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("train", "max_epochs", "ten", "train.max_epochs: 'ten' is not of type 'integer'"),
    ("train", "lr", -1.0, "train.lr: -1.0 is less than or equal to the minimum of 0"),
    ("train", "checkpoint_every", 0, "train.checkpoint_every: 0 is less than the minimum of 1"),
    ("livae", "likelihood", "gaussian", "livae.likelihood: 'gaussian' is not one of"),
    ("livae", "latent_dim", "ten", "livae.latent_dim: 'ten' is not an integer"),
    ("preprocess", "rna", {"min_gene": 200}, "unknown key 'preprocess.rna.min_gene' (did you mean 'min_genes'?)"),
])
def test_bad_config_values_are_named(section, key, value, message):
    from geovae.workflow_config import ConfigError, complete_config

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    complete_config(config)  # the shipped config is valid
    config.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as info:
        complete_config(config)
    assert message in str(info.value)


def test_bad_config_value_fails_before_any_job(tmp_path):
    config = _config(tmp_path, _sheet([PBMC]))
    data = yaml.safe_load(config.read_text())
    data["train"]["max_epochs"] = "ten"
    config.write_text(yaml.safe_dump(data))
    proc = _snakemake("-n", "--cores", "1", "--configfile", str(config), cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "train.max_epochs: 'ten' is not of type 'integer'" in out
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """pbmc through embed, plus two broken datasets (a truncated file, a missing label column) run with
    --keep-going. (An unknown GEO accession is checked in tests/test_reliability.py.)"""
    work = tmp_path_factory.mktemp("reference")
    pbmc = gs.pbmc_counts(150)
    pbmc.write_h5ad(work / "cells.h5ad")
    data = (work / "cells.h5ad").read_bytes()
    (work / "truncated.h5ad").write_bytes(data[: len(data) // 2])
    sheet = _sheet([PBMC,
                    {"dataset": "truncated", "source": "local", "path": str(work / "truncated.h5ad")},
                    {"dataset": "nolabel", "source": "local", "path": str(work / "cells.h5ad"),
                     "label_key": "celltype"}])
    config = _config(work, sheet, **TRAIN)
    targets = [f"{RUN}/embedding.h5ad", *(f"results/{d}/preprocessed.h5ad" for d in ("truncated", "nolabel"))]
    proc = _snakemake(*targets, "--cores", "2", "--keep-going", "--configfile", str(config), cwd=work)
    (work / "snakemake.out").write_text(proc.stdout + proc.stderr)
    assert (work / RUN / "embedding.h5ad").exists(), (proc.stdout + proc.stderr)[-6000:]
    return work


@pytest.mark.slow
def test_keep_going_past_broken_datasets(reference):
    out = (reference / "snakemake.out").read_text()
    assert "Exiting because a job execution failed" in out or "failed" in out.lower()
    expected = {
        "truncated": ["dataset 'truncated'", "truncated.h5ad", "corrupt or truncated"],
        "nolabel": ["dataset 'nolabel'", "label_key 'celltype' is not an obs column"],
    }
    for dataset, needles in expected.items():
        assert not (reference / "results" / dataset / "raw.h5ad").exists()
        log = (reference / "logs" / "acquire" / f"{dataset}.log").read_text()
        for needle in needles:
            assert needle in log, (dataset, needle, log[-1500:])
    assert not list((reference / "results").rglob(".partial-*"))
    assert not (reference / RUN / "checkpoint").exists()  # removed once the train outputs were complete


@pytest.mark.slow
def test_every_h5ad_records_provenance(reference):
    from geovae.runinfo import config_hash, git_commit
    from geovae.workflow_config import complete_config

    # the effective config: the file completed with the declared defaults
    config = complete_config(yaml.safe_load((reference / "config.yaml").read_text()))
    for path in ("results/pbmc/raw.h5ad", "results/pbmc/preprocessed.h5ad", f"{RUN}/embedding.h5ad"):
        record = ad.read_h5ad(reference / path, backed="r").uns["geovae"]
        assert record["git_commit"] == git_commit()["commit"], path
        assert record["geovae_version"] and record["versions"]["torch"] == torch.__version__
        assert len(record["config_hash"]) == 64 and record["timings"], path
        assert record["config_hash"] == config_hash(config), path
    emb = ad.read_h5ad(reference / RUN / "embedding.h5ad", backed="r").uns["geovae"]
    assert emb["seed"] == 0 and emb["device"] == "cpu" and emb["timings"]["train"] > 0


def _job_pid(work: Path, script: str, deadline: float) -> int:
    """Process id of the Snakemake job running ``script`` with ``work`` as working directory."""
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
                if script in cmd and "python" in cmd and Path(os.readlink(entry / "cwd")) == work:
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.05)
    raise TimeoutError(f"no job running {script} in {work}")


def _kill_train_mid_run(work: Path, config: Path, sig: signal.Signals) -> str:
    proc = subprocess.Popen([*SNAKEMAKE, f"{RUN}/latent.h5ad", "--cores", "2", "--configfile", str(config)],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = work / RUN / "checkpoint" / "checkpoint.pt"
    deadline = time.time() + 300
    try:
        pid = _job_pid(work, "train.py", deadline)
        while not checkpoint.exists():
            assert proc.poll() is None and time.time() < deadline, "training ended before a checkpoint"
            time.sleep(0.05)
        os.kill(pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    return out


def _latent_text(path: Path) -> bytes:
    """The latent means of a run's latent.h5ad, as bytes (bit-for-bit comparison)."""
    return ad.read_h5ad(path).obsm["X_latent"].tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_train_job_resumes_to_identical_outputs(reference, tmp_path, sig):
    work = tmp_path
    config = _config(work, _sheet([PBMC]), **TRAIN)
    prep = _snakemake("results/pbmc/preprocessed.h5ad", "--cores", "2", "--configfile", str(config), cwd=work)
    assert prep.returncode == 0, prep.stderr[-3000:]

    _kill_train_mid_run(work, config, sig)
    run = work / RUN
    finished = [p.name for p in run.iterdir() if not p.name.startswith(".")] if run.exists() else []
    assert finished == ["checkpoint"], finished  # nothing that looks finished
    if sig == signal.SIGTERM:
        assert not list(run.glob(".partial-*"))  # SIGTERM lets the job remove its temporaries

    rerun = _snakemake(f"{RUN}/latent.h5ad", "--cores", "2", "--configfile", str(config), cwd=work)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    log = (work / "logs" / "train" / "pbmc" / "livae" / "0.log").read_text()
    assert "resuming from the checkpoint" in log
    assert not (run / "checkpoint").exists() and not list(run.glob(".partial-*"))

    ref = reference / RUN
    assert _latent_text(run / "latent.h5ad") == _latent_text(ref / "latent.h5ad")  # bit for bit
    hist, ref_hist = (pd.read_csv(p / "history.tsv", sep="\t").drop(columns="seconds") for p in (run, ref))
    pd.testing.assert_frame_equal(hist, ref_hist, check_exact=True)
    weights, ref_weights = (torch.load(p / "model" / "model.pt", weights_only=True) for p in (run, ref))
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
