"""Tools acting on AnnData, scanpy style: train a model and embed, 2-D embeddings, annotation.

Keys written:

- ``obsm[key_added]`` (default ``"X_<model>"``): latent means of the model;
- ``obsm["X_bottleneck"]``: LiVAE's bottleneck representation (when the model has one);
- ``obsm["X_umap"]``, ``obsm["X_tsne"]``: 2-D embeddings of a latent;
- ``uns["geovae_train"]``: provenance of the training run (device, seed, versions, time).
"""

from __future__ import annotations

from typing import Any, Mapping

import anndata as ad
import numpy as np

from geovae.embedding import tsne_2d, tsne_neighbors, umap_2d
from geovae.neighbors import stored_neighbors
from geovae.options import EMBED

#: Likelihood per modality when a model's ``likelihood`` is ``"auto"`` (LiVAE paper section 2.7).
DEFAULT_LIKELIHOOD = {"rna": "nb", "atac": "zinb"}


def resolve_params(adata: ad.AnnData, params: Mapping[str, Any] | None, model_cls: type | None = None) -> dict[str, Any]:
    """Copy ``params`` and resolve ``likelihood``: ``"auto"`` (or absent, for a model class that takes a
    ``likelihood`` argument and does not set ``likelihood_follows_modality = False``) becomes the
    modality's default (NB for RNA, ZINB for ATAC).

    The modality is read from ``adata.uns["geovae_input"]["modality"]`` (set by the preprocessing
    functions) and defaults to RNA.

    Parameters
    ----------
    adata
        Preprocessed data (its ``uns["geovae_input"]`` names the modality).
    params
        Model hyperparameters; not modified.
    model_cls
        Model class; when it takes a ``likelihood`` argument an absent one is resolved too.

    Returns
    -------
    dict
        A copy of ``params`` with a concrete ``likelihood``.
    """
    resolved = dict(params or {})
    takes_likelihood = False
    if model_cls is not None:
        try:  # the model's declared parameters (scvi-tools wrappers raise without scvi-tools)
            takes_likelihood = "likelihood" in model_cls.default_params()
        except ImportError:
            takes_likelihood = False
    # a model whose own default is not a modality count likelihood (siVAE: gaussian) keeps it when unset
    follows_modality = model_cls is None or getattr(model_cls, "likelihood_follows_modality", True)
    if resolved.get("likelihood", "auto") == "auto" and (
            "likelihood" in resolved or (takes_likelihood and follows_modality)):
        modality = adata.uns.get("geovae_input", {}).get("modality", "rna")
        resolved["likelihood"] = DEFAULT_LIKELIHOOD[modality]
    return resolved


def merge_train_options(train: Mapping[str, Any] | None = None, **given: Any) -> dict[str, Any]:
    """One dict of training options from ``train=`` and keyword arguments.

    A keyword left at ``None`` is not given. An option given both ways must have the same value,
    else :class:`ValueError` names it; nothing else takes precedence silently.

    Parameters
    ----------
    train
        Training options (any field of :class:`geovae.options.TrainingConfig`).
    **given
        The same options passed as keywords (``device``, ``seed``, ``progress_bar``, ...).

    Returns
    -------
    dict
        The merged options (defaults are left to :class:`~geovae.options.TrainingConfig`).
    """
    options = dict(train or {})
    for key, value in given.items():
        if value is None:
            continue
        if key in options and options[key] != value:
            raise ValueError(f"training option {key!r} given twice with different values: {key}={value!r} "
                             f"and train={{{key!r}: {options[key]!r}}}; pass it once")
        options[key] = value
    return options


