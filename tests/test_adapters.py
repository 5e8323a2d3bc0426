"""Tests for the extra adapters (geovae.data.adapters) and their GEO paths (RAW.tar, Visium,
scATAC peak/fragment samples, Multiome, sheet columns samples/files/adapter)."""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from geovae.data.acquire import acquire_dataset
from geovae.data.adapters import read_fragments, read_multiome, read_visium
from geovae.data.geo import acquire_geo, globs_to_regex, group_by_sample, plan_files
from geovae.data.local import detect_adapter, read_local

try:
    import geo_server as gs
except ImportError:  # tests/ not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import geo_server as gs

FAST = {"backoff": 0.01}


def dense(x: object) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def ensembl_counts(n: int = 60) -> AnnData:
    """PBMC counts indexed by fake-but-well-formed Ensembl ids, symbols in var."""
    a = gs.pbmc_counts(n)
    a.var["gene_symbols"] = a.var_names.to_numpy()
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    return a


# --------------------------------------------------------------------------- single-file adapters


def test_loom_with_ensembl_ids_gets_symbols(tmp_path: Path) -> None:
    a = ensembl_counts()
    path = tmp_path / "GSM1_counts.loom"
    a.write_loom(path)
    assert detect_adapter(path) == "loom"
    got = read_local(path)
    assert got.uns["geovae_adapter"] == "loom"
    assert list(got.obs_names) == list(a.obs_names)
    assert list(got.var_names[:5]) == list(a.var["gene_symbols"][:5])
    assert list(got.var["gene_ids"][:2]) == ["ENSG00000000000", "ENSG00000000001"]
    np.testing.assert_array_equal(dense(got.X), dense(a.X))


def test_h5ad_with_ensembl_ids_gets_symbols(tmp_path: Path) -> None:
    a = ensembl_counts(30)
    a.write_h5ad(tmp_path / "x.h5ad")
    got = read_local(tmp_path / "x.h5ad")
    assert got.var_names[0] == a.var["gene_symbols"].iloc[0] and got.var["gene_ids"].iloc[0] == a.var_names[0]


def test_atac_peak_triplet_real_granja(tmp_path: Path) -> None:
    a = gs.atac_counts(100, 300)
    gs.write_peak_triplet(a, tmp_path / "s", prefix="GSM7_filtered_peak_bc_")
    path = tmp_path / "s" / "GSM7_filtered_peak_bc_matrix.mtx.gz"
    assert detect_adapter(path) == "atac_mtx" and detect_adapter(tmp_path / "s") == "atac_mtx"
    got = read_local(path, modality="atac")
    assert got.shape == a.shape
    assert list(got.var_names) == [f"{c}:{s}-{e}" for c, s, e in zip(a.var["chr"], a.var["start"], a.var["end"])]
    assert got.var["start"].dtype == np.int64
    np.testing.assert_array_equal(got.var["end"].to_numpy(), a.var["end"].to_numpy())
    np.testing.assert_array_equal(dense(got.X), dense(a.X))


def test_fragments_to_5kb_bins_known_answer(tmp_path: Path) -> None:
    frags = [
        ("chr1", 100, 300, "AAAC-1"),      # insertions 100, 299 -> bin chr1:0-5000 twice
        ("chr1", 4990, 5020, "AAAC-1"),    # 4990 -> bin 0, 5019 -> bin 1
        ("chr2", 10_001, 10_200, "AAAC-1"),  # both in chr2:10000-15000
        ("chr1", 5100, 5200, "CCCG-1"),
        ("chr1", 5300, 5400, "CCCG-1"),
        ("chr1", 9999, 10_000, "CCCG-1"),  # 9999 and 9999 -> bin 1 twice
        ("chr1", 7, 50, "GGGT-1"),        # only 1 fragment: dropped
    ]
    path = gs.write_fragments(tmp_path / "GSM9_atac_fragments.tsv.gz", frags)
    assert detect_adapter(path) == "fragments"
    got = read_local(path, min_fragments=3)
    assert list(got.obs_names) == ["AAAC-1", "CCCG-1"]
    assert list(got.obs["n_fragments"]) == [3, 3]
    assert list(got.var_names) == ["chr1:0-5000", "chr1:5000-10000", "chr2:10000-15000"]
    np.testing.assert_array_equal(dense(got.X), [[3, 1, 2], [0, 6, 0]])
    assert list(got.var["chr"]) == ["chr1", "chr1", "chr2"] and got.var["end"].iloc[2] == 15000
    with pytest.raises(ValueError, match="no cell has >= 50 fragments"):
        read_fragments(path, min_fragments=50)


