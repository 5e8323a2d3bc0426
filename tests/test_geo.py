"""Tests for geovae.data.geo against a loopback GEO mirror (tests/geo_server.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

import GEOparse
import numpy as np
import pytest
import scipy.sparse as sp

from geovae.data.geo import (
    DEFAULT_GEO_BASE_URL,
    GEODownloadError,
    accession_stem,
    acquire_geo,
    download_file,
    parse_characteristics,
    plan_files,
    rewrite_url,
    series_soft_url,
)

try:
    import geo_server as gs
except ImportError:  # tests/ not on sys.path (e.g. a package layout)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import geo_server as gs

from geo_server import geo_mirror  # noqa: E402,F401  (pytest fixture)

ACC = "GSE999001"
S1, S2 = "GSM8000001", "GSM8000002"
FAST = {"backoff": 0.01}


def dense(x: object) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_path(gsm: str, name: str) -> str:
    return f"/samples/{gsm[:-3]}nnn/{gsm}/suppl/{name}"


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("acc", "stem"),
    [("GSE123456", "GSE123nnn"), ("GSE12", "GSEnnn"), ("GSE999", "GSEnnn"), ("GSE1234", "GSE1nnn"),
     ("gsm8000001", "GSM8000nnn"), ("GPL24676", "GPL24nnn")],
)
def test_accession_stem(acc: str, stem: str) -> None:
    assert accession_stem(acc) == stem


def test_accession_stem_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a GEO accession"):
        accession_stem("SRR123")


def test_urls(tmp_path: Path) -> None:
    assert DEFAULT_GEO_BASE_URL == "https://ftp.ncbi.nlm.nih.gov/geo"
    assert series_soft_url("GSE105845") == (
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE105nnn/GSE105845/soft/GSE105845_family.soft.gz"
    )
    listed = "ftp://ftp.ncbi.nlm.nih.gov/geo/samples/GSM2828nnn/GSM2828511/suppl/GSM2828511_x.mtx.gz"
    assert rewrite_url(listed, "http://mirror:8000/geo/") == (
        "http://mirror:8000/geo/samples/GSM2828nnn/GSM2828511/suppl/GSM2828511_x.mtx.gz"
    )
    assert rewrite_url(listed, tmp_path) == tmp_path.resolve().as_uri() + listed[len("ftp://ftp.ncbi.nlm.nih.gov/geo"):]
    assert rewrite_url("https://example.org/f.h5ad", "http://m") == "https://example.org/f.h5ad"
    with pytest.raises(ValueError, match="series accession"):
        series_soft_url("GSM1")


def test_parse_characteristics() -> None:
    got = parse_characteristics(
        ["cell type: T cell", "Tissue: blood: peripheral", "healthy", "sample: S1", "donor: D1", "donor: D1b"]
    )
    assert got == {
        "cell type": "T cell",
        "Tissue": "blood: peripheral",
        "characteristics_sample": "S1",
        "donor": "D1; D1b",
        "characteristics_ch1": "healthy",
    }


def test_plan_files_prefers_sample_triplets_and_skips_noise() -> None:
    plan = plan_files(
        ["GSE1_RAW.tar", "GSE1_metadata.csv.gz"],
        {
            "GSM1": ["GSM1_barcodes.tsv.gz", "GSM1_features.tsv.gz", "GSM1_matrix.mtx.gz", "GSM1_x.h5"],
            "GSM2": ["GSM2_filtered_feature_bc_matrix.h5", "GSM2_raw_feature_bc_matrix.h5"],
        },
    )
    assert plan["level"] == "samples"
    assert plan["samples"]["GSM1"] == {
        "format": "10x_mtx",
        "files": ["GSM1_matrix.mtx.gz", "GSM1_barcodes.tsv.gz", "GSM1_features.tsv.gz"],
    }
    assert plan["samples"]["GSM2"] == {"format": "10x_h5", "files": ["GSM2_filtered_feature_bc_matrix.h5"]}


def test_plan_files_series_fallback_and_errors() -> None:
    plan = plan_files(["GSE1_RAW.tar", "GSE1_counts.h5ad"], {"GSM1": ["GSM1_peaks.bed.gz"], "GSM2": []})
    assert plan["level"] == "series" and plan["series"]["files"] == ["GSE1_counts.h5ad"]
    # normalized-looking dense tables are not candidates; dense raw counts are
    dense_plan = plan_files(["GSE1_norm_tpm.txt.gz", "GSE1_raw_counts.txt.gz"], {})
    assert dense_plan["series"] == {"format": "dense", "files": ["GSE1_raw_counts.txt.gz"]}
    # with nothing else usable, the RAW.tar bundle of sample files is the fallback
    raw = plan_files(["GSE1_RAW.tar"], {"GSM1": ["GSM1_peaks.bed.gz"], "GSM2": []})
    assert raw["series"] == {"format": "raw_tar", "files": ["GSE1_RAW.tar"]}
    with pytest.raises(ValueError) as info:
        plan_files(["GSE1_filelist.txt"], {"GSM1": ["GSM1_peaks.bed.gz"], "GSM2": []})
    msg = str(info.value)
    assert "no usable supplementary file" in msg
    assert "GSE1_filelist.txt" in msg and "GSM1_peaks.bed.gz" in msg and "GSM2: none" in msg
    only = plan_files(["a.h5ad", "b.h5ad"], {}, file_pattern=r"^b\.")
    assert only["series"]["files"] == ["b.h5ad"]
    with pytest.raises(ValueError, match="at series level"):
        plan_files([], {"GSM1": ["GSM1_x.h5"]}, level="series")


def test_fixture_soft_parses_like_real_geo(tmp_path: Path) -> None:
    """Our fixture SOFT and the real GSE105845 record go through GEOparse the same way."""
    root, _ = gs.two_sample_series(tmp_path)
    soft = root / "series" / "GSE999nnn" / ACC / "soft" / f"{ACC}_family.soft.gz"
    gse = GEOparse.get_GEO(filepath=str(soft), geotype="GSE", silent=True)
    assert sorted(gse.gsms) == [S1, S2]
    assert gse.gsms[S1].metadata["supplementary_file_1"][0].startswith("ftp://ftp.ncbi.nlm.nih.gov/geo/samples/")
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "geo" / "GSE105845_family.soft"
    if not real.exists():
        pytest.skip("real SOFT fixture not available because ../shared is missing")
    copy = tmp_path / "GSE105845_family.soft"
    shutil.copyfile(real, copy)
    real_gse = GEOparse.get_GEO(filepath=str(copy), silent=True)
    assert real_gse.metadata["supplementary_file"] == [
        "ftp://ftp.ncbi.nlm.nih.gov/geo/series/GSE105nnn/GSE105845/suppl/GSE105845_RAW.tar"
    ]


# --------------------------------------------------------------------------- acquisition


def test_two_samples_over_http(geo_mirror: gs.GeoServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    adata, manifest = acquire_geo(ACC, cache, base_url=geo_mirror.url, **FAST)
    ref = gs.pbmc_counts(550)
    assert adata.shape == (550, ref.n_vars)
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    assert adata.obs["sample"].value_counts().to_dict() == {S1: 300, S2: 250}
    first = adata.obs_names[0]
    assert first == f"{S1}_{ref.obs_names[0]}"
    # per-sample metadata from the SOFT record
    by_sample = adata.obs.groupby("sample", observed=True).first()
    assert by_sample.loc[S2, "title"] == "PBMC donor D2"
    assert by_sample.loc[S1, "donor"] == "D1" and by_sample.loc[S2, "age"] == "40"
    assert by_sample.loc[S1, "tissue"] == "peripheral blood"
    assert by_sample.loc[S1, "characteristics_ch1"] == "healthy control"
    # counts equal the real PBMC counts cell by cell
    order = [n.split("_", 1)[1] for n in adata.obs_names]
    ref_x = dense(ref[order, adata.var_names].X)
    np.testing.assert_array_equal(dense(adata.X), ref_x)
    assert list(adata.var["gene_ids"][:3]) == list(ref.var.loc[adata.var_names[:3], "gene_ids"])
    # manifest: every file with URL on the mirror, size and sha256 of the served file
    assert manifest["plan"]["level"] == "samples"
    assert len(manifest["files"]) == 6
    for rec in manifest["files"]:
        served = geo_mirror.root / rec["url"][len(geo_mirror.url) + 1 :]
        assert rec["size"] == served.stat().st_size and rec["sha256"] == sha256(served)
        assert rec["cached"] is False
    assert manifest["soft"]["url"].endswith(f"/series/GSE999nnn/{ACC}/soft/{ACC}_family.soft.gz")
    assert set(manifest["versions"]) >= {"geovae", "GEOparse"} and manifest["versions"]["GEOparse"] != "unknown"
    json.dumps(manifest)  # serialisable
    # second call: everything from the cache, no request reaches the server
    n_requests = len(geo_mirror.log)
    again, manifest2 = acquire_geo(ACC, cache, base_url=geo_mirror.url, **FAST)
    assert len(geo_mirror.log) == n_requests
    assert all(r["cached"] for r in manifest2["files"]) and manifest2["soft"]["cached"]
    assert [r["sha256"] for r in manifest2["files"]] == [r["sha256"] for r in manifest["files"]]
    np.testing.assert_array_equal(dense(again.X), dense(adata.X))


def test_sample_subset_and_unknown_sample(geo_mirror: gs.GeoServer, tmp_path: Path) -> None:
    adata, manifest = acquire_geo(ACC, tmp_path / "c", base_url=geo_mirror.url, samples=[S2], **FAST)
    assert adata.n_obs == 250 and set(adata.obs["sample"]) == {S2}
    assert not any(S1 in e["path"] for e in geo_mirror.log)
    with pytest.raises(ValueError, match=r"GSM0000009.*not in the series"):
        acquire_geo(ACC, tmp_path / "c", base_url=geo_mirror.url, samples=["GSM0000009"], **FAST)


def test_resume_after_truncated_download(geo_mirror: gs.GeoServer, tmp_path: Path) -> None:
    target = sample_path(S1, f"{S1}_matrix.mtx.gz")
    geo_mirror.truncate_once(target, 5000)
    adata, manifest = acquire_geo(ACC, tmp_path / "c", base_url=geo_mirror.url, **FAST)
    hits = geo_mirror.requests_for(target)
    assert [h["status"] for h in hits] == [200, 206]
    assert hits[0]["truncated_to"] == 5000 and hits[1]["range"] == "bytes=5000-"
    rec = next(r for r in manifest["files"] if r["file"] == f"{S1}_matrix.mtx.gz")
    assert rec["resumed_from"] == 5000 and rec["attempts"] == 2
    assert rec["sha256"] == sha256(geo_mirror.root / target.lstrip("/"))
    assert adata.n_obs == 550


def test_resume_existing_part_file_and_retry_5xx(geo_mirror: gs.GeoServer, tmp_path: Path) -> None:
    target = sample_path(S2, f"{S2}_matrix.mtx.gz")
    served = geo_mirror.root / target.lstrip("/")
    dest = tmp_path / "dl" / served.name
    dest.parent.mkdir()
    half = served.stat().st_size // 2
    dest.with_name(dest.name + ".part").write_bytes(served.read_bytes()[:half])
    geo_mirror.fail_once(target, 503)
    rec = download_file(geo_mirror.url + target, dest, retries=2, backoff=0.01, progress=True)
    assert [h["status"] for h in geo_mirror.requests_for(target)] == [503, 206]
    assert rec["resumed_from"] == half and rec["attempts"] == 2
    assert dest.read_bytes() == served.read_bytes()
    assert not dest.with_name(dest.name + ".part").exists()
    # retries exhausted -> clear error naming the URL
    geo_mirror.fail_once(target, 503)
    with pytest.raises(GEODownloadError, match=r"GSM8000002_matrix.mtx.gz.*after 1 attempts.*503"):
        download_file(geo_mirror.url + target, tmp_path / "other" / "m.gz", retries=0)


def test_missing_files_give_clear_errors(geo_mirror: gs.GeoServer, tmp_path: Path) -> None:
    with pytest.raises(GEODownloadError, match=r"GSE424242: cannot get the family SOFT.*HTTP 404"):
        acquire_geo("GSE424242", tmp_path / "c", base_url=geo_mirror.url, **FAST)
    soft_path = "/series/GSE424nnn/GSE424242/soft/GSE424242_family.soft.gz"
    assert len(geo_mirror.requests_for(soft_path)) == 1  # 404 is not retried
    (geo_mirror.root / sample_path(S2, f"{S2}_barcodes.tsv.gz").lstrip("/")).unlink()
    with pytest.raises(GEODownloadError, match=r"GSM8000002_barcodes.tsv.gz: HTTP 404"):
        acquire_geo(ACC, tmp_path / "c", base_url=geo_mirror.url, **FAST)


def _series_with_h5ad(tmp_path: Path, acc: str, adata: object, name: str) -> Path:
    payload = tmp_path / "payload"
    payload.mkdir(exist_ok=True)
    path = payload / name
    adata.write_h5ad(path)  # type: ignore[attr-defined]
    specs = [gs.SampleSpec(gsm="GSM7100001", title="all cells", characteristics=["tissue: blood"], files=[])]
    root = tmp_path / "geo"
    gs.build_geo_tree(root, acc, specs, series_files=[path])
    return root


def test_series_level_h5ad(tmp_path: Path) -> None:
    ref = gs.pbmc_counts(200)
    root = _series_with_h5ad(tmp_path, "GSE71", ref, "GSE71_counts.h5ad")
    assert (root / "series" / "GSEnnn" / "GSE71" / "suppl" / "GSE71_counts.h5ad").exists()
    with gs.serve_directory(root) as srv:
        adata, manifest = acquire_geo("GSE71", tmp_path / "cache", base_url=srv.url, **FAST)
    assert manifest["plan"]["level"] == "series"
    assert manifest["plan"]["series"] == {"format": "h5ad", "files": ["GSE71_counts.h5ad"]}
    assert list(adata.obs_names) == list(ref.obs_names)
    np.testing.assert_array_equal(dense(adata.X), dense(ref.X))
    assert list(adata.obs["bulk_labels"]) == list(ref.obs["bulk_labels"])
    assert adata.uns["geo"]["accession"] == "GSE71"
    # asking for a sample cannot be honoured by a series-wide file
    with pytest.raises(ValueError, match=r"GSM7100001.*no usable per-sample file.*GSE71_counts.h5ad"):
        acquire_geo("GSE71", tmp_path / "cache", base_url=root, samples=["GSM7100001"], **FAST)


def test_normalized_series_matrix_is_refused(tmp_path: Path) -> None:
    ref = gs.pbmc_counts(100)
    normed = ref.copy()
    x = dense(ref.X)
    normed.X = sp.csr_matrix(np.log1p(x / x.sum(1, keepdims=True) * 1e4).astype(np.float32))
    root = _series_with_h5ad(tmp_path, "GSE72", normed, "GSE72_processed.h5ad")
    with pytest.raises(ValueError, match=r"GSE72_processed.h5ad.*looks normalized"):
        acquire_geo("GSE72", tmp_path / "cache", base_url=root, **FAST)


def test_no_usable_supplementary_file_lists_found(tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    files = []
    for name in ("GSM7300001_peaks.bed.gz", "GSM7300001_signal.bw"):
        (payload / name).write_bytes(gzip.compress(b"chr1\t1\t2\n"))
        files.append(payload / name)
    root = tmp_path / "geo"
    gs.build_geo_tree(
        root, "GSE73", [gs.SampleSpec("GSM7300001", "atac", ["cell line: K562"], files)]
    )
    with pytest.raises(ValueError) as info:
        acquire_geo("GSE73", tmp_path / "cache", base_url=root, **FAST)
    msg = str(info.value)
    assert "no usable supplementary file" in msg
    assert "GSM7300001_peaks.bed.gz" in msg and "GSM7300001_signal.bw" in msg


@pytest.mark.parametrize("as_uri", [False, True])
def test_local_directory_base_url(tmp_path: Path, as_uri: bool) -> None:
    root, _ = gs.two_sample_series(tmp_path)
    base = root.as_uri() if as_uri else str(root)
    adata, manifest = acquire_geo(ACC, tmp_path / "cache", base_url=base, **FAST)
    assert adata.shape == (550, 765)
    assert manifest["base_url"] == root.resolve().as_uri()
    assert all(r["url"].startswith("file://") for r in manifest["files"])
    rec = manifest["files"][0]
    assert rec["sha256"] == sha256(Path(rec["path"]))
    with pytest.raises(GEODownloadError, match="not found in local GEO mirror"):
        acquire_geo("GSE5", tmp_path / "cache", base_url=base, **FAST)
