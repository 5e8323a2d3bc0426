"""Integration: the real Snakemake workflow on a tiny config, every output checked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from project_copy import workflow_copy

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """Run the workflow once on pbmc68k (builtin), a simulated scATAC h5ad given as a local file and a
    two-sample 10x GEO series served by a loopback HTTP server (real GEOparse, real downloads)."""
    from geo_server import serve_directory, two_sample_series

    from geovae.data.simulate import simulate_atac

    work = tmp_path_factory.mktemp("tiny_run")
    geo_root, _ = two_sample_series(work)
    atac = simulate_atac(n_cells=240, n_peaks=1500, n_types=3, seed=1)
    atac.write_h5ad(work / "sim_atac_local.h5ad")
    sheet = pd.DataFrame([
        {"dataset": "pbmc", "source": "builtin", "accession": "pbmc68k", "path": "", "modality": "rna",
         "species": "human", "label_key": "bulk_labels", "batch_key": "", "data_type": "steady_state"},
        {"dataset": "atac_local", "source": "local", "accession": "", "path": str(work / "sim_atac_local.h5ad"),
         "modality": "atac", "species": "simulated", "label_key": "cell_type", "batch_key": "",
         "data_type": "trajectory"},
        {"dataset": "geo_pbmc", "source": "geo", "accession": "GSE999001", "path": "", "modality": "rna",
         "species": "human", "label_key": "", "batch_key": "sample", "data_type": "steady_state"},
    ])
    sheet.to_csv(work / "datasets.tsv", sep="\t", index=False)
    config = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    config["datasets"] = str(work / "datasets.tsv")
    config["interpret"]["gene_sets"]["human"] = str(ROOT / "resources" / "go" / "GO_Biological_Process_2021_human.gmt.gz")
    # settings of one dataset (issue: per-dataset settings), checked by test_per_dataset_settings
    config["per_dataset"] = {"geo_pbmc": {"train": {"max_epochs": 3}, "livae": {"latent_dim": 5},
                                          "preprocess": {"rna": {"n_top_genes": 300}}},
                             "atac_local": {"embed": {"map_cells": 100}}}  # maps fit on a subsample
    with serve_directory(geo_root) as server:
        config["geo"] = {"base_url": server.url, "cache_dir": str(work / "geo_cache")}
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        proc = _snakemake("--cores", "2", "--configfile", str(work / "config.yaml"), cwd=work)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work


def test_every_output_exists(tiny_run: Path) -> None:
    for dataset in ("pbmc", "atac_local", "geo_pbmc"):
        base = tiny_run / "results" / dataset
        assert (base / "raw.h5ad").exists() and (base / "preprocessed.h5ad").exists()
        manifest = json.loads((base / "acquire_manifest.json").read_text())
        assert manifest["dataset"] == dataset and manifest["n_cells"] > 0
        run = base / "livae" / "0"
        for name in ("latent.h5ad", "history.tsv", "train_info.json", "loss.png", "embedding.h5ad",
                     "umap.png", "tsne.png", "metrics.tsv", "components.tsv", "component_genes.tsv",
                     "enrichment.tsv", "enrichment_dotplot.png", "component_heatmap.png", "component_correlation.png",
                     "overview.png", "group_components.png", "marker_dotplot.png",
                     "interpret_info.json"):
            assert (run / name).stat().st_size > 0, f"{run / name} missing or empty"
        assert (run / "model").is_dir() and any((run / "model").iterdir())
    assert (tiny_run / "results" / "report" / "summary.html").stat().st_size > 0
    for rule in ("acquire", "preprocess", "train", "embed", "metrics", "interpret"):
        assert list((tiny_run / "logs" / rule).rglob("*.log")), f"no log for rule {rule}"
        assert list((tiny_run / "logs" / "benchmarks" / rule).rglob("*.tsv")), f"no benchmark for {rule}"


def test_embedding_and_metrics_content(tiny_run: Path) -> None:
    emb = ad.read_h5ad(tiny_run / "results" / "pbmc" / "livae" / "0" / "embedding.h5ad")
    assert emb.obsm["X_latent"].shape == (emb.n_obs, 6)
    assert emb.obsm["X_bottleneck"].shape == (emb.n_obs, 2)
    for key in ("X_umap", "X_tsne"):
        assert emb.obsm[key].shape == (emb.n_obs, 2) and np.isfinite(emb.obsm[key]).all()
    metrics = pd.read_csv(tiny_run / "results" / "metrics.tsv", sep="\t")
    assert list(metrics.columns[:5]) == ["dataset", "model", "seed", "metric", "value"]
    assert set(metrics["dataset"]) == {"pbmc", "atac_local", "geo_pbmc"}
    geo = metrics[metrics["dataset"] == "geo_pbmc"].set_index("metric")["value"]
    assert 1.0 <= geo["iLISI"] <= 2.0 and "NMI" not in geo.index  # batches = the 2 GEO samples, no labels
    pbmc = metrics[metrics["dataset"] == "pbmc"].set_index("metric")["value"]
    for name in ("NMI", "ARI", "ASW", "CAL", "DAV", "COR", "DC_umap", "Q_local_umap", "Q_global_umap",
                 "overall_embedding_quality_tsne", "manifold_dimensionality", "overall_intrinsic_quality"):
        assert name in pbmc.index and np.isfinite(pbmc[name]), name
    assert 0.0 <= pbmc["NMI"] <= 1.0


def test_embedding_is_scanpy_ready(tiny_run: Path, tmp_path: Path) -> None:
    """embedding.h5ad is one a scanpy user continues from: expression of the model's genes in X (the
    preprocessed values), var, labels, scanpy-named QC columns and Leiden in obs, the latent as
    X_<model>, and scanpy's own plotting and neighbours run on it as is."""
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    run = tiny_run / "results" / "pbmc" / "livae" / "0"
    emb = ad.read_h5ad(run / "embedding.h5ad")
    pre = ad.read_h5ad(tiny_run / "results" / "pbmc" / "preprocessed.h5ad")
    latent = ad.read_h5ad(run / "latent.h5ad")
    assert list(emb.var_names) == list(latent.var_names) and list(emb.obs_names) == list(pre.obs_names)
    assert (emb.X != pre[:, emb.var_names].X).nnz == 0  # the preprocessed expression, unchanged
    for column in ("bulk_labels", "n_genes_by_counts", "total_counts", "pct_counts_mt", "leiden"):
        assert column in emb.obs, column
    assert "mt" in emb.var and "highly_variable" in emb.var
    np.testing.assert_array_equal(emb.obsm["X_livae"], emb.obsm["X_latent"])
    assert emb.uns["latent_key"] == "X_livae" and emb.uns["geovae"]["rule"] == "embed"
    gene = emb.var_names[int(np.argmax(np.asarray(emb.X.sum(axis=0)).ravel()))]
    sc.settings.figdir = tmp_path
    sc.pl.umap(emb, color=[gene, "bulk_labels", "leiden"], show=False, save="_check.png")
    assert (tmp_path / "umap_check.png").stat().st_size > 0
    # the embed rule's shared graph is stored where scanpy stores its own, and is the same graph
    assert emb.uns["neighbors"]["params"]["use_rep"] == "X_livae"
    stored = emb.obsp["connectivities"].copy()
    sc.tl.leiden(emb, flavor="igraph", n_iterations=2, key_added="leiden_scanpy")  # uses the stored graph as is
    assert emb.obs["leiden_scanpy"].nunique() > 1
    sc.pp.neighbors(emb, use_rep="X_livae")
    assert emb.obsp["connectivities"].shape == (emb.n_obs, emb.n_obs)
    assert ((stored != 0) != (emb.obsp["connectivities"] != 0)).nnz == 0
    assert abs(stored - emb.obsp["connectivities"]).max() < 1e-5  # umap-learn rounds distances to float32


