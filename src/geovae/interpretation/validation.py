"""Ground-truth validation of latent components against simulated gene programs.

For every true program ``P`` (a gene set, ``varm["programs"]`` of
:func:`geovae.data.simulate.simulate_programs`) and every component ``k`` and tail, the
``n_top`` genes of that tail are tested for over-representation of ``P`` (hypergeometric,
universe = all analysed genes). The component/tail with the smallest p-value is the one
*enriched* for ``P``; its precision@``n_top`` is the fraction of its top genes in ``P``.
Independently, the component whose activation correlates best (largest ``|r|``) with the
program's cell score (``obsm["program_usage"]``) is found; ``agreement`` says whether the
two choices coincide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from geovae.interpretation.enrichment import benjamini_hochberg

VALIDATION_COLUMNS = ["program", "program_size", "n_top", "enriched_component", "enriched_tail", "overlap",
                      "p_value", "adj_p_value", "precision_at_n", "r_precision", "score_component",
                      "score_r", "agreement"]


def empty_validation() -> pd.DataFrame:
    """Header-only validation table (datasets without ground-truth programs)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in VALIDATION_COLUMNS})


def _tail_top(r: np.ndarray, tail: str, n_top: int) -> np.ndarray:
    signed = r if tail == "positive" else -r
    candidates = np.flatnonzero(signed > 0)
    return candidates[np.argsort(-signed[candidates], kind="stable")][:n_top]


def _column_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every column of ``a`` (n x p) and of ``b`` (n x k); 0 where undefined."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((ac**2).sum(0))[:, None] * np.sqrt((bc**2).sum(0))[None, :]
    cov = ac.T @ bc
    out = np.zeros_like(cov)
    ok = denom > 0
    out[ok] = cov[ok] / denom[ok]
    return out


