"""The import contract of the layers (pyproject ``[tool.importlinter]``) is enforced.

``task check`` runs ``lint-imports``; these tests prove it holds on the tree as it is
and that a wrong arrow fails it: a copy of the packages with one import added against
the layers must be refused, naming the contract it breaks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ferryman", "edge", "workers", "functions", "infra")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", "pyproject.toml"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tree / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "target"),
        )
    return tree


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("where", "line", "contract"),
    [
        ("edge/_wrong.py", "import workers.runtime\n", "edge and workers never import each other"),
        (
            "workers/_wrong.py",
            "from edge import sender\n",
            "edge and workers never import each other",
        ),
        ("ferryman/_wrong.py", "import workers.settings\n", "ferryman is the ground floor"),
        ("workers/_wrong.py", "import functions.registry\n", "edge and workers stand on ferryman"),
        (
            "functions/parse/_wrong.py",
            "import functions.loki.encode\n",
            "one function never imports another",
        ),
    ],
)
def test_a_wrong_arrow_fails_the_check(
    tmp_path: Path, where: str, line: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    (tree / where).write_text(f'"""A wrong arrow."""\n\n{line}')
    result = _lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert contract in result.stdout
    assert "BROKEN" in result.stdout
