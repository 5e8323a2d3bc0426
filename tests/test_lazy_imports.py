"""Packages whose names load on first use: the same public names as eager imports, fewer imports per job.

Every pipeline job is a fresh Python process, so a package ``__init__`` that imports all its submodules
makes every job that touches one of them pay for scanpy or scikit-learn (issue #24, the default run's
fixed per-job costs).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import pytest

LAZY_PACKAGES = ["geovae.preprocessing", "geovae.metrics", "geovae.interpretation"]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_resolves_to_its_submodule_object(package: str) -> None:
    module = importlib.import_module(package)
    exports = module._lazy_exports
    assert sorted(module.__all__) == sorted(exports)
    for name in module.__all__:
        value = getattr(module, name)
        assert value is getattr(importlib.import_module(f"{package}.{exports[name]}"), name), name
        assert name in dir(module)
    with pytest.raises(AttributeError, match=f"{package}.*no_such_name"):
        getattr(module, "no_such_name")


def _fresh(code: str) -> Any:
    """Run ``code`` in a new interpreter; it prints one JSON value (here always a list), returned decoded."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_submodule_named_like_its_function_stays_the_function() -> None:
    # geovae/metrics/evaluate.py defines evaluate(): importing the submodule first must not replace the function
    out = _fresh("import json, geovae.metrics.evaluate as m; import geovae.metrics as g; "
                 "from geovae.metrics import evaluate; "
                 "print(json.dumps([callable(m), g.evaluate is evaluate, type(evaluate).__name__]))")
    assert out == [True, True, "function"]


def test_light_rule_imports_do_not_load_scanpy_or_scikit_learn() -> None:
    # what the summary, program_validation and benchmark_stats rules, the train rule's loss figure and the
    # component statistics import
    out = _fresh("import json, sys\n"
                 "import geovae.report, geovae.metrics.statistics, geovae.metrics.glossary\n"
                 "import geovae.interpretation.components, geovae.plotting.training, geovae.preprocessing.input\n"
                 "print(json.dumps(sorted(m for m in ('scanpy', 'sklearn', 'gseapy', 'umap') if m in sys.modules)))")
    assert out == []
