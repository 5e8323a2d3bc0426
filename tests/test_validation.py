"""Ground-truth validation of latent components against planted / simulated gene programs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from geovae.interpretation import validate_adata, validate_programs
from geovae.interpretation.components import component_gene_correlations, component_names
from geovae.interpretation.validation import VALIDATION_COLUMNS


def _planted(n_genes: int = 200, seed: int = 0):
    """Z1 negative tail = program P_a (20 genes); Z2 positive tail = 15 of P_b's 20 genes; P_c nowhere."""
    rng = np.random.default_rng(seed)
    genes = [f"g{i}" for i in range(n_genes)]
    corr = rng.uniform(-0.1, 0.1, size=(n_genes, 3))
    member = np.zeros((n_genes, 3), dtype=bool)
    member[0:20, 0] = True
    member[20:40, 1] = True
    member[40:60, 2] = True
    corr[0:20, 0] = -np.linspace(0.9, 0.5, 20)
    corr[20:35, 1] = np.linspace(0.9, 0.6, 15)  # 15 of 20 program genes on top
    corr[100:105, 1] = np.linspace(0.59, 0.55, 5)  # ... then 5 outsiders
    programs = pd.DataFrame(member, index=genes, columns=["P_a", "P_b", "P_c"])
    return pd.DataFrame(corr, index=genes, columns=component_names(3)), programs


def test_planted_programs_known_answers():
    corr, programs = _planted()
    n_cells = 300
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(n_cells, 3))
    scores = pd.DataFrame({"P_a": -latent[:, 0] + 0.1 * rng.normal(size=n_cells),
                           "P_b": latent[:, 2] + 0.1 * rng.normal(size=n_cells),  # score follows Z3 instead
                           "P_c": rng.normal(size=n_cells)})
    res = validate_programs(corr, programs, latent=latent, program_scores=scores, n_top=20).set_index("program")
    assert list(res.reset_index().columns) == VALIDATION_COLUMNS

    a = res.loc["P_a"]
    assert (a["enriched_component"], a["enriched_tail"], a["overlap"]) == ("Z1", "negative", 20)
    assert a["precision_at_n"] == 1.0 and a["r_precision"] == 1.0
    assert a["p_value"] == pytest.approx(hypergeom.sf(19, 200, 20, 20), rel=1e-9)
    assert a["adj_p_value"] == pytest.approx(min(1.0, a["p_value"] * 6), rel=1e-9)  # BH over 2 tails x 3 comps
    assert a["score_component"] == "Z1" and a["score_r"] < -0.9 and a["agreement"] == True  # noqa: E712

    b = res.loc["P_b"]
    assert (b["enriched_component"], b["enriched_tail"], b["overlap"]) == ("Z2", "positive", 15)
    assert b["precision_at_n"] == pytest.approx(15 / 20) and b["r_precision"] == pytest.approx(15 / 20)
    assert b["score_component"] == "Z3" and b["agreement"] == False  # noqa: E712 (enriched != correlated)

    c = res.loc["P_c"]
    assert c["overlap"] <= 5 and c["adj_p_value"] > 0.05  # random noise genes only: nothing significant
    assert c["agreement"] == False  # noqa: E712


def test_precision_at_n_uses_n_top_and_genes_missing_from_data_are_ignored():
    corr, programs = _planted()
    extra = pd.DataFrame(True, index=["not_in_data"], columns=programs.columns)
    res = validate_programs(corr, pd.concat([programs, extra]), n_top=40).set_index("program")
    assert res.loc["P_a", "program_size"] == 20  # the gene absent from the data is not counted
    assert res.loc["P_a", "precision_at_n"] == pytest.approx(20 / 40)  # 20 hits among the 40 top genes
    assert res.loc["P_a", "r_precision"] == 1.0
    assert res["agreement"].isna().all() and res["score_component"].isna().all()  # no scores given


def test_no_overlap_reports_no_component():
    corr, programs = _planted()
    corr.loc["g40":"g59"] = 0.0  # P_c genes uncorrelated with everything -> never in a tail
    res = validate_programs(corr, programs, n_top=10).set_index("program")
    assert res.loc["P_c", "overlap"] == 0 and res.loc["P_c", "enriched_component"] is None
    assert res.loc["P_c", "p_value"] == 1.0 and res.loc["P_c", "precision_at_n"] == 0.0


def test_validate_adata_on_simulation_with_oracle_latent():
    from geovae.data.simulate import simulate_programs

    adata = simulate_programs(n_cells=400, n_genes=600, n_groups=3, program_size=40, seed=3)
    usage = adata.obsm["program_usage"]
    # an oracle latent: one component per true program (shuffled order), exactly its usage
    order = [2, 0, 3, 1]
    adata.obsm["X_latent"] = usage.to_numpy()[:, order]
    x = np.log1p(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X)
    corr = pd.DataFrame(component_gene_correlations(x, adata.obsm["X_latent"]), index=adata.var_names,
                        columns=component_names(4))
    table, note = validate_adata(adata, corr, n_top=20)
    assert note is None and len(table) == 4
    expected = {program: f"Z{order.index(j) + 1}" for j, program in enumerate(usage.columns)}
    assert dict(zip(table["program"], table["score_component"])) == expected
    assert dict(zip(table["program"], table["enriched_component"])) == expected
    assert table["agreement"].all() and (table["precision_at_n"] >= 0.9).all()
    assert (table["enriched_tail"] == "positive").all() and (table["adj_p_value"] < 1e-10).all()


