"""Tests for geovae.data.readers and geovae.data.validate (real PBMC counts from scanpy)."""

from __future__ import annotations

import gzip
import sys
import tarfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from geovae.data.local import detect_adapter, read_local
from geovae.data.readers import (
    detect_orientation,
    find_10x_triplets,
    read_10x_h5,
    read_10x_mtx,
    read_dense,
    read_h5ad_counts,
)
from geovae.data.validate import as_counts_csr, check_counts

try:
    import geo_server as gs
except ImportError:  # tests/ not on sys.path (e.g. a package layout)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import geo_server as gs


def dense(x: object) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def assert_is_counts_csr(adata: AnnData) -> None:
    assert isinstance(adata.X, sp.csr_matrix)
    assert adata.X.dtype == np.float32
    assert adata.var_names.is_unique and adata.obs_names.is_unique


@pytest.fixture(scope="module")
def counts() -> AnnData:
    return gs.pbmc_counts(120, start=40)


# --------------------------------------------------------------------------- validate


def test_pbmc_counts_fixture_is_integer() -> None:
    a = gs.pbmc_counts()
    assert a.shape == (700, 765)
    x = dense(a.X)
    assert np.all(x == np.round(x)) and x.min() == 0 and x.sum() > 100_000


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.array([[1.0, -2.0], [0.0, 3.0]]), "negative"),
        (np.array([[1.5, 2.0], [0.0, 3.0]]), "looks normalized"),
        (np.log1p(np.array([[1.0, 2.0], [0.0, 3.0]])), "looks normalized"),
        (np.zeros((2, 2)), "empty"),
        (np.zeros((0, 2)), "empty"),
        (np.array([[np.nan, 2.0], [0.0, 3.0]]), "NaN"),
    ],
)
def test_check_counts_rejects(x: np.ndarray, message: str) -> None:
    adata = AnnData(sp.csr_matrix(x) if x.size else x)
    with pytest.raises(ValueError, match=message) as info:
        check_counts(adata, source="GSM42_matrix.mtx.gz")
    assert "GSM42_matrix.mtx.gz" in str(info.value)


def test_check_counts_duplicate_names() -> None:
    adata = AnnData(np.ones((2, 2), dtype=np.float32))
    adata.var_names = ["CD3E", "CD3E"]
    with pytest.raises(ValueError, match=r"feature \(var\) names are not unique.*CD3E"):
        check_counts(adata, source="x.h5ad")
    adata.var_names = ["CD3E", "CD4"]
    adata.obs_names = ["c1", "c1"]
    with pytest.raises(ValueError, match=r"cell \(obs\) names"):
        check_counts(adata, source="x.h5ad")


def test_check_counts_accepts_integer_float_and_int() -> None:
    check_counts(AnnData(sp.csr_matrix(np.array([[0, 2], [5, 0]], dtype=np.float32))), "ok")
    check_counts(AnnData(np.array([[0, 2], [5, 0]], dtype=np.int64)), "ok")


def test_as_counts_csr_sums_duplicates_and_casts() -> None:
    # CSR built from raw arrays keeps duplicate (row 0, col 1) entries and an explicit zero
    x = sp.csr_matrix(
        (np.array([1, 2, 0], dtype=np.int64), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 2)
    )
    assert x.nnz == 3
    adata = AnnData(x)
    out = as_counts_csr(adata)
    assert out is adata
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    assert adata.X.nnz == 1 and dense(adata.X).tolist() == [[0, 3], [0, 0]]
    dense_in = AnnData(np.array([[1, 0], [0, 4]], dtype=np.int32))
    assert dense(as_counts_csr(dense_in).X).tolist() == [[1, 0], [0, 4]]


# --------------------------------------------------------------------------- 10x mtx


