"""Annotate latent components by their gene (or peak) correlations.

Every latent dimension ``Z_k`` is correlated with every input feature across cells; the
features with the largest positive and most negative correlations are the component's
markers. Sparse expression matrices are never densified as a whole.

Storage keys written by :func:`annotate_components`
---------------------------------------------------
``adata.varm["component_correlation"]``
    ``n_vars x d`` float32 matrix of the ranking correlation (``method``) between every
    feature and every latent component; features with zero variance get 0.
``adata.uns["geovae_components"]``
    dict with ``"params"`` (``method``, ``latent_key``, ``layer``, ``n_top``,
    ``component_names``, ``components_columns``, ``component_genes_columns``),
    ``"components"`` and ``"component_genes"``: the two tables as dicts of
    column -> 1-D array (h5ad-writable; missing markers stored as "").
    :func:`components_from_uns` rebuilds the tables.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from geovae.preprocessing._sparse import col_sums, row_blocks

Method = Literal["pearson", "spearman"]

UNS_KEY = "geovae_components"
VARM_KEY = "component_correlation"

# Size (bytes) of one densified float64 gene chunk in the dense/Spearman paths; ranking and
# centring add a few temporaries of the same size, so the peak is roughly 6x this.
_CHUNK_BYTES = 32 * 1024**2
# A column whose centred norm is below this fraction of its raw norm is treated as constant.
_REL_TOL = 1e-8


def component_names(n_components: int) -> list[str]:
    """Return the component labels ``["Z1", ..., "Zd"]``."""
    return [f"Z{k + 1}" for k in range(n_components)]


def _latent_matrix(latent: Any, n_cells: int) -> np.ndarray:
    z = np.asarray(latent, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n_cells:
        raise ValueError(f"latent has shape {z.shape}; expected ({n_cells}, d) to match the {n_cells} cells of expr")
    if not np.all(np.isfinite(z)):
        raise ValueError("latent contains NaN or infinite values")
    return z


def _standardize_columns(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Center columns and return (centered, norm); norm is the L2 norm of each centered column."""
    centered = a - a.mean(axis=0, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->j", centered, centered))
    rms = np.sqrt(np.einsum("ij,ij->j", a, a))
    norm[norm <= _REL_TOL * rms] = 0.0  # constant up to rounding -> no correlation defined
    return centered, norm


def _safe_ratio(cov: np.ndarray, norm_x: np.ndarray, norm_z: np.ndarray) -> np.ndarray:
    denom = norm_x[:, None] * norm_z[None, :]
    out = np.zeros_like(cov)
    ok = denom > 0
    out[ok] = cov[ok] / denom[ok]
    return np.clip(out, -1.0, 1.0)


def _gene_step(n_cells: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    return max(1, _CHUNK_BYTES // (8 * max(n_cells, 1)))


def _dense_block(x: Any, start: int, stop: int) -> np.ndarray:
    block = x[:, start:stop]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return block.astype(np.float64, copy=False)


def _pearson(expr: Any, z: np.ndarray, chunk_size: int | None) -> np.ndarray:
    n, g = expr.shape
    zc, norm_z = _standardize_columns(z)
    if sp.issparse(expr):
        x = expr if expr.format == "csr" else sp.csr_matrix(expr)
        # sum_i (x_i - mean_x) zc_i = sum_i x_i zc_i because zc sums to zero: no densifying needed;
        # in row blocks of bounded size, so the float64 copy scipy makes stays small on an atlas
        cov = np.zeros((g, z.shape[1]))
        for start, stop in row_blocks(x):
            block = x if (start, stop) == (0, n) else x[start:stop]
            cov += np.asarray(block.T @ zc[start:stop], dtype=np.float64)
        sums, sq = col_sums(x)
        var_sum = np.maximum(sq - sums * sums / n, 0.0)
        var_sum[var_sum <= _REL_TOL**2 * sq] = 0.0  # constant up to rounding
        return _safe_ratio(cov, np.sqrt(var_sum), norm_z)
    x = np.asarray(expr)
    out = np.empty((g, z.shape[1]), dtype=np.float64)
    step = _gene_step(n, chunk_size)
    for start in range(0, g, step):
        stop = min(g, start + step)
        xc, norm_x = _standardize_columns(_dense_block(x, start, stop))
        out[start:stop] = _safe_ratio(xc.T @ zc, norm_x, norm_z)
    return out


def _spearman(expr: Any, z: np.ndarray, chunk_size: int | None) -> np.ndarray:
    n, g = expr.shape
    zr, norm_z = _standardize_columns(rankdata(z, axis=0))
    x = sp.csc_matrix(expr) if sp.issparse(expr) else np.asarray(expr)  # CSC: cheap column slices
    out = np.empty((g, z.shape[1]), dtype=np.float64)
    step = _gene_step(n, chunk_size)
    for start in range(0, g, step):
        stop = min(g, start + step)
        ranks, norm_x = _standardize_columns(rankdata(_dense_block(x, start, stop), axis=0))  # ties: average
        out[start:stop] = _safe_ratio(ranks.T @ zr, norm_x, norm_z)
    return out


def component_gene_correlations(expr: Any, latent: Any, method: Method = "pearson",
                                chunk_size: int | None = None) -> np.ndarray:
    """Correlate every feature with every latent component across cells.

    Parameters
    ----------
    expr
        ``cells x genes`` matrix, dense array or scipy sparse. Sparse input is never
        densified as a whole: Pearson uses sparse sums (``X^T z_c`` with centred ``z``),
        Spearman densifies one gene chunk at a time for ranking.
    latent
        ``cells x d`` latent coordinates (e.g. posterior means).
    method
        ``"pearson"`` or ``"spearman"`` (average ranks for ties, so the many zeros of a
        sparse gene share one rank).
    chunk_size
        Genes per chunk for the dense/Spearman paths; ``None`` picks a size that keeps one
        float64 chunk near 32 MiB (peak memory a few times that).

    Returns
    -------
    numpy.ndarray
        ``genes x d`` float64 correlations in [-1, 1]. Genes (or components) with zero
        variance get 0, since no correlation is defined for them.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    if len(expr.shape) != 2:
        raise ValueError(f"expr must be 2-D (cells x genes), got shape {expr.shape}")
    z = _latent_matrix(latent, expr.shape[0])
    if expr.shape[0] < 2:
        raise ValueError("at least two cells are needed to compute correlations")
    if method == "pearson":
        return _pearson(expr, z, chunk_size)
    return _spearman(expr, z, chunk_size)


def _tail_order(r: np.ndarray, tail: str, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` genes with the strongest correlation of the tail's sign."""
    signed = r if tail == "positive" else -r
    candidates = np.flatnonzero(signed > 0)
    # stable sort on (-signed) keeps var order among exact ties -> deterministic
    order = candidates[np.argsort(-signed[candidates], kind="stable")]
    return order[:n_top]


def annotate_components(adata: Any, latent_key: str = "X_latent", layer: str | None = None,
                        n_top: int = 50, method: Method = "pearson",
                        store: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rank genes for every latent component and summarise each component.

    Parameters
    ----------
    adata
        AnnData with the latent coordinates in ``obsm[latent_key]``.
    latent_key
        ``obsm`` key of the ``cells x d`` latent matrix.
    layer
        Expression layer; ``None`` uses ``.X`` (the normalised model input).
    n_top
        Genes kept per component and tail.
    method
        Correlation used for ranking (``"pearson"`` or ``"spearman"``); the other one is
        computed only for the selected genes and reported alongside.
    store
        Write ``varm["component_correlation"]`` and ``uns["geovae_components"]`` (see the
        module docstring for the layout).

    Returns
    -------
    components : pandas.DataFrame
        One row per component: ``component``, ``best_marker``, ``best_marker_r``,
        ``best_negative_marker``, ``best_negative_marker_r``, ``top_positive`` and
        ``top_negative`` (first five genes, comma separated), ``n_positive`` and
        ``n_negative`` (genes with r > 0 / r < 0), ``n_genes`` (features tested),
        ``latent_std`` (spread of the component across cells; ~0 flags an unused dimension).
    component_genes : pandas.DataFrame
        Tidy table with ``component``, ``tail`` (``"positive"``/``"negative"``), ``rank``
        (1 = strongest), ``gene``, ``pearson_r``, ``spearman_r``.
    """
    if latent_key not in adata.obsm:
        raise KeyError(f"adata.obsm[{latent_key!r}] not found; available keys: {list(adata.obsm.keys())}")
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"adata.layers[{layer!r}] not found; available layers: {list(adata.layers.keys())}")
    if n_top < 1:
        raise ValueError(f"n_top must be >= 1, got {n_top}")
    expr = adata.X if layer is None else adata.layers[layer]
    if expr is None:
        raise ValueError("adata.X is empty; pass layer= to choose an expression matrix")
    latent = _latent_matrix(adata.obsm[latent_key], adata.n_obs)
    genes = np.asarray(adata.var_names, dtype=object)
    names = component_names(latent.shape[1])

    corr = component_gene_correlations(expr, latent, method=method)
    rows, tidy = [], []
    for k, name in enumerate(names):
        r = corr[:, k]
        for tail in ("positive", "negative"):
            for rank, idx in enumerate(_tail_order(r, tail, n_top), start=1):
                tidy.append((name, tail, rank, int(idx)))
        pos, neg = _tail_order(r, "positive", 5), _tail_order(r, "negative", 5)
        rows.append({
            "component": name,
            "best_marker": genes[pos[0]] if len(pos) else None,
            "best_marker_r": float(r[pos[0]]) if len(pos) else np.nan,
            "best_negative_marker": genes[neg[0]] if len(neg) else None,
            "best_negative_marker_r": float(r[neg[0]]) if len(neg) else np.nan,
            "top_positive": ",".join(genes[pos]),
            "top_negative": ",".join(genes[neg]),
            "n_positive": int(np.sum(r > 0)),
            "n_negative": int(np.sum(r < 0)),
            "n_genes": int(r.size),
            "latent_std": float(latent[:, k].std()),
        })
    components = pd.DataFrame(rows)

    cols = ["component", "tail", "rank", "gene", "pearson_r", "spearman_r"]
    if tidy:
        comp_idx = np.array([names.index(t[0]) for t in tidy])
        gene_idx = np.array([t[3] for t in tidy])
        # the second correlation only for the selected genes (a small dense slice)
        sel = np.unique(gene_idx)
        # column slice in the layout the second method reads (CSC for Spearman), without a second copy
        sub = expr[:, sel]
        if sp.issparse(sub):
            sub = sub.tocsc() if method == "pearson" else sub.tocsr()
        other = component_gene_correlations(sub, latent, method="spearman" if method == "pearson" else "pearson")
        lookup = np.searchsorted(sel, gene_idx)
        ranked_r, other_r = corr[gene_idx, comp_idx], other[lookup, comp_idx]
        pearson_r, spearman_r = (ranked_r, other_r) if method == "pearson" else (other_r, ranked_r)
        component_genes = pd.DataFrame({
            "component": [t[0] for t in tidy], "tail": [t[1] for t in tidy],
            "rank": np.array([t[2] for t in tidy], dtype=np.int64), "gene": genes[gene_idx].astype(str),
            "pearson_r": pearson_r, "spearman_r": spearman_r,
        })
    else:
        component_genes = pd.DataFrame({c: pd.Series(dtype=object) for c in cols})

    if store:
        adata.varm[VARM_KEY] = corr.astype(np.float32)
        adata.uns[UNS_KEY] = {
            "params": {"method": method, "latent_key": latent_key, "layer": layer or "X", "n_top": int(n_top),
                       "component_names": np.array(names, dtype=object),
                       # h5ad stores dict keys sorted; keep the column order explicitly
                       "components_columns": np.array(components.columns, dtype=object),
                       "component_genes_columns": np.array(component_genes.columns, dtype=object)},
            "components": _table_to_uns(components),
            "component_genes": _table_to_uns(component_genes),
        }
    return components, component_genes


#: |Pearson r| between two components' activations from which they count as one program.
REDUNDANT_CORRELATION = 0.8


def component_redundancy(latent: Any, component_genes: pd.DataFrame, names: list[str] | None = None,
                         threshold: float = REDUNDANT_CORRELATION) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How much each latent component repeats another: activation correlation and shared top genes.

    Parameters
    ----------
    latent
        ``cells x d`` activations.
    component_genes
        The tidy top-gene table of :func:`annotate_components` (``component``, ``tail``, ``gene``).
    names
        Component names (default ``Z1..Zd``).
    threshold
        ``|r|`` from which two components are flagged as redundant.

    Returns
    -------
    table : pandas.DataFrame
        Per component: ``most_correlated_with``, ``max_abs_corr`` (|Pearson r| with it),
        ``top_gene_jaccard`` (Jaccard index of the two components' top genes, both tails) and
        ``redundant_with`` (``;``-separated components with ``|r| >= threshold``, empty if none).
    correlation : pandas.DataFrame
        ``d x d`` Pearson correlations of the activations.
    """
    z = _latent_matrix(latent, np.asarray(latent).shape[0])
    d = z.shape[1]
    names = names or component_names(d)
    corr = np.corrcoef(z, rowvar=False) if d > 1 else np.ones((1, 1))
    corr = np.nan_to_num(np.atleast_2d(corr))
    genes = {c: set(component_genes.loc[component_genes["component"] == c, "gene"].astype(str))
             for c in names} if len(component_genes) else {c: set() for c in names}
    rows = []
    for i, name in enumerate(names):
        others = np.abs(corr[i]).copy()
        others[i] = -1.0
        j = int(np.argmax(others)) if d > 1 else i
        union = genes[name] | genes[names[j]]
        jaccard = len(genes[name] & genes[names[j]]) / len(union) if union and j != i else 0.0
        partners = [names[k] for k in range(d) if k != i and abs(corr[i, k]) >= threshold]
        rows.append({"component": name, "most_correlated_with": names[j] if j != i else "",
                     "max_abs_corr": float(others[j]) if j != i else 0.0, "top_gene_jaccard": round(jaccard, 4),
                     "redundant_with": ";".join(partners)})
    return pd.DataFrame(rows), pd.DataFrame(corr, index=names, columns=names)


def _table_to_uns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for col in df.columns:
        values = df[col].to_numpy()
        if values.dtype == object:
            values = np.array(["" if v is None else str(v) for v in values], dtype=object)
        out[col] = values
    return out


def components_from_uns(adata: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild ``(components, component_genes)`` from ``adata.uns["geovae_components"]``.

    Parameters
    ----------
    adata
        AnnData annotated by :func:`annotate_components` (possibly read back from h5ad).

    Returns
    -------
    tuple of pandas.DataFrame
        The two tables as returned by :func:`annotate_components` (missing markers as ``""``).
    """
    if UNS_KEY not in adata.uns:
        raise KeyError(f"adata.uns[{UNS_KEY!r}] not found; run annotate_components first")
    store = adata.uns[UNS_KEY]
    tables = []
    for name in ("components", "component_genes"):
        columns = [str(c) for c in store["params"].get(f"{name}_columns", list(store[name]))]
        tables.append(pd.DataFrame({c: np.asarray(store[name][c]) for c in columns}))
    return tables[0], tables[1]


#: Columns of the tidy table returned by :func:`loading_genes`.
LOADING_GENES_COLUMNS = ["component", "tail", "rank", "gene", "loading", "degree_centrality", "hub"]
#: Columns :func:`loading_genes` adds to the components table.
LOADING_SUMMARY_COLUMNS = ["component", "top_loading_positive", "top_loading_negative", "hub_genes"]


def empty_loading_genes() -> pd.DataFrame:
    """Header-only :func:`loading_genes` table (models without feature loadings)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in LOADING_GENES_COLUMNS})


def loading_genes(loadings: pd.DataFrame, centrality: pd.Series | None = None, n_top: int = 50,
                  n_hubs: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top genes of every component by model loading, and the component's hub genes.

    For models with feature loadings (siVAE: the feature embeddings ``v_{f,1}``, Choi et al.
    2023, which play the role of PCA loadings), a component's genes are ranked by their signed
    loading (positive and negative tail). Its *module* is the ``n_top`` genes with the largest
    ``|loading|``; its hub genes are the ``n_hubs`` module genes with the highest degree
    centrality (siVAE Methods, "Estimating degree centrality using siVAE": the negative
    per-gene reconstruction error).

    Parameters
    ----------
    loadings
        ``genes x components`` loadings (index = gene ids, columns = component names, e.g.
        ``Z1..Zd`` from ``model.get_loadings()``).
    centrality
        Per-gene degree centrality (larger = more central; index = gene ids), or None (no hubs).
    n_top
        Genes kept per component and tail (and module size).
    n_hubs
        Hub genes reported per component.

    Returns
    -------
    summary : pandas.DataFrame
        One row per component: ``component``, ``top_loading_positive``, ``top_loading_negative``
        (first five genes, comma separated) and ``hub_genes`` (comma separated, best first;
        ``""`` without centrality).
    genes : pandas.DataFrame
        Tidy ``component``, ``tail``, ``rank`` (1 = largest |loading|), ``gene``, ``loading``,
        ``degree_centrality`` (NaN when unknown) and ``hub`` (bool).
    """
    if n_top < 1 or n_hubs < 0:
        raise ValueError(f"n_top must be >= 1 and n_hubs >= 0, got n_top={n_top}, n_hubs={n_hubs}")
    values = loadings.to_numpy(dtype=np.float64)
    if values.ndim != 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"loadings must be a finite genes x components table, got shape {values.shape}")
    genes = np.asarray(loadings.index.astype(str), dtype=object)
    cent = np.full(len(genes), np.nan)
    if centrality is not None:
        cent = pd.Series(centrality).reindex(genes).to_numpy(dtype=np.float64)
        if np.all(np.isnan(cent)):
            raise ValueError("degree centrality shares no gene with the loadings table")
    summary, tidy = [], []
    for k, name in enumerate(map(str, loadings.columns)):
        v = values[:, k]
        module = np.argsort(-np.abs(v), kind="stable")[:n_top]
        ranked = module[~np.isnan(cent[module])]
        hubs = ranked[np.argsort(-cent[ranked], kind="stable")][:n_hubs]
        hub_set = set(hubs.tolist())
        for tail in ("positive", "negative"):
            for rank, idx in enumerate(_tail_order(v, tail, n_top), start=1):
                tidy.append({"component": name, "tail": tail, "rank": rank, "gene": str(genes[idx]),
                             "loading": float(v[idx]), "degree_centrality": float(cent[idx]),
                             "hub": idx in hub_set})
        summary.append({"component": name,
                        "top_loading_positive": ",".join(genes[_tail_order(v, "positive", 5)]),
                        "top_loading_negative": ",".join(genes[_tail_order(v, "negative", 5)]),
                        "hub_genes": ",".join(genes[hubs])})
    table = pd.DataFrame(tidy, columns=LOADING_GENES_COLUMNS) if tidy else empty_loading_genes()
    return pd.DataFrame(summary, columns=LOADING_SUMMARY_COLUMNS), table
