"""Reliability under bad input and faults (issue #9), at the level of the package.

The Snakemake-level checks (schema errors before any job, --keep-going past a broken dataset,
killed train jobs) are in tests/test_faults_workflow.py.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import geo_server as gs  # noqa: E402

from geovae.data.acquire import DatasetError, acquire_dataset  # noqa: E402
from geovae.data.validate import check_trainable  # noqa: E402
from geovae.nn import matmul_backend  # noqa: E402
from geovae.metrics import evaluate  # noqa: E402
from geovae.runinfo import atomic_outputs, config_hash, h5ad_safe, partial_path, provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _row(name: str, **kw: str) -> dict[str, str]:
    return {"dataset": name, "source": "local", "modality": "rna", "species": "human",
            "data_type": "steady_state", "label_key": "", "batch_key": "", **kw}


@pytest.fixture(scope="module")
def counts() -> ad.AnnData:
    return gs.pbmc_counts(120)


# ------------------------------------------------------------------------------ bad input
def test_unknown_accession_names_dataset_and_file(tmp_path):
    with pytest.raises(DatasetError) as info:
        acquire_dataset({**_row("ghost"), "source": "geo", "accession": "GSE424242"},
                        geo_base_url=str(tmp_path / "empty_mirror"), cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert "dataset 'ghost'" in msg and "GSE424242" in msg and "family.soft" in msg.replace("_family", " family")


def test_malformed_accession_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'typo'.*not a GEO accession"):
        acquire_dataset({**_row("typo"), "source": "geo", "accession": "GSE12x"},
                        geo_base_url=str(tmp_path), cache_dir=tmp_path / "cache")


def test_series_without_single_cell_file(tmp_path):
    payload = tmp_path / "payload"
    payload.mkdir()
    bed = payload / "GSM7300001_peaks.bed.gz"
    bed.write_bytes(gzip.compress(b"chr1\t1\t2\n"))
    gs.build_geo_tree(tmp_path / "geo", "GSE73", [gs.SampleSpec("GSM7300001", "bulk", ["cell line: K562"], [bed])])
    with pytest.raises(DatasetError, match=r"dataset 'bulk'.*GSE73.*no usable supplementary file.*peaks.bed.gz"):
        acquire_dataset({**_row("bulk"), "source": "geo", "accession": "GSE73"},
                        geo_base_url=str(tmp_path / "geo"), cache_dir=tmp_path / "cache")


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _corrupt_h5ad(tmp: Path, counts: ad.AnnData) -> Path:
    counts.write_h5ad(tmp / "cells.h5ad")
    return _truncate(tmp / "cells.h5ad")


def _corrupt_10x_h5(tmp: Path, counts: ad.AnnData) -> Path:
    return _truncate(gs.write_10x_h5(counts, tmp / "filtered_feature_bc_matrix.h5"))


def _corrupt_mtx_gz(tmp: Path, counts: ad.AnnData) -> Path:
    mtx = gs.write_10x_mtx(counts, tmp / "tenx")[0]
    _truncate(mtx, 0.3)
    return tmp / "tenx"


def _corrupt_tar(tmp: Path, counts: ad.AnnData) -> Path:
    gs.write_10x_mtx(counts, tmp / "tenx")
    with tarfile.open(tmp / "run.tar.gz", "w:gz") as tf:
        tf.add(tmp / "tenx", arcname="filtered_feature_bc_matrix")
    return _truncate(tmp / "run.tar.gz", 0.4)


def _corrupt_csv_gz(tmp: Path, counts: ad.AnnData) -> Path:
    counts.to_df().T.to_csv(tmp / "counts.csv.gz")
    return _truncate(tmp / "counts.csv.gz")


@pytest.mark.parametrize("make", [_corrupt_h5ad, _corrupt_10x_h5, _corrupt_mtx_gz, _corrupt_tar, _corrupt_csv_gz],
                         ids=["h5ad", "10x_h5", "mtx_gz", "tar_gz", "csv_gz"])
def test_corrupt_or_truncated_files(tmp_path, counts, make):
    path = make(tmp_path, counts)
    with pytest.raises(DatasetError) as info:
        acquire_dataset(_row("broken", path=str(path)))
    msg = str(info.value)
    assert "dataset 'broken'" in msg and "corrupt or truncated" in msg and "download it again" in msg
    assert path.name in msg or "matrix.mtx.gz" in msg


@pytest.mark.parametrize(("value", "message"), [(-1.0, "negative"), (np.nan, "NaN"), (np.inf, "NaN/inf"),
                                                (0.5, "non-integer")])
def test_raw_file_with_bad_counts(tmp_path, counts, value, message):
    bad = counts.copy()
    x = bad.X.toarray()
    x[3, 7] = value
    bad.X = sp.csr_matrix(x)
    bad.write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(ValueError, match=message) as info:
        acquire_dataset(_row("badcounts", path=str(tmp_path / "bad.h5ad")))
    assert "dataset 'badcounts'" in str(info.value)


@pytest.mark.parametrize("value", [-1.0, np.nan, np.inf])
def test_count_likelihood_on_non_counts_hints_at_raw_layer(counts, value):
    from geovae.models import LiVAE

    adata = counts.copy()
    x = np.log1p(adata.X.toarray())
    x[0, 0] = value
    adata.X = sp.csr_matrix(x)
    with pytest.raises(ValueError, match=r"adata\.X .*layer='counts'"):
        LiVAE.setup_anndata(adata, layer=None)


def test_count_likelihood_on_normalized_values_warns(counts):
    from geovae.models import LiVAE

    adata = counts.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    with pytest.warns(UserWarning, match="not integer-valued; count likelihoods expect raw counts"):
        LiVAE.setup_anndata(adata, layer=None)


def test_empty_matrix(tmp_path, counts):
    empty = counts.copy()
    empty.X = sp.csr_matrix(empty.shape, dtype=np.float32)
    empty.write_h5ad(tmp_path / "empty.h5ad")
    with pytest.raises(ValueError, match=r"dataset 'void'.*empty count matrix"):
        acquire_dataset(_row("void", path=str(tmp_path / "empty.h5ad")))


def test_too_few_cells_for_training(counts):
    with pytest.raises(ValueError, match=r"dataset 'one'.*1 cells.*at least 2 cells"):
        check_trainable(counts[:1], "one", latent_dim=10, batch_size=128)
    with pytest.raises(ValueError, match=r"dataset 'few'.*8 cells.*field latent_dim = 10"):
        check_trainable(counts[:8], "few", latent_dim=10, batch_size=128)
    warnings = check_trainable(counts[:40], "small", latent_dim=10, batch_size=128)
    assert len(warnings) == 1 and "fewer than train.batch_size = 128" in warnings[0]
    assert check_trainable(counts, "fine", latent_dim=10, batch_size=64) == []


def test_training_with_fewer_cells_than_batch_size(caplog):
    from test_livae import simulate

    from geovae.models import LiVAE

    adata, _ = simulate(n_cells=30, n_genes=20)
    model = LiVAE(adata, hidden_dim=8, latent_dim=4)
    with caplog.at_level(logging.WARNING, logger="geovae.training"):
        model.train(max_epochs=2, batch_size=128, progress_bar=False, device="cpu")
    assert "fewer than batch_size=128" in caplog.text
    assert np.isfinite(model.get_latent_representation()).all()


def test_duplicated_barcodes_are_refused_duplicated_genes_reported(tmp_path, counts, caplog):
    dup = counts.copy()
    dup.obs_names = [dup.obs_names[0]] * 2 + list(dup.obs_names[2:])
    gs.write_10x_mtx(dup, tmp_path / "cells")
    with pytest.raises(DatasetError, match=r"dataset 'dups'.*duplicated cell barcodes.*" + dup.obs_names[0]):
        acquire_dataset(_row("dups", path=str(tmp_path / "cells")))
    genes = counts.copy()
    names = list(genes.var_names)
    names[1] = names[0]
    gs.write_10x_mtx(genes, tmp_path / "genes", feature_names=names)
    with caplog.at_level(logging.WARNING, logger="geovae.data.readers"):
        adata, _ = acquire_dataset(_row("dupgenes", path=str(tmp_path / "genes")))
    assert adata.var_names.is_unique and "duplicated feature names" in caplog.text and names[0] in caplog.text


@pytest.mark.parametrize("field", ["label_key", "batch_key"])
def test_label_or_batch_column_missing(tmp_path, counts, field):
    counts.write_h5ad(tmp_path / "cells.h5ad")
    with pytest.raises(KeyError, match=rf"dataset 'nolabel': {field} 'celltype' is not an obs column.*bulk_labels"):
        acquire_dataset(_row("nolabel", path=str(tmp_path / "cells.h5ad"), **{field: "celltype"}))


def test_single_label_metrics_are_not_applicable(caplog):
    rng = np.random.default_rng(0)
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": ["T"] * 150}, index=[f"c{i}" for i in range(150)]))
    adata.obsm["X_latent"] = rng.normal(size=(150, 4))
    with caplog.at_level(logging.WARNING, logger="geovae.metrics"):
        table = evaluate(adata, label_key="cell_type", embedding_keys={}, n_subsample=None)
    got = dict(zip(table.metric, table.value))
    assert np.isnan(got["NMI"]) and np.isnan(got["ARI"]) and np.isnan(got["kNN_accuracy"])
    assert np.isfinite(got["COR"]) and np.isfinite(got["participation_ratio"])
    assert "NMI" in table.attrs["not_applicable"] and "not applicable" in caplog.text


def test_genes_matching_no_gene_set(tmp_path):
    from geovae.interpretation import interpret_run

    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=rng.poisson(2.0, size=(80, 30)).astype(np.float32))
    adata.var_names = [f"ENSG{i:011d}" for i in range(30)]
    adata.obsm["X_latent"] = rng.normal(size=(80, 3))
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("GO_A\tna\tCD3E\tCD4\tCD8A\nGO_B\tna\tMS4A1\tCD19\tCD79A\n")
    result = interpret_run(adata, gmt=gmt, n_top=5, gsea_permutations=0)
    assert len(result.enrichment) == 0
    assert any("coverage" in w or "match" in w for w in result.warnings), result.warnings


# ------------------------------------------------------------------------------ atomic outputs
def test_atomic_outputs_success_and_names(tmp_path):
    outputs = {"table": str(tmp_path / "a" / "t.tsv.gz"), "folder": str(tmp_path / "model")}
    with atomic_outputs(outputs) as out:
        assert out.table == out["table"] == out[0] != outputs["table"]
        assert Path(out.table).name.endswith("t.tsv.gz") and Path(out.table).name.startswith(".")
        pd.DataFrame({"x": [1]}).to_csv(out.table, sep="\t")
        Path(out.folder).mkdir()
        (Path(out.folder) / "w.pt").write_text("w")
        assert not Path(outputs["table"]).exists()
    assert Path(outputs["table"]).is_file() and (Path(outputs["folder"]) / "w.pt").is_file()
    assert sorted(p.name for p in tmp_path.rglob(".partial-*")) == []


def test_atomic_outputs_failure_leaves_nothing(tmp_path):
    outputs = [str(tmp_path / "one.txt"), str(tmp_path / "two.txt")]
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_outputs(outputs) as out:
            Path(out[0]).write_text("complete")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="without writing output.*two.txt"):
        with atomic_outputs(outputs) as out:
            Path(out[0]).write_text("complete")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_fails_cleanly(tmp_path, monkeypatch):
    """A writer hitting ENOSPC (patched here; see also the tmpfs test) leaves no output and says why."""
    outputs = {"h5ad": str(tmp_path / "emb.h5ad"), "info": str(tmp_path / "info.json")}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", full)
    with pytest.raises(OSError, match=r"no space left on the device while writing .*emb.h5ad") as info:
        with atomic_outputs(outputs) as out:
            Path(out.info).write_text("{}")
            ad.AnnData(np.zeros((2, 2))).write_h5ad(out.h5ad)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_on_a_real_tmpfs(tiny_tmpfs):
    target = tiny_tmpfs / "big.npy"
    with pytest.raises(OSError, match="no space left on the device") as info:
        with atomic_outputs([str(target)]) as out:
            np.save(out[0], np.zeros(1_000_000))
    assert info.value.errno == errno.ENOSPC
    assert list(tiny_tmpfs.iterdir()) == []


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from geovae.runinfo import atomic_outputs
    with atomic_outputs([sys.argv[1]]) as out:
        Path(out[0]).write_text("half")
        Path(sys.argv[1] + ".started").touch()
        time.sleep(60)
        Path(out[0]).write_text("complete")
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_writer_leaves_nothing_that_looks_finished(tmp_path, sig):
    target = tmp_path / "result.tsv"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)])
    started = Path(str(target) + ".started")
    for _ in range(300):
        if started.exists():
            break
        proc.poll()
        assert proc.returncode is None, "writer died early"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0 and not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p != started]
    if sig == signal.SIGTERM:
        assert leftovers == []  # SIGTERM is turned into SystemExit: temporaries removed
    else:
        assert leftovers == [partial_path(target).name.replace(str(os.getpid()), str(proc.pid))]
        with atomic_outputs([str(target)]) as out:  # the next run clears the stale partial file
            Path(out[0]).write_text("complete")
        assert sorted(p.name for p in tmp_path.iterdir() if p != started) == ["result.tsv"]


# ------------------------------------------------------------------------------ numerics
def test_livae_loss_finite_at_extreme_inputs():
    """Lorentz + likelihood terms of the whole LiVAE loss stay finite, with finite gradients, for
    huge inputs and counts and all-zero cells (tests/test_lorentz.py covers the geometry alone)."""
    from geovae.models import LiVAEModule

    torch.manual_seed(0)
    module = LiVAEModule(n_input=6, latent_dim=4, hidden_dim=8, bottleneck_dim=2)
    x = torch.tensor([[1e6] * 6, [0.0] * 6, [-1e6, 1e6, 0, 0, 1e-30, 3.0]])
    counts = torch.tensor([[1e6] * 6, [0.0] * 6, [0, 5e5, 0, 0, 0, 3.0]])
    terms = module.loss({"x": x, "counts": counts, "library": counts.sum(1, keepdim=True)})
    for name, value in terms.items():
        assert torch.isfinite(value).all(), name
    terms["total"].backward()
    for name, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_lorentz_distance_gradient_at_coincident_points():
    from geovae.geometry.lorentz import expmap0, lorentz_distance

    v = torch.tensor([[0.0, 0.0], [0.3, -0.2], [40.0, 0.0]], requires_grad=True)
    x = expmap0(v)
    d = lorentz_distance(x, x.detach().clone())
    (d**2).sum().backward()
    assert torch.isfinite(d).all() and torch.isfinite(v.grad).all()


# ------------------------------------------------------------------------------ determinism and provenance
_TRAIN_AND_PRINT = textwrap.dedent("""
    import sys, hashlib
    sys.path.insert(0, sys.argv[1])
    import torch
    torch.set_num_threads(1)
    from test_livae import simulate
    from geovae.tl import fit_model
    # 64 cells x 200 genes x 128 hidden: above geovae.nn.MIN_MACS, so the oneDNN products run where they are the default
    adata, _ = simulate(n_cells=150, n_genes=200)
    model = fit_model(adata, model="livae", params={"hidden_dim": 128, "latent_dim": 4},
                      train={"max_epochs": 3, "batch_size": 64}, device="cpu", seed=5, progress_bar=False)
    z = model.get_latent_representation()
    print(hashlib.sha256(z.tobytes()).hexdigest(), z.dtype, z.shape, model.metadata["matmul_backend"])
