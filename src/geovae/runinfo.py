"""Provenance recorded in every output: versions, seed, device and timing."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

_PACKAGES = ("geovae", "numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn", "torch",
             "umap-learn", "openTSNE", "gseapy", "GEOparse", "snakemake")


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    """Return the installed version of each package (``None`` when absent)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_info(**extra: Any) -> dict[str, Any]:
    """Return a provenance record: python, platform, package versions, UTC time and ``extra``.

    Parameters
    ----------
    **extra
        Run-specific fields (seed, device, parameters, timings) merged into the record.
    """
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": package_versions(),
    }
    info.update(extra)
    return info


def write_json(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``record`` as indented JSON atomically (temp file then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


@contextmanager
def log_to(path: str | Path | None) -> Iterator[None]:
    """Send stdout, stderr, warnings and ``logging`` output to ``path`` (used by rule scripts).

    A traceback of any exception is written to the log before the exception propagates, so a
    failed Snakemake job always leaves its reason in its ``log:`` file.
    """
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as handle, redirect_stdout(handle), redirect_stderr(handle):
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise
        finally:
            root.removeHandler(handler)
            logging.captureWarnings(False)
