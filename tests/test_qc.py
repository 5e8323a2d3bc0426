"""Adaptive (MAD) cell QC: known answers, per-sample bounds, retention on real and SIMULATED low-depth
data, and messages that name the rule, the observed median and the config key."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from geovae.preprocessing import qc_atac, qc_metrics_rna, qc_rna
from geovae.preprocessing.qc import QCRule, apply_cell_qc, mad_bounds

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def test_mad_bounds_known_answer() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, |x - 3| = 2 1 0 1 97 -> MAD 1
    assert mad_bounds(values, 2) == (1.0, 5.0)
    assert mad_bounds(values, 2, side="upper") == (-np.inf, 5.0)
    lo, hi = mad_bounds(np.expm1(values), 2, log=True)
    assert np.isclose(lo, np.expm1(1.0)) and np.isclose(hi, np.expm1(5.0))
    assert mad_bounds(np.zeros(10), 3) == (-np.inf, np.inf)  # MAD 0 flags nobody


def test_bounds_are_per_sample() -> None:
    """Two samples of different depth: per-sample bounds keep both; pooled bounds would not."""
    rng = np.random.default_rng(0)
    depth = np.r_[rng.normal(1000, 50, 200), rng.normal(100, 5, 200)]
    metrics = pd.DataFrame({"total_counts": depth})
    rule = [QCRule("outlier_counts", "total_counts", "preprocess.rna.n_mads", n_mads=5, log=True)]
    keep, record = apply_cell_qc(metrics, rule, np.repeat(["deep", "shallow"], 200), "test")
    table = record["table"]
    assert keep.mean() > 0.98 and list(table["sample"]) == ["deep", "shallow"]
    assert table["outlier_counts_min"][0] > table["outlier_counts_max"][1]


def _low_depth_counts(n_cells: int = 400, n_genes: int = 800, seed: int = 0) -> ad.AnnData:
    """SIMULATED sparse UMI counts at sci-RNA-seq depth (median ~100 genes per cell), with MT- genes."""
    rng = np.random.default_rng(seed)
    profile = rng.gamma(0.3, 1.0, n_genes)
    profile /= profile.sum()
    library = rng.lognormal(np.log(150), 0.4, n_cells)
    X = rng.poisson(np.outer(library, profile)).astype(np.float32)
    names = [f"MT-{i}" if i < 10 else f"G{i}" for i in range(n_genes)]
    return ad.AnnData(sp.csr_matrix(X), var=pd.DataFrame(index=names),
                      obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))


def test_adaptive_keeps_simulated_low_depth_cells_where_fixed_drops_them() -> None:
    counts = _low_depth_counts()
    assert np.median(qc_metrics_rna(counts)["n_genes_by_counts"]) < 200
    adaptive = qc_rna(counts)
    assert adaptive.n_obs / counts.n_obs > 0.9 and adaptive.uns["geovae_qc"]["mode"] == "adaptive"
    assert not adaptive.uns["geovae_qc"]["warnings"]
    fixed = qc_rna(counts, qc="fixed")  # 10x thresholds: min_genes 200
    assert fixed.n_obs < counts.n_obs / 2 and "preprocess.rna.min_genes" in fixed.uns["geovae_qc"]["warnings"][0]
    with pytest.raises(ValueError) as err:
        qc_rna(counts, qc="fixed", min_genes=10_000)
    message = str(err.value)
    for needle in ("QC removed all 400 cells", "'min_genes'", "median n_genes", "preprocess.rna.min_genes"):
        assert needle in message, message


def test_fixed_qc_warns_below_half() -> None:
    counts = _low_depth_counts(seed=1)
    cut = int(np.percentile(qc_metrics_rna(counts)["n_genes_by_counts"], 70))
    out = qc_rna(counts, qc="fixed", min_genes=cut)
    assert out.n_obs < counts.n_obs / 2
    (warning,) = out.uns["geovae_qc"]["warnings"]
    assert "QC kept" in warning and "preprocess.rna.min_genes" in warning


def test_no_gene_left_names_the_key() -> None:
    counts = _low_depth_counts(n_cells=30)
    with pytest.raises(ValueError, match=r"no gene is detected in min_cells=1000 .* preprocess\.rna\.min_cells"):
        qc_rna(counts, min_cells=1000)


def test_qc_record_per_sample() -> None:
    counts = _low_depth_counts()
    counts.obs["sample"] = np.repeat(["GSM1", "GSM2"], 200)
    out = qc_rna(counts)
    table = pd.DataFrame(out.uns["geovae_qc"]["table"])
    assert list(table["sample"]) == ["GSM1", "GSM2"] and table["cells_in"].sum() == 400
    assert table["cells_kept"].sum() == out.n_obs
    assert {"removed_empty_barcode", "removed_outlier_counts", "removed_outlier_genes", "removed_outlier_mito",
            "outlier_counts_min", "outlier_counts_max"} <= set(table.columns)
    assert set(out.uns["geovae_qc"]["rules"]["metric"]) == {"n_genes_by_counts", "total_counts", "pct_counts_mt"}


def test_atac_adaptive_qc_records_and_names_its_key() -> None:
    counts = _low_depth_counts()
    out = qc_atac(counts, min_peaks=5)
    assert out.uns["geovae_qc"]["modality"] == "atac" and out.n_obs > 0.9 * counts.n_obs
    with pytest.raises(ValueError, match=r"'min_peaks' alone removed 400 .* preprocess\.atac\.min_peaks"):
        qc_atac(counts, min_peaks=10_000)


@pytest.mark.parametrize("name", ["human_kidney_top2000", "cbmc_citeseq_top2000"])
def test_retention_on_real_low_depth_sets(name: str) -> None:
    """The real labelled sets (median ~115 genes per cell): fixed 10x thresholds drop most cells."""
    path = REAL / f"{name}.h5ad"
    if not path.exists():
        pytest.skip(f"{path} not found: ../shared is absent")
    raw = ad.read_h5ad(path)
    adaptive = qc_rna(raw)
    assert adaptive.n_obs / raw.n_obs >= 0.9, adaptive.uns["geovae_qc"]
    fixed = qc_rna(raw, qc="fixed")
    assert fixed.n_obs / raw.n_obs < 0.5 and fixed.uns["geovae_qc"]["warnings"]