def test_find_10x_triplets_groups_by_prefix() -> None:
    names = [
        "GSM1_raw_matrix.mtx.gz", "GSM1_raw_barcodes.tsv.gz", "GSM1_raw_features.tsv.gz",
        "GSM1_filtered_matrix.mtx.gz", "GSM1_filtered_barcodes.tsv.gz", "GSM1_filtered_genes.tsv.gz",
        "GSM2_matrix.mtx.gz", "GSM2_barcodes.tsv.gz",  # incomplete
        "GSM1_metadata.csv.gz",
    ]
    found = find_10x_triplets(names)
    assert [t["prefix"] for t in found] == ["GSM1_filtered_", "GSM1_raw_"]
    assert found[0]["features"] == "GSM1_filtered_genes.tsv.gz" and found[0]["version"] == "v2"
    assert found[1]["version"] == "v3"
    # one file of each kind with unrelated prefixes still forms a triplet
    assert find_10x_triplets(["counts.mtx", "cells_barcodes.tsv", "genes.tsv"]) == []
    single = find_10x_triplets(["a_matrix.mtx.gz", "b_barcodes.tsv.gz", "c_features.tsv.gz"])
    assert single[0]["barcodes"] == "b_barcodes.tsv.gz"


def test_read_10x_mtx_v3_prefixed(tmp_path: Path, counts: AnnData) -> None:
    gs.write_10x_mtx(counts, tmp_path / "s1", prefix="GSM123_")
    assert detect_adapter(tmp_path / "s1") == "10x_mtx"
    adata = read_local(tmp_path / "s1")
    assert_is_counts_csr(adata)
    assert adata.shape == counts.shape
    np.testing.assert_array_equal(dense(adata.X), dense(counts.X))
    assert list(adata.obs_names) == list(counts.obs_names)
    assert list(adata.var_names) == list(counts.var_names)
    assert list(adata.var["gene_ids"]) == list(counts.var["gene_ids"])
    assert set(adata.var["feature_types"]) == {"Gene Expression"}