def test_geo_dataset_keeps_sample_metadata(tiny_run: Path) -> None:
    raw = ad.read_h5ad(tiny_run / "results" / "geo_pbmc" / "raw.h5ad")
    assert set(raw.obs["sample"]) == {"GSM8000001", "GSM8000002"}
    manifest = json.loads((tiny_run / "results" / "geo_pbmc" / "acquire_manifest.json").read_text())
    assert "127.0.0.1" in json.dumps(manifest)


def test_interpretation_outputs(tiny_run: Path) -> None:
    run = tiny_run / "results" / "pbmc" / "livae" / "0"
    components = pd.read_csv(run / "components.tsv", sep="\t")
    assert len(components) == 6
    from geovae.options import INTERPRET

    assert set(components["rotation"]) == {INTERPRET.rotation}  # the annotated axes are named in the table
    genes = pd.read_csv(run / "component_genes.tsv", sep="\t")
    assert set(genes["tail"]) == {"positive", "negative"}
    enrichment = pd.read_csv(run / "enrichment.tsv", sep="\t")
    assert len(enrichment) > 0 and (enrichment["adj_p_value"] <= 1).all()
    # scATAC peaks cannot be matched to GO gene sets: an explicit warning, not a silent empty table
    info = json.loads((tiny_run / "results" / "atac_local" / "livae" / "0" / "interpret_info.json").read_text())
    assert info["warnings"]