def test_multiome_h5_gives_rna_and_atac_of_same_cells(tmp_path: Path) -> None:
    atac = gs.atac_counts(80, 200)
    rna = gs.pbmc_counts(80)
    atac.obs_names = rna.obs_names
    path = gs.write_multiome_h5(rna, atac, tmp_path / "GSM5_filtered_feature_bc_matrix.h5")
    both = read_multiome(path)
    assert list(both["rna"].obs_names) == list(both["atac"].obs_names) == list(rna.obs_names)
    np.testing.assert_array_equal(dense(both["rna"].X), dense(rna.X))
    np.testing.assert_array_equal(dense(both["atac"].X), dense(atac.X))
    assert list(both["atac"].var["start"]) == list(atac.var["start"])
    # read_local / the sheet's modality column select the feature type of the plain 10x_h5 adapter
    r = read_local(path, modality="rna")
    a = read_local(path, modality="atac")
    assert r.n_vars == rna.n_vars and a.n_vars == atac.n_vars
    assert {"chr", "start", "end"} <= set(a.var.columns)
    a2 = read_local(path, adapter="multiome", modality="atac")
    np.testing.assert_array_equal(dense(a2.X), dense(a.X))


def _visium_sample(directory: Path, n: int = 40, header: bool = False) -> tuple[AnnData, pd.DataFrame]:
    directory.mkdir(parents=True, exist_ok=True)
    a = gs.pbmc_counts(n)
    gs.write_10x_h5(a, directory / "GSM3_filtered_feature_bc_matrix.h5")
    rng = np.random.default_rng(0)
    barcodes = list(a.obs_names) + ["TTTTTTTTTTTTTTTT-1", "GGGGGGGGGGGGGGGG-1"]  # off-tissue spots
    pos = pd.DataFrame({
        "barcode": barcodes,
        "in_tissue": [1] * n + [0, 0],
        "array_row": rng.integers(0, 78, n + 2),
        "array_col": rng.integers(0, 128, n + 2),
        "pxl_row_in_fullres": rng.integers(1000, 9000, n + 2),
        "pxl_col_in_fullres": rng.integers(1000, 9000, n + 2),
    }).iloc[::-1]  # file order differs from the matrix order
    name = "GSM3_tissue_positions.csv.gz" if header else "GSM3_tissue_positions_list.csv.gz"
    with gzip.open(directory / name, "wt") as fh:
        pos.to_csv(fh, index=False, header=header)
    (directory / "GSM3_scalefactors_json.json").write_text(json.dumps(
        {"spot_diameter_fullres": 89.4, "tissue_hires_scalef": 0.17, "fiducial_diameter_fullres": 144.5,
         "tissue_lowres_scalef": 0.05}))
    return a, pos.set_index("barcode")


