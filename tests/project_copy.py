"""A private copy of the project's workflow for tests, so no test reads or writes the checkout's
``results/``, ``cache/``, ``logs/`` or ``.snakemake/`` (they may hold a finished ``make run``)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Copied (small, and a test may change them).
COPIED = ("Snakefile", "workflow", "config", "scripts", "envs", "profiles")
#: Linked (read only by the workflow).
LINKED = ("src", "resources")


def workflow_copy(dest: Path, copy_src: bool = False) -> Path:
    """Copy the workflow files of the checkout into ``dest`` (created) and return it.

    ``src`` and ``resources`` are symbolic links to the checkout's (``copy_src``: ``src`` is copied,
    a second checkout of the code); results, logs, caches and Snakemake's metadata of the checkout
    are not carried over.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*COPIED, "src") if copy_src else COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    for name in LINKED:
        if (dest / name).exists():
            continue
        (dest / name).symlink_to(ROOT / name, target_is_directory=True)
    return dest