def test_rerun_is_a_no_op_and_report_builds(tiny_run: Path) -> None:
    config = str(tiny_run / "config.yaml")
    dry = _snakemake("-n", "--cores", "2", "--configfile", config, cwd=tiny_run)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    report = _snakemake("--cores", "2", "--configfile", config, "--report", "report.html", cwd=tiny_run)
    assert report.returncode == 0, report.stderr[-4000:]
    html = (tiny_run / "report.html").read_text(errors="ignore")
    for needle in ("Embeddings", "Metrics", "Interpretation"):
        assert needle in html


def test_bad_sheet_fails_before_any_job(tmp_path: Path) -> None:
    sheet = tmp_path / "bad.tsv"
    sheet.write_text("dataset\tsource\taccession\tmodality\tspecies\tdata_type\n"
                     "ok\tbuiltin\tpbmc68k\trna\thuman\tsteady_state\n"
                     "broken\tgeo\tGSE1\tprotein\thuman\tsteady_state\n")
    proc = _snakemake("-n", "--cores", "1", "--config", f"datasets={sheet}", cwd=workflow_copy(tmp_path / "p"))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "line 3 (dataset 'broken')" in out and "field modality" in out


def test_jobs_run_the_code_of_their_checkout(tmp_path: Path) -> None:
    """A job imports geovae from the src/ beside the Snakefile it runs (common.smk puts it first on
    PYTHONPATH), not from an installed copy: here a second checkout, while the test's Python has the
    first one installed."""
    project = workflow_copy(tmp_path / "p", copy_src=True)
    sheet = project / "one.tsv"
    sheet.write_text("dataset\tsource\taccession\tmodality\tspecies\tlabel_key\tdata_type\n"
                     "pbmc\tbuiltin\tpbmc68k\trna\thuman\tbulk_labels\tsteady_state\n")
    proc = subprocess.run([*SNAKEMAKE, "--cores", "1", "--config", f"datasets={sheet}", "--",
                           "results/pbmc/raw.h5ad"], cwd=project, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((project / "results" / "pbmc" / "acquire_manifest.json").read_text())
    assert Path(manifest["run_info"]["geovae_path"]) == (project / "src" / "geovae").resolve()
    assert Path(manifest["run_info"]["geovae_path"]) != (ROOT / "src" / "geovae").resolve()


def test_lint_is_clean(tmp_path: Path) -> None:
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=workflow_copy(tmp_path / "p"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_default_config_dry_run_builds_every_stage(tmp_path: Path) -> None:
    proc = _snakemake("-n", "--forceall", "--cores", "2", cwd=workflow_copy(tmp_path / "p"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rule in ("acquire", "preprocess", "train", "embed", "metrics", "interpret", "aggregate_metrics", "summary"):
        assert f"rule {rule}:" in out or f"\n{rule} " in out, rule


def test_seeds_from_the_command_line(tmp_path: Path) -> None:
    proc = _snakemake("-n", "--forceall", "--cores", "1", "--config", "seeds=[0,1]", cwd=workflow_copy(tmp_path / "p"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "results/pbmc68k/livae/1/latent.h5ad" in out


def test_minimal_sheet_builds_every_stage(tmp_path: Path) -> None:
    """A sheet with only the columns it needs, in another order, and no batch_key/path/description
    columns (it stopped the workflow with KeyError: 'batch_key')."""
    project = workflow_copy(tmp_path / "p")
    sheet = tmp_path / "minimal.tsv"
    sheet.write_text("modality\tdataset\tsource\taccession\tspecies\tlabel_key\tdata_type\n"
                     "rna\tpbmc\tbuiltin\tpbmc68k\thuman\tbulk_labels\tsteady_state\n")
    proc = _snakemake("-n", "--cores", "1", "--config", f"datasets={sheet}", cwd=project)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rule in ("acquire", "preprocess", "train", "embed", "metrics", "interpret", "summary"):
        assert re.search(rf"^{rule}\s+1$", out, flags=re.M), (rule, out[-3000:])


def test_per_dataset_settings_are_applied_and_recorded(tiny_run: Path) -> None:
    run = tiny_run / "results" / "geo_pbmc" / "livae" / "0"
    info = json.loads((run / "train_info.json").read_text())
    assert info["per_dataset"] == {"geo_pbmc": {"train": {"max_epochs": 3}, "livae": {"latent_dim": 5},
                                                "preprocess": {"rna": {"n_top_genes": 300}}}}
    assert info["train"]["max_epochs"] == 3 and info["training"]["n_epochs"] <= 3
    assert ad.read_h5ad(run / "embedding.h5ad").obsm["X_latent"].shape[1] == 5
    prep = ad.read_h5ad(tiny_run / "results" / "geo_pbmc" / "preprocessed.h5ad", backed="r")
    assert prep.n_vars <= 300 and prep.uns["geovae_preprocess"]["n_top_genes"] == 300
    # the other datasets keep the config's settings
    assert ad.read_h5ad(tiny_run / "results" / "pbmc" / "livae" / "0" / "embedding.h5ad").obsm["X_latent"].shape[1] == 6
    other = json.loads((tiny_run / "results" / "pbmc" / "livae" / "0" / "train_info.json").read_text())
    assert other["per_dataset"] == {} and other["train"]["max_epochs"] == 4
    summary = (tiny_run / "results" / "report" / "summary.html").read_text()
    assert "Per-dataset settings" in summary and "livae.latent_dim" in summary


def test_per_dataset_unknown_dataset_stops_before_any_job(tmp_path: Path) -> None:
    project = workflow_copy(tmp_path / "p")
    extra = tmp_path / "extra.yaml"
    extra.write_text("per_dataset:\n  pbmc68:\n    train: {max_epochs: 2}\n")
    proc = _snakemake("-n", "--cores", "1", "--configfile", "config/config.yaml", str(extra), cwd=project)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "per_dataset names dataset 'pbmc68'" in out and "(did you mean 'pbmc68k'?)" in out


def test_leiden_clusters_in_the_embedding(tiny_run: Path) -> None:
    emb = ad.read_h5ad(tiny_run / "results" / "pbmc" / "livae" / "0" / "embedding.h5ad")
    assert "leiden" in emb.obs and 2 <= emb.obs["leiden"].nunique() < emb.n_obs
    assert "X_latent" in emb.obsm and emb.n_vars > 0  # the model's features travel in var


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _report_data(html: str, name: str) -> dict:
    import re

    match = re.search(rf'<script id="{name}">\s*var {name} = (\{{.*?\}});\s*</script>', html, flags=re.S)
    assert match, f"report.html has no {name} data"
    return json.loads(match.group(1))


def test_report_in_a_real_browser(tiny_run: Path, tmp_path: Path) -> None:
    """results/report.html as a user sees it: headless Chromium renders the report app with every
    category, every listed item is in the report and every figure decodes as an image; screenshots of
    the report's start page and of the summary page go to this test's temporary folder."""
    import base64
    import io
    import shutil

    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (`make test` installs Debian's chromium when run as root)")
    report = tiny_run / "report.html"
    if not report.exists():
        proc = _snakemake("--cores", "2", "--configfile", str(tiny_run / "config.yaml"), "--report", str(report),
                          cwd=tiny_run)
        assert proc.returncode == 0, proc.stderr[-3000:]
    html = report.read_text(errors="ignore")
    categories, results = _report_data(html, "categories"), _report_data(html, "results")
    expected = {"Embeddings", "Metrics", "Interpretation", "Quality control", "Training", "Summary"}
    assert expected <= set(categories), sorted(categories)
    assert "Benchmark" not in categories  # one model ran: no benchmark page
    # the simulated dataset (sheet species "simulated") is marked as such wherever it is a subcategory
    subcategories = {name for groups in categories.values() for name in groups}
    assert "atac_local (SIMULATED)" in subcategories and "atac_local" not in subcategories, sorted(subcategories)
    assert "pbmc" in subcategories
    images = 0
    for category, groups in categories.items():
        items = [item for group in groups.values() for item in group]
        assert items, f"category {category} lists no item"
        for item in items:
            assert item in results, f"{category}: {item} is listed but not in the report"
            uri = results[item].get("data_uri", "")
            if item.endswith(".png"):
                assert uri.startswith("data:image/png;") and ";base64," in uri, item
                with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
                    assert image.size[0] > 50 and image.size[1] > 50, item
                images += 1
    assert images >= 10

    def browser(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                               "--virtual-time-budget=20000", *args], capture_output=True, text=True, timeout=180)

    dom = browser("--dump-dom", report.as_uri()).stdout
    assert "Snakemake" in dom and "Results" in dom, dom[-2000:]
    for category in expected:  # the app lists every category of results in its menu
        assert category in dom, category
    shots = {"report_start": report, "summary": tiny_run / "results" / "report" / "summary.html"}
    for name, page in shots.items():
        target = tmp_path / f"{name}.png"
        browser("--window-size=1400,1000", f"--screenshot={target}", page.as_uri())
        with Image.open(target) as image:
            assert image.size == (1400, 1000)
            assert len(set(image.convert("L").getdata())) > 20  # something was drawn, not a blank page
    print("screenshots:", ", ".join(str(tmp_path / f"{n}.png") for n in shots))


def test_maps_above_map_cells_are_fit_on_a_subsample_in_the_rule(tiny_run: Path) -> None:
    """atac_local (240 cells) runs with embed.map_cells 100: 100 fitted cells, the others placed, all recorded."""
    run = tiny_run / "results" / "atac_local" / "livae" / "0"
    emb = ad.read_h5ad(run / "embedding.h5ad")
    assert emb.obs["map_fitted"].dtype == bool and int(emb.obs["map_fitted"].sum()) == 100
    assert emb.uns["geovae_embed"]["map_fitted_cells"] == 100
    for key in ("X_umap", "X_tsne"):
        assert emb.obsm[key].shape == (emb.n_obs, 2) and np.isfinite(emb.obsm[key]).all()
    info = json.loads((run / "embed_info.json").read_text())
    assert info["settings"]["map_cells"] == 100 and {"map_neighbors", "place"} <= set(info["seconds"])
    pbmc = ad.read_h5ad(tiny_run / "results" / "pbmc" / "livae" / "0" / "embedding.h5ad")
    assert "map_fitted" not in pbmc.obs and pbmc.uns["geovae_embed"]["map_fitted_cells"] == pbmc.n_obs
