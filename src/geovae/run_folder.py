"""One run folder, one writer: what a trained model leaves behind, for the pipeline and the CLI alike.

A run folder (``results/<dataset>/<model>/<seed>/`` in the pipeline, ``--out`` of ``geovae train``)
holds:

- ``model/``: the saved model (``geovae.models.load_model``);
- ``latent.h5ad``: the cells (``obs``) and the model's features (``var``), the latent means in
  ``obsm["X_latent"]``, the bottleneck in ``obsm["X_bottleneck"]`` and the feature loadings in
  ``varm["loadings"]`` (plus ``var["degree_centrality"]``) of the models that have them, training
  provenance in ``uns["geovae_train"]``; written once, by :func:`write_training_outputs`, and read by
  every later stage through :func:`read_latent`;
- ``embedding.h5ad``: the scanpy-ready AnnData of the run (:func:`scanpy_ready`): the expression
  the model saw in ``X``, ``var``, ``obs`` with labels, QC and Leiden, the latent as
  ``obsm["X_<model>"]`` (and ``X_latent``), ``X_umap``/``X_tsne``, provenance in ``uns``;
- ``history.tsv`` and ``loss.png``: the loss terms per epoch;
- ``train_info.json``: parameters, versions, seed, device and timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["LATENT_FILE", "latent_adata", "write_training_outputs", "read_latent", "run_loadings", "scanpy_ready"]

#: The latent of a run, as AnnData.
LATENT_FILE = "latent.h5ad"


def latent_adata(model: Any, adata: ad.AnnData) -> ad.AnnData:
    """The per-cell and per-feature outputs of a trained model as one AnnData (no expression matrix).

    Parameters
    ----------
    model
        A trained model of the zoo.
    adata
        The data it was trained on (its ``obs`` and ``var`` are copied).

    Returns
    -------
    anndata.AnnData
        ``obsm["X_latent"]`` (and ``X_bottleneck``), ``varm["loadings"]`` and
        ``var["degree_centrality"]`` where the model has them, ``uns["geovae_train"]``.
    """
    from geovae.tl import _h5ad_safe, model_outputs

    outputs = model_outputs(model)
    out = ad.AnnData(obs=adata.obs.copy(), var=pd.DataFrame(index=adata.var_names.copy()))
    out.obsm["X_latent"] = np.asarray(outputs["latent"], dtype=np.float32)
    if outputs["bottleneck"] is not None:
        out.obsm["X_bottleneck"] = np.asarray(outputs["bottleneck"], dtype=np.float32)
    if outputs["loadings"] is not None:
        loadings = outputs["loadings"].reindex(out.var_names)
        out.varm["loadings"] = loadings.to_numpy(dtype=np.float32)
        out.uns["loading_columns"] = [str(c) for c in loadings.columns]
    centrality = getattr(model, "get_degree_centrality", None)
    if callable(centrality):
        out.var["degree_centrality"] = centrality().reindex(out.var_names).to_numpy(dtype=np.float64)
    out.uns["geovae_train"] = _h5ad_safe(dict(getattr(model, "metadata", {})))
    return out


def write_training_outputs(model: Any, adata: ad.AnnData, *, model_dir: str | Path, latent: str | Path,
                           history: str | Path, info: str | Path, record: Mapping[str, Any],
                           loss: str | Path | None = None, title: str = "") -> ad.AnnData:
    """Write a trained model's run folder files (the one writer of the rule script and the CLI).

    Parameters
    ----------
    model
        Trained model.
    adata
        Its training data.
    model_dir, latent, history, info
        Targets: the saved model, ``latent.h5ad``, ``history.tsv``, ``train_info.json``.
    record
        The ``train_info.json`` content (see :func:`geovae.runinfo.run_info`).
    loss
        Target of the loss figure (skipped when None).
    title
        Title of the loss figure.

    Returns
    -------
    anndata.AnnData
        What was written to ``latent``.
    """
    from geovae.plotting.training import loss_curves
    from geovae.runinfo import write_json

    result = latent_adata(model, adata)
    result.write_h5ad(latent)
    model.history.to_csv(history, sep="\t", index=False)
    if loss is not None:
        loss_curves(model.history, loss, title=title, best_epoch=getattr(model, "metadata", {}).get("best_epoch"))
    model.save(model_dir, overwrite=True)
    write_json(info, dict(record))
    return result


def read_parts(path: str | Path, keys: tuple[str, ...]) -> ad.AnnData:
    """Read only the named top-level fields of an h5ad file (e.g. skip ``layers`` or ``X``).

    Parameters
    ----------
    path
        The file.
    keys
        Fields of ``anndata.AnnData`` to read (``"X"``, ``"obs"``, ``"var"``, ``"obsm"``, ``"varm"``,
        ``"obsp"``, ``"layers"``, ``"uns"``); those absent from the file are left out.

    Returns
    -------
    anndata.AnnData
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        return ad.AnnData(**{key: read_elem(handle[key]) for key in keys if key in handle})


