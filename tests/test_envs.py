"""Structure of the conda envs, and that every rule names one that exists."""

from __future__ import annotations

import re
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
            envs[f"{path.name}:{name}"] = match.group(1) if match else ""
    return envs


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
    pip = [d for d in deps if isinstance(d, dict)]
    assert pip and ".." in pip[0]["pip"], f"{env_file.name} must install the geovae package from the repo"
