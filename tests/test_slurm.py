"""The tiny workflow on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, munge) via
``--profile profiles/slurm``: every job must be a SLURM job with the resources Snakemake asked for,
and its deterministic results (preprocessed matrix, latent means, loss history of the CPU training)
must equal those of a local run of the same config.

The cluster is installed (apt) and started by tests/slurm/start-slurm.sh (idempotent); at teardown
tests/slurm/stop-slurm.sh stops the daemons this test started, and only those.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = ROOT / "tests" / "slurm"
STARTED = Path("/run/geovae-slurm/started")
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
RUN_TIMEOUT_S = 720  # a status misconfiguration (e.g. no accounting) makes the plugin hang: fail instead
PARTITION, ACCOUNT = "debug", "ci"
CLUSTER_RULES = {"acquire", "preprocess", "train", "embed", "metrics", "interpret"}
LOCAL_RULES = {"aggregate_metrics", "summary", "benchmark_stats", "program_validation", "refresh_gene_sets"}

pytestmark = pytest.mark.integration


def _started_daemons() -> list[str]:
    return STARTED.read_text().split("\n") if STARTED.exists() else []


@pytest.fixture(scope="module")
def slurm_cluster():
    """Start the local cluster (installing SLURM with apt when missing); stop what we started."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (apt-get, munged, slurmd)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and apt-get is unavailable to install it")
    before = set(_started_daemons())
    proc = subprocess.run(["timeout", "900", "bash", str(SLURM_DIR / "start-slurm.sh")],
                          capture_output=True, text=True, env={**os.environ, "SLURM_FAKE_GPUS": "1"})
    ours = [line.split()[0] for line in _started_daemons() if line.strip() and line not in before]
    try:
        assert proc.returncode == 0, f"start-slurm.sh failed:\n{proc.stdout}\n{proc.stderr}"
        yield
    finally:
        if ours:
            subprocess.run(["bash", str(SLURM_DIR / "stop-slurm.sh"), *ours], capture_output=True, timeout=120)


def _tiny_config(work: Path) -> Path:
    """tests/config/tiny.yaml on the builtin pbmc68k only; device auto with gpu: true, so the train
    rule asks for gpu=1 (a fake gres on the test node) and trains on the CPU as the local run does."""
    work.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"dataset": "pbmc", "source": "builtin", "accession": "pbmc68k", "path": "",
                   "modality": "rna", "species": "human", "label_key": "bulk_labels", "batch_key": "",
                   "data_type": "steady_state"}]).to_csv(work / "datasets.tsv", sep="\t", index=False)
    config = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    config["datasets"] = str(work / "datasets.tsv")
    config["interpret"]["gene_sets"]["human"] = str(ROOT / "resources" / "go" / "GO_Biological_Process_2021_human.gmt.gz")
    config["device"], config["gpu"] = "auto", True
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return work / "config.yaml"


