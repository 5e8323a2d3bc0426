"""``batch_key`` does what it says: LiVAE-based models condition the decoder on the batch (scVI's
default scheme), which mixes the batches of a SIMULATED two-batch set (iLISI); models that cannot
use a batch key refuse it."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from geovae.metrics.batch import ilisi
from geovae.models import get_model
from geovae.preprocessing import preprocess_rna


@pytest.fixture(scope="module")
def two_batches() -> ad.AnnData:
    """SIMULATED NB counts: 3 cell groups in 2 batches; batch B scales 40 % of the genes by 5."""
    rng = np.random.default_rng(3)
    n_cells, n_genes = 600, 300
    groups = rng.integers(0, 3, n_cells)
    batch = np.where(rng.random(n_cells) < 0.5, "A", "B")
    profiles = rng.gamma(0.6, 1.0, size=(3, n_genes))
    effect = np.ones(n_genes)
    effect[rng.choice(n_genes, int(0.4 * n_genes), replace=False)] = 5.0
    mu = profiles[groups] * np.where(batch[:, None] == "B", effect, 1.0)
    mu = mu / mu.sum(1, keepdims=True) * rng.lognormal(np.log(1500), 0.3, n_cells)[:, None]
    counts = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.float32)
    raw = ad.AnnData(sp.csr_matrix(counts), obs=pd.DataFrame({"group": groups.astype(str), "batch": batch},
                                                              index=[f"c{i}" for i in range(n_cells)]),
                     var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    return preprocess_rna(raw, n_top_genes=300, qc="fixed", min_genes=1)


def _latent(adata: ad.AnnData, batch_key: str | None, model: str = "livae",
            epochs: int = 40) -> tuple[object, np.ndarray]:
    cls = get_model(model)
    data = adata.copy()
    cls.setup_anndata(data, layer="counts", batch_key=batch_key)
    instance = cls(data, latent_dim=6, hidden_dim=64)
    instance.train(max_epochs=epochs, seed=0, progress_bar=False, device="cpu", early_stopping=False)
    return instance, instance.get_latent_representation()


def test_conditioning_mixes_the_batches(two_batches: ad.AnnData, one_torch_thread) -> None:
    _, plain = _latent(two_batches, None, epochs=150)
    model, conditioned = _latent(two_batches, "batch", epochs=150)
    batches = two_batches.obs["batch"].to_numpy()
    before, after = ilisi(plain, batches)["iLISI"], ilisi(conditioned, batches)["iLISI"]
    print(f"iLISI without batch_key {before:.3f}, with {after:.3f}")  # shown with pytest -s
    assert after > before + 0.4, (before, after)  # measured: 1.00 -> 1.77
    assert model.batch_categories == ["A", "B"] and model.module.n_batch == 2
    # cell groups stay apart: every group's latent centroid is far from the others
    groups = two_batches.obs["group"].to_numpy()
    centroids = np.stack([conditioned[groups == g].mean(0) for g in np.unique(groups)])
    spread = np.linalg.norm(conditioned - conditioned.mean(0), axis=1).mean()
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(centroids) for b in centroids[i + 1:]]
    assert min(gaps) > 0.5 * spread


@pytest.mark.parametrize("model", ["betavae", "vae"])
def test_family_models_condition_too(two_batches: ad.AnnData, model: str, one_torch_thread) -> None:
    instance, latent = _latent(two_batches[:200].copy(), "batch", model)
    assert instance.module.n_batch == 2 and latent.shape == (200, 6)


def test_conditioned_model_saves_loads_and_checks_batches(two_batches: ad.AnnData, tmp_path: Path,
                                                          one_torch_thread) -> None:
    from geovae.models import load_model

    data = two_batches[:200].copy()
    model, latent = _latent(data, "batch")
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m", data)
    np.testing.assert_allclose(again.get_latent_representation(data), latent, rtol=1e-5, atol=1e-6)
    other = data.copy()
    other.obs["batch"] = "C"
    with pytest.raises(ValueError, match=r"batches the model was not trained on: \['C'\]"):
        model.get_latent_representation(other)


@pytest.mark.parametrize("model", ["pca", "sivae"])
def test_models_that_cannot_condition_refuse_the_batch_key(two_batches: ad.AnnData, model: str) -> None:
    with pytest.raises(ValueError, match="cannot condition on batches"):
        get_model(model).setup_anndata(two_batches.copy(), layer="counts", batch_key="batch")
