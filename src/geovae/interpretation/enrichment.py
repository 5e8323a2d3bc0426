"""Offline GO over-representation analysis of latent-component gene lists.

The hypergeometric test is run by :func:`gseapy.enrich` on gene sets passed as a dict
parsed here (:func:`read_gmt`), so gseapy never contacts Enrichr: a gene-set *string*
that does not end in ``.gmt`` would be taken as an online Enrichr library name.

Statistics
----------
* universe = background genes (those the model saw) that belong to at least one gene
  set; query genes and gene sets are restricted to it (unannotated genes cannot be hits).
* gene sets with ``min_size <= |set & universe| <= max_size`` are tested.
* ``adj_p_value`` is Benjamini-Hochberg over *all* tested gene sets of one
  (component, tail) query; gene sets without overlap count as p = 1. This is stricter
  than gseapy/Enrichr, which adjusts only over gene sets with at least one hit.
"""

from __future__ import annotations

import gzip
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

GeneSets = Mapping[str, Iterable[str]]

DEFAULT_GENE_SET_FILE = "GO_Biological_Process_2021_human.gmt.gz"

RESULT_COLUMNS = ["component", "tail", "term", "term_id", "overlap", "term_size", "query_size",
                  "p_value", "adj_p_value", "odds_ratio", "combined_score", "genes"]

_TERM_ID = re.compile(r"\((GO:\d+)\)\s*$")


class GeneSetCoverageWarning(UserWarning):
    """The analysed genes barely overlap the gene-set vocabulary."""


def default_gene_set_path() -> Path:
    """Path of the shipped GO Biological Process 2021 (human symbols) GMT file.

    Returns
    -------
    pathlib.Path
        ``<repo>/resources/go/GO_Biological_Process_2021_human.gmt.gz``.

    Raises
    ------
    FileNotFoundError
        If the repository's ``resources/go`` folder is not next to ``src/``.
    """
    path = Path(__file__).resolve().parents[3] / "resources" / "go" / DEFAULT_GENE_SET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"default gene sets not found at {path}; pass a GMT path explicitly")
    return path


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file (plain or ``.gz``) into ``{term: [genes]}``.

    Each line is ``term <tab> description <tab> gene1 <tab> gene2 ...``. Blank lines are
    skipped, empty gene fields dropped, duplicate genes within a term removed (first kept).

    Parameters
    ----------
    path
        ``*.gmt`` or ``*.gmt.gz`` file.

    Returns
    -------
    dict of str to list of str
        Gene sets in file order.

    Raises
    ------
    ValueError
        On a line with fewer than two fields or a repeated term name (file and line named).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    gene_sets: dict[str, list[str]] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            term = fields[0].strip()
            if len(fields) < 2 or not term:
                raise ValueError(f"{path}:{line_no}: expected 'term<TAB>description<TAB>genes...'")
            if term in gene_sets:
                raise ValueError(f"{path}:{line_no}: term {term!r} appears twice")
            genes = (g.strip() for g in fields[2:])
            gene_sets[term] = list(dict.fromkeys(g for g in genes if g))
    return gene_sets


