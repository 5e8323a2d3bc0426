"""Sources and docs cite papers and ``docs/``, never paths of a developer's machine.

Every text file under ``src/``, ``scripts/``, ``workflow/`` and ``docs/`` (notebooks: the cell
sources only, not their outputs) is scanned for absolute paths of a developer's machine
(``/work/...``, ``/home/...``, ``/root/...``) and for references to a local copy of the
literature (``shared/seeds``, ``shared/reference``, ``../shared``). URLs are ignored, and so are
system paths a user may legitimately be told about (``/usr/bin/...``, ``/tmp``). Generated
folders (``docs/_build``, ``__pycache__``, ``*.egg-info``, ...) and binary files are skipped.
Does not import geovae.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "scripts", "workflow", "docs")

#: Folder names that hold generated files, never scanned.
SKIP_DIRS = {
    "__pycache__", "_build", "_generated", "jupyter_execute", ".ipynb_checkpoints", ".snakemake",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git",
}
SKIP_DIR_SUFFIXES = (".egg-info",)
#: Binary or compressed formats, never scanned.
BINARY_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".gif", ".ico", ".pdf", ".gz", ".bz2", ".xz", ".zip", ".tar", ".pyc",
    ".so", ".h5", ".h5ad", ".hdf5", ".npy", ".npz", ".pt", ".ckpt", ".pkl", ".parquet", ".feather",
    ".woff", ".woff2", ".ttf",
}

#: ``scheme://...`` up to the next blank or quote: URLs may contain ``/home/`` and the like.
URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>)\]`]*""")
#: Absolute paths of a developer machine (not preceded by a path or word character, so relative
#: paths such as ``docs/work/`` do not count) and local copies of the seed papers/references.
FORBIDDEN = re.compile(
    r"(?<![\w./~-])/(?:work|home|root)/"
    r"|\bshared/(?:seeds|reference)\b"
    r"|\.\./shared\b"
)


def _skipped_dir(path: Path) -> bool:
    return any(part in SKIP_DIRS or part.endswith(SKIP_DIR_SUFFIXES) for part in path.parts)


def _text_files() -> Iterator[Path]:
    for top in SCANNED:
        base = ROOT / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or _skipped_dir(path.relative_to(ROOT).parent):
                continue
            if path.suffix.lower() in BINARY_SUFFIXES:
                continue
            yield path


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    """``(location, line)`` pairs of a text file; notebooks yield their cell sources only."""
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        return  # binary
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # not text
    if path.suffix == ".ipynb":
        cells = json.loads(text).get("cells", [])
        for i, cell in enumerate(cells, 1):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            for j, line in enumerate(source.splitlines(), 1):
                yield f"cell {i} line {j}", line
        return
    for j, line in enumerate(text.splitlines(), 1):
        yield str(j), line


def find_machine_paths() -> list[str]:
    """``file:line: text`` for every line naming a developer-machine path."""
    hits = []
    for path in _text_files():
        rel = path.relative_to(ROOT).as_posix()
        for where, line in _lines(path):
            if FORBIDDEN.search(URL.sub("", line)):
                hits.append(f"{rel}:{where}: {line.strip()[:160]}")
    return hits


def test_pattern_catches_machine_paths_and_spares_urls() -> None:
    flagged = [
        "Definitions (``/work/shared/reference/metrics.md``, section 3)",
        "dp-VAE paper (/work/shared/seeds/dpvae_distance_preserving.txt)",
        "see ../shared/data.h5ad",
        'path = "/home/alice/data"',
        "cached in /root/.cache/geovae",
        "seeds in shared/seeds",
    ]
    spared = [
        "https://example.org/home/work/index.html",
        "see docs/metrics.md",
        "set CHROME=/usr/bin/chromium",
        'tmp = Path("/tmp") / "geovae"',
        "the framework/work/ folder",
        "shared/ is a folder of the checkout",
    ]
    assert all(FORBIDDEN.search(URL.sub("", s)) for s in flagged)
    assert not any(FORBIDDEN.search(URL.sub("", s)) for s in spared)


def test_no_developer_machine_paths() -> None:
    hits = find_machine_paths()
    assert not hits, (
        "cite papers (authors, year, title, DOI) or docs/metrics.md instead of paths of one machine:\n"
        + "\n".join(hits)
    )
