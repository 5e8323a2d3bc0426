"""Logic of the benchmark scripts that is not timing: failed-job parsing, the zoo table, and the drivers
end to end at tiny sizes (throughput on pbmc68k, the pipeline scale benchmark on SIMULATED data)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


LOG = """\
[Sat Nov 28 21:10:31 2026]
Error in rule acquire:
    message: None
    jobid: 223
    output: results/broken_truncated/raw.h5ad, results/broken_truncated/acquire_manifest.json
    log: logs/acquire/broken_truncated.log (check log file(s) for error details)
Logfile logs/acquire/broken_truncated.log:
    wildcards: dataset=not_this_one
Error in rule train:
    jobid: 12
    output: results/pbmc68k/livae/0/model
    wildcards: dataset=pbmc68k, model=livae, seed=0

"""


def test_failed_jobs_reads_wildcards_or_outputs():
    bench_load = _load("bench_load")
    found = bench_load.failed_jobs(LOG)
    assert found == [("acquire", "results/broken_truncated/raw.h5ad, results/broken_truncated/acquire_manifest.json"),
                     ("train", "dataset=pbmc68k, model=livae, seed=0")]
    assert [job for job in found if bench_load.BROKEN not in job[1]] == [found[1]]


def _run(root: Path, dataset: str, model: str, seed: int, nmi: float | None, seconds: float) -> None:
    run = root / dataset / model / str(seed)
    run.mkdir(parents=True)
    if nmi is not None:
        pd.DataFrame({"metric": ["NMI", "ARI"], "value": [nmi, nmi / 2]}).to_csv(run / "metrics.tsv", sep="\t",
                                                                                index=False)
    (run / "train_info.json").write_text(json.dumps({"training": {"train_seconds": seconds}}))


def test_zoo_table_means_over_seeds_and_lists_incomplete_runs(tmp_path, capsys):
    zoo_table = _load("zoo_table")
    _run(tmp_path, "d1", "livae", 0, 0.5, 10.0)
    _run(tmp_path, "d1", "livae", 1, 0.7, 20.0)
    _run(tmp_path, "d2", "pca", 0, 0.9, 1.0)
    _run(tmp_path, "d2", "livae", 0, None, 3.0)  # no metrics.tsv: incomplete
    long, incomplete = zoo_table.collect(tmp_path)
    assert incomplete == ["d2/livae/0"]
    nmi = zoo_table.metric_table(long, "NMI")
    assert nmi.loc["livae", "d1"] == pytest.approx(0.6)
    assert nmi.loc["pca", "d2"] == pytest.approx(0.9)
    assert pd.isna(nmi.loc["pca", "d1"])
    assert zoo_table.metric_table(long, "train_seconds").loc["livae", "d1"] == pytest.approx(15.0)
    assert zoo_table.main(["--results", str(tmp_path), "--metrics", "NMI"]) == 0
    out = capsys.readouterr().out
    assert "### NMI" in out and "incomplete runs (1): d2/livae/0" in out


def test_bench_throughput_runs_geovae_variants_on_pbmc68k(tmp_path, capsys):
    # the driver end to end on the real pbmc68k counts: one epoch, LiVAE with oneDNN and with MKL products
    bench = _load("bench_throughput")
    bench.main(["--quick", "--epochs", "1", "--threads", "1", "--datasets", "pbmc68k",
                "--tools", "geovae,geovae_blas,geovae_api", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert {(r["dataset"], r["tool"]) for r in rows} == {("pbmc68k", "geovae"), ("pbmc68k", "geovae_blas"),
                                                         ("pbmc68k", "geovae_api")}
    for row in rows:
        assert row["cells_per_s"] > 0 and 0.0 <= row["nmi_mean"] <= 1.0
        assert row["vs_scvi"] is None  # scVI was not asked for
    assert "[fail]" not in out and not (tmp_path / "sim_2000x2000.h5ad").exists()
    with pytest.raises(SystemExit):
        bench.main(["--datasets", "pbmc", "--workdir", str(tmp_path)])


def test_bench_sivae_atac_prints_one_line_per_gamma(capsys):
    # one epoch a phase on the SIMULATED sim_atac, with and without the interpretability term
    bench = _load("bench_sivae_atac")
    bench.main(["--warmups", "0", "--gammas", "0.05", "0", "--max-epochs", "1", "--joint-epochs", "1",
                "--threads", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "feature-phase KL" in line]
    assert [line.split()[2] for line in lines] == ["0.05", "0"]
    for line in lines:
        nmi = float(line.split("NMI ")[1].split()[0])
        assert 0.0 <= nmi <= 1.0 and "epochs " in line


@pytest.mark.integration
def test_bench_pipeline_scale_runs_the_workflow_at_two_sizes_and_resumes(tmp_path, capsys):
    # the scale driver end to end at two tiny sizes: SIMULATED data, the real workflow, the table and TSV
    bench = _load("bench_pipeline_scale")
    args = ["--genes", "600", "--max-epochs", "2", "--work", str(tmp_path)]
    rows = bench.main(["--sizes", "300", "600", "--keep"] + args)
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "pipeline_scale.tsv", sep="\t")
    assert list(table.columns) == list(bench.TSV_COLUMNS) and len(table) == len(rows)
    assert set(table["n_cells"]) == {300, 600}
    rules = set(table["rule"])
    for rule in ("acquire", "preprocess", "train", "embed", "metrics", "interpret", "total", "elapsed",
                 "build (driver)"):
        assert rule in rules, rule
        assert rule in out
        second = table[(table["rule"] == rule) & (table["n_cells"] == 600)].iloc[0]
        assert second["seconds"] > 0 and math.isfinite(second["exponent"]), (rule, second.to_dict())
    stages = table[table["rule"].isin(["acquire", "preprocess", "train", "embed", "metrics", "interpret"])]
    assert (stages["max_rss_mib"] > 0).all() and stages[stages["n_cells"] == 300]["exponent"].isna().all()
    assert "| rule |" in out and "exp 300->600" in out
    assert any((tmp_path / "cache" / "numba").rglob("*.nbi"))  # the sizes shared one numba cache
    # --resume keeps an interrupted size's data and finished jobs: only the missing outputs are made again
    run = tmp_path / "run_n600" / "results" / "simulated_n600" / "livae" / "0"
    assert (tmp_path / "data" / "simulated_n600.json").exists()
    trained = (run / "latent.h5ad").stat().st_mtime_ns
    (run / "metrics.tsv").unlink()  # with the table made from it (a final target: an intermediate alone is not rebuilt)
    (tmp_path / "run_n600" / "results" / "metrics.tsv").unlink()
    resumed = {r["rule"]: r for r in bench.main(["--sizes", "600", "--resume"] + args)}
    log = (tmp_path / "run_n600" / "snakemake_resume.log").read_text()
    assert "rule metrics:" in log and "rule train:" not in log and "rule embed:" not in log
    assert (run / "latent.h5ad").stat().st_mtime_ns == trained and (run / "metrics.tsv").exists()
    assert resumed["train"]["seconds"] > 0 and resumed["build (driver)"]["seconds"] > 0  # from the first run
    # without --keep the data and run folders are deleted, the TSV stays
    bench.clean_work(tmp_path, [300, 600])
    assert not (tmp_path / "data").exists() and not (tmp_path / "run_n300").exists()
    assert not (tmp_path / "run_n600").exists() and (tmp_path / "pipeline_scale.tsv").exists()


def test_bench_map_subsample_scores_maps_fit_on_a_subsample(tmp_path, capsys):
    # the driver end to end on pbmc68k: every cell (reference) and 300 fitted cells, the rest placed
    bench = _load("bench_map_subsample")
    assert bench.main(["--datasets", "pbmc68k", "--map-cells", "0,300", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "map_subsample.tsv", sep="\t")
    assert list(table["map_cells"]) == [0, 300] and list(table["fitted"]) == [table["n_cells"][0], 300]
    assert table["kNN_accuracy_placed_umap"].isna().tolist() == [True, False]
    for column in ("DC_umap", "kNN_accuracy_tsne", "kNN_accuracy_placed_tsne"):
        assert table[column].dropna().between(0, 1).all(), column
    assert table.loc[1, "kNN_accuracy_placed_tsne"] > 0.6  # placed cells land among their own labels
    assert "map_cells" in capsys.readouterr().out


def test_bench_pipeline_scale_exponent_and_inputs(tmp_path):
    bench = _load("bench_pipeline_scale")
    assert bench.growth_exponent(1000, 2.0, 10000, 20.0) == pytest.approx(1.0)
    assert bench.growth_exponent(1000, 2.0, 10000, 200.0) == pytest.approx(2.0)
    assert math.isnan(bench.growth_exponent(1000, 0.0, 10000, 2.0))
    config = bench.write_inputs(tmp_path, tmp_path / "x.h5ad", 500, max_epochs=3)
    cfg = yaml.safe_load(config.read_text())
    assert cfg["models"] == ["livae"] and cfg["seeds"] == [0] and cfg["train"] == {"max_epochs": 3}
    sheet = pd.read_csv(cfg["datasets"], sep="\t")
    assert sheet.loc[0, "dataset"] == "simulated_n500" and sheet.loc[0, "source"] == "local"
    assert sheet.loc[0, "description"].startswith("SIMULATED")
    with pytest.raises(SystemExit):
        bench.main(["--genes", "10", "--work", str(tmp_path)])
    build = {"seconds": 1.0, "peak_rss_mib": 100.0}
    per_size = {1000: bench.with_totals({"embed": {"jobs": 1, "seconds": 10.0, "max_rss_mib": 500.0}}, 12.0, build),
                10000: bench.with_totals({"embed": {"jobs": 1, "seconds": 100.0, "max_rss_mib": 900.0}}, 110.0, build)}
    rows = bench.long_table(per_size)
    assert [r["rule"] for r in rows] == ["embed", "embed", "total", "total", "elapsed", "elapsed",
                                         "build (driver)", "build (driver)"]
    assert math.isnan(rows[0]["exponent"]) and rows[1]["exponent"] == pytest.approx(1.0)
    assert "| embed | 10.0 | 500 | 100.0 | 900 | 1.00 |" in bench.markdown_table(rows)
    bench.write_tsv(rows, tmp_path / "t.tsv")
    assert pd.read_csv(tmp_path / "t.tsv", sep="\t")["exponent"].iloc[1] == pytest.approx(1.0)


def test_bench_embedding_compares_the_previous_and_the_shared_graph_maps(tmp_path, capsys):
    # the driver end to end on pbmc68k (one seed): three methods, each map scored against the latent
    bench = _load("bench_embedding")
    assert bench.main(["--datasets", "pbmc68k", "--seeds", "0", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "embedding_pca.tsv", sep="\t")
    assert list(table["method"]) == list(bench.METHODS)
    for column in ("DC_umap", "Q_global_umap", "kNN_accuracy_umap", "DC_tsne", "Q_local_tsne", "kNN_accuracy_tsne"):
        assert table[column].between(0, 1).all(), column
    # the shared-graph UMAP does not depend on the t-SNE method; Barnes-Hut and FFT give other t-SNE maps
    now, fft = table.iloc[1], table.iloc[2]
    assert now["DC_umap"] == fft["DC_umap"] and now["DC_tsne"] != fft["DC_tsne"]
    assert table["kNN_accuracy_tsne"].min() > 0.6  # pbmc68k's labels are recoverable from every map
    assert "means over seeds [0]" in capsys.readouterr().out


def test_bench_preprocess_memory_traces_every_step(capsys):
    bench = _load("bench_preprocess_memory")
    rows = bench.main(["--cells", "600", "--genes", "300"])
    steps = [row["step"] for row in rows]
    assert steps[1:] == [*bench.STEPS, "preprocess (whole call)", "write_h5ad (gzip)"]
    assert steps[0].startswith("read (600 x 300")
    peaks = [row["peak_mib"] for row in rows]
    assert peaks == sorted(peaks) and all(row["rss_mib"] <= row["peak_mib"] for row in rows)
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(rows, rows[1:]))
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "| qc_rna |" in out
    from geovae.preprocessing import rna

    assert not hasattr(rna.qc_rna, "__wrapped__") and rna.qc_rna.__name__ == "qc_rna"  # unpatched after
