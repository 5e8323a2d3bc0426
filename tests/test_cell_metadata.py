"""Per-cell annotation tables: reading R and pandas layouts, the barcode forms of real deposits, and a
failing join's message; Ensembl ID mapping."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from geovae.data.cell_metadata import (CellTableError, is_cell_table_name, join_cell_table, join_cell_tables,
                                       read_cell_table)
from geovae.data.gene_ids import map_ensembl_ids

BARCODES = ["AAACCTGAGAAACCAT", "AAACCTGAGAAACCGC", "AAACCTGAGAAACCTA", "AAACCTGAGAAACGAG"]
LABELS = ["T", "B", "NK", "T"]
TITLES = {"GSM100": "donor one", "GSM200": "donor two"}


def _cells(per_sample: bool) -> ad.AnnData:
    """Cells as geovae reads them: per sample (GSM-prefixed names, obs barcode/sample) or one matrix."""
    if per_sample:  # both samples reuse the same barcodes
        obs = pd.DataFrame({"barcode": BARCODES * 2, "sample": ["GSM100"] * 4 + ["GSM200"] * 4},
                           index=[f"{g}_{b}" for g in ("GSM100", "GSM200") for b in BARCODES])
    else:
        obs = pd.DataFrame(index=[f"{b}-1" for b in BARCODES])
    return ad.AnnData(np.ones((len(obs), 2), dtype=np.float32), obs=obs)


def _write(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


@pytest.mark.parametrize("form", ["{b}", "{b}-1", "GSM100_{b}", "{b}_GSM100", "sample1_{b}-1", "{b}-1_donor"])
def test_single_matrix_barcode_forms(form: str) -> None:
    cells = _cells(per_sample=False)
    table = pd.DataFrame({"cell_type": LABELS}, index=[form.format(b=b) for b in BARCODES])
    record = join_cell_table(cells, table, "meta.csv")
    assert record["match_rate"] == 1.0 and list(cells.obs["cell_type"]) == LABELS


@pytest.mark.parametrize("form", ["GSM{g}_{b}", "{b}_GSM{g}", "{title}_{b}", "{b}-1_{title}"])
def test_reused_barcodes_matched_through_the_sample_in_the_row_name(form: str) -> None:
    cells = _cells(per_sample=True)
    rows = [form.format(g=g[3:], b=b, title=TITLES[g]) for g in ("GSM100", "GSM200") for b in BARCODES]
    labels = LABELS + LABELS[::-1]
    record = join_cell_table(cells, pd.DataFrame({"cell_type": labels}, index=rows), "meta.csv", TITLES)
    assert record["match_rate"] == 1.0 and "sample" in record["key"]
    assert list(cells.obs["cell_type"]) == labels


@pytest.mark.parametrize("column", ["sample", "orig.ident", "sample_title", "GSM"])
def test_reused_barcodes_matched_through_a_sample_column(column: str) -> None:
    cells = _cells(per_sample=True)
    values = ["GSM100"] * 4 + ["GSM200"] * 4 if column in ("sample", "GSM") else ["donor one"] * 4 + ["donor two"] * 4
    table = pd.DataFrame({column: values, "cluster": list("abcdefgh")}, index=BARCODES * 2)
    record = join_cell_table(cells, table, "meta.tsv", TITLES)
    assert record["match_rate"] == 1.0 and list(cells.obs["cluster"]) == list("abcdefgh")
    assert column not in cells.obs or column == "sample"


def test_reused_barcodes_without_sample_are_not_guessed() -> None:
    """Two cells share each barcode and the table names no sample: nothing is joined by chance."""
    cells = _cells(per_sample=True)
    with pytest.raises(CellTableError) as err:
        join_cell_table(cells, pd.DataFrame({"cell_type": LABELS}, index=BARCODES), "GSE1_metadata.csv.gz")
    message = str(err.value)
    assert "GSE1_metadata.csv.gz" in message and "match rate 0.00" in message
    assert BARCODES[0] in message  # barcodes of both sides shown


def test_failing_join_names_file_and_shows_both_sides() -> None:
    cells = _cells(per_sample=False)
    table = pd.DataFrame({"cell_type": ["x", "y"]}, index=["cell_1", "cell_2"])
    with pytest.raises(CellTableError, match=r"cell table GSE9_annot\.tsv: only 0 of 4 cells / 2 rows .*"
                                             r"cell barcodes e\.g\. AAACCTGAGAAACCAT-1.* table barcodes e\.g\. cell_1"):
        join_cell_table(cells, table, "GSE9_annot.tsv")


def test_partial_annotation_keeps_unannotated_cells() -> None:
    cells = _cells(per_sample=False)
    table = pd.DataFrame({"cell_type": LABELS[:3]}, index=BARCODES[:3])
    record = join_cell_table(cells, table, "meta.csv")
    assert record["n_matched"] == 3 and record["match_rate"] == 1.0 and record["cell_match_rate"] == 0.75
    assert cells.obs["cell_type"].isna().sum() == 1 and cells.n_obs == 4


def test_read_r_and_pandas_layouts(tmp_path: Path) -> None:
    body = "".join(f'"{b}","{lab}",{i}\n' for i, (b, lab) in enumerate(zip(BARCODES, LABELS)))
    short = read_cell_table(_write(tmp_path / "a_metadata.csv.gz", '"cell_type","n"\n' + body))
    blank = read_cell_table(_write(tmp_path / "b_metadata.csv.gz", '"","cell_type","n"\n' + body))
    named = read_cell_table(_write(tmp_path / "c_celltypes.txt.gz",
                                   "cell_id\tcell_type\n" + "".join(f"{b}\t{lab}\n" for b, lab in zip(BARCODES, LABELS))))
    for table in (short, blank, named):
        assert list(table.index) == BARCODES and list(table["cell_type"]) == LABELS


def test_auto_found_table_about_genes_is_skipped(tmp_path: Path) -> None:
    cells = _cells(per_sample=False)
    genes = _write(tmp_path / "GSE1_gene_annotation.tsv.gz", "gene\tchrom\nCD3E\t11\nMS4A1\t11\n")
    records = join_cell_tables(cells, [(genes.name, None, genes)], {}, explicit=False)
    assert records[0]["skipped"] and "chrom" not in cells.obs
    with pytest.raises(CellTableError):
        join_cell_tables(cells, [(genes.name, None, genes)], {}, explicit=True)


def test_cell_table_names() -> None:
    for name in ("GSE1_metadata.csv.gz", "GSE1_cell_annotation.tsv.gz", "GSE1_celltypes.txt.gz",
                 "GSE1_barcodes_annotated.tsv.gz", "GSM2_cell_info.tsv"):
        assert is_cell_table_name(name), name
    for name in ("GSE1_matrix.mtx.gz", "GSE1_features.tsv.gz", "GSE1_counts.csv.gz", "GSM2_dge.txt.gz"):
        assert not is_cell_table_name(name), name


def test_ensembl_ids_mapped_with_versions_duplicates_and_unknowns() -> None:
    names = ["ENSG00000141510.17", "ENSG00000000003", "ENSG99999999999.1", "ENSG00000167286", "CD19"]
    cells = ad.AnnData(np.ones((2, len(names)), dtype=np.float32), var=pd.DataFrame(index=names))
    record = map_ensembl_ids(cells, "human")
    assert record["applied"] and (record["n_ensembl"], record["n_mapped"], record["n_unmapped"]) == (4, 3, 1)
    assert list(cells.var_names) == ["TP53", "TSPAN6", "ENSG99999999999.1", "CD3D", "CD19"]
    assert list(cells.var["gene_id"]) == names
    mouse = ad.AnnData(np.ones((1, 2), dtype=np.float32), var=pd.DataFrame(index=["ENSMUSG00000064336", "x"]))
    assert map_ensembl_ids(mouse, "mouse")["n_mapped"] == 1 and mouse.var_names[0] == "mt-Tf"
    symbols = ad.AnnData(np.ones((1, 2), dtype=np.float32), var=pd.DataFrame(index=["CD3E", "CD19"]))
    assert not map_ensembl_ids(symbols, "human")["applied"]
    dup = ad.AnnData(np.ones((1, 2), dtype=np.float32),
                     var=pd.DataFrame(index=["ENSG00000141510.1", "ENSG00000141510.2"]))
    assert map_ensembl_ids(dup, "human")["n_duplicate_symbols"] == 1 and list(dup.var_names) == ["TP53", "TP53-1"]
