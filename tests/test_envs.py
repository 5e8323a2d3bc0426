"""Structure of the conda envs, and that every rule names one that exists."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


def _rule_envs() -> dict[str, str]:
    """Map 'file:rule' -> conda env path (relative to the rule file), parsed from the .smk files."""
    envs: dict[str, str] = {}
    for path in RULE_FILES:
        text = path.read_text()
        for block in re.split(r"^rule ", text, flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            match = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            if match is None and re.search(r"conda:\s*\n\s*train_env\s*\n", block):
                envs[f"{path.name}:{name}"] = "../../envs/train.yaml"  # + the extras' envs, tested below
                continue
            envs[f"{path.name}:{name}"] = match.group(1) if match else ""
    return envs


def test_every_optional_extra_has_its_env() -> None:
    """train_env() in common.smk sends models of an optional extra (registry) to envs/<extra>.yaml."""
    registry = yaml.safe_load((ROOT / "src" / "geovae" / "schemas" / "registry.yaml").read_text())
    extras = {spec["extra"] for spec in registry.values() if spec.get("extra")}
    assert extras, "the registry names no optional extra"
    for extra in extras:
        assert (ROOT / "envs" / f"{extra}.yaml").exists(), f"envs/{extra}.yaml missing for extra {extra!r}"


def test_every_rule_has_an_existing_env() -> None:
    envs = _rule_envs()
    assert len(envs) >= 8
    for rule, env in envs.items():
        assert env, f"{rule} has no conda: directive"
        assert (ROOT / "workflow" / "rules" / env).resolve().exists(), f"{rule}: {env} does not exist"


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_file_structure(env_file: Path) -> None:
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "bioconda", "nodefaults"]
    deps = env["dependencies"]
    conda_deps = [d for d in deps if isinstance(d, str)]
    for dep in conda_deps:
        assert re.match(r"^[A-Za-z0-9_.-]+=[0-9]", dep), f"{env_file.name}: '{dep}' is not pinned"
    assert any(d.startswith("python=") for d in conda_deps)


# --- each rule's env provides every package its script imports (derived from the code) ---------

SRC = ROOT / "src"
# import name -> conda package name, where they differ
CONDA_NAME = {"sklearn": "scikit-learn", "torch": "pytorch", "yaml": "pyyaml", "GEOparse": "geoparse",
              "openTSNE": "opentsne", "igraph": "python-igraph", "umap": "umap-learn", "skmisc": "scikit-misc",
              "matplotlib": "matplotlib-base", "PIL": "pillow", "numba": "numba"}


def _imports(path: Path, module: str) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports resolved from ``module``)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # may name a submodule
    return found


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (SRC.joinpath(*parts).with_suffix(".py"), SRC.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party packages imported by ``script`` and, transitively, the geovae modules it uses."""
    seen: set[str] = set()
    todo = sorted(_imports(script, "__main__"))
    external: set[str] = set()
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != "geovae":
            if top and top not in sys.stdlib_module_names and top != "__main__":
                external.add(top)
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, ...
            mod = ".".join(parts[:i])
            path = _module_file(mod)
            if path is not None and mod not in seen:
                seen.add(mod)
                todo.extend(_imports(path, mod))
                if mod == "geovae.models":  # get_model() imports the registry's modules by name
                    todo.extend(_registry_modules())
    return external


def _registry_modules() -> list[str]:
    """Modules of the model registry (imported with importlib by geovae.models.get_model), except
    those of optional extras (scvi-tools: their own env, envs/scvi.yaml, which pip-installs them)."""
    registry = yaml.safe_load((SRC / "geovae" / "schemas" / "registry.yaml").read_text())
    modules = [spec["target"].split(":")[0] for spec in registry.values() if not spec.get("extra")]
    return [m if "." in m else f"geovae.models.{m}" for m in modules]


def _rule_scripts() -> dict[str, tuple[Path, Path]]:
    """'file:rule' -> (script, env file), both resolved from the rule file."""
    out = {}
    for path in RULE_FILES:
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", block)
            env = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            if script and env:
                out[f"{path.name}:{name}"] = ((path.parent / script.group(1)).resolve(),
                                              (path.parent / env.group(1)).resolve())
    return out