@pytest.mark.parametrize("header", [False, True])
def test_visium_spatial_coordinates(tmp_path: Path, header: bool) -> None:
    a, pos = _visium_sample(tmp_path / "v", header=header)
    got = read_visium(tmp_path / "v" / "GSM3_filtered_feature_bc_matrix.h5")
    assert list(got.obs_names) == list(a.obs_names)
    exp = pos.loc[a.obs_names, ["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float)
    np.testing.assert_array_equal(got.obsm["spatial"], exp)
    assert list(got.obs["array_row"]) == list(pos.loc[a.obs_names, "array_row"])
    assert got.uns["spatial"]["GSM3"]["scalefactors"]["tissue_hires_scalef"] == pytest.approx(0.17)
    np.testing.assert_array_equal(dense(got.X), dense(a.X))


def test_plan_files_new_kinds_and_helpers() -> None:
    visium = ["GSM3_filtered_feature_bc_matrix.h5", "GSM3_tissue_positions_list.csv.gz",
              "GSM3_scalefactors_json.json.gz", "GSM3_tissue_hires_image.png.gz"]
    atac = ["GSM4_matrix.mtx.gz", "GSM4_barcodes.tsv.gz", "GSM4_peaks.bed.gz", "GSM4_fragments.tsv.gz",
            "GSM4_fragments.tsv.gz.tbi"]
    plan = plan_files([], {"GSM3": visium})
    assert plan["samples"]["GSM3"] == {"format": "visium", "files": visium[:3]}
    plan = plan_files([], {"GSM4": atac}, modality="atac")
    assert plan["samples"]["GSM4"] == {"format": "atac_mtx", "files": atac[:3]}
    frag = plan_files([], {"GSM4": atac}, modality="atac", file_pattern=globs_to_regex("*fragments.tsv.gz"))
    assert frag["samples"]["GSM4"] == {"format": "fragments", "files": ["GSM4_fragments.tsv.gz"]}
    loom = plan_files(["GSE1_all.loom", "GSE1_RAW.tar"], {"GSM1": []})
    assert loom["series"]["format"] == "loom"
    assert group_by_sample(["GSM1_a.mtx.gz", "GSM12.h5", "x/GSM1-b.tsv", "filelist.txt"]) == {
        "": ["filelist.txt"], "GSM1": ["GSM1_a.mtx.gz", "x/GSM1-b.tsv"], "GSM12": ["GSM12.h5"]}


# --------------------------------------------------------------------------- over HTTP


def _raw_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_raw_tar_per_sample_grouping_and_sheet_row(tmp_path: Path) -> None:
    acc, s1, s2 = "GSE999101", "GSM9100001", "GSM9100002"
    payload = tmp_path / "payload"
    members: dict[str, bytes] = {}
    for gsm, start, n in ((s1, 0, 120), (s2, 120, 90)):
        for f in gs.write_10x_mtx(gs.pbmc_counts(n, start), payload / gsm, prefix=f"{gsm}_"):
            members[f.name] = f.read_bytes()
    members["filelist.txt"] = b"Archive\tName\n"
    tar = _raw_tar(payload / f"{acc}_RAW.tar", members)
    specs = [gs.SampleSpec(gsm=g, title=f"donor {i}", characteristics=[f"donor: D{i}"], files=[])
             for i, g in enumerate((s1, s2), 1)]
    root = tmp_path / "geo"
    gs.build_geo_tree(root, acc, specs, series_files=[tar])
    with gs.serve_directory(root) as server:
        adata, manifest = acquire_geo(acc, tmp_path / "cache", base_url=server.url, **FAST)
        assert manifest["plan"]["series"]["format"] == "raw_tar"
        assert set(manifest["plan"]["raw_tar"]) == {s1, s2}
        assert adata.obs["sample"].value_counts().to_dict() == {s1: 120, s2: 90}
        assert adata.obs.groupby("sample", observed=True)["donor"].first().to_dict() == {s1: "D1", s2: "D2"}
        ref = gs.pbmc_counts(210)
        order = [n.split("_", 1)[1] for n in adata.obs_names]
        np.testing.assert_array_equal(dense(adata.X), dense(ref[order, adata.var_names].X))
        # one sample from the same archive through a sheet row; species from the SOFT organism
        row = {"dataset": "one", "source": "geo", "accession": acc, "modality": "rna",
               "species": "unknown", "data_type": "steady_state", "samples": s2, "files": "", "adapter": ""}
        one, _ = acquire_dataset(row, geo_base_url=server.url, cache_dir=tmp_path / "cache")
        assert one.n_obs == 90 and set(one.obs["sample"]) == {s2}
        assert one.uns["species"] == "human"
        n_tar_gets = len(server.requests_for(f"/series/GSE999nnn/{acc}/suppl/{acc}_RAW.tar"))
        assert n_tar_gets == 1  # the second call reused the cached, unpacked archive


def test_atac_and_visium_samples_over_http(tmp_path: Path) -> None:
    acc, s_atac, s_vis = "GSE999102", "GSM9200001", "GSM9200002"
    payload = tmp_path / "payload"
    a = gs.atac_counts(60, 300)
    a.obs_names = [f"BC{i:03d}-1" for i in range(a.n_obs)]
    files = gs.write_peak_triplet(a, payload / s_atac, prefix=f"{s_atac}_")
    rng = np.random.default_rng(1)
    frags = [("chr1", int(x), int(x) + 150, bc) for bc in a.obs_names[:4]
             for x in rng.integers(0, 200_000, 1000)]
    files.append(gs.write_fragments(payload / s_atac / f"{s_atac}_atac_fragments.tsv.gz", frags))
    vis, pos = _visium_sample(payload / s_vis)
    specs = [gs.SampleSpec(gsm=s_atac, title="atac", characteristics=["assay: scATAC"], files=files),
             gs.SampleSpec(gsm=s_vis, title="visium", characteristics=["assay: Visium"],
                           files=sorted((payload / s_vis).iterdir()))]
    root = tmp_path / "geo"
    gs.build_geo_tree(root, acc, specs)
    cache = tmp_path / "cache"
    with gs.serve_directory(root) as server:
        peaks, man = acquire_geo(acc, cache, base_url=server.url, samples=[s_atac], modality="atac", **FAST)
        assert man["plan"]["samples"][s_atac]["format"] == "atac_mtx"
        assert peaks.n_vars == a.n_vars and {"chr", "start", "end"} <= set(peaks.var.columns)
        np.testing.assert_array_equal(dense(peaks.X), dense(a.X))
        # the sheet's files glob picks the fragment file instead: 4 cells with 1000 fragments
        bins, man = acquire_geo(acc, cache, base_url=server.url, samples=[s_atac], modality="atac",
                                files="*fragments.tsv.gz", **FAST)
        assert man["plan"]["samples"][s_atac]["format"] == "fragments"
        assert bins.n_obs == 4 and set(bins.var["end"] - bins.var["start"]) == {5000}
        assert dense(bins.X).sum() == 4 * 1000 * 2  # two Tn5 insertions per fragment
        spatial, man = acquire_geo(acc, cache, base_url=server.url, samples=[s_vis], **FAST)
        assert man["plan"]["samples"][s_vis]["format"] == "visium"
        exp = pos.loc[vis.obs_names, ["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float)
        np.testing.assert_array_equal(spatial.obsm["spatial"], exp)
        # adapter override: read the Visium h5 as a plain 10x h5 (no coordinates)
        plain, _ = acquire_geo(acc, cache, base_url=server.url, samples=[s_vis], adapter="10x_h5", **FAST)
        assert "spatial" not in plain.obsm and plain.n_obs == vis.n_obs


def test_normalized_member_of_raw_tar_is_named(tmp_path: Path) -> None:
    acc, gsm = "GSE999103", "GSM9300001"
    a = gs.pbmc_counts(40)
    table = pd.DataFrame(dense(a.X).T / 3.0, index=a.var_names, columns=a.obs_names)  # genes x cells
    tar = _raw_tar(tmp_path / f"{acc}_RAW.tar", {f"{gsm}_counts.txt": table.to_csv(sep="\t").encode()})
    root = tmp_path / "geo"
    gs.build_geo_tree(root, acc, [gs.SampleSpec(gsm=gsm, title="t", characteristics=[], files=[])],
                      series_files=[tar])
    with pytest.raises(ValueError, match=rf"{gsm}_counts\.txt.*looks normalized"):
        acquire_geo(acc, tmp_path / "cache", base_url=str(root), **FAST)


# --------------------------------------------------------------------------- MuData .h5mu


def _mudata_pair(n_rna: int = 80, n_atac: int = 70) -> tuple[AnnData, AnnData]:
    """Real PBMC RNA counts and real scATAC peak counts given the same cell names.

    The ATAC mod holds only the first ``n_atac`` RNA cells, in reversed order, and
    its ``var`` has only peak names (coordinates must come from parsing them).
    """
    rna = gs.pbmc_counts(n_rna)
    rna.var["feature_types"] = "Gene Expression"
    atac = gs.atac_counts(n_atac, 200)
    atac.obs_names = list(rna.obs_names[:n_atac])
    atac = atac[::-1].copy()
    atac.var = pd.DataFrame({"feature_types": "Peaks"}, index=atac.var_names)
    return rna, atac


def _write_h5mu(mods: dict[str, AnnData], path: Path, labels: pd.Series | None = None) -> Path:
    import mudata

    mdata = mudata.MuData(mods)
    if labels is not None:
        mdata.obs["label"] = labels.reindex(mdata.obs_names).astype(str).to_numpy()
    mdata.write_h5mu(path)
    return path


def test_h5mu_rna_and_atac_of_same_cells(tmp_path: Path) -> None:
    pytest.importorskip("mudata")
    rna, atac = _mudata_pair()
    # RNA as typically shared: .X log-normalized, raw counts in layers["counts"]
    stored = rna.copy()
    stored.layers["counts"] = stored.X.copy()
    stored.X = sp.csr_matrix(np.log1p(dense(stored.X) / 7.0).astype(np.float32))
    path = _write_h5mu({"rna": stored, "atac": atac}, tmp_path / "GSE1_multiome.h5mu",
                       labels=rna.obs["bulk_labels"])
    assert detect_adapter(path) == "h5mu"
    r = read_local(path, modality="rna")
    a = read_local(path, modality="atac")
    # only the 70 cells present in both mods, in the MuData's order (RNA first)
    expected = list(rna.obs_names[:70])
    assert list(r.obs_names) == list(a.obs_names) == expected
    np.testing.assert_array_equal(dense(r.X), dense(rna[expected].X))
    np.testing.assert_array_equal(dense(a.X), dense(atac[expected].X))
    assert list(r.var_names) == list(rna.var_names) and r.uns["geovae_adapter"] == "h5mu"
    assert list(r.obs["label"]) == list(rna.obs.loc[expected, "bulk_labels"])
    ref = gs.atac_counts(70, 200)
    assert list(a.var_names) == list(ref.var_names)
    np.testing.assert_array_equal(a.var["start"].to_numpy(), ref.var["start"].to_numpy())
    np.testing.assert_array_equal(a.var["end"].to_numpy(), ref.var["end"].to_numpy())
    assert list(a.var["chr"]) == list(ref.var["chr"])


def test_h5mu_mods_found_by_feature_type_and_normalized_refused(tmp_path: Path) -> None:
    pytest.importorskip("mudata")
    rna, atac = _mudata_pair(60, 60)
    path = _write_h5mu({"mod_a": atac, "mod_b": rna}, tmp_path / "typed.h5mu")
    a = read_local(path, modality="atac")
    r = read_local(path, modality="rna")
    assert a.n_vars == atac.n_vars and r.n_vars == rna.n_vars
    assert list(a.obs_names) == list(r.obs_names)
    np.testing.assert_array_equal(dense(r.X), dense(rna[list(r.obs_names)].X))
    # a normalized mod without a counts layer is refused, naming the file and the mod
    norm = atac.copy()
    norm.X = sp.csr_matrix(dense(norm.X) / dense(norm.X).sum(axis=1, keepdims=True) * 1e4, dtype=np.float32)
    bad = _write_h5mu({"rna": rna, "atac": norm}, tmp_path / "norm.h5mu")
    with pytest.raises(ValueError, match=r"norm\.h5mu: modality 'atac' holds no raw integer counts"):
        read_local(bad, modality="atac")
    assert read_local(bad, modality="rna").n_obs == 60  # the RNA mod of that file is fine
    with pytest.raises(ValueError, match=r"no atac modality"):
        read_local(_write_h5mu({"rna": rna}, tmp_path / "rna_only.h5mu"), modality="atac")


def test_h5mu_series_file_over_http(tmp_path: Path) -> None:
    pytest.importorskip("mudata")
    acc, gsm = "GSE999104", "GSM9400001"
    rna, atac = _mudata_pair(50, 50)
    h5mu = _write_h5mu({"rna": rna, "atac": atac}, tmp_path / f"{acc}_multiome.h5mu")
    plan = plan_files([h5mu.name, f"{acc}_RAW.tar"], {gsm: []}, modality="atac")
    assert plan["series"] == {"format": "h5mu", "files": [h5mu.name]}
    assert plan_files([], {gsm: [f"{gsm}_x.h5mu"]})["samples"][gsm]["format"] == "h5mu"
    root = tmp_path / "geo"
    gs.build_geo_tree(root, acc, [gs.SampleSpec(gsm=gsm, title="t", characteristics=[], files=[])],
                      series_files=[h5mu])
    with gs.serve_directory(root) as server:
        peaks, man = acquire_geo(acc, tmp_path / "cache", base_url=server.url, modality="atac", **FAST)
        genes, _ = acquire_geo(acc, tmp_path / "cache", base_url=server.url, modality="rna", **FAST)
    assert man["plan"]["series"]["format"] == "h5mu"
    assert list(peaks.obs_names) == list(genes.obs_names)
    assert {"chr", "start", "end"} <= set(peaks.var.columns)
    assert list(peaks.obs_names) == list(rna.obs_names)  # the MuData's order
    np.testing.assert_array_equal(dense(peaks.X), dense(atac[list(peaks.obs_names)].X))
    np.testing.assert_array_equal(dense(genes.X), dense(rna.X))