def validate_programs(correlations: pd.DataFrame, programs: pd.DataFrame, latent: np.ndarray | None = None,
                      program_scores: pd.DataFrame | None = None, n_top: int = 50) -> pd.DataFrame:
    """Match every true gene program to a latent component and score the match.

    Parameters
    ----------
    correlations
        ``genes x components`` gene-component correlations (index = gene ids, columns =
        component names), e.g. ``InterpretationResult.correlations``.
    programs
        ``genes x programs`` boolean membership; genes absent from ``correlations`` are ignored.
    latent
        ``cells x components`` activations (same column order as ``correlations``).
    program_scores
        ``cells x programs`` true program activity (e.g. ``obsm["program_usage"]``), rows in
        the order of ``latent``. With ``latent``, gives ``score_component``/``agreement``.
    n_top
        Top genes per component tail (the N of precision@N).

    Returns
    -------
    pandas.DataFrame
        One row per program: ``program``, ``program_size`` (members among the analysed
        genes), ``n_top``, ``enriched_component``/``enriched_tail`` (smallest hypergeometric
        p-value; ties -> larger overlap, then component order; ``None`` when no top gene of
        any component is in the program), ``overlap``, ``p_value``,
        ``adj_p_value`` (BH over the 2 x d tests of the program), ``precision_at_n``
        (overlap / number of top genes), ``r_precision`` (precision among the first
        ``program_size`` genes of that tail), ``score_component`` and ``score_r`` (largest
        ``|r|`` with the program score, signed r), ``agreement`` (same component; ``NaN``
        without scores).
    """
    if n_top < 1:
        raise ValueError(f"n_top must be >= 1, got {n_top}")
    genes = pd.Index(correlations.index.astype(str))
    members = programs.copy()
    members.index = members.index.astype(str)
    members = members.reindex(genes).fillna(False).astype(bool)
    corr = correlations.to_numpy(dtype=np.float64)
    names = [str(c) for c in correlations.columns]
    n_genes = len(genes)
    score_r = None
    if latent is not None and program_scores is not None:
        z = np.asarray(latent, dtype=np.float64)
        s = np.asarray(program_scores, dtype=np.float64)
        if z.shape[0] != s.shape[0] or z.shape[1] != len(names):
            raise ValueError(f"latent {z.shape} and program_scores {s.shape} do not match "
                             f"{len(names)} components over the same cells")
        score_r = pd.DataFrame(_column_corr(s, z), index=[str(c) for c in program_scores.columns], columns=names)

    rows = []
    tops = {(k, tail): _tail_top(corr[:, k], tail, n_top) for k in range(len(names))
            for tail in ("positive", "negative")}
    for program in members.columns:
        in_program = members[program].to_numpy()
        size = int(in_program.sum())
        tests = []
        for (k, tail), idx in tops.items():
            hits = int(in_program[idx].sum())
            p = float(hypergeom.sf(hits - 1, n_genes, size, len(idx))) if len(idx) and size else 1.0
            tests.append((p, -hits, k, 0 if tail == "positive" else 1, tail, idx, hits))
        tests.sort(key=lambda t: t[:4])
        p, _, k, _, tail, idx, hits = tests[0]
        adj = benjamini_hochberg(np.array([t[0] for t in tests]))[0]
        r_idx = _tail_top(corr[:, k], tail, max(size, 1))
        row = {"program": str(program), "program_size": size, "n_top": int(n_top),
               "enriched_component": names[k], "enriched_tail": tail, "overlap": hits, "p_value": p,
               "adj_p_value": float(adj), "precision_at_n": hits / len(idx) if len(idx) else 0.0,
               "r_precision": float(in_program[r_idx].mean()) if size and len(r_idx) else 0.0,
               "score_component": None, "score_r": np.nan, "agreement": np.nan}
        if hits == 0:  # no component's top genes contain the program: nothing was found
            row.update(enriched_component=None, enriched_tail=None)
        if score_r is not None and str(program) in score_r.index:
            rs = score_r.loc[str(program)].to_numpy()
            best = int(np.argmax(np.abs(rs)))
            row.update(score_component=names[best], score_r=float(rs[best]), agreement=bool(hits > 0 and best == k))
        rows.append(row)
    return pd.DataFrame(rows, columns=VALIDATION_COLUMNS) if rows else empty_validation()


def validate_adata(adata, correlations: pd.DataFrame, latent_key: str = "X_latent",
                   n_top: int = 50) -> tuple[pd.DataFrame, str | None]:
    """Run :func:`validate_programs` when ``adata`` carries ground-truth programs.

    Parameters
    ----------
    adata
        AnnData; uses ``varm["programs"]`` (genes x programs), ``obsm["program_usage"]``
        (optional) and ``obsm[latent_key]``.
    correlations
        ``genes x components`` correlations over ``adata.var_names``.
    latent_key
        obsm key of the latent activations.
    n_top
        Genes per tail.

    Returns
    -------
    tuple of (pandas.DataFrame, str or None)
        The validation table and ``None``, or an empty table and a note explaining why.
    """
    if "programs" not in adata.varm:
        return empty_validation(), "no ground-truth gene programs (varm['programs']) in this dataset"
    programs = adata.varm["programs"]
    if not isinstance(programs, pd.DataFrame):
        names = adata.uns.get("simulation", {}).get("programs")
        programs = pd.DataFrame(np.asarray(programs), index=adata.var_names,
                                columns=list(names) if names is not None else None)
    usage = adata.obsm.get("program_usage") if "program_usage" in adata.obsm else None
    if usage is not None and not isinstance(usage, pd.DataFrame):
        usage = pd.DataFrame(np.asarray(usage), index=adata.obs_names, columns=programs.columns)
    latent = np.asarray(adata.obsm[latent_key]) if latent_key in adata.obsm else None
    table = validate_programs(correlations, programs, latent=latent if usage is not None else None,
                              program_scores=usage, n_top=n_top)
    note = None if usage is not None else "no obsm['program_usage']: score agreement not computed"
    return table, note