def test_validate_adata_without_programs_gives_empty_table_and_note():
    import anndata as ad

    adata = ad.AnnData(np.ones((5, 3), dtype=np.float32))
    adata.obsm["X_latent"] = np.zeros((5, 2))
    corr = pd.DataFrame(np.zeros((3, 2)), index=adata.var_names, columns=component_names(2))
    table, note = validate_adata(adata, corr)
    assert table.empty and list(table.columns) == VALIDATION_COLUMNS and "varm['programs']" in note


def test_input_errors():
    corr, programs = _planted()
    with pytest.raises(ValueError, match="n_top"):
        validate_programs(corr, programs, n_top=0)
    with pytest.raises(ValueError, match="do not match"):
        validate_programs(corr, programs, latent=np.zeros((10, 2)), program_scores=pd.DataFrame(np.zeros((10, 3))))


# ---------------------------------------------------------------- benchmark aggregation (report)
def _run_table(seed: int) -> pd.DataFrame:
    """Validation table of one seed, from validate_programs on the planted example (components permuted)."""
    corr, programs = _planted()
    order = [f"Z{(i + seed) % 3 + 1}" for i in range(3)]  # a different seed names the components differently
    return validate_programs(corr.set_axis(order, axis=1), programs, n_top=20)


def test_program_validation_table_one_row_per_model_and_program(tmp_path):
    from geovae.report import PROGRAM_VALIDATION_COLUMNS, load_run_tables, program_validation_table

    paths = []
    for model, seeds in (("livae", (0, 1)), ("vae", (0,))):
        for seed in seeds:
            run = tmp_path / "results" / "sim" / model / str(seed)
            run.mkdir(parents=True)
            table = _run_table(seed)
            if model == "vae":
                table.loc[0, "precision_at_n"] = 0.25  # distinguishes the models
            table.to_csv(run / "program_validation.tsv", sep="\t", index=False)
            paths.append(run / "program_validation.tsv")
    empty = tmp_path / "results" / "pbmc" / "livae" / "0"
    empty.mkdir(parents=True)
    from geovae.interpretation.validation import empty_validation

    empty_validation().to_csv(empty / "program_validation.tsv", sep="\t", index=False)
    tables = load_run_tables(validation=[*paths, empty / "program_validation.tsv"])
    assert set(tables["validation"]) == {"sim/livae/0", "sim/livae/1", "sim/vae/0", "pbmc/livae/0"}

    out = program_validation_table(tables["validation"])
    assert list(out.columns) == PROGRAM_VALIDATION_COLUMNS
    assert list(zip(out["model"], out["program"])) == [("livae", "P_a"), ("livae", "P_b"), ("livae", "P_c"),
                                                       ("vae", "P_a"), ("vae", "P_b"), ("vae", "P_c")]
    assert (out["dataset"] == "sim").all() and list(out["seeds"]) == [2, 2, 2, 1, 1, 1]
    livae = out[out["model"] == "livae"].set_index("program")
    seed0, seed1 = _run_table(0).set_index("program"), _run_table(1).set_index("program")
    # components are listed per seed (they are renamed between seeds), numbers averaged
    assert livae.loc["P_a", "enriched_component"] == f"{seed0.loc['P_a', 'enriched_component']};" \
                                                     f"{seed1.loc['P_a', 'enriched_component']}"
    assert livae.loc["P_a", "enriched_component"] == "Z1;Z2"
    assert livae.loc["P_b", "precision_at_n"] == pytest.approx(15 / 20) and livae.loc["P_b", "precision_at_n_sd"] == 0
    assert livae.loc["P_a", "found"] == 1.0 and livae.loc["P_c", "found"] == 0.0
    vae = out[out["model"] == "vae"].set_index("program")
    assert vae.loc["P_a", "precision_at_n"] == 0.25 and np.isnan(vae.loc["P_a", "precision_at_n_sd"])
    assert out["agreement"].isna().all()  # no program scores in these tables


def test_program_validation_table_agreement_and_errors():
    from geovae.report import program_validation_table, summary_html, validation_summary

    base = pd.DataFrame({"program": ["a", "b"], "program_size": [10, 10], "enriched_component": ["Z1", None],
                         "adj_p_value": [1e-5, 1.0], "precision_at_n": [0.9, 0.0], "r_precision": [0.8, 0.0],
                         "score_component": ["Z1", "Z2"], "score_r": [-0.8, 0.2], "agreement": [True, False]})
    runs = {"sim/m/0": base, "sim/m/1": base.assign(agreement=["False", "False"], score_r=[0.6, -0.4])}
    out = program_validation_table(runs).set_index("program")
    assert out.loc["a", "agreement"] == 0.5 and out.loc["b", "agreement"] == 0.0
    assert out.loc["a", "abs_score_r"] == pytest.approx(0.7) and out.loc["b", "abs_score_r"] == pytest.approx(0.3)
    summary = validation_summary(runs).loc[("sim", "m")]
    assert summary["programs"] == 2 and summary["found"] == 1 and summary["agreement"] == pytest.approx(0.25)
    page = summary_html(pd.DataFrame(columns=["dataset", "model", "seed", "metric", "value"]), {}, {}, {},
                        validation=runs)
    assert "results/benchmark/program_validation.tsv" in page and "abs_score_r" in page
    with pytest.raises(ValueError, match="'sim/m/0' lacks column"):
        program_validation_table({"sim/m/0": base.drop(columns=["score_r"])})
    assert program_validation_table({}).empty and validation_summary({}).empty