def read_normalised(path: str | Path) -> ad.AnnData:
    """Read a ``preprocessed.h5ad`` without its ``layers`` (the raw counts): for stages that use ``X`` only.

    At atlas size this halves the memory of the expression (1M cells x 2,000 genes: 2.3 GB a matrix).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    anndata.AnnData
        ``X`` (the normalised expression), ``obs``, ``var``, ``obsm``, ``varm``, ``uns``.
    """
    return read_parts(path, ("X", "obs", "var", "obsm", "varm", "uns"))


def read_latent(path: str | Path, cells: pd.Index | None = None) -> ad.AnnData:
    """Read a run's ``latent.h5ad`` (or an ``embedding.h5ad``, which carries the same fields).

    Only the cell and feature annotations are read (``obs``, ``var``, ``obsm``, ``varm``, ``uns``):
    not ``X``, ``layers`` or ``obsp``, so an atlas's expression matrix in ``embedding.h5ad`` is not
    loaded by the rules that need its latent and maps only.

    Parameters
    ----------
    path
        The file.
    cells
        When given, the cells the caller expects, in order: a mismatch is an error naming the file.

    Returns
    -------
    anndata.AnnData
    """
    result = read_parts(path, ("obs", "var", "obsm", "varm", "uns"))
    if "X_latent" not in result.obsm:
        raise ValueError(f"{path}: no obsm['X_latent']; is it a geovae run's latent.h5ad or embedding.h5ad?")
    if cells is not None and list(result.obs_names) != list(map(str, cells)):
        raise ValueError(f"{path}: its cells differ from the preprocessed data's ({result.n_obs} vs {len(cells)})")
    return result


def run_loadings(result: ad.AnnData) -> tuple[pd.DataFrame | None, pd.Series | None]:
    """Loadings (features x components) and degree centrality stored by :func:`latent_adata`, if any.

    Parameters
    ----------
    result
        A run's ``latent.h5ad`` or ``embedding.h5ad``.

    Returns
    -------
    tuple
        ``(loadings, centrality)``, each None when the model has none.
    """
    loadings = None
    if "loadings" in result.varm:
        columns = list(result.uns.get("loading_columns", [])) or None
        loadings = pd.DataFrame(np.asarray(result.varm["loadings"]), index=result.var_names, columns=columns)
        loadings = loadings.dropna(how="all")
    centrality = result.var["degree_centrality"] if "degree_centrality" in result.var else None
    return loadings, centrality


def scanpy_ready(result: ad.AnnData, preprocessed: str | Path, model: str) -> ad.AnnData:
    """The run's latent AnnData made one a scanpy user continues from (``embedding.h5ad``).

    ``X`` becomes the preprocessed expression of the model's features (RNA: log1p of counts
    normalised per cell; ATAC: TF-IDF), read from ``preprocessed`` without loading its count layer;
    ``var`` and ``obs`` are the preprocessed ones (labels, scanpy-named QC columns, HVG flags) with
    the columns ``result`` adds (e.g. ``leiden``); the latent is also stored as ``obsm["X_<model>"]``,
    the key ``geovae.tl.embed`` writes, so ``sc.pp.neighbors(adata, use_rep="X_livae")``,
    ``sc.pl.umap(adata, color=<gene>)`` work on the file as is.

    Parameters
    ----------
    result
        The run's cells with ``obsm["X_latent"]`` (from :func:`read_latent`, plus embeddings).
    preprocessed
        The dataset's ``preprocessed.h5ad``.
    model
        Model name, for the ``X_<model>`` key.

    Raises
    ------
    ValueError
        When the cells or features of ``result`` are not those of ``preprocessed`` (names the file).
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(preprocessed, "r") as handle:
        X = read_elem(handle["X"])
        obs, var = read_elem(handle["obs"]), read_elem(handle["var"])
    if list(obs.index) != list(result.obs_names):
        raise ValueError(f"{preprocessed}: its cells differ from the run's ({len(obs)} vs {result.n_obs})")
    missing = result.var_names.difference(var.index)
    if len(missing):
        raise ValueError(f"{preprocessed}: lacks {len(missing)} of the model's features, e.g. {list(missing[:3])}")
    columns = var.index.get_indexer(result.var_names)
    out = ad.AnnData(X=X[:, columns] if not np.array_equal(columns, np.arange(var.shape[0])) else X,
                     obs=obs.join(result.obs.drop(columns=obs.columns.intersection(result.obs.columns))),
                     var=var.iloc[columns].join(result.var.drop(columns=var.columns.intersection(result.var.columns))),
                     obsm=dict(result.obsm), varm=dict(result.varm), obsp=dict(result.obsp),
                     uns=dict(result.uns))
    out.obsm[f"X_{model}"] = out.obsm["X_latent"]
    out.uns["latent_key"] = f"X_{model}"
    return out
