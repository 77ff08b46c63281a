"""The package declares exactly what it imports: `pip install .` brings no package that src/ does
not import, and none that it imports is missing; the conda environment lists the same."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from conftest import REPO

# conda-forge names that differ from the distribution names pip uses.
CONDA_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string ("scikit-learn>=1.3")."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def src_distributions() -> set[str]:
    """The distributions of every third-party module that src/xiqa imports (any depth)."""
    modules = set()
    for path in (REPO / "src" / "xiqa").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"xiqa"}
    owners = importlib.metadata.packages_distributions()
    return {_name(owners[module][0]) for module in third_party}


def declared() -> dict[str, list[str]]:
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def test_runtime_dependencies_are_exactly_what_src_imports():
    imported = src_distributions()
    assert {"torch", "numpy", "h5py", "click"} <= imported  # the scan sees the package
    assert {_name(r) for r in declared()[""]} == imported


def test_extras_do_not_repeat_runtime_dependencies():
    runtime = {_name(r) for r in declared()[""]}
    for extra, requirements in declared().items():
        if extra:
            assert not runtime & {_name(r) for r in requirements}, extra


def test_conda_environment_lists_the_runtime_dependencies():
    with open(REPO / "envs" / "xiqa.yaml") as f:
        entries = yaml.safe_load(f)["dependencies"]
    names = {_name(e) for e in entries if isinstance(e, str)} - {"python", "pip"}
    assert {CONDA_NAMES.get(n, n) for n in names} == {_name(r) for r in declared()[""]}


def test_the_command_line_loads_without_torch():
    # Every job starts `xiqa`; a command that needs no model (pointing, localisation, tables)
    # must not pay torch's import at start-up because of another command's options.
    import subprocess
    import sys

    code = "import sys, xiqa.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