def test_import_scanner_known_answer() -> None:
    found = third_party_imports(ROOT / "scripts" / "train.py")
    assert {"torch", "anndata", "numpy"} <= found  # torch only via geovae.tl -> models/training
    assert "geovae" not in found and "os" not in found


@pytest.mark.parametrize("rule", sorted(_rule_scripts()))
def test_rule_env_provides_script_imports(rule: str) -> None:
    script, env_file = _rule_scripts()[rule]
    env = yaml.safe_load(env_file.read_text())
    listed = {re.split(r"[=<>\s]", d, maxsplit=1)[0].lower() for d in env["dependencies"] if isinstance(d, str)}
    needed = {CONDA_NAME.get(name, name).lower() for name in third_party_imports(script)}
    missing = sorted(needed - listed)
    assert not missing, f"{rule}: {env_file.name} lacks {missing} (imported by {script.name} or the geovae modules it uses)"


def test_every_rule_has_log_and_benchmark() -> None:
    """The README says every rule has a `log:` and a `benchmark:`; checked rule by rule."""
    for path in RULE_FILES:
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            assert "\n    log:" in block, f"{path.name}: rule {name} has no log:"
            assert "\n    benchmark:" in block, f"{path.name}: rule {name} has no benchmark:"


# --- envs list only what their rules import; geovae comes from the checkout ---------------------

#: Conda entries that no Python ``import`` names, each with its reason.
RUNTIME_ONLY = {
    "python": "the interpreter",
    "pip": "installs the PyPI-only scvi-tools (envs/scvi.yaml)",
    "cuda-version": "selects the CUDA build of pytorch on GPU machines",
    "six": "GEOparse 2.0.4 imports six without declaring it",
    "h5py": "anndata's h5ad backend (pinned so conda and pip agree)",
    "scikit-misc": "scanpy's seurat_v3 HVG flavour imports skmisc",
    "tqdm": "progress bars of scanpy/umap/training",
    "loompy": "anndata.read_loom (the .loom adapter) imports it",
}


def _env_users() -> dict[Path, list[Path]]:
    """env file -> the scripts of the rules that use it."""
    users: dict[Path, list[Path]] = {}
    for script, env in _rule_scripts().values():
        users.setdefault(env, []).append(script)
    for env in ("train", "scvi"):  # train_env(): the train rule's env (scvi for scvi-tools models)
        users.setdefault(ROOT / "envs" / f"{env}.yaml", []).append(ROOT / "scripts" / "train.py")
    return users


@pytest.mark.parametrize("env_file", sorted(_env_users()), ids=lambda p: p.name)
def test_env_lists_only_what_its_rules_import(env_file: Path) -> None:
    """Every conda package of an env is imported by a script of a rule that uses it (or the geovae
    modules those scripts reach), or is a runtime-only entry with its reason (RUNTIME_ONLY)."""
    env = yaml.safe_load(env_file.read_text())
    listed = {re.split(r"[=<>\s]", d, maxsplit=1)[0].lower() for d in env["dependencies"] if isinstance(d, str)}
    needed = {CONDA_NAME.get(name, name).lower() for s in _env_users()[env_file] for name in third_party_imports(s)}
    extra = sorted(listed - needed - set(RUNTIME_ONLY))
    assert not extra, f"{env_file.name} lists {extra}, which no script of its rules imports"


def test_envs_do_not_install_geovae() -> None:
    """geovae is never pip-installed into a conda env (a non-editable copy goes stale after `git pull`;
    Snakemake does not rebuild an env whose file did not change): jobs import the checkout's src/."""
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip = [item for d in env["dependencies"] if isinstance(d, dict) for item in d.get("pip", [])]
        assert not any(item in ("..", ".") or "geovae" in item for item in pip), env_file.name
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert "use_checkout_code(" in common  # checked end to end by test_jobs_run_the_code_of_their_checkout