def fit_model(adata: ad.AnnData, model: str = "livae", params: Mapping[str, Any] | None = None,
              train: Mapping[str, Any] | None = None, device: str | None = None, seed: int | None = None,
              layer: str = "counts", batch_key: str | None = None, progress_bar: bool | None = None):
    """Set up, build and train a model of the zoo on a preprocessed AnnData.

    Parameters
    ----------
    adata
        Preprocessed data (``layers[layer]`` raw counts, ``.X`` normalized input).
    model
        Registry name (see ``geovae.models.MODELS``).
    params
        Model hyperparameters (``likelihood: auto`` picks NB for RNA and ZINB for ATAC).
    train
        Training options: any field of :class:`geovae.options.TrainingConfig` (``max_epochs``,
        ``batch_size``, ``lr``, ``progress_bar``, ...; ``docs/options.md``). An unknown key raises
        :class:`TypeError` naming it.
    device, seed, progress_bar
        The training options of the same names, as keywords (``None``: not given; the defaults are
        ``"auto"``, 0 and True). Given both here and in ``train`` with different values: ValueError.
    layer, batch_key
        Passed to ``setup_anndata``.

    Returns
    -------
    The trained model instance.
    """
    from geovae.models import get_model

    options = merge_train_options(train, device=device, seed=seed, progress_bar=progress_bar)
    cls = get_model(model)
    cls.setup_anndata(adata, layer=layer, batch_key=batch_key)
    instance = cls(adata, **resolve_params(adata, params, cls))
    instance.train(**options)
    return instance


def model_outputs(instance: Any, adata: ad.AnnData | None = None) -> dict[str, Any]:
    """What a trained model gives per cell and per feature, in one place.

    Parameters
    ----------
    instance
        A trained model of the zoo.
    adata
        Data to encode (default: the training data).

    Returns
    -------
    dict
        ``latent`` (cells x latent), ``bottleneck`` (cells x bottleneck_dim, or None) and ``loadings``
        (a features x latent DataFrame from ``get_loadings()``, or None).
    """
    bottleneck = None
    if getattr(instance, "has_bottleneck", False):
        bottleneck = instance.get_bottleneck_representation(adata)
    get_loadings = getattr(instance, "get_loadings", None)
    return {"latent": instance.get_latent_representation(adata), "bottleneck": bottleneck,
            "loadings": get_loadings() if callable(get_loadings) else None}


def embed(adata: ad.AnnData, model: str = "livae", key_added: str | None = None,
          params: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
          device: str | None = None, seed: int | None = None, **kwargs: Any):
    """Train ``model`` on ``adata`` and store its latent means in ``obsm[key_added]``.

    Also stores ``obsm["X_bottleneck"]`` when the model has a bottleneck, ``varm["loadings"]`` when it
    has feature loadings (siVAE, linear baselines) and the run provenance in ``uns["geovae_train"]``.

    Parameters
    ----------
    adata
        Preprocessed data (``layers["counts"]`` raw counts, ``.X`` normalized input); modified in place.
    model
        Registry name (default ``"livae"``).
    key_added
        ``obsm`` key of the latent means (default ``"X_<model>"``; the pipeline uses ``"X_latent"``).
    params
        Model hyperparameters (defaults: the model's, LiVAE paper section 2.7).
    train
        Training options: any field of :class:`geovae.options.TrainingConfig` (``max_epochs``,
        ``batch_size``, ``lr``, ``progress_bar``, ...; ``docs/options.md``).
    device
        ``"auto"`` (CUDA when available, the default), ``"cpu"`` or ``"cuda"``; same as ``train["device"]``.
    seed
        Seed of weights, minibatch order and validation split (default 0); same as ``train["seed"]``.
    **kwargs
        Passed to :func:`fit_model` (``layer``, ``batch_key``, ``progress_bar``).

    Returns
    -------
    The trained model (its ``history`` holds the loss terms per epoch).
    """
    instance = fit_model(adata, model=model, params=params, train=train, device=device, seed=seed, **kwargs)
    outputs = model_outputs(instance)
    adata.obsm[key_added or f"X_{model}"] = outputs["latent"]
    if outputs["bottleneck"] is not None:
        adata.obsm["X_bottleneck"] = outputs["bottleneck"]
    if outputs["loadings"] is not None:
        adata.varm["loadings"] = np.asarray(outputs["loadings"].reindex(adata.var_names), dtype=np.float32)
    adata.uns["geovae_train"] = _h5ad_safe(dict(getattr(instance, "metadata", {})))
    return instance


