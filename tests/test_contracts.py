"""The floors of DESIGN.md as import-linter contracts (`[tool.importlinter]` in pyproject.toml): they hold on
the code, and they fail when a module breaks them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # The venv's own lint-imports; it puts `cwd` first on sys.path, so it reads the package under `cwd`.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_package_keeps_its_import_contracts():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def tiny_package(root: Path, name: str) -> None:
    """An empty package `name` holding every module the contracts in pyproject.toml name, as `vittui` does."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    modules = set()
    for c in config["contracts"]:
        for layer in c.get("layers", []):
            modules |= {f"vittui.{m.strip()}" for m in layer.split("|")}
        modules |= {m for m in c.get("source_modules", []) + c.get("forbidden_modules", []) if m.startswith("vittui.")}
    for module in sorted(modules):
        parts = [name] + module.split(".")[1:]
        for i in range(1, len(parts) + 1):
            d = root.joinpath(*parts[:i])
            d.mkdir(exist_ok=True)
            (d / "__init__.py").touch()


def contracts_for(root: Path, name: str) -> Path:
    """pyproject.toml's contracts, word for word, with `vittui` renamed `name`."""
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("[tool.importlinter]")
    path = root / "contracts.toml"
    path.write_text(text[start:].replace('"vittui', f'"{name}'), encoding="utf-8")
    return path


@pytest.mark.parametrize("files, broken", [
    ({"ui/x.py": "import torch\n"}, "pkg.ui is not allowed to import torch"),
    ({"runs/y.py": "def f():\n    import timm\n"}, "pkg.runs is not allowed to import timm"),
    ({"ui/x.py": "def f():\n    from pkg.train import loop\n"}, "pkg.ui is not allowed to import pkg.train"),
    ({"recipe/x.py": "import textual\n"}, "pkg.recipe is not allowed to import textual"),
    ({"runs/y.py": "from pkg import analysis\n"}, "pkg.runs is not allowed to import pkg.analysis"),
    ({"ui/x.py": "from pkg.runs import y\n", "runs/y.py": "import numpy\n"}, None),  # allowed: ui stands on runs
])
def test_the_contracts_bite(tmp_path, files, broken):
    """The same contracts over a tiny package `pkg` with one offending module: lint-imports fails and names it."""
    tiny_package(tmp_path, "pkg")
    for module, source in files.items():
        (tmp_path / "pkg" / module).write_text(source)
    r = lint_imports(tmp_path, str(contracts_for(tmp_path, "pkg")))
    out = r.stdout + r.stderr
    if broken is None:
        assert r.returncode == 0, out
    else:
        assert r.returncode != 0 and broken in out, out