def write_gmt(gene_sets: GeneSets, path: str | Path, descriptions: Mapping[str, str] | None = None) -> Path:
    """Write gene sets as GMT (gzip-compressed when ``path`` ends in ``.gz``).

    Parameters
    ----------
    gene_sets
        ``{term: genes}``; terms must not contain tabs or newlines.
    path
        Output file.
    descriptions
        Optional ``{term: description}``; missing ones are written empty.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    lines = []
    for term, genes in gene_sets.items():
        desc = (descriptions or {}).get(term, "")
        for text in (term, desc, *genes):
            if any(ch in str(text) for ch in "\t\r\n"):
                raise ValueError(f"gene set {term!r}: names must not contain tabs or newlines ({text!r})")
        lines.append("\t".join([term, desc, *map(str, genes)]) + "\n")
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as handle:  # mtime=0: byte-identical reruns
            handle.write("".join(lines).encode("utf-8"))
    else:
        path.write_text("".join(lines), encoding="utf-8")
    return path


def _load(gene_sets: str | Path | GeneSets) -> dict[str, list[str]]:
    if isinstance(gene_sets, (str, Path)):
        if not Path(gene_sets).is_file():
            # gseapy would read a non-file string as an Enrichr library name and download it: refuse
            raise FileNotFoundError(f"gene-set file {str(gene_sets)!r} not found; pass a local GMT path or a dict "
                                    "(Enrichr library names are not downloaded: build or fetch the GMT first, "
                                    "see resources/go/README.md)")
        return read_gmt(gene_sets)
    if isinstance(gene_sets, Mapping):
        return {str(k): [str(g) for g in v] for k, v in gene_sets.items()}
    raise TypeError(f"gene_sets must be a GMT path or a dict of gene lists, got {type(gene_sets).__name__}")


def gene_set_coverage(genes: Iterable[str], gene_sets: str | Path | GeneSets) -> float:
    """Fraction of the (unique) ``genes`` that belong to at least one gene set.

    Parameters
    ----------
    genes
        Gene identifiers, e.g. the background (``adata.var_names``).
    gene_sets
        GMT path or ``{term: genes}``. Matching is exact (case-sensitive).

    Returns
    -------
    float
        Value in [0, 1]; 0 for an empty gene list.
    """
    unique = set(map(str, genes))
    if not unique:
        return 0.0
    annotated = set().union(*(set(v) for v in _load(gene_sets).values()))
    return len(unique & annotated) / len(unique)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1).

    Parameters
    ----------
    p_values
        Raw p-values of all tested hypotheses.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})


def _run_gseapy(query: list[str], sets: dict[str, list[str]], universe: list[str]) -> pd.DataFrame | None:
    import gseapy  # imported lazily: heavy, only needed here

    enr = gseapy.enrich(gene_list=query, gene_sets=sets, background=universe, outdir=None,
                        cutoff=1.0, no_plot=True, verbose=False)
    if hasattr(enr, "close"):  # releases gseapy's per-call logger handlers (gseapy >= 1.3)
        enr.close()
    res = enr.results
    return res if isinstance(res, pd.DataFrame) and len(res) else None


def enrich_components(component_genes: pd.DataFrame, gene_sets: str | Path | GeneSets,
                      background: Iterable[str], min_overlap_fraction: float = 0.05,
                      min_size: int = 5, max_size: int = 500) -> pd.DataFrame:
    """Over-representation test of every (component, tail) gene list, fully offline.

    Parameters
    ----------
    component_genes
        Tidy table with columns ``component``, ``tail``, ``gene`` (as returned by
        :func:`geovae.interpretation.annotate_components`).
    gene_sets
        GMT path (``.gmt`` or ``.gmt.gz``, read by :func:`read_gmt`) or ``{term: genes}``.
        Never an Enrichr library name: nothing is downloaded.
    background
        All genes the model saw (e.g. ``adata.var_names``).
    min_overlap_fraction
        Minimum :func:`gene_set_coverage` of ``background``. Below it (e.g. Ensembl ids or
        peak coordinates against gene symbols) a :class:`GeneSetCoverageWarning` is emitted
        and an empty table is returned whose ``attrs["warning"]`` holds the message.
    min_size, max_size
        Bounds on the gene-set size after restriction to the universe.

    Returns
    -------
    pandas.DataFrame
        One row per (component, tail, term) with at least one overlapping gene:
        ``component``, ``tail``, ``term``, ``term_id`` (GO id parsed from the term name, or
        ``""``), ``overlap`` (hits), ``term_size`` (set size within the universe),
        ``query_size``, ``p_value`` (hypergeometric, P[X >= overlap]), ``adj_p_value``
        (BH, see module docstring), ``odds_ratio`` and ``combined_score`` (gseapy's
        definitions), ``genes`` (hits, ``;``-separated). Sorted by component, tail, p-value.
        ``attrs`` holds ``coverage``, ``universe_size`` and ``n_terms_tested``.
    """
    missing = {"component", "tail", "gene"} - set(component_genes.columns)
    if missing:
        raise KeyError(f"component_genes lacks column(s) {sorted(missing)}")
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    sets = _load(gene_sets)
    bg = list(dict.fromkeys(map(str, background)))
    if not bg:
        raise ValueError("background is empty; pass the genes the model was trained on")
    annotated = set().union(*(set(v) for v in sets.values())) if sets else set()
    universe = [g for g in bg if g in annotated]
    coverage = len(universe) / len(bg)

    if coverage < min_overlap_fraction:
        message = (f"only {coverage:.1%} of the {len(bg)} background genes occur in any of the {len(sets)} gene "
                   f"sets (threshold {min_overlap_fraction:.1%}): the gene identifiers probably do not match "
                   "the gene sets (e.g. Ensembl ids or peak coordinates vs gene symbols, or simulated gene "
                   "names); returning an empty enrichment table")
        warnings.warn(message, GeneSetCoverageWarning, stacklevel=2)
        out = _empty_result()
        out.attrs.update(warning=message, coverage=coverage, universe_size=len(universe), n_terms_tested=0)
        return out

    in_universe = set(universe)
    tested = {}
    for term, genes in sets.items():
        kept = [g for g in genes if g in in_universe]
        if min_size <= len(kept) <= max_size:
            tested[term] = kept

    frames = []
    tails = ["positive", "negative"]
    groups = component_genes.groupby(["component", "tail"], sort=False, observed=True)
    for (component, tail), block in groups:
        query = [g for g in dict.fromkeys(map(str, block["gene"])) if g in in_universe]
        if not query or not tested:
            continue
        if all(g.isdigit() for g in query):
            raise ValueError("all-numeric gene ids (Entrez?) are not supported: gseapy would cast them to int; "
                             "map them to the gene-set vocabulary first")
        rank = {g: i for i, g in enumerate(query)}  # hits listed in query (rank) order, deterministic
        res = _run_gseapy(query, tested, universe)
        if res is None:
            continue
        hits = res["Overlap"].str.split("/", expand=True).astype(np.int64)
        p_values = res["P-value"].to_numpy(dtype=np.float64)
        # BH over every tested set: the ones without hits (absent from res) have p = 1
        padded = np.concatenate([p_values, np.ones(len(tested) - len(res))])
        frames.append(pd.DataFrame({
            "component": component, "tail": tail, "term": res["Term"].astype(str).to_numpy(),
            "overlap": hits[0].to_numpy(), "term_size": hits[1].to_numpy(), "query_size": len(query),
            "p_value": p_values, "adj_p_value": benjamini_hochberg(padded)[:len(res)],
            "odds_ratio": res["Odds Ratio"].to_numpy(dtype=np.float64),
            "combined_score": res["Combined Score"].to_numpy(dtype=np.float64),
            "genes": [";".join(sorted(str(h).split(";"), key=rank.get)) for h in res["Genes"]],
        }))

    if frames:
        out = pd.concat(frames, ignore_index=True)
        out["term_id"] = out["term"].str.extract(_TERM_ID, expand=False).fillna("")
        comp_order = {c: i for i, c in enumerate(dict.fromkeys(component_genes["component"]))}
        out = out.assign(_c=out["component"].map(comp_order),
                         _t=out["tail"].map({t: i for i, t in enumerate(tails)}).fillna(len(tails)))
        out = out.sort_values(["_c", "_t", "p_value", "term"], kind="stable").drop(columns=["_c", "_t"])
        out = out[RESULT_COLUMNS].reset_index(drop=True)
    else:
        out = _empty_result()
    out.attrs.update(coverage=coverage, universe_size=len(universe), n_terms_tested=len(tested))
    return out


#: Adjusted p-value (Benjamini-Hochberg) below which a term is called significant, in figures and reports.
SIGNIFICANCE = 0.05
#: Jaccard index of two terms' overlap genes from which the less significant one is a near-duplicate.
DUPLICATE_JACCARD = 0.5


def collapse_redundant_terms(enrich_df: pd.DataFrame, alpha: float = SIGNIFICANCE,
                             max_jaccard: float = DUPLICATE_JACCARD) -> pd.DataFrame:
    """Significant terms per component tail, near-duplicates collapsed onto the most significant one.

    Within each (component, tail), terms with ``adj_p_value < alpha`` are taken from the most
    significant down; a term whose overlap genes (the ``genes`` column: the component's top genes in
    the term) have a Jaccard index of at least ``max_jaccard`` with a term already kept is dropped
    and counted in the kept term's ``n_collapsed``.

    Parameters
    ----------
    enrich_df
        Output of :func:`enrich_components`.
    alpha
        Significance threshold on the adjusted p-value.
    max_jaccard
        Overlap (Jaccard index of the overlap genes) from which a term is a near-duplicate.

    Returns
    -------
    pandas.DataFrame
        The kept rows, with ``n_collapsed`` and ``collapsed_terms`` (``;``-separated) added.
    """
    if enrich_df is None or len(enrich_df) == 0:
        return pd.DataFrame(columns=[*(enrich_df.columns if enrich_df is not None else []), "n_collapsed",
                                     "collapsed_terms"])
    significant = enrich_df[enrich_df["adj_p_value"] < alpha].sort_values(["adj_p_value", "p_value"], kind="stable")
    kept_rows = []
    for _, group in significant.groupby(["component", "tail"], sort=False):
        kept: list[tuple[int, set[str], list[str]]] = []
        for idx, row in group.iterrows():
            genes = set(str(row.get("genes", "")).split(";")) - {""}
            for _, other, absorbed in kept:
                union = genes | other
                if union and len(genes & other) / len(union) >= max_jaccard:
                    absorbed.append(str(row["term"]))
                    break
            else:
                kept.append((idx, genes, []))
        kept_rows += [(idx, absorbed) for idx, _, absorbed in kept]
    out = significant.loc[[idx for idx, _ in kept_rows]].copy()
    out["n_collapsed"] = [len(a) for _, a in kept_rows]
    out["collapsed_terms"] = [";".join(a) for _, a in kept_rows]
    order = {c: i for i, c in enumerate(dict.fromkeys(enrich_df["component"]))}
    return out.sort_values(["component", "tail", "adj_p_value"], key=lambda c: c.map(order) if c.name == "component"
                           else c, kind="stable").reset_index(drop=True)


GSEA_COLUMNS = ["component", "tail", "term", "term_id", "es", "nes", "p_value", "fdr", "at_resolution_limit",
                "set_size", "n_leading", "leading_genes"]


def empty_gsea() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in GSEA_COLUMNS})


def prerank_components(correlations: pd.DataFrame, gene_sets: str | Path | GeneSets,
                       permutations: int = 100, min_size: int = 5, max_size: int = 500,
                       seed: int = 0, threads: int = 1, min_overlap_fraction: float = 0.05) -> pd.DataFrame:
    """Pre-ranked GSEA of every component's gene-correlation vector, fully offline.

    Parameters
    ----------
    correlations
        ``genes x components`` correlations (index = gene ids, one column per component),
        e.g. ``InterpretationResult.correlations``. Each column is the ranking metric.
    gene_sets
        GMT path or ``{term: genes}`` (passed to :func:`gseapy.prerank` as a dict: no download).
    permutations
        Gene-set permutations per component (gseapy ``permutation_num``). The nominal
        p-value cannot go below ``1 / (permutations + 1)``; 100 keeps a run short, use
        1000 for publication.
    min_size, max_size
        Bounds on the gene-set size after restriction to the ranked genes.
    seed
        Permutation seed (same seed -> same table).
    threads
        gseapy worker threads.
    min_overlap_fraction
        Below this :func:`gene_set_coverage` of the ranked genes a
        :class:`GeneSetCoverageWarning` is emitted and an empty table returned.

    Returns
    -------
    pandas.DataFrame
        One row per (component, term): ``component``, ``tail`` (``"positive"`` when the set
        sits at the positively correlated end, NES > 0, else ``"negative"``), ``term``,
        ``term_id``, ``es``, ``nes``, ``p_value`` (nominal, floored at
        ``1 / (permutations + 1)``), ``fdr`` (gseapy's GSEA FDR q-value, floored at the same
        resolution limit: never 0), ``at_resolution_limit`` (True where the p-value or the FDR sits at
        the floor, i.e. the true value is ``< 1 / (permutations + 1)``: more permutations would
        resolve it),
        ``set_size`` (set genes among the ranked ones), ``n_leading`` and
        ``leading_genes`` (leading-edge genes, ``;``-separated). Sorted by component, FDR,
        p-value, -|NES|.
    """
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    if correlations.shape[1] == 0 or correlations.shape[0] == 0:
        return empty_gsea()
    sets = _load(gene_sets)
    genes = [str(g) for g in correlations.index]
    annotated = set().union(*(set(v) for v in sets.values())) if sets else set()
    coverage = sum(g in annotated for g in set(genes)) / len(set(genes))
    if coverage < min_overlap_fraction:
        message = (f"pre-ranked GSEA skipped: only {coverage:.1%} of the {len(set(genes))} ranked genes occur in "
                   f"the gene sets (threshold {min_overlap_fraction:.1%})")
        warnings.warn(message, GeneSetCoverageWarning, stacklevel=2)
        out = empty_gsea()
        out.attrs.update(warning=message, coverage=coverage)
        return out
    ranked = set(genes)
    tested = {t: [g for g in v if g in ranked] for t, v in sets.items()}
    tested = {t: v for t, v in tested.items() if min_size <= len(v) <= max_size}
    if not tested:
        out = empty_gsea()
        out.attrs.update(coverage=coverage, n_terms_tested=0)
        return out

    import gseapy  # lazily: heavy

    floor = 1.0 / (permutations + 1)
    frames = []
    for component in correlations.columns:
        rnk = pd.Series(correlations[component].to_numpy(dtype=np.float64), index=genes)
        rnk = rnk[~rnk.index.duplicated()]
        # deterministic order among tied scores: by score, then gene id
        rnk = rnk.iloc[np.lexsort((rnk.index.to_numpy(dtype=str), -rnk.to_numpy()))]
        if not np.any(rnk.to_numpy() != 0):
            continue
        pre = gseapy.prerank(rnk=rnk, gene_sets=tested, permutation_num=permutations, outdir=None,
                             min_size=min_size, max_size=max_size, seed=seed, threads=threads,
                             no_plot=True, verbose=False)
        res = pre.res2d
        if res is None or len(res) == 0:
            continue
        tags = res["Tag %"].astype(str).str.split("/", expand=True)
        lead = res["Lead_genes"].fillna("").astype(str)
        nes = res["NES"].to_numpy(dtype=np.float64)
        frames.append(pd.DataFrame({
            "component": str(component), "tail": np.where(nes >= 0, "positive", "negative"),
            "term": res["Term"].astype(str).to_numpy(), "es": res["ES"].to_numpy(dtype=np.float64),
            # a permutation p-value or FDR of 0 only means "< 1/(permutations + 1)": report that limit
            "nes": nes, "p_value": np.maximum(res["NOM p-val"].to_numpy(dtype=np.float64), floor),
            "fdr": np.maximum(res["FDR q-val"].to_numpy(dtype=np.float64), floor),
            "at_resolution_limit": (res["NOM p-val"].to_numpy(dtype=np.float64) <= floor)
            | (res["FDR q-val"].to_numpy(dtype=np.float64) <= floor),
            "set_size": pd.to_numeric(tags[1], errors="coerce").to_numpy(),
            "n_leading": pd.to_numeric(tags[0], errors="coerce").to_numpy(),
            "leading_genes": lead.to_numpy(),
        }))
    if not frames:
        out = empty_gsea()
    else:
        out = pd.concat(frames, ignore_index=True)
        out["term_id"] = out["term"].str.extract(_TERM_ID, expand=False).fillna("")
        order = {str(c): i for i, c in enumerate(correlations.columns)}
        out = out.assign(_c=out["component"].map(order), _a=-out["nes"].abs())
        out = out.sort_values(["_c", "fdr", "p_value", "_a", "term"], kind="stable")
        out = out[GSEA_COLUMNS].reset_index(drop=True)
    out.attrs.update(coverage=coverage, n_terms_tested=len(tested))
    return out
