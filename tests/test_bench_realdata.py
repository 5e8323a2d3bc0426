"""benchmarks/bench_realdata.py: its smoke mode end to end on pbmc68k, and its statistics on a made-up table.

The end-to-end run needs no ``../shared`` (pbmc68k is built in); it trains LiVAE and VAE for two epochs
in a subprocess (~40 s, most of it numba compiling UMAP).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_realdata.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_realdata", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_realdata"] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_writes_every_output(tmp_path):
    out = tmp_path / "realdata"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--out", str(out),
                           "--data-dir", str(tmp_path / "no_shared")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "MODE smoke" in done.stdout and "Table 1" in done.stdout

    long = pd.read_csv(out / "realdata_long.tsv", sep="\t")
    assert list(long.columns) == ["dataset", "model", "seed", "metric", "value", "category"]
    assert set(zip(long["dataset"], long["model"], long["seed"])) == {("pbmc68k", "livae", 0), ("pbmc68k", "vae", 0)}
    bench = _load()
    for model, rows in long.groupby("model"):
        values = rows.set_index("metric")["value"]
        assert set(bench.HEADLINE) <= set(values.index), model
        assert values[["NMI", "ARI", "DC_umap", "DC_latent", "noise_resilience"]].notna().all()
        assert values["n_epochs"] == 2 and values["train_seconds"] > 0

    summary = pd.read_csv(out / "realdata_summary.tsv", sep="\t")
    assert list(summary.columns) == ["dataset", "model", "metric", "mean", "sd", "n"]
    assert (summary["n"] == 1).all()
    paired = pd.read_csv(out / "realdata_paired.tsv", sep="\t")
    assert {"metric", "comparator", "mean_difference", "p_value", "note"} <= set(paired.columns)
    assert set(paired["comparator"]) == {"vae"} and paired["note"].str.contains("not tested").all()
    table1 = pd.read_csv(out / "realdata_table1.tsv", sep="\t")
    assert list(table1["metric"]) == bench.TABLE1 and (table1["reproduces"] == "not tested").all()
    assert (out / "realdata.png").stat().st_size > 10_000
    assert "| livae |" in (out / "realdata_report.md").read_text()
    curve = pd.read_csv(out / "realdata_tradeoff.tsv", sep="\t")  # livae and vae are two points of the curve
    assert set(curve["model"]) == {"livae", "vae"} and (curve["n_units"] == 1).all()
    assert (out / "realdata_tradeoff.png").exists() and "Lorentz-weight trade-off" in done.stdout

    # --report-only trains nothing and reports the same runs again
    (out / "realdata.png").unlink()
    again = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--report-only", "--out", str(out)],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "seed 0\tNMI" not in again.stdout  # no training line
    pd.testing.assert_frame_equal(pd.read_csv(out / "realdata_long.tsv", sep="\t"), long)
    assert (out / "realdata.png").exists()
    missing = subprocess.run([sys.executable, str(SCRIPT), "--report-only", "--out", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def _made_up(models: dict[str, float], datasets=("a", "b", "c"), seeds=(0, 1)) -> pd.DataFrame:
    """Long table where each model's value is its offset plus per-unit noise shared by all models."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset in datasets:
        for seed in seeds:
            base = rng.uniform(0.3, 0.6)
            for model, offset in models.items():
                for metric in ["NMI", "ARI", "DC_umap", "Q_global_umap", "noise_resilience", "DC_latent"]:
                    rows.append((dataset, model, seed, metric, base + offset + rng.normal(0, 0.005), ""))
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "metric", "value", "category"])


