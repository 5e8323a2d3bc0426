"""Every code block of the README and of docs/ runs (Python) or is checked (shell, sheet rows).

Python blocks of one file run in order in one fresh interpreter, in a temporary folder, with the
training loop capped at 2 epochs (a wrapper around ``train_module``, stated in the preamble below).
Shell lines that are cheap (``--help``, ``-n`` dry runs, ``geovae models``/``config``) run on a
private copy of the workflow; the others (network, cluster, long runs) are checked for syntax, for
files and ``make`` targets that exist, and for options that the command accepts.
"""

from __future__ import annotations

import re
import shlex
import textwrap
import subprocess
import sys
from pathlib import Path

import pytest

from project_copy import ROOT, workflow_copy

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*/*.md"))]
FENCE = re.compile(r"^( *)```(\w+)[^\n]*\n(.*?)^ *```", re.M | re.S)

#: Prepended to the Python blocks: the examples train for real, but for 2 epochs at most.
PREAMBLE = """
import geovae.models.base as _base, geovae.models.sivae as _sivae
_train_module = _base.train_module
def _two_epochs(module, data, config):
    config.max_epochs = min(config.max_epochs, 2)
    return _train_module(module, data, config)
_base.train_module = _sivae.train_module = _two_epochs
"""


_PP = "import geovae\nfrom geovae.data import load_builtin\n"
#: What a file's fragments assume (named in its text: "adata", a preprocessed AnnData, ...), built from
#: the SIMULATED built-in data; files not listed run as they are.
SETUP = {
    "docs/models/livae.md": _PP + "adata = geovae.pp.preprocess_rna(load_builtin('sim_programs')[:300].copy(), copy=True)\n",
    "docs/models/betavae.md": _PP + "adata = geovae.pp.preprocess_rna(load_builtin('sim_programs')[:300].copy(), copy=True)\n",
    "docs/models/sivae.md": _PP + "adata = geovae.pp.preprocess_rna(load_builtin('sim_programs')[:300].copy(), copy=True)\n"
                                  "adata.obs['cell_type'] = adata.obs['group']\n",
    "docs/models/dpvae.md": _PP + "s = geovae.pp.preprocess_rna(load_builtin('sim_spatial'), min_genes=10, copy=True)\n"
                                  "adata_ref, adata_new = s[:400].copy(), s[400:500].copy()\n",
}
#: Files whose Python blocks need hardware this machine may lack: compiled (syntax), not run.
NEEDS_GPU = {"docs/gpu.md"}


def blocks(path: Path, language: str) -> list[str]:
    return [textwrap.dedent(code) for _, lang, code in FENCE.findall(path.read_text()) if lang == language]


def _files_with(language: str) -> list[Path]:
    return [p for p in DOC_FILES if blocks(p, language)]


def test_readme_and_docs_have_code_blocks() -> None:
    assert len(blocks(ROOT / "README.md", "python")) >= 2
    assert len(blocks(ROOT / "README.md", "bash")) >= 5


@pytest.mark.parametrize("path", _files_with("python"), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path: Path, tmp_path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    code = "\n".join(f"# --- block {i}\n{block}" for i, block in enumerate(blocks(path, "python")))
    if rel in NEEDS_GPU and not _cuda_available():
        compile(code, rel, "exec")  # needs CUDA: syntax only here
        return
    script = tmp_path / "blocks.py"
    script.write_text(PREAMBLE + SETUP.get(rel, "") + code)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "MPLBACKEND": "Agg",
                               "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"{path.name}: a Python block failed:\n{proc.stderr[-4000:]}"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- shell blocks


def shell_commands(code: str) -> list[list[str]]:
    """Commands of a shell block: continuation lines joined, comments dropped, ``&&``/``;`` split."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:&&|;|\|)\s*", line):
            tokens = shlex.split(part, comments=True)
            if tokens:
                commands.append(tokens)
    return commands


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def _snakemake_help() -> str:
    return subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True,
                          timeout=120).stdout


def _check_snakemake(args: list[str], project: Path, help_text: str) -> None:
    for token in args:
        option = token.split("=", 1)[0]
        if option.startswith("--"):
            assert option in help_text, f"snakemake has no option {option}"
    for flag in ("--configfile", "--profile"):
        if flag in args:
            i = args.index(flag) + 1
            while i < len(args) and not args[i].startswith("-"):
                assert (ROOT / args[i]).exists(), f"{flag} {args[i]} does not exist"
                i += 1
    if "-n" in args and "--profile" not in args:  # a cheap dry run: run it on a private copy
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"snakemake {' '.join(args)}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"


def _check_geovae(args: list[str], project: Path) -> None:
    from geovae.cli import build_parser

    if args[:1] == ["run"]:
        if "-n" in args:
            proc = subprocess.run([sys.executable, "-m", "geovae", *args], cwd=project, capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return
    cheap = args[:1] in (["models"], ["config"]) and "--write" not in args or "--help" in args
    if cheap:
        proc = subprocess.run([sys.executable, "-m", "geovae", *args], cwd=project, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"geovae {' '.join(args)}:\n{proc.stderr[-2000:]}"
    else:  # needs data, a network or time: the options must exist
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"geovae {' '.join(args)}: the command line is not accepted") from exc


@pytest.mark.parametrize("path", _files_with("bash"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_blocks(path: Path, tmp_path: Path) -> None:
    project = workflow_copy(tmp_path / "project")
    help_text = _snakemake_help()
    for code in blocks(path, "bash"):
        syntax = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
        assert syntax.returncode == 0, f"{path.name}: shell syntax error in\n{code}\n{syntax.stderr}"
        for tokens in shell_commands(code):
            program, args = Path(tokens[0]).name, tokens[1:]
            if program == "make":
                targets = [a for a in args if "=" not in a and not a.startswith("-")]
                assert set(targets) <= _make_targets(), f"make target(s) {targets} not in the Makefile"
            elif program == "snakemake":
                _check_snakemake(args, project, help_text)
            elif program == "geovae":
                _check_geovae(args, project)
            elif program in ("bash", "python", "python3") and args and not args[0].startswith("-"):
                assert (ROOT / args[0]).exists(), f"{path.name}: {args[0]} does not exist"


def test_readme_sheet_rows_are_valid() -> None:
    """The README's example sheet rows pass the sheet schema (as a sheet with the shipped header)."""
    from geovae.data.sheet import SHEET_COLUMNS, row_errors
    from geovae.schemas import datasets_schema

    rows = [line for code in blocks(ROOT / "README.md", "tsv") for line in code.splitlines() if line.strip()]
    assert rows
    for line in rows:
        record = dict(zip(SHEET_COLUMNS, line.split("\t")))
        assert not row_errors(record, datasets_schema()), (line, row_errors(record, datasets_schema()))
        assert not record.get("label_key") or record["source"] != "geo", (
            "a GEO example row must not promise a label column the series may not have")


def test_readme_api_path_of_the_builtin_loader() -> None:
    """``geovae.data.builtin.load_builtin`` after a bare ``import geovae`` (it raised AttributeError)."""
    code = "import geovae; a = geovae.data.builtin.load_builtin('sim_atac'); print(a.n_obs > 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_claims_of_the_readme() -> None:
    """Statements of the README and pyproject that were wrong once."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11" and "Python >= 3.11" in (ROOT / "README.md").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    readme = (ROOT / "README.md").read_text()
    assert "doi:10.3389/fgene.2025.1713727" in readme  # the LiVAE paper, cited with its DOI
    started = (ROOT / "docs" / "getting_started.md").read_text()
    sheet = (ROOT / "config" / "datasets.tsv").read_text()
    simulated = [name for name in ("sim_programs", "sim_atac", "sim_spatial") if name in sheet]
    assert all(name in started for name in simulated), "docs/getting_started.md must list every simulated dataset"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci.index("make run") < ci.index("make test")  # the README's order, in the same clone


def test_yaml_blocks_are_valid_config() -> None:
    """Every YAML block of the README and docs parses, and a config fragment passes the config check."""
    import yaml

    from geovae.workflow_config import complete_config

    found = 0
    for path in DOC_FILES:
        for code in blocks(path, "yaml"):
            fragment = yaml.safe_load(code)
            if isinstance(fragment, dict):
                complete_config(fragment)
                found += 1
    assert found >= 1


def test_report_captions_are_valid_restructuredtext() -> None:
    """Every caption renders without a docutils error (``|r|`` is a substitution in RST, for one)."""
    import io

    from docutils.core import publish_string

    for caption in sorted((ROOT / "workflow" / "report").glob("*.rst")):
        text = re.sub(r"\{\{.*?\}\}", "x", caption.read_text())  # Jinja placeholders filled by Snakemake
        errors = io.StringIO()
        publish_string(text, writer_name="html", settings_overrides={"warning_stream": errors, "report_level": 3,
                                                                    "halt_level": 5})
        assert not errors.getvalue(), f"{caption.name}: {errors.getvalue()}"
