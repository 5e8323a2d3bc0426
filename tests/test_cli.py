"""Tests of the ``geovae`` command line and the dataset-sheet helpers (geovae.data.sheet)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from geovae.cli import main, parse_params, UsageError
from geovae.data.sheet import SheetError, append_row, geo_row, read_sheet
from project_copy import workflow_copy

ROOT = Path(__file__).resolve().parents[1]
SHEET_HEADER = "dataset\tsource\taccession\tpath\tmodality\tspecies\tlabel_key\tbatch_key\tdata_type\tdescription\n"


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def raw_counts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two groups of 60 cells x 80 genes with group-specific genes (integer counts)."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 120, 80
    group = np.repeat(["A", "B"], n_cells // 2)
    mu = np.full((n_cells, n_genes), 2.0)
    mu[group == "A", :20] = 12.0
    mu[group == "B", 20:40] = 12.0
    counts = rng.poisson(mu).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.var_names = [f"G{j}" for j in range(n_genes)]
    adata.obs["cell_type"] = pd.Categorical(group)
    path = tmp_path_factory.mktemp("raw") / "raw.h5ad"
    adata.write_h5ad(path)
    return path


# --------------------------------------------------------------------------- parsing, help, exit codes


def test_parse_params_types_values() -> None:
    assert parse_params(["latent_dim=8", "likelihood=zinb", "lorentz_squared=false", "lorentz_weight=2.5"]) == {
        "latent_dim": 8, "likelihood": "zinb", "lorentz_squared": False, "lorentz_weight": 2.5}
    with pytest.raises(UsageError, match="key=value"):
        parse_params(["latent_dim"])


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["acquire"], ["datasets"], ["datasets", "add"],
                                     ["datasets", "list"], ["run"]])
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        if command == ["run"]:
            raise SystemExit(main(["run", "--help"]))
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: geovae")


def test_usage_errors_exit_2(raw_counts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--input", str(raw_counts)])  # --out missing
    assert info.value.code == 2
    capsys.readouterr()
    assert main([]) == 2
    capsys.readouterr()
    # raw counts without --modality: a one-line actionable message, nothing trained
    code, _, err = run_cli("train", "--input", str(raw_counts), "--out", str(tmp_path / "o"), capsys=capsys)
    assert code == 2 and "pass --modality rna|atac" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    code, _, err = run_cli("train", "--input", str(raw_counts), "--out", str(tmp_path / "o"), "--modality", "rna",
                           "--param", "latnt_dim=3", capsys=capsys)
    assert code == 2 and "unknown livae parameter(s) latnt_dim" in err and "latent_dim" in err
    code, _, err = run_cli("train", "--input", str(raw_counts), "--out", str(tmp_path / "o"), "--model", "pcaa",
                           capsys=capsys)
    assert code == 2 and "unknown model 'pcaa'" in err and "pca" in err
    code, _, err = run_cli("acquire", "GSM123", "--out", str(tmp_path / "x.h5ad"), capsys=capsys)
    assert code == 2 and "GSE123456" in err


def test_runtime_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli("evaluate", "--input", str(tmp_path / "missing.h5ad"), capsys=capsys)
    assert code == 1 and err.strip() == f"geovae evaluate: error: input file '{tmp_path / 'missing.h5ad'}' does not exist"
    bad = tmp_path / "not.h5ad"
    bad.write_text("hello")
    code, _, err = run_cli("train", "--input", str(bad), "--out", str(tmp_path / "o"), capsys=capsys)
    assert code == 1 and "cannot read" in err and "Traceback" not in err


# --------------------------------------------------------------------------- train + evaluate


def test_train_raw_counts_then_evaluate(raw_counts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "--input", str(raw_counts), "--modality", "rna", "--out", str(out), "--max-epochs", "3",
            "--pp-param", "qc=fixed", "--pp-param", "min_genes=5", "--pp-param", "n_top_genes=60", "--param", "latent_dim=4",
            "--param", "hidden_dim=16", "--device", "cpu", "--seed", "3", "--no-2d", "-q"]
    code, _, err = run_cli(*args, capsys=capsys)
    assert code == 0, err
    for name in ("model", "latent.h5ad", "history.tsv", "loss.png", "embedding.h5ad", "train_info.json",
                 "preprocessed.h5ad"):
        assert (out / name).exists(), name
    emb = ad.read_h5ad(out / "embedding.h5ad")
    assert emb.obsm["X_latent"].shape == (120, 4)
    assert emb.obsm["X_bottleneck"].shape == (120, 2)
    assert list(emb.obs["cell_type"]) == ["A"] * 60 + ["B"] * 60
    assert len(pd.read_csv(out / "history.tsv", sep="\t")) == 3
    pre = ad.read_h5ad(out / "preprocessed.h5ad")
    assert pre.n_vars == 60 and pre.uns["geovae_input"]["modality"] == "rna"
    latent = ad.read_h5ad(out / "latent.h5ad")  # the run folder written by the pipeline's writer too
    np.testing.assert_array_equal(latent.obsm["X_latent"], emb.obsm["X_latent"])
    assert list(latent.var_names) == list(pre.var_names) and "geovae_train" in latent.uns

    # the saved model reloads on the preprocessed data and gives the same latent means
    from geovae.models import LiVAE

    reloaded = LiVAE.load(out / "model", pre, device="cpu")
    np.testing.assert_allclose(reloaded.get_latent_representation(), emb.obsm["X_latent"], rtol=1e-5, atol=1e-5)

    # a second run refuses to overwrite; the same seed on the preprocessed file gives the same numbers
    code, _, err = run_cli(*args, capsys=capsys)
    assert code == 1 and "--overwrite" in err
    out2 = tmp_path / "run2"
    code, _, err = run_cli("train", "--input", str(out / "preprocessed.h5ad"), "--out", str(out2), "--max-epochs", "3",
                           "--param", "latent_dim=4", "--param", "hidden_dim=16", "--device", "cpu", "--seed", "3",
                           "--no-2d", "-q", capsys=capsys)
    assert code == 0, err
    np.testing.assert_allclose(ad.read_h5ad(out2 / "embedding.h5ad").obsm["X_latent"], emb.obsm["X_latent"],
                               rtol=1e-5, atol=1e-6)

    # evaluate: tidy TSV on stdout; clustering of two well separated groups
    code, stdout, err = run_cli("evaluate", "--input", str(out / "embedding.h5ad"), "--label-key", "cell_type",
                                "--no-leiden", "--n-subsample", "0", capsys=capsys)
    assert code == 0, err
    table = pd.read_csv(__import__("io").StringIO(stdout), sep="\t")
    assert list(table.columns) == ["metric", "value", "category"]
    assert {"NMI", "ARI", "ASW_label"} <= set(table["metric"])
    code, _, err = run_cli("evaluate", "--input", str(out / "embedding.h5ad"), "--label-key", "celltype",
                           capsys=capsys)
    assert code == 1 and "'celltype' is not an obs column" in err and "cell_type" in err
    target = tmp_path / "m" / "metrics.tsv"
    code, _, _ = run_cli("evaluate", "--input", str(out / "embedding.h5ad"), "--no-leiden", "--out", str(target),
                         capsys=capsys)
    assert code == 0 and pd.read_csv(target, sep="\t")["metric"].nunique() > 5


# --------------------------------------------------------------------------- acquire (local GEO tree)


def test_acquire_from_local_geo_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import geo_server as gs

    ref = gs.pbmc_counts(50)
    payload = tmp_path / "payload"
    payload.mkdir()
    ref.write_h5ad(payload / "GSE77_counts.h5ad")
    specs = [gs.SampleSpec(gsm="GSM7700001", title="all cells", characteristics=["tissue: blood"], files=[])]
    gs.build_geo_tree(tmp_path / "geo", "GSE77", specs, series_files=[payload / "GSE77_counts.h5ad"])
    out = tmp_path / "raw.h5ad"
    code, _, err = run_cli("acquire", "gse77", "--out", str(out), "--base-url", str(tmp_path / "geo"),
                           "--cache-dir", str(tmp_path / "cache"), capsys=capsys)
    assert code == 0, err
    got = ad.read_h5ad(out)
    assert got.shape == ref.shape and list(got.obs_names) == list(ref.obs_names)
    assert (tmp_path / "raw_manifest.json").exists()
    code, _, err = run_cli("acquire", "GSE78", "--out", str(out), "--base-url", str(tmp_path / "geo"),
                           "--cache-dir", str(tmp_path / "cache"), capsys=capsys)
    assert code == 1 and "GSE78" in err and "Traceback" not in err


# --------------------------------------------------------------------------- datasets add / sheet


def test_datasets_add_appends_validated_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "config" / "datasets.tsv"
    sheet.parent.mkdir()
    original = (ROOT / "config" / "datasets.tsv").read_text()
    sheet.write_text(original)
    schema = ["--sheet", str(sheet)]
    code, _, err = run_cli("datasets", "add", "GSE123456", "--modality", "rna", "--label-key", "cell_type", *schema,
                           capsys=capsys)
    assert code == 0, err
    table = read_sheet(sheet)
    row = table.iloc[-1].to_dict()
    assert row["dataset"] == "GSE123456" and row["source"] == "geo" and row["accession"] == "GSE123456"
    assert row["modality"] == "rna" and row["species"] == "human" and row["label_key"] == "cell_type"
    assert sheet.read_text().startswith(original)
    # duplicate id, bad accession, bad species: exit 1, sheet untouched
    before = sheet.read_text()
    for extra, message in ((["GSE123456", "--modality", "rna"], "already in the sheet"),
                           (["GSE12X", "--modality", "rna"], "field accession"),
                           (["GSE5", "--modality", "rna", "--species", "Homo sapiens"], "field species")):
        code, _, err = run_cli("datasets", "add", *extra, *schema, capsys=capsys)
        assert code == 1 and message in err, err
    assert sheet.read_text() == before
    code, _, err = run_cli("datasets", "add", "GSE7", "--modality", "rna", "--samples", "GSM1,GSM2", *schema,
                           capsys=capsys)
    assert code == 1 and "has no column(s) samples" in err  # the shipped sheet has no 'samples' column
    assert sheet.read_text() == before
    code, out, _ = run_cli("datasets", "list", *schema, capsys=capsys)
    assert code == 0 and "GSE123456" in out


def test_sheet_helpers_known_answers(tmp_path: Path) -> None:
    sheet = tmp_path / "datasets.tsv"
    table = append_row(sheet, geo_row("gse42", "atac", species="mouse", dataset="my_atac"))
    assert sheet.read_text().splitlines()[0] + "\n" == SHEET_HEADER
    assert table["dataset"].tolist() == ["my_atac"] and table["accession"].tolist() == ["GSE42"]
    broken = tmp_path / "broken.tsv"
    broken.write_text(SHEET_HEADER + "x\tgeo\t\t\trna\thuman\t\t\tsteady_state\t\n")
    with pytest.raises(SheetError, match=r"broken.tsv line 2 \(dataset 'x'\): field \(row\): 'accession'"):
        read_sheet(broken)
    with pytest.raises(SheetError, match="invalid dataset sheet"):
        append_row(broken, geo_row("GSE1", "rna"))
    with_samples = tmp_path / "with_samples.tsv"
    with_samples.write_text(SHEET_HEADER.rstrip("\n") + "\tsamples\n")
    table = append_row(with_samples, geo_row("GSE9", "rna", samples="GSM1, GSM2"))
    assert table["samples"].tolist() == ["GSM1, GSM2"]
    with pytest.raises(SheetError, match="field samples"):
        append_row(with_samples, geo_row("GSE10", "rna", samples="sample1"))
    with pytest.raises(SheetError, match="tab or newline"):
        append_row(sheet, geo_row("GSE2", "rna", description="a\tb"))


# --------------------------------------------------------------------------- run + entry points


def test_run_dry_run_in_project(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # on a private copy of the workflow: the checkout may hold a finished `make run` (then snakemake
    # prints "Nothing to be done" instead of a job list), and a test must not depend on it
    project = workflow_copy(tmp_path / "project")
    assert main(["run", "--project", str(project), "-n"]) == 0
    out = "".join(capfd.readouterr()).lower()  # snakemake writes to the inherited file descriptors
    assert "this was a dry-run" in out and "nothing to be done" not in out, out[-2000:]
    assert not (project / "results").exists()
    assert main(["run", "--project", "/", "-n"]) == 1
    assert "geovae run: error: no Snakefile in '/'" in capfd.readouterr().err


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "geovae", "datasets", "add", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0 and "--modality" in result.stdout


def test_models_lists_the_registry(capsys):
    from geovae.models import available_models

    code, out, _ = run_cli("models", "--names-only", capsys=capsys)
    assert code == 0 and out.split() == available_models()
    code, out, _ = run_cli("models", capsys=capsys)
    rows = {line.split("\t")[0]: line.split("\t") for line in out.strip().splitlines()[1:]}
    assert rows["livae"][2] == "ok" and "lorentz_weight=10.0" in rows["livae"][3]
    assert rows["vae"][3].count("use_bottleneck=False") == 1
