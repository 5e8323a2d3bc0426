"""scvi-tools wrappers: clear ImportError without scvi-tools; real training when it is installed.

scvi-tools is an optional extra (``pip install 'geovae[scvi]'``, envs/scvi.yaml) and is not in
the test environment by default; the tests that train run where ``import scvi`` works (e.g. a
venv with ``pip install -e . scvi-tools``) and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

anndata = pytest.importorskip("anndata")

from geovae.models import SPECS, get_model, load_model  # noqa: E402
from geovae.models.scvi_models import (  # noqa: E402
    SCVI, PeakVI, PoissonVI, ScviToolsModel, _accelerator, scvi_history)
from geovae.tl import fit_model  # noqa: E402

HAS_SCVI = importlib.util.find_spec("scvi") is not None
needs_scvi = pytest.mark.skipif(not HAS_SCVI, reason="scvi-tools is not installed (optional extra: "
                                "pip install 'geovae[scvi]')")
FAST = dict(max_epochs=2, batch_size=32, early_stopping=False, validation_fraction=0.2)


def simulate(n_cells: int = 120, n_vars: int = 40, seed: int = 0, modality: str = "rna") -> anndata.AnnData:
    """Tiny counts in ``layers["counts"]`` with a normalised ``.X`` (two groups; PoissonVI checks >= 100 cells)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_cells)
    rate = rng.gamma(0.8, 1.0, size=(2, n_vars))[labels] * (3.0 if modality == "rna" else 0.4)
    counts = rng.poisson(rate).astype(np.float32)
    adata = anndata.AnnData(X=sp.csr_matrix(np.log1p(counts)))
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"f{i}" for i in range(n_vars)]
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(n_cells) % 2, "a", "b"))
    adata.uns["geovae_input"] = {"modality": modality, "center_scale": False, "clip": None}
    return adata


# ------------------------------------------------------------------ always run
def test_registry_names_the_wrappers() -> None:
    for name, cls in {"scvi": SCVI, "peakvi": PeakVI, "poissonvi": PoissonVI}.items():
        assert get_model(name) is cls and issubclass(cls, ScviToolsModel) and cls.model_name == name
        assert SPECS[name]["extra"] == "scvi"
        assert cls.defaults["n_latent"] == 10 and cls.defaults["n_hidden"] == 128


@pytest.mark.parametrize("cls", [SCVI, PeakVI, PoissonVI])
def test_missing_scvi_tools_gives_a_clear_import_error(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scvi", None)  # "import scvi" now raises ImportError
    adata = simulate()
    cls.setup_anndata(adata)
    with pytest.raises(ImportError, match=r"geovae\[scvi\]") as info:
        cls(adata)
    assert "envs/scvi.yaml" in str(info.value) and repr(cls.model_name) in str(info.value)
    assert info.value.name == "scvi"  # names the missing package, as Python's own ImportError does
    with pytest.raises(ImportError, match="not installed"):
        cls.default_params()  # `geovae models` shows the model as not installed
    with pytest.raises(ImportError, match="scvi-tools"):
        fit_model(simulate(), cls.model_name, seed=0)


def test_scvi_history_known_answer() -> None:
    history = {
        "train_loss_step": pd.DataFrame({"train_loss_step": [9.0, 8.0, 7.0]}),
        "train_loss_epoch": pd.DataFrame({"train_loss_epoch": [5.0, 4.0]}, index=[0, 1]),
        "elbo_train": pd.DataFrame({"elbo_train": [6.0, 5.5]}, index=[0, 1]),
        "elbo_validation": pd.DataFrame({"elbo_validation": [7.0, 6.5]}, index=[0, 1]),
        "validation_loss": pd.DataFrame({"validation_loss": [3.0, 2.0]}, index=[0, 1]),
        "lr-Adam": pd.DataFrame({"lr-Adam": [1e-3, 1e-3]}, index=[0, 1]),
    }
    out = scvi_history(history, epoch_seconds=[0.5, 0.25])
    assert list(out.columns) == ["epoch", "train_loss", "train_elbo", "val_elbo", "val_loss", "seconds"]
    assert out["epoch"].tolist() == [1, 2] and out["val_elbo"].tolist() == [7.0, 6.5]
    assert out["seconds"].tolist() == [0.5, 0.25]
    assert "seconds" not in scvi_history(history, epoch_seconds=[1.0]).columns  # length mismatch


def test_device_mapping() -> None:
    assert _accelerator("auto") == ("auto", "auto") and _accelerator("cpu") == ("cpu", "auto")
    assert _accelerator("cuda") == ("gpu", "auto") and _accelerator("cuda:1") == ("gpu", [1])
    with pytest.raises(ValueError, match="device"):
        _accelerator("tpu")


# -------------------------------------------------------------- with scvi-tools
@needs_scvi
@pytest.mark.parametrize("name, modality", [("scvi", "rna"), ("peakvi", "atac"), ("poissonvi", "atac")])
def test_wrapper_trains_reproducibly_and_round_trips(name: str, modality: str, tmp_path, one_torch_thread) -> None:
    adata = simulate(modality=modality)
    model = fit_model(adata, name, params={"n_latent": 3, "n_hidden": 16}, train=FAST, seed=1, device="cpu",
                      progress_bar=False)
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, 3) and z.dtype == np.float32 and np.isfinite(z).all()
    assert "_scvi_uuid" not in adata.uns  # scvi-tools worked on its own minimal AnnData
    history = model.history
    assert history["epoch"].tolist() == [1, 2] and {"train_elbo", "val_elbo", "seconds"} <= set(history.columns)
    assert model.metadata["seed"] == 1 and model.metadata["n_epochs"] == 2 and model.metadata["device"] == "cpu"
    again = fit_model(simulate(modality=modality), name, params={"n_latent": 3, "n_hidden": 16}, train=FAST, seed=1,
                      device="cpu", progress_bar=False)
    np.testing.assert_array_equal(again.get_latent_representation(), z)
    other = fit_model(simulate(modality=modality), name, params={"n_latent": 3, "n_hidden": 16}, train=FAST,
                      seed=2, device="cpu", progress_bar=False)
    assert not np.allclose(other.get_latent_representation(), z)
    model.save(tmp_path / name)
    assert (tmp_path / name / "scvi" / "model.pt").is_file()
    loaded = load_model(tmp_path / name, simulate(modality=modality), device="cpu")
    assert type(loaded) is type(model) and loaded.params == model.params
    np.testing.assert_allclose(loaded.get_latent_representation(), z, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="var_names"):
        loaded.get_latent_representation(simulate(modality=modality)[:, ::-1].copy())


@needs_scvi
def test_batch_key_reaches_scvi(one_torch_thread) -> None:
    adata = simulate()
    model = fit_model(adata, "scvi", params={"n_latent": 2, "n_hidden": 8}, train=dict(FAST, max_epochs=1), seed=0,
                      device="cpu", progress_bar=False, batch_key="batch")
    assert model.scvi_model.summary_stats.n_batch == 2