def _parse_jobs(log: str) -> dict[int, dict]:
    """Snakemake's job blocks -> {slurm job id: {rule, threads, resources}}."""
    blocks: dict[str, dict] = {}
    current: dict = {}
    for line in log.splitlines():
        if m := re.match(r"^(local)?rule (\w+):", line):
            current = {"rule": m.group(2), "local": bool(m.group(1)), "threads": 1, "resources": {}}
        elif m := re.match(r"^\s+jobid: (\d+)", line):
            blocks[m.group(1)] = current
        elif m := re.match(r"^\s+threads: (\d+)", line):
            current["threads"] = int(m.group(1))
        elif m := re.match(r"^\s+resources: (.*)", line):
            current["resources"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len({jobid for jobid, _ in submitted})
    not_submitted = {blocks[j]["rule"] for j in set(blocks) - {jobid for jobid, _ in submitted}}
    assert not_submitted <= {"all"} | LOCAL_RULES, f"jobs that did not go through SLURM: {not_submitted}"
    assert not any(blocks[j]["local"] for j, _ in submitted), "a localrule was submitted to SLURM"
    return {int(slurm_id): blocks[jobid] for jobid, slurm_id in submitted}


def _minutes(limit: str) -> int:
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("slurm")
    local_cfg, slurm_cfg = _tiny_config(base / "local"), _tiny_config(base / "slurm")
    # local reference up to training (the stages whose outputs are compared), run alongside the SLURM run
    local = subprocess.Popen([*SNAKEMAKE, "--cores", "2", "--configfile", str(local_cfg), "--until", "train"],
                             cwd=local_cfg.parent,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    # the test cluster's partition and account are given by the test, as a user gives theirs
    slurm = subprocess.run(["timeout", str(RUN_TIMEOUT_S), *SNAKEMAKE, "--profile", str(ROOT / "profiles" / "slurm"),
                            "--default-resources", f"slurm_partition={PARTITION}", f"slurm_account={ACCOUNT}",
                            "--configfile", str(slurm_cfg)], cwd=slurm_cfg.parent, capture_output=True, text=True)
    wall = time.monotonic() - t0
    local_out, _ = local.communicate(timeout=900)
    log = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, f"SLURM run failed (rc {slurm.returncode}, 124 = timeout):\n{log[-6000:]}"
    assert local.returncode == 0, local_out[-4000:]
    print(f"SLURM workflow wall time: {wall:.0f} s")
    return {"local": local_cfg.parent, "slurm": slurm_cfg.parent, "jobs": _parse_jobs(log), "wall_s": wall}


def test_every_job_ran_as_a_slurm_job_with_its_resources(runs: dict) -> None:
    jobs = runs["jobs"]
    assert CLUSTER_RULES <= {job["rule"] for job in jobs.values()}  # (_parse_jobs: nothing else ran locally)
    fields = ["JobID", "JobName", "State", "Partition", "Account", "AllocCPUS", "ReqMem", "Timelimit", "ReqTRES"]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(map(str, jobs)), "-o", ",".join(fields)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    acct = {int(row["JobID"]): row for row in (dict(zip(fields, line.split("|"))) for line in out.splitlines())}
    assert set(acct) == set(jobs), f"sacct knows {sorted(acct)}, Snakemake submitted {sorted(jobs)}"
    assert len({row["JobName"] for row in acct.values()}) == 1  # one workflow run (its uuid)
    for slurm_id, job in jobs.items():
        row, res, what = acct[slurm_id], job["resources"], f"{job['rule']} (SLURM job {slurm_id})"
        assert row["State"] == "COMPLETED", what
        assert (row["Partition"], row["Account"]) == (PARTITION, ACCOUNT), what
        assert int(row["AllocCPUS"]) == job["threads"], what
        assert row["ReqMem"] == f"{res['mem_mb']}M", what
        assert _minutes(row["Timelimit"]) == int(res["runtime"]), what
        gpus = int(res.get("gpu", 0))
        assert ("gres/gpu=1" in row["ReqTRES"]) == (gpus == 1) and gpus in (0, 1), f"{what}: {row['ReqTRES']}"
    by_rule = {job["rule"]: job for job in jobs.values()}
    # values set by profiles/slurm (set-resources / default-resources) and by the train rule
    assert by_rule["train"]["resources"]["gpu"] == "1" and by_rule["train"]["resources"]["runtime"] == "120"
    assert by_rule["train"]["threads"] == 2
    assert "summary" not in by_rule and "aggregate_metrics" not in by_rule  # localrules: not cluster jobs


def test_site_defaults_read_from_the_real_cluster(slurm_cluster) -> None:
    """geovae.cluster.site_defaults parses the real sinfo/sacctmgr/scontrol of the test cluster."""
    from geovae.cluster import site_defaults

    site = site_defaults()
    assert site.partition == PARTITION  # the test cluster's only partition is its default
    assert isinstance(site.accounts_enforced, bool)


def test_slurm_outputs_equal_local_outputs(runs: dict) -> None:
    local, slurm = runs["local"] / "results", runs["slurm"] / "results"
    run = Path("pbmc") / "livae" / "0"
    a, b = ad.read_h5ad(local / "pbmc" / "preprocessed.h5ad"), ad.read_h5ad(slurm / "pbmc" / "preprocessed.h5ad")
    assert (a.obs_names == b.obs_names).all() and (a.var_names == b.var_names).all()
    assert (a.X != b.X).nnz == 0
    # CPU training is float32 and deterministic for a seed: identical numbers, bit for bit
    np.testing.assert_array_equal(ad.read_h5ad(local / run / "latent.h5ad").obsm["X_latent"],
                                  ad.read_h5ad(slurm / run / "latent.h5ad").obsm["X_latent"])
    hist_local, hist_slurm = (pd.read_csv(d / run / "history.tsv", sep="\t") for d in (local, slurm))
    timing = [c for c in hist_local.columns if c in ("seconds", "time", "elapsed")]
    pd.testing.assert_frame_equal(hist_local.drop(columns=timing), hist_slurm.drop(columns=timing), check_exact=True)
    metrics = pd.read_csv(slurm / "metrics.tsv", sep="\t").set_index("metric")["value"]
    assert 0.0 <= metrics["NMI"] <= 1.0 and np.isfinite(metrics["ASW"])
    assert (slurm / "report" / "summary.html").stat().st_size > 0


def test_profiles_are_complete() -> None:
    """No cluster needed: the knobs the README documents exist in the profiles."""
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.v8+.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["slurm-init-seconds-before-status-checks"] <= 10
    # no site-specific values: partition and account come from the command line or the site's defaults
    assert "default-resources" not in slurm or not {"slurm_partition", "slurm_account"} & set(slurm["default-resources"])
    for profile in ("slurm", "cluster-generic"):
        text = (ROOT / "profiles" / profile / "config.v8+.yaml").read_text()
        assert not re.search(r"^\s*slurm_(partition|account):", text, flags=re.M), profile
    generic = yaml.safe_load((ROOT / "profiles" / "cluster-generic" / "config.v8+.yaml").read_text())
    assert generic["executor"] == "cluster-generic" and "sbatch" in generic["cluster-generic-submit-cmd"]
    assert (ROOT / generic["cluster-generic-status-cmd"]).stat().st_mode & 0o111


@pytest.mark.parametrize(("state", "expected"), [("COMPLETED", "success"), ("RUNNING", "running"),
                                                 ("PENDING", "running"), ("CANCELLED by 0", "failed"),
                                                 ("OUT_OF_MEMORY", "failed"), ("TIMEOUT", "failed"), ("", "running")])
def test_cluster_generic_status_mapping(state: str, expected: str) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("status", ROOT / "profiles" / "cluster-generic" / "status.py")
    status = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(status)
    assert status.classify(state) == expected


def test_timelimit_parsing() -> None:
    assert [_minutes(t) for t in ("00:30:00", "02:00:00", "1-00:00:00", "00:00:30")] == [30, 120, 1440, 1]


# --- site settings check (no cluster needed: the cluster's answers are given) -------------------

def _runner(sinfo: str | None, default_account: str | None, enforce: str = "associations,limits"):
    answers = {"sinfo": sinfo, "sacctmgr": default_account,
               "scontrol": f"AccountingStorageEnforce = {enforce}\nClusterName = c\n"}
    return lambda argv: answers[argv[0]]


def test_site_defaults_parse_the_cluster_answers() -> None:
    from geovae.cluster import site_defaults

    site = site_defaults(_runner("gpu\nbatch*\nlong\n", "lab1\n"), user="u")
    assert (site.partition, site.account, site.accounts_enforced) == ("batch", "lab1", True)
    site = site_defaults(_runner("gpu\nlong\n", "", enforce="none"), user="u")
    assert (site.partition, site.account, site.accounts_enforced) == (None, None, False)
    assert site_defaults(lambda argv: None, user="u") == type(site)(None, None, False)  # no SLURM commands


def test_missing_site_settings_stop_the_run_with_a_message() -> None:
    from geovae.cluster import SiteDefaults, check_slurm_site

    given = {"train": {"slurm_partition": "gpu", "slurm_account": "lab"}}
    check_slurm_site(given, defaults=lambda: pytest.fail("the cluster is not asked when all is given"))
    lacking = {"train": {"mem_mb": 8000}, "embed": {"slurm_partition": "", "slurm_account": "lab"}}
    check_slurm_site(lacking, SiteDefaults("batch", "lab1", True))  # the site's defaults apply
    check_slurm_site(lacking, SiteDefaults("batch", None, False))  # accounts not enforced
    with pytest.raises(ValueError, match=r"no slurm_partition for rule\(s\) embed, train.*slurm_partition=<partition>"):
        check_slurm_site(lacking, SiteDefaults(None, "lab1", True))
    with pytest.raises(ValueError, match=r"no slurm_account for rule\(s\) train, the cluster requires one"):
        check_slurm_site(lacking, SiteDefaults("batch", None, True))
