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
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from geovae.interpretation.enrichment import write_gmt

#: Public download of an Enrichr gene-set library (text GMT), used by the refresh mode.
ENRICHR_URL = "https://maayanlab.cloud/Enrichr/geneSetLibrary?mode=text&libraryName={library}"


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
    """

    gene_sets: dict[str, list[str]]
    descriptions: dict[str, str]
    go_release: str
    annotation_release: str
    organism: str
    n_genes: int


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
                          exclude_evidence: Iterable[str] = ()) -> GeneSetBuild:
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
    for go_id, symbol in direct_rows:
        if symbol:
            direct[str(go_id)].add(str(symbol))
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
                        organism=org_meta.get("ORGANISM", "unknown"), n_genes=n_genes)


def write_go_bp_gmt(org_db: str | Path, go_db: str | Path, out_dir: str | Path, species: str = "human",
                    min_size: int = 5, max_size: int = 500,
                    exclude_evidence: Iterable[str] = ()) -> tuple[Path, GeneSetBuild]:
    """Build the gene sets and write ``<out_dir>/GO_BP_<species>_<GO release>.gmt.gz``.

    Parameters
    ----------
    org_db, go_db, min_size, max_size, exclude_evidence
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
                                  exclude_evidence=exclude_evidence)
    if not build.gene_sets:
        raise ValueError(f"no GO BP term of size {min_size}..{max_size} in {org_db} + {go_db}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"GO_BP_{species}_{build.go_release}.gmt.gz"
    write_gmt(build.gene_sets, path, descriptions=build.descriptions)
    return path, build


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