def test_paired_tests_pair_over_dataset_and_seed():
    bench = _load()
    long = _made_up({"livae": 0.1, "vae": 0.0, "livae_unsquared": 0.2})
    paired = bench.paired_tests(long)
    assert set(paired["comparator"]) == {"vae", "livae_unsquared"}
    assert (paired["n_datasets"] == 6).all()  # 3 datasets x 2 seeds
    assert "DC_latent" in set(paired["metric"])  # tested under its base name, named back
    vae = paired[paired["comparator"] == "vae"].set_index("metric")
    assert vae.loc["NMI", "mean_difference"] == pytest.approx(0.1, abs=0.01)

    table1 = bench.table1_directions(long).set_index("metric")
    assert list(table1.index) == bench.TABLE1
    assert (table1["wins"] == 6).all() and (table1["n_units"] == 6).all()
    assert table1["reproduces"].isin(["yes", "direction only (p >= 0.05)"]).all()

    rule, decision = bench.lorentz_rule(long)
    assert (rule["mean_difference"] > 0).all() and decision.startswith("rule")


def test_verdict_and_missing_dataset(tmp_path, capsys):
    bench = _load()
    assert bench.verdict(0.1, 0.01) == "yes"
    assert bench.verdict(0.1, 0.2) == "direction only (p >= 0.05)"
    assert bench.verdict(-0.1, 0.01) == "no, reversed (p < 0.05)"
    assert bench.verdict(0.1, np.nan, "not tested: 1 dataset(s)") == "not tested"
    assert bench.load_dataset("human_kidney", tmp_path, None) is None
    assert "[skip] human_kidney" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.parse_args(["--datasets", "kidney"])
    args = bench.parse_args(["--quick", "--seeds", "3"])
    assert args.seeds == [3] and args.max_epochs == bench.QUICK["max_epochs"] and "sivae" not in args.models


def _curve(offsets: dict[str, tuple[float, float]], datasets=("a", "b", "c"), seeds=(0, 1)) -> pd.DataFrame:
    """Long table of the trade-off models: (clustering offset, geometry offset) each, shared per-unit noise."""
    rng = np.random.default_rng(1)
    rows = []
    for dataset in datasets:
        for seed in seeds:
            base = rng.uniform(0.3, 0.6)
            for model, (clustering, geometry) in offsets.items():
                for metric in ["NMI", "ARI", "NMI_leiden", "kNN_accuracy", "DC_umap", "Q_global_umap",
                               "noise_resilience"]:
                    offset = clustering if metric in ("NMI", "ARI", "NMI_leiden", "kNN_accuracy") else geometry
                    rows.append((dataset, model, seed, metric, base + offset + rng.normal(0, 0.002), ""))
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "metric", "value", "category"])


