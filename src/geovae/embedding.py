"""Two-dimensional embeddings of a latent space: UMAP and FFT-accelerated t-SNE."""

from __future__ import annotations

import time

import numpy as np

from geovae.options import EMBED


def umap_2d(latent: np.ndarray, n_neighbors: int = EMBED.umap_n_neighbors, min_dist: float = EMBED.umap_min_dist,
            seed: int = 0) -> np.ndarray:
    """UMAP of ``latent`` to two dimensions (McInnes et al. 2018, umap-learn).

    Parameters
    ----------
    latent
        ``n_cells x d`` latent matrix.
    n_neighbors
        Size of the local neighbourhood (umap-learn default 15).
    min_dist
        Minimum distance between embedded points (0.5 as in ``scanpy.tl.umap``).
    seed
        Random state; with a fixed seed umap-learn runs single-threaded and is reproducible.

    Returns
    -------
    ``n_cells x 2`` float32 array.
    """
    import umap

    latent = np.asarray(latent, dtype=np.float32)
    n_neighbors = int(min(n_neighbors, latent.shape[0] - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed)
    return reducer.fit_transform(latent).astype(np.float32)


def tsne_2d(latent: np.ndarray, perplexity: float = EMBED.tsne_perplexity, seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """t-SNE of ``latent`` with openTSNE's FFT-accelerated interpolation (Linderman et al. 2019).

    Parameters
    ----------
    latent
        ``n_cells x d`` latent matrix.
    perplexity
        Effective neighbourhood size (30, van der Maaten and Hinton 2008); capped for tiny inputs.
    seed
        Random state of the PCA-based initialisation and optimisation.
    n_jobs
        Threads for the neighbour search and gradients.

    Returns
    -------
    ``n_cells x 2`` float32 array.
    """
    from openTSNE import TSNE

    latent = np.asarray(latent, dtype=np.float64)
    perplexity = float(min(perplexity, max(2.0, (latent.shape[0] - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=n_jobs,
                negative_gradient_method="fft", verbose=False)
    return np.asarray(tsne.fit(latent), dtype=np.float32)


def embed_2d(latent: np.ndarray, n_neighbors: int = EMBED.umap_n_neighbors, min_dist: float = EMBED.umap_min_dist,
             perplexity: float = EMBED.tsne_perplexity, seed: int = 0, n_jobs: int = 1) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Compute UMAP and t-SNE of ``latent`` and time each.

    Returns
    -------
    embeddings
        ``{"X_umap": ..., "X_tsne": ...}``.
    seconds
        Wall time of each method, ``{"umap": s, "tsne": s}``.
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    umap_xy = umap_2d(latent, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed)
    seconds["umap"] = time.perf_counter() - start
    start = time.perf_counter()
    tsne_xy = tsne_2d(latent, perplexity=perplexity, seed=seed, n_jobs=n_jobs)
    seconds["tsne"] = time.perf_counter() - start
    return {"X_umap": umap_xy, "X_tsne": tsne_xy}, seconds
