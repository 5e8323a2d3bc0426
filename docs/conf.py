"""Sphinx configuration of the geovae documentation (offline: no intersphinx, no remote assets).

Build: ``sphinx-build -W -b html docs docs/_build/html``. The tutorial notebook is executed
during the build (myst-nb); set ``GEOVAE_DOCS_EXECUTE=off`` to skip execution.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import geovae  # noqa: E402
from geovae.cli import RUN_HELP, build_parser  # noqa: E402

project = "geovae"
author = "geovae developers"
copyright = "2026, geovae developers"
release = version = geovae.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_generated/*.txt", "**.ipynb_checkpoints", "jupyter_execute"]
root_doc = "index"

# numpy-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # dataclass "Attributes" as fields, not duplicate attribute entries
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_mock_imports: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

nb_execution_mode = os.environ.get("GEOVAE_DOCS_EXECUTE", "force")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "LiVAE embeddings from GEO single-cell data", "fixed_sidebar": True}
suppress_warnings = ["mystnb.unknown_mime_type"]


def _write_cli_help() -> None:
    """Render ``geovae ... --help`` into docs/_generated/ so the CLI page never goes stale."""
    out = Path(__file__).parent / "_generated"
    out.mkdir(exist_ok=True)
    parser = build_parser()
    texts = {"geovae": parser.format_help(), "run": RUN_HELP}
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        if name == "run":
            continue
        texts[name] = sub.format_help()
        inner = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        for action in inner:
            for sub_name, sub_sub in action.choices.items():
                texts[f"{name}_{sub_name}"] = sub_sub.format_help()
    for name, text in texts.items():
        target = out / f"cli_{name}.txt"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


os.environ.setdefault("COLUMNS", "100")
_write_cli_help()
