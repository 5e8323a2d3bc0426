"""GEO series as real deposits lay them out, end to end through the real Snakemake workflow.

Both series are built by the test from real counts (scanpy's pbmc68k_reduced, 700 PBMCs, labels
``bulk_labels``) and served on loopback:

(a) ``GSE999101``: one series-level R-style CSV count table (genes x cells, header one field short,
    versioned Ensembl IDs as row names) and a series-level cell-metadata CSV holding the labels;
(b) ``GSE999102``: two samples with a Drop-seq DGE table each (``GSM..._dge.txt.gz``, ``GENE`` first
    column), the same barcodes in both samples, and a series-level annotation table keyed by sample
    title and barcode.

The sheet has only ``dataset, source, accession, modality, species, label_key, data_type``; the config
is the default one, with training capped at 40 epochs (training length is not under test here).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from geo_server import SampleSpec, build_geo_tree, pbmc_counts, serve_directory
from project_copy import workflow_copy

pytestmark = pytest.mark.integration


def _ensembl_names(symbols: list[str]) -> list[str]:
    """Versioned Ensembl IDs for the symbols that have one (reverse of the shipped human table)."""
    from geovae.data.gene_ids import ensembl_table

    table = ensembl_table("human")
    reverse = pd.Series(table.index, index=table.to_numpy()).groupby(level=0).first()
    return [f"{reverse[s]}.{7 + i % 5}" if s in reverse.index else s for i, s in enumerate(symbols)]


def _write_r_table(frame: pd.DataFrame, path: Path, sep: str = ",") -> Path:
    """R ``write.table(sep=",")`` layout: header without a field for the row names."""
    lines = [sep.join(f'"{c}"' for c in frame.columns)]
    lines += [sep.join([f'"{i}"', *map(str, row)]) for i, row in zip(frame.index, frame.to_numpy())]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _series_a(work: Path) -> Path:
    counts = pbmc_counts()
    payload = work / "payload_a"
    payload.mkdir(parents=True)
    genes_x_cells = pd.DataFrame(counts.X.toarray().T.astype(int), index=_ensembl_names(list(counts.var_names)),
                                 columns=counts.obs_names)
    matrix = _write_r_table(genes_x_cells, payload / "GSE999101_counts.csv.gz")
    meta = pd.DataFrame({"cell_type": counts.obs["bulk_labels"].to_numpy(),
                         "nCount_RNA": np.asarray(counts.X.sum(1)).ravel().astype(int)}, index=counts.obs_names)
    table = _write_r_table(meta, payload / "GSE999101_metadata.csv.gz")
    samples = [SampleSpec("GSM9991011", "PBMC pool", ["tissue: blood"], files=[])]
    build_geo_tree(work / "geo", "GSE999101", samples, series_files=[matrix, table])
    return work / "geo"


def _series_b(work: Path) -> Path:
    counts = pbmc_counts()
    payload = work / "payload_b"
    payload.mkdir(parents=True)
    half = counts.n_obs // 2
    barcodes = [b.split("-")[0] for b in counts.obs_names[:half]]  # Drop-seq: 12-14 nt, no suffix
    specs, rows = [], []
    for k, (gsm, title, part) in enumerate([("GSM9991021", "pbmc A", counts[:half]),
                                             ("GSM9991022", "pbmc B", counts[half:2 * half])]):
        dge = pd.DataFrame(part.X.toarray().T.astype(int), index=pd.Index(part.var_names, name="GENE"),
                           columns=barcodes)
        path = payload / f"{gsm}_{title.replace(' ', '')}_dge.txt.gz"
        dge.to_csv(path, sep="\t", compression="gzip")
        specs.append(SampleSpec(gsm, title, [f"donor: D{k + 1}"], files=[path]))
        rows.append(pd.DataFrame({"sample_title": title, "barcode": barcodes,
                                  "cell_type": part.obs["bulk_labels"].to_numpy()}))
    table = payload / "GSE999102_cell_annotation.tsv.gz"
    pd.concat(rows).to_csv(table, sep="\t", index=False, compression="gzip")
    build_geo_tree(work / "geo", "GSE999102", specs, series_files=[table])
    return work / "geo"


@pytest.fixture(scope="module")
def real_layout_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("real_layouts")
    _series_a(work)
    _series_b(work)
    project = workflow_copy(work / "project")
    sheet = project / "config" / "minimal.tsv"
    sheet.write_text("dataset\tsource\taccession\tmodality\tspecies\tlabel_key\tdata_type\n"
                     "ensembl_csv\tgeo\tGSE999101\trna\thuman\tcell_type\tsteady_state\n"
                     "dge_two\tgeo\tGSE999102\trna\thuman\tcell_type\tsteady_state\n")
    with serve_directory(work / "geo") as server:
        extra = project / "config" / "test.yaml"
        extra.write_text(yaml.safe_dump({"datasets": str(sheet), "train": {"max_epochs": 40},
                                         "geo": {"base_url": server.url, "cache_dir": str(work / "cache")}}))
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                               "config/config.yaml", str(extra)], cwd=project, capture_output=True, text=True,
                              timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return project


@pytest.mark.parametrize("dataset", ["ensembl_csv", "dge_two"])
def test_labels_joined_and_qc_keeps_annotated_cells(real_layout_run: Path, dataset: str) -> None:
    results = real_layout_run / "results" / dataset
    manifest = json.loads((results / "acquire_manifest.json").read_text())
    (joined,) = [r for r in manifest["cell_tables"] if "skipped" not in r]
    assert joined["match_rate"] == 1.0 and "cell_type" in joined["columns"]
    raw = ad.read_h5ad(results / "raw.h5ad", backed="r")
    annotated = raw.obs["cell_type"].notna().sum()
    assert annotated == raw.n_obs == 700 - (700 % 2 if dataset == "dge_two" else 0)
    prep = ad.read_h5ad(results / "preprocessed.h5ad", backed="r")
    assert prep.obs["cell_type"].notna().sum() >= 0.9 * annotated
    metrics = pd.read_csv(results / "livae" / "0" / "metrics.tsv", sep="\t").set_index("metric")["value"]
    assert 0.2 < metrics["NMI"] <= 1.0  # computed on the joined label


def test_two_samples_with_reused_barcodes_stay_apart(real_layout_run: Path) -> None:
    raw = ad.read_h5ad(real_layout_run / "results" / "dge_two" / "raw.h5ad", backed="r")
    assert raw.obs_names.is_unique and set(raw.obs["sample"]) == {"GSM9991021", "GSM9991022"}
    first = raw.obs[raw.obs["sample"] == "GSM9991021"]
    second = raw.obs[raw.obs["sample"] == "GSM9991022"]
    assert list(first["barcode"]) == list(second["barcode"])  # the same barcodes, kept in obs
    assert (first["cell_type"].astype(str).to_numpy() != second["cell_type"].astype(str).to_numpy()).any()


def test_ensembl_ids_mapped_and_enrichment_significant(real_layout_run: Path) -> None:
    results = real_layout_run / "results" / "ensembl_csv"
    manifest = json.loads((results / "acquire_manifest.json").read_text())
    mapping = manifest["gene_ids"]
    assert mapping["applied"] and mapping["n_mapped"] >= 0.9 * mapping["n_ensembl"] > 500
    raw = ad.read_h5ad(results / "raw.h5ad", backed="r")
    assert "CD3E" in raw.var_names and raw.var.loc["CD3E", "gene_id"].startswith("ENSG")
    enrichment = pd.read_csv(results / "livae" / "0" / "enrichment.tsv", sep="\t")
    assert (enrichment["adj_p_value"] < 0.05).sum() > 0


def test_qc_page_in_the_summary(real_layout_run: Path) -> None:
    summary = (real_layout_run / "results" / "report" / "summary.html").read_text()
    assert "Quality control" in summary and "ensembl_csv" in summary
    assert "Cell annotation tables" in summary and "GSE999102_cell_annotation.tsv.gz" in summary
    assert (real_layout_run / "results" / "dge_two" / "qc.png").stat().st_size > 0
    table = pd.read_csv(real_layout_run / "results" / "dge_two" / "qc.tsv", sep="\t")
    assert list(table["sample"]) == ["GSM9991021", "GSM9991022"]


def test_geo_inspect_reads_only_the_soft_file_and_table_heads(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from geovae.cli import main

    _series_b(tmp_path)
    with serve_directory(tmp_path / "geo") as server:
        code = main(["geo", "inspect", "GSE999102", "--base-url", server.url, "--cache-dir", str(tmp_path / "c")])
        out = capsys.readouterr().out
        assert code == 0, out
        table_requests = [e for e in server.log if e["path"].endswith("_cell_annotation.tsv.gz")]
        dge_requests = [e for e in server.log if e["path"].endswith("_dge.txt.gz")]
    assert table_requests and all(e["range"] for e in table_requests) and not dge_requests
    assert "GSM9991021  pbmc A" in out and "_dge.txt.gz as dense" in out
    assert "label column 'cell_type':" in out and "CD14+ Monocyte" in out
    assert "batch column 'sample_title': pbmc A, pbmc B" in out
    assert out.rstrip().splitlines()[-1] == "GSE999102\tgeo\tGSE999102\trna\thuman\tcell_type\tsteady_state"
    from geovae.data.inspect import inspect_series

    local = inspect_series("GSE999102", base_url=str(tmp_path / "geo"), cache_dir=tmp_path / "c2")
    assert local["sheet_row"]["label_key"] == "cell_type" and local["plan"]["level"] == "samples"