""")


def test_same_seed_bitwise_identical_latents_across_processes():
    runs = [subprocess.run([sys.executable, "-c", _TRAIN_AND_PRINT, str(ROOT / "tests")], capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    assert runs[0].stdout.strip() == runs[1].stdout.strip() and "(150, 4)" in runs[0].stdout
    assert runs[0].stdout.strip().endswith(matmul_backend("cpu"))  # oneDNN where the CPU has AVX-512


def test_provenance_record_is_h5ad_safe(tmp_path):
    config = {"seeds": [0], "train": {"lr": 0.001}}
    record = provenance(config=config, seed=3, device="cpu", timings={"train": 1.5}, dataset="d")
    for key in ("geovae_version", "git_commit", "config_hash", "seed", "device", "timings", "versions"):
        assert key in record, key
    assert record["config_hash"] == config_hash({"train": {"lr": 0.001}, "seeds": [0]})  # key order irrelevant
    assert record["config_hash"] != config_hash({**config, "seeds": [1]})
    assert record["versions"]["torch"] == torch.__version__
    adata = ad.AnnData(np.zeros((2, 2)))
    adata.uns["geovae"] = record
    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad").uns["geovae"]
    assert back["seed"] == 3 and back["git_commit"] == record["git_commit"]
    assert h5ad_safe({"a": None, "b": (1, "x"), 2: [1, 2]}) == {"a": "", "b": ["1", "x"], "2": [1, 2]}
    json.dumps(record)
