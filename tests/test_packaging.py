"""The README's first command installs only the core dependencies: every module-level
import of the package must come from them (an optional extra may be imported only
inside the function that needs it)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def core_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported when the module loads (not inside functions)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_level_import_is_a_core_dependency() -> None:
    core = core_distributions()
    dists = packages_distributions()
    missing = []
    for path in sorted((ROOT / "backchannel").rglob("*.py")):
        if "migrations" in path.parts:
            continue  # run by alembic, which is a core dependency itself
        for name in module_level_imports(path):
            if name in sys.stdlib_module_names or name in ("backchannel", "__future__"):
                continue
            owners = {_normal(d) for d in dists.get(name, [name])}
            if not owners & core:
                missing.append(f"{path.relative_to(ROOT)} imports {name} ({', '.join(sorted(owners))})")
    assert not missing, "not in [project] dependencies:\n" + "\n".join(missing)