def test_read_10x_mtx_v2_uncompressed_duplicate_symbols(tmp_path: Path, counts: AnnData) -> None:
    names = list(counts.var_names)
    names[5] = names[4]  # two genes sharing a symbol, as in real Cell Ranger output
    gs.write_10x_mtx(counts, tmp_path, version="v2", gz=False, feature_names=names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["barcodes.tsv", "genes.tsv", "matrix.mtx"]
    adata = read_10x_mtx(tmp_path / "matrix.mtx")
    assert_is_counts_csr(adata)
    assert adata.var_names[4] == names[4] and adata.var_names[5] == f"{names[4]}-1"
    assert list(adata.var["gene_ids"]) == list(counts.var["gene_ids"])
    np.testing.assert_array_equal(dense(adata.X), dense(counts.X))


def test_read_10x_mtx_several_triplets_need_a_choice(tmp_path: Path, counts: AnnData) -> None:
    gs.write_10x_mtx(counts[:50], tmp_path, prefix="A_")
    gs.write_10x_mtx(counts[50:], tmp_path, prefix="B_")
    with pytest.raises(ValueError, match="several 10x triplets"):
        read_local(tmp_path)
    b = read_local(tmp_path / "B_matrix.mtx.gz")
    assert b.n_obs == counts.n_obs - 50
    assert list(b.obs_names) == list(counts.obs_names[50:])
    assert read_10x_mtx(tmp_path, prefix="A_").n_obs == 50


def test_read_10x_mtx_shape_mismatch_is_reported(tmp_path: Path, counts: AnnData) -> None:
    gs.write_10x_mtx(counts, tmp_path, gz=False)
    lines = (tmp_path / "barcodes.tsv").read_text().splitlines()
    (tmp_path / "barcodes.tsv").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(ValueError, match="barcodes.tsv has 117 "):
        read_local(tmp_path)


def test_read_10x_mtx_keeps_gene_expression_only(tmp_path: Path, counts: AnnData) -> None:
    files = gs.write_10x_mtx(counts, tmp_path, gz=False)
    feat = files[2]
    rows = feat.read_text().splitlines()
    rows[-2:] = [r.replace("Gene Expression", "Antibody Capture") for r in rows[-2:]]
    feat.write_text("\n".join(rows) + "\n")
    adata = read_local(tmp_path)
    assert adata.n_vars == counts.n_vars - 2
    assert set(adata.var["feature_types"]) == {"Gene Expression"}
    assert read_10x_mtx(tmp_path, feature_type=None).n_vars == counts.n_vars


# --------------------------------------------------------------------------- h5 / h5ad


def test_read_10x_h5_v3(tmp_path: Path, counts: AnnData) -> None:
    path = gs.write_10x_h5(counts, tmp_path / "filtered_feature_bc_matrix.h5", extra_features=3)
    assert detect_adapter(path) == "10x_h5"
    adata = read_local(path)
    assert_is_counts_csr(adata)
    assert adata.shape == counts.shape  # the 3 antibody features are dropped
    np.testing.assert_array_equal(dense(adata.X), dense(counts.X))
    assert list(adata.var["gene_ids"]) == list(counts.var["gene_ids"])
    assert read_10x_h5(path, feature_type=None).n_vars == counts.n_vars + 3


def test_read_h5ad_counts_from_x_layer_and_raw(tmp_path: Path, counts: AnnData) -> None:
    plain = counts.copy()
    plain.write_h5ad(tmp_path / "plain.h5ad")
    a = read_local(tmp_path / "plain.h5ad")
    assert_is_counts_csr(a)
    np.testing.assert_array_equal(dense(a.X), dense(counts.X))
    assert list(a.obs["bulk_labels"]) == list(counts.obs["bulk_labels"])

    normed = counts.copy()
    normed.layers["counts"] = counts.X.copy()
    normed.X = sp.csr_matrix(np.log1p(dense(counts.X)))
    normed.write_h5ad(tmp_path / "layer.h5ad")
    np.testing.assert_array_equal(dense(read_h5ad_counts(tmp_path / "layer.h5ad").X), dense(counts.X))

    with_raw = counts.copy()
    with_raw.raw = counts.copy()
    with_raw = with_raw[:, :100].copy()  # raw keeps all genes, X only 100
    with_raw.X = sp.csr_matrix(np.log1p(dense(with_raw.X)))
    # a file name with .h5 (not .h5ad) is recognised by content
    with_raw.write_h5ad(tmp_path / "raw.h5")
    assert detect_adapter(tmp_path / "raw.h5") == "h5ad"
    r = read_local(tmp_path / "raw.h5")
    assert r.n_vars == counts.n_vars
    np.testing.assert_array_equal(dense(r.X), dense(counts.X))


def test_read_h5ad_normalized_only_is_refused(tmp_path: Path, counts: AnnData) -> None:
    normed = counts.copy()
    normed.X = sp.csr_matrix(np.log1p(dense(counts.X) / dense(counts.X).sum(1, keepdims=True) * 1e4))
    path = tmp_path / "GSE1_normalized.h5ad"
    normed.write_h5ad(path)
    with pytest.raises(ValueError, match="GSE1_normalized.h5ad.*looks normalized"):
        read_local(path)
    assert read_local(path, validate=False).shape == counts.shape


# --------------------------------------------------------------------------- dense tables


def test_detect_orientation_known_cases() -> None:
    genes = ["ACTB", "GAPDH", "MT-CO1", "RPL13", "FOO1", "BAR2"]
    cells = [f"cell_{i}" for i in range(3)]
    assert detect_orientation(genes, cells)[0] == "genes_x_cells"
    assert detect_orientation(cells, genes)[0] == "cells_x_genes"
    ens = [f"ENSG{i:011d}" for i in range(3)]
    # Ensembl ids decide even against the shape rule
    assert detect_orientation(["c1", "c2", "c3", "c4"], ens)[0] == "cells_x_genes"
    bcs = ["AAACCTGAGAAGGCCT-1", "AAACCTGAGACAGACC-1"]
    assert detect_orientation(["g1", "g2", "g3"], bcs)[0] == "genes_x_cells"
    assert detect_orientation(bcs, ["g1", "g2", "g3"])[0] == "cells_x_genes"
    # no name evidence: shape decides
    assert detect_orientation(["a", "b", "c"], ["x", "y"])[0] == "genes_x_cells"
    assert detect_orientation(["a", "b"], ["x", "y", "z"])[0] == "cells_x_genes"


def _genes_x_cells_frame(counts: AnnData) -> pd.DataFrame:
    return pd.DataFrame(
        dense(counts.X).T.astype(np.int64), index=counts.var_names, columns=counts.obs_names
    )


def test_read_dense_genes_x_cells_csv_gz(tmp_path: Path, counts: AnnData) -> None:
    path = tmp_path / "GSM9_counts.csv.gz"
    _genes_x_cells_frame(counts).to_csv(path)
    assert detect_adapter(path) == "dense"
    adata = read_local(path)
    assert_is_counts_csr(adata)
    assert adata.shape == counts.shape
    assert list(adata.obs_names) == list(counts.obs_names)
    np.testing.assert_array_equal(dense(adata.X), dense(counts.X))


def test_read_dense_cells_x_genes_tsv_and_override(tmp_path: Path, counts: AnnData) -> None:
    sub = counts[:, :60]  # 120 cells x 60 genes: the shape rule alone would say genes x cells
    frame = _genes_x_cells_frame(sub).T
    path = tmp_path / "cells.tsv"
    frame.to_csv(path, sep="\t")
    adata = read_local(path)  # barcodes in the row names decide
    assert adata.shape == sub.shape
    np.testing.assert_array_equal(dense(adata.X), dense(sub.X))
    forced = read_local(path, orientation="genes_x_cells")
    assert forced.shape == (sub.n_vars, sub.n_obs)


def test_read_dense_r_header_and_symbol_column(tmp_path: Path, counts: AnnData) -> None:
    sub = counts[:10, :30]
    frame = _genes_x_cells_frame(sub)
    ids = [f"ENSG{i:011d}" for i in range(frame.shape[0])]
    lines = ["\t".join(["symbol", *frame.columns])]  # R write.table: no corner label for ids
    for gid, (sym, row) in zip(ids, frame.iterrows()):
        lines.append("\t".join([gid, sym, *map(str, row.to_numpy())]))
    path = tmp_path / "GSE5_umi.txt"
    path.write_text("\n".join(lines) + "\n")
    adata = read_dense(path)
    assert adata.shape == sub.shape
    assert list(adata.var_names) == list(sub.var_names)
    assert list(adata.var["gene_ids"]) == ids
    np.testing.assert_array_equal(dense(adata.X), dense(sub.X))


def test_read_dense_rejects_text_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("gene,c1,c2\nA,1,2\nB,x,3\n")
    with pytest.raises(ValueError, match="non-numeric"):
        read_local(path)


# --------------------------------------------------------------------------- archives, dispatch


def test_read_tar_cellranger_folder(tmp_path: Path, counts: AnnData) -> None:
    folder = tmp_path / "sample" / "outs"
    gs.write_10x_mtx(counts[:30], folder / "raw_feature_bc_matrix")
    gs.write_10x_mtx(counts[30:], folder / "filtered_feature_bc_matrix")
    archive = tmp_path / "GSM7_cellranger.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "sample", arcname="sample")
    assert detect_adapter(archive) == "tar"
    adata = read_local(archive)
    assert adata.n_obs == counts.n_obs - 30  # the filtered matrix was chosen
    np.testing.assert_array_equal(dense(adata.X), dense(counts[30:].X))


def test_detect_adapter_by_content_and_errors(tmp_path: Path, counts: AnnData) -> None:
    gs.write_10x_mtx(counts, tmp_path / "tx", gz=True)
    raw = tmp_path / "tx" / "matrix.mtx.gz"
    blob = tmp_path / "tx" / "payload"
    blob.write_bytes(gzip.decompress(raw.read_bytes()))
    assert detect_adapter(blob) == "10x_mtx"
    with pytest.raises(FileNotFoundError):
        detect_adapter(tmp_path / "missing.h5ad")
    with pytest.raises(ValueError, match="unknown adapter"):
        read_local(raw, adapter="no_such_adapter")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no complete 10x triplet"):
        read_local(empty)


def test_read_local_on_concatenated_real_fixture_keeps_sparse(tmp_path: Path) -> None:
    """The real scATAC fixture (integer peak counts) reads back unchanged as CSR."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    src = shared / "granja2019_hemato_atac_600.h5ad"
    if not src.exists():
        pytest.skip("granja2019 fixture not available because ../shared is missing")
    ref = ad.read_h5ad(src)
    adata = read_local(src)
    assert_is_counts_csr(adata)
    assert adata.shape == ref.shape
    assert adata.X.nnz == sp.csr_matrix(ref.X).count_nonzero()
    assert "BioClassification" in adata.obs