def test_tradeoff_curve_tells_a_trade_from_a_better_default(tmp_path):
    bench = _load()
    long = _curve({"vae": (0.05, 0.0), "livae_lw0": (0.0, 0.0), "livae_lw1": (0.05, -0.1),
                   "livae": (0.0, 0.0), "livae_lw30": (-0.05, 0.05)})
    # one unit missing for one model: every point of the curve is averaged over the same 5 units
    long = long[~((long["model"] == "livae_lw30") & (long["dataset"] == "c") & (long["seed"] == 1))]
    table = bench.tradeoff_table(long)
    assert list(pd.unique(table["model"])) == ["vae", "livae_lw0", "livae_lw1", "livae", "livae_lw30"]
    assert (table["n_units"] == 5).all()
    lw1 = table[table["model"] == "livae_lw1"].set_index("metric")
    assert lw1.loc["NMI", "difference"] == pytest.approx(0.05, abs=0.01) and lw1.loc["NMI", "p_value"] < 0.05
    assert lw1.loc["DC_umap", "difference"] == pytest.approx(-0.1, abs=0.01)
    assert np.isnan(table.loc[table["model"] == "vae", "lorentz_weight"]).all()
    verdicts = bench.tradeoff_verdicts(table).set_index("model")["verdict"]
    assert verdicts["vae"] == "better default"
    assert verdicts["livae_lw1"] == "trade"
    assert verdicts["livae_lw30"] == "no clustering gain"
    assert "livae" not in verdicts.index
    text = bench.tradeoff_markdown(table)
    assert "| livae_lw1 | yes | 1 |" in text and "| vae | no | - |" in text
    bench.plot_tradeoff(table, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    # fewer than two curve models, or no reference: nothing to draw
    assert bench.tradeoff_table(long[long["model"].isin(["livae"])]).empty
    assert bench.tradeoff_table(long[long["model"].isin(["vae", "livae_lw1"])]).empty


def test_modes_pick_their_models():
    bench = _load()
    full = bench.parse_args([])
    assert "livae_lw3" not in full.models and {"livae", "vae", "sivae", "pca"} <= set(full.models)
    assert not set(bench.NOT_IN_FULL) & set(full.models)  # variants run on demand only
    curve = bench.parse_args(["--tradeoff"])
    assert curve.mode == "tradeoff" and curve.models == list(bench.TRADEOFF) and curve.seeds == [0, 1, 2]
    assert bench.MODELS["livae_lw30"] == ("livae", {"lorentz_weight": 30.0})
    assert bench.parse_args(["--tradeoff", "--seeds", "4"]).seeds == [4]
    with pytest.raises(SystemExit):
        bench.parse_args(["--tradeoff", "--quick"])


def test_training_variants_are_tested_against_livae():
    bench = _load()
    long = _curve({"livae": (0.0, 0.0), "livae_eps": (0.04, -0.001), "vae": (0.0, 0.0)})
    table = bench.training_variant_tests(long)
    assert set(table["model"]) == {"livae_eps"} and (table["n_units"] == 6).all()
    by = table.set_index("metric")
    assert by.loc["NMI", "difference"] == pytest.approx(0.04, abs=0.01) and by.loc["NMI", "p_value"] < 0.05
    assert bench.tradeoff_verdicts(table).set_index("model").loc["livae_eps", "verdict"] == "better default"
    assert bench.training_variant_tests(long[long["model"] != "livae_eps"]).empty


def test_a_model_with_fewer_units_is_compared_alone(tmp_path):
    # sivae ran on one dataset only: the zoo's table keeps all 6 units, sivae gets its own 2-unit test
    bench = _load()
    long = _made_up({"livae": 0.1, "vae": 0.0, "sivae": 0.05})
    first = long["dataset"].iloc[0]
    long = long[(long["model"] != "sivae") | (long["dataset"] == first)]
    assert bench.partial_models(long) == ["sivae"]
    assert bench.partial_models(long[long["model"] != "sivae"]) == []
    text = bench.report(long, ["livae", "vae", "sivae"], tmp_path)
    paired = pd.read_csv(tmp_path / "realdata_paired.tsv", sep="\t")
    assert set(paired["comparator"]) == {"vae"} and (paired["n_datasets"] == 6).all()
    partial = pd.read_csv(tmp_path / "realdata_paired_partial.tsv", sep="\t")
    ran = partial[partial["metric"].isin(["NMI", "ARI", "DC_umap", "Q_global_umap", "noise_resilience"])]
    assert set(partial["comparator"]) == {"sivae"} and len(ran) == 5 and (ran["n_units"] == 2).all()
    assert "compared alone with livae" in text


def test_the_lorentz_rule_section_shows_the_rule_with_variants_present(tmp_path):
    # a training variant in the table must not replace the rule's table in the printed report
    bench = _load()
    long = _made_up({"livae": 0.1, "livae_unsquared": 0.1, "livae_eps": 0.1})
    text = bench.report(long, ["livae", "livae_unsquared", "livae_eps"], tmp_path)
    section = text.split("## Lorentz distance rule")[1].split("\n## ")[0]
    rule = pd.read_csv(tmp_path / "realdata_lorentz_rule.tsv", sep="\t")
    assert set(rule["metric"]) <= set(bench.RULE_CLUSTERING + bench.RULE_GEOMETRY)
    assert all(f"| {metric} " in section for metric in rule["metric"]) and "verdict " not in section
