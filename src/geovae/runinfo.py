"""Provenance recorded in every output (versions, git commit, config hash, seed, device, timings)
and all-or-nothing writing of a rule's outputs (:func:`atomic_outputs`)."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
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
        # the geovae code that ran (the workflow puts its checkout's src/ first on the path)
        "geovae_path": str(Path(__file__).resolve().parent),
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


# ------------------------------------------------------------------------------ provenance
def git_commit(path: str | Path | None = None) -> dict[str, Any]:
    """Commit of the git checkout holding ``path`` (default: this package's source tree).

    Returns
    -------
    dict
        ``commit`` (hex, or ``"unknown"`` outside a checkout or without git) and ``dirty``
        (uncommitted changes to tracked files; None when unknown).
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit or "unknown", "dirty": bool(status.strip())}


def config_hash(config: Mapping[str, Any] | None) -> str:
    """SHA-256 of a configuration as canonical JSON (sorted keys); ``""`` for None."""
    if config is None:
        return ""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None, device: str | None = None,
               timings: Mapping[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    """The record every output h5ad carries in ``uns["geovae"]``.

    Parameters
    ----------
    config
        Workflow configuration (hashed, see :func:`config_hash`).
    seed, device
        Seed and torch device of the run (None when the step has none).
    timings
        Seconds per step.
    **extra
        Further fields (dataset, model, rule ...).

    Returns
    -------
    dict
        :func:`run_info` fields plus ``geovae_version``, ``git_commit``, ``git_dirty``,
        ``config_hash``, ``seed``, ``device`` and ``timings``; h5ad-safe (:func:`h5ad_safe`).
    """
    git = git_commit()
    record = run_info(geovae_version=package_versions(("geovae",))["geovae"] or _source_version(),
                      git_commit=git["commit"], git_dirty=git["dirty"], config_hash=config_hash(config),
                      seed=seed, device=device, timings=dict(timings or {}), **extra)
    return h5ad_safe(record)


def _source_version() -> str:
    import geovae

    return str(getattr(geovae, "__version__", "unknown"))


def h5ad_safe(value: Any) -> Any:
    """``value`` with None as ``""``, tuples as lists and mapping keys as strings (storable in ``uns``)."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [h5ad_safe(v) for v in value]
        return items if len({type(v) for v in items}) <= 1 else [str(v) for v in items]
    if isinstance(value, Path):
        return str(value)
    return value


# ------------------------------------------------------------------------- atomic outputs
_PARTIAL = ".partial-"


def partial_path(final: str | Path) -> Path:
    """Temporary sibling of ``final`` used while it is written: hidden, same name at the end
    (suffix-based writers keep working), tagged with the process id."""
    final = Path(final)
    return final.parent / f"{_PARTIAL}{os.getpid()}.{final.name}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


class PartialOutputs(Sequence):
    """Temporary paths of a rule's outputs, by position (``out[0]``) or name (``out.h5ad``, ``out["h5ad"]``)."""

    def __init__(self, finals: list[Path], names: dict[str, int]) -> None:
        self.finals = finals
        self.paths = [str(partial_path(p)) for p in finals]
        self._names = names

    def __getitem__(self, key: int | str) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self.paths[self._names[key]]
        return self.paths[key]

    def __getattr__(self, name: str) -> str:
        names = self.__dict__.get("_names", {})
        if name in names:
            return self.paths[names[name]]
        raise AttributeError(f"no output named {name!r} (outputs: {sorted(names)})")

    def __len__(self) -> int:
        return len(self.paths)


def _output_names(outputs: Any, finals: list[str]) -> dict[str, int]:
    """Name -> position of named outputs (Snakemake ``Namedlist``, a dict or a plain list)."""
    if isinstance(outputs, Mapping):
        return {str(k): i for i, k in enumerate(outputs)}
    names: dict[str, int] = {}
    for key in getattr(outputs, "keys", lambda: [])():
        value = getattr(outputs, key)
        if isinstance(value, str) and value in finals:
            names[str(key)] = finals.index(value)
    return names


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` so that cleanup handlers run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def atomic_outputs(outputs: Any) -> Iterator[PartialOutputs]:
    """Write a rule's outputs under temporary names and rename them all once every one is complete.

    Inside the block, write to the temporary paths yielded (same names and attribute access as
    ``snakemake.output``). On success each temporary file or folder is fsynced and renamed onto
    its final path; on an exception, SIGTERM (turned into ``SystemExit``) or a missing output
    every temporary is deleted and no final path is created. A process killed with SIGKILL
    leaves only hidden ``.partial-<pid>.<name>`` entries, which the next run removes.

    Parameters
    ----------
    outputs
        ``snakemake.output`` (a ``Namedlist``), a mapping name -> path or a list of paths.

    Yields
    ------
    PartialOutputs
        Temporary paths by position and by name.

    Raises
    ------
    FileNotFoundError
        When the block finished without writing one of the outputs.
    OSError
        ``ENOSPC``/``EDQUOT`` (disk full) re-raised naming the outputs, after cleanup.
    """
    finals = [str(p) for p in (outputs.values() if isinstance(outputs, Mapping) else outputs)]
    out = PartialOutputs([Path(p) for p in finals], _output_names(outputs, finals))
    for final in out.finals:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f"{_PARTIAL}*.{final.name}"):  # left by a killed run
            _remove(stale)
    try:
        with _sigterm_as_exit():
            yield out
        missing = [str(f) for f, p in zip(out.finals, out.paths) if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"the step finished without writing output(s) {', '.join(missing)}")
        for tmp in out.paths:
            _fsync(Path(tmp))
        for final, tmp in zip(out.finals, out.paths):
            if final.exists() or final.is_symlink():
                _remove(final)
            os.replace(tmp, final)
    except BaseException as exc:
        full = isinstance(exc, OSError) and _disk_full(exc, out.finals)
        for tmp in out.paths:
            _remove(Path(tmp))
        if full:
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {', '.join(finals)} "
                                        f"({exc}); partial files were removed, free space and rerun") from exc
        raise


def _disk_full(exc: OSError, finals: list[Path], min_free: int = 1 << 20) -> bool:
    """Whether ``exc`` comes from a full disk: ENOSPC/EDQUOT, or an errno-less short write (numpy,
    h5py) while an output's file system has less than ``min_free`` bytes left."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if exc.errno is not None:
        return False
    for final in finals:
        try:
            if shutil.disk_usage(final.parent).free < min_free:
                return True
        except OSError:
            continue
    return False