def _h5ad_safe(record: Any) -> Any:
    """JSON round-trip of ``record`` with ``None`` as ``""`` so h5ad can store it in ``uns``."""
    import json

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return "" if value is None else value

    return clean(json.loads(json.dumps(record, default=str)))


def umap(adata: ad.AnnData, use_rep: str = "X_latent", n_neighbors: int = EMBED.umap_n_neighbors,
         min_dist: float = EMBED.umap_min_dist,
         seed: int = 0, key_added: str = "X_umap", neighbors_key: str | None = "neighbors") -> None:
    """UMAP of ``obsm[use_rep]`` into ``obsm[key_added]`` (see :func:`geovae.embedding.umap_2d`).

    A neighbour graph already in ``adata`` (the pipeline's ``embedding.h5ad`` or ``scanpy.pp.neighbors``)
    is used when it was built on ``use_rep`` with at least ``n_neighbors`` neighbours
    (:func:`geovae.neighbors.stored_neighbors`); otherwise the neighbours are searched.

    Parameters
    ----------
    adata
        AnnData with the latent in ``obsm[use_rep]``; modified in place.
    use_rep
        ``obsm`` key of the latent.
    n_neighbors
        Local neighbourhood size (15, umap-learn default; McInnes et al. 2018).
    min_dist
        Minimum distance between embedded points (0.5, as ``scanpy.tl.umap``).
    seed
        Random state (the optimisation is single-threaded and reproducible).
    key_added
        ``obsm`` key of the result.
    neighbors_key
        ``uns`` key of a stored graph to use when it fits; None always searches.
    """
    stored = stored_neighbors(adata, use_rep, n_neighbors, neighbors_key) if neighbors_key else None
    adata.obsm[key_added] = umap_2d(np.asarray(adata.obsm[use_rep]), n_neighbors, min_dist, seed, neighbors=stored)


def tsne(adata: ad.AnnData, use_rep: str = "X_latent", perplexity: float = EMBED.tsne_perplexity, seed: int = 0,
         n_jobs: int = 1, key_added: str = "X_tsne", method: str = EMBED.tsne_method,
         neighbors_key: str | None = "neighbors") -> None:
    """openTSNE t-SNE of ``obsm[use_rep]`` into ``obsm[key_added]`` (see :func:`geovae.embedding.tsne_2d`).

    A stored graph of ``use_rep`` is used when it holds the ``3 * perplexity`` neighbours t-SNE needs (the
    pipeline stores 15, so t-SNE usually searches its own).

    Parameters
    ----------
    adata
        AnnData with the latent in ``obsm[use_rep]``; modified in place.
    use_rep
        ``obsm`` key of the latent.
    perplexity
        Effective neighbourhood size (30, van der Maaten and Hinton 2008).
    seed
        Random state.
    n_jobs
        Threads.
    key_added
        ``obsm`` key of the result.
    method
        Gradient method: ``"auto"`` (Barnes-Hut below 10,000 cells, FFT above), ``"bh"`` or ``"fft"``.
    neighbors_key
        ``uns`` key of a stored graph to use when it is large enough; None always searches.
    """
    _, k = tsne_neighbors(adata.n_obs, perplexity)
    stored = stored_neighbors(adata, use_rep, k + 1, neighbors_key) if neighbors_key else None
    adata.obsm[key_added] = tsne_2d(np.asarray(adata.obsm[use_rep]), perplexity, seed, n_jobs, method=method,
                                    neighbors=stored)


def __getattr__(name: str) -> Any:
    # Interpretation verbs are re-exported lazily (they import gseapy).
    if name in {"annotate_components", "enrich_components"}:
        from geovae import interpretation

        return getattr(interpretation, name)
    raise AttributeError(f"module 'geovae.tl' has no attribute {name!r}")
