"""scanpy's calling conventions: ``pp`` verbs in place or ``copy=True``, ``pl`` verbs on AnnData."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import geovae  # noqa: E402
from geovae.data.builtin import load_builtin  # noqa: E402


@pytest.fixture(scope="module")
def raw():
    return load_builtin("pbmc68k")


def test_pp_verbs_work_in_place_and_return_none(raw) -> None:
    adata = raw.copy()
    assert geovae.pp.preprocess_rna(adata, n_top_genes=300) is None
    assert adata.n_vars == 300 and "counts" in adata.layers
    assert {"n_genes_by_counts", "total_counts", "pct_counts_mt"} <= set(adata.obs)
    assert "mt" in adata.var and "geovae_input" in adata.uns


def test_pp_copy_leaves_the_input_unchanged(raw) -> None:
    before = raw.copy()
    out = geovae.pp.preprocess_rna(raw, n_top_genes=300, copy=True)
    assert out is not raw and out.n_vars == 300
    assert raw.shape == before.shape and list(raw.obs.columns) == list(before.obs.columns)
    assert (raw.X != before.X).nnz == 0
    view = raw[:100]
    with pytest.raises(ValueError, match="view"):
        geovae.pp.qc_rna(view)
    assert geovae.pp.qc_rna(view, copy=True).n_obs <= 100  # a view is fine with copy=True


def test_pp_in_place_verbs_of_the_package_and_copy(raw) -> None:
    """hvg annotates in place in geovae.preprocessing: copy=True must not touch the input."""
    adata = geovae.pp.qc_rna(raw, copy=True)
    out = geovae.pp.hvg(adata, n_top_genes=200, copy=True)
    assert "highly_variable" in out.var and "highly_variable" not in adata.var
    assert geovae.pp.hvg(adata, n_top_genes=200) is None and adata.var["highly_variable"].sum() == 200


def test_qc_metrics_follows_calculate_qc_metrics(raw) -> None:
    adata = raw.copy()
    table = geovae.pp.qc_metrics(adata)
    assert list(table.columns) == ["n_genes_by_counts", "total_counts", "pct_counts_mt"]
    assert "total_counts" not in adata.obs
    assert geovae.pp.qc_metrics(adata, inplace=True) is None
    np.testing.assert_array_equal(adata.obs["total_counts"], table["total_counts"])


def test_pl_verbs_take_anndata(raw, tmp_path: Path) -> None:
    adata = geovae.pp.preprocess_rna(raw, n_top_genes=300, copy=True)
    rng = np.random.default_rng(0)
    adata.obsm["X_latent"] = rng.normal(size=(adata.n_obs, 4))
    adata.obsm["X_umap"] = rng.normal(size=(adata.n_obs, 2))
    gene = str(adata.var_names[0])
    geovae.pl.umap(adata, color=["bulk_labels", gene], path=tmp_path / "umap.png")
    geovae.pl.group_components(adata, "bulk_labels", path=tmp_path / "groups.png")
    geovae.pl.component_correlation(adata, path=tmp_path / "corr.png")
    for name in ("umap.png", "groups.png", "corr.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    with pytest.raises(KeyError, match="neither an obs column nor a gene"):
        geovae.pl.umap(adata, color="NOT_A_GENE")
    with pytest.raises(KeyError, match="X_tsne"):
        geovae.pl.tsne(adata)
    with pytest.raises(KeyError, match="annotate_components"):
        geovae.pl.components(adata)


def test_pl_loss_of_a_model(raw, tmp_path: Path) -> None:
    from geovae.models import LiVAE

    adata = geovae.pp.preprocess_rna(raw, n_top_genes=200, copy=True)
    LiVAE.setup_anndata(adata, layer="counts")
    model = LiVAE(adata, latent_dim=3)
    model.train(max_epochs=3, batch_size=128, progress_bar=False, device="cpu")
    geovae.pl.loss(model, path=tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000
